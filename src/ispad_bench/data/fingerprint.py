"""What data a run used: dataset root, a fingerprint of its file list, counts, and whether it is ISP-AD.

A sweep record carries :func:`describe` of its datamodule, so a table can say what it was computed
on: ``kind`` is ``ispad`` when the modality's unsupervised train and test counts equal the paper's
Table 7 (the only data a Δ to the paper means something for), ``generated`` for ``ispad-bench data
synth`` output (its stream file says so), else ``other`` (a user's own data). The fingerprint hashes
every file's path (relative to the modality folder) and size, so two runs on the same files share
it and a changed, added or removed file changes it; it reads no image.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ispad_bench.data.layout import DEFECT_GROUPS, GOOD_DIR, IMAGE_SUFFIXES, TEST_DIR, TRAIN_DIRS, defect_group, modality_dir
from ispad_bench.data.modality import Modality

KINDS = ("ispad", "generated", "other")


def _count(folder: Path) -> int:
    if not folder.is_dir():
        return 0
    return sum(1 for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def counts(mod_dir: Path, mapping: dict[str, str] | None = None) -> dict[str, int]:
    """Images per split: ``train``, ``train_reduced``, ``test_good`` and ``test_<group>`` (groups by ``mapping``)."""
    out = {split: _count(mod_dir / name / GOOD_DIR) for split, name in (("train", TRAIN_DIRS["full"]),
                                                                          ("train_reduced", TRAIN_DIRS["reduced"]))}
    out.update(test_good=0, test_area=0, test_points=0)
    test = mod_dir / TEST_DIR
    for folder in sorted(p for p in test.iterdir() if p.is_dir()) if test.is_dir() else []:
        key = f"test_{defect_group(folder.name, mapping)}"
        out[key] = out.get(key, 0) + _count(folder)
    return out


def matches_paper(split_counts: dict[str, int], modality: Modality | str) -> bool:
    """True when the unsupervised train and test counts equal Table 7 for ``modality``."""
    sizes = Modality.parse(modality).splits
    paper = {"train": sizes.unsup_train_good, "test_good": sizes.test_good,
             "test_area": sizes.test_area, "test_points": sizes.test_points}
    return all(split_counts.get(k) == v for k, v in paper.items())


def fingerprint(mod_dir: Path) -> tuple[str, int]:
    """(``sha256:<hex>`` of every file's relative path and size, number of files); hidden files skipped."""
    digest, n = hashlib.sha256(), 0
    for path in sorted(p for p in Path(mod_dir).rglob("*") if p.is_file()):
        rel = path.relative_to(mod_dir)
        if any(part.startswith(".") for part in rel.parts):
            continue
        digest.update(f"{rel.as_posix()}\t{path.stat().st_size}\n".encode())
        n += 1
    return f"sha256:{digest.hexdigest()}", n


def generated_by(mod_dir: Path) -> dict | None:
    """The generator's parameters when ``mod_dir`` was written by ``ispad-bench data synth``, else None."""
    from ispad_bench.data.synth import recorded

    return recorded(Path(mod_dir))


def describe_folder(root: Path, mod_dir: Path, modality: Modality | str, mapping: dict[str, str] | None = None) -> dict:
    """The ``data`` entry of a record for one modality folder."""
    mapping = dict(mapping) if mapping else dict(DEFECT_GROUPS)
    split_counts = counts(mod_dir, mapping)
    paper = matches_paper(split_counts, modality)
    synth = generated_by(mod_dir)
    digest, n_files = fingerprint(mod_dir)
    return {
        "root": str(Path(root).resolve()),
        "modality_dir": str(Path(mod_dir).resolve()),
        "fingerprint": digest,
        "n_files": n_files,
        "counts": split_counts,
        "defect_groups": mapping,
        "matches_paper": paper,  # Table 7 counts of this modality (§3.2, Table 7)
        "generated": synth,
        "kind": "ispad" if paper else "generated" if synth else "other",
    }


def describe(datamodule) -> dict | None:
    """:func:`describe_folder` of an ``ISPAD`` / ``ISPADSupervised`` datamodule; never raises (a record
    must be written), an unexpected datamodule gives ``None`` and a failure ``{"error": ...}``."""
    root, modality = getattr(datamodule, "root", None), getattr(datamodule, "modality", None)
    if root is None or modality is None:
        return None
    try:
        mod_dir = modality_dir(root, modality)
    except (FileNotFoundError, ValueError):
        return None
    try:
        return describe_folder(datamodule.root, mod_dir, datamodule.modality, getattr(datamodule, "defect_groups", None))
    except Exception as err:  # noqa: BLE001
        return {"error": f"{type(err).__name__}: {err}"}
