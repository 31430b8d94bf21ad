"""``ispad-bench data build``: the stages in order, per modality, with progress bars and a summary.

sources (validate) -> split (by acquisition) -> per acquisition: windows + defect crops (journaled)
-> reduced split -> supervised stream -> un-augmented patches -> manifest -> ``build.json`` and the
rename of the finished folder into place (``manifest.py`` says how a killed build resumes).
"""

from __future__ import annotations

import shutil
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ispad_bench.data.build import manifest
from ispad_bench.data.build.crops import write_real_ids
from ispad_bench.data.build.extract import cached_source, extract, write_png
from ispad_bench.data.build.params import BuildParams
from ispad_bench.data.build.sources import SourceError, modality_folders, read_modality
from ispad_bench.data.build.split import TEST, TRAIN, assign
from ispad_bench.data.build.stream import unaugmented_patch, write_stream
from ispad_bench.data.layout import DEFECT_GROUPS, GOOD_DIR, GROUPS, SUPERVISED_DIR, TRAIN_DIRS
from ispad_bench.data.modality import Modality
from ispad_bench.data.synth.generate import run_ordered
from ispad_bench.files import clean_temporaries, read_json

STREAM_FILE = "stream.h5"
UNAUGMENTED_DIR = "unaugmented"


@dataclass
class BuildResult:
    """What one modality's build wrote (or found already built)."""

    modality: Modality
    target: Path
    counts: dict[str, int]
    groups: dict[str, str]  # test folder -> group
    notes: list[str] = field(default_factory=list)
    kept: bool = False


@contextmanager
def _progress(verbose: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), disable=not verbose)
    with bar:
        yield bar


def build(source: str | Path, out: str | Path, modality: str | None = None, params: BuildParams | None = None,
          verbose: bool = True) -> list[BuildResult]:
    """Build every modality folder of ``source`` (or only ``modality``) into ``out`` in the ISP-AD layout."""
    params = params or BuildParams()
    out = Path(out)
    folders = modality_folders(Path(source), modality)
    sources = [read_modality(folder, mod) for mod, folder in folders]  # validate everything before writing
    out.mkdir(parents=True, exist_ok=True)
    return [_build_one(src, out, params, verbose) for src in sources]


def _build_one(src, out: Path, p: BuildParams, verbose: bool) -> BuildResult:
    mod = src.modality
    fp = manifest.fingerprint(src, p.fingerprinted())
    target = out / mod.value
    groups = {c: (p.mapping if p.mapping is not None else DEFECT_GROUPS).get(c, c) for c in src.classes()}
    if manifest.check_target(target, fp):
        record = read_json(target / manifest.BUILD_FILE) or {}
        return BuildResult(mod, target, record.get("counts", {}), groups, record.get("notes", []), kept=True)
    work = manifest.workdir(out, mod.value, fp)
    manifest.remove_stale(out, mod.value, work)
    work.mkdir(parents=True, exist_ok=True)
    clean_temporaries(work)
    split = assign(src.acquisitions, p.seed, p.test_share)

    def ordered(jobs):
        return run_ordered(jobs, p.workers)

    notes: list[str] = []
    with _progress(verbose) as bar:
        task = bar.add_task(f"{mod.value}: acquisitions", total=len(src.acquisitions))
        entries = []
        for acq in sorted(src.acquisitions, key=lambda a: a.rel):
            entry = manifest.read_journal(work, acq.ident)
            if entry is None or entry.get("split") != split[acq.rel]:
                entry = extract(acq, split[acq.rel], work, mod, p, ordered)
                manifest.write_journal(work, acq.ident, entry)
            entries.append(entry)
            bar.advance(task)
        try:
            counts = _check_extracted(src, entries, split)
        except SourceError:
            shutil.rmtree(work, ignore_errors=True)  # nothing to resume: the sources must change
            raise
        writer = manifest.ManifestWriter(work)
        try:
            writer.write(tuple(r) for e in entries for r in e["rows"])
            counts["train_reduced"] = _reduced(work, entries, p, writer, bar)
            train = [a for a in src.acquisitions if split[a.rel] == TRAIN]
            stream_sources = [s for s in (cached_source(work, a) for a in sorted(train, key=lambda a: a.rel)) if s]
            counts.update(_stream(work, stream_sources, mod, p, writer, bar, notes))
            counts["unaugmented"] = _unaugmented(work, stream_sources, p, writer, bar, ordered)
        finally:
            writer.close()
    counts.update({f"sup_real_{g}": sum(e["crops"][g] for e in entries) for g in GROUPS})
    write_real_ids(work)
    notes += _notes(src, entries, split, counts, groups)
    record = {"builder": manifest.BUILDER, "fingerprint": fp, "modality": mod.value, "source": str(src.folder),
              "params": p.fingerprinted(), "split": dict(sorted(split.items())), "counts": counts, "notes": notes}
    manifest.finish(work, target, record)
    return BuildResult(mod, target, counts, groups, notes)


def _check_extracted(src, entries: list[dict], split: dict[str, str]) -> dict[str, int]:
    """Counts of the extracted windows; "nothing left to extract" when a fault-free split is empty."""
    counts = {"train": sum(len(e["good"]) for e in entries if e["split"] == TRAIN),
              "test_good": sum(len(e["good"]) for e in entries if e["split"] == TEST)}
    for name, part in (("train", TRAIN), ("test_good", TEST)):
        if counts[name]:
            continue
        mine = [e for e in entries if e["split"] == part]
        roi = sum(e["dropped"]["roi"] for e in mine)
        touch = sum(e["dropped"]["touches_defect"] + e["dropped"]["defect_in_train"] for e in mine)
        small = sum(e["skipped_small"] for e in mine)
        raise SourceError(f"{src.folder}: nothing left to extract for {name.replace('_', '/')}: {len(mine)} {part} "
                          f"acquisition(s), windows dropped: {roi} under the ROI share, {touch} with defects, "
                          f"{small} image(s) skipped as smaller than a window (more fault-free acquisitions, a larger "
                          "ROI or --small pad help)")
    for e in entries:
        if e["split"] == TEST and e["defect"]:
            cls = e["class"]
            counts[f"test/{cls}"] = counts.get(f"test/{cls}", 0) + e["defect"]
    return counts


def _reduced(work: Path, entries: list[dict], p: BuildParams, writer, bar) -> int:
    """``train_reduced/good``: a seeded subset of at most ``p.reduced`` training windows (§3.2.1), copied."""
    names = sorted(n for e in entries if e["split"] == TRAIN for n in e["good"])
    rng = np.random.default_rng([p.seed, zlib.crc32(b"reduced")])
    chosen = sorted(names[i] for i in rng.permutation(len(names))[: p.reduced])
    full, reduced = work / TRAIN_DIRS["full"] / GOOD_DIR, work / TRAIN_DIRS["reduced"] / GOOD_DIR
    reduced.mkdir(parents=True, exist_ok=True)
    rows = {r[0]: r for e in entries if e["split"] == TRAIN for r in e["rows"]}
    task = bar.add_task("train_reduced", total=len(chosen))
    for name in chosen:
        shutil.copyfile(full / name, reduced / name)
        row = rows[f"{TRAIN_DIRS['full']}/{GOOD_DIR}/{name}"]
        writer.write([(f"{TRAIN_DIRS['reduced']}/{GOOD_DIR}/{name}", *row[1:])])
        bar.advance(task)
    return len(chosen)


def _stream(work: Path, sources: list, mod: Modality, p: BuildParams, writer, bar, notes: list[str]) -> dict[str, int]:
    if not p.stream_patches:
        notes.append("no supervised stream: --stream-patches 0")
        return {"sup_stream_good": 0, "sup_stream_synthetic": 0}
    if not sources:
        notes.append("no supervised stream: no training acquisition has a window position inside its ROI clear of defects")
        return {"sup_stream_good": 0, "sup_stream_synthetic": 0}
    folder = work / SUPERVISED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / f".{STREAM_FILE}.partial"
    task = bar.add_task("supervised stream", total=p.stream_patches)
    done = {"n": 0, "defects": 0}

    def on_chunk(rows, k):
        writer.write((f"{SUPERVISED_DIR}/{STREAM_FILE}[{done['n'] + i}]", rel, x, y, f"{t};defect={d}", p.seed)
                     for i, (rel, y, x, t, d) in enumerate(rows))
        done["n"] += k
        done["defects"] += sum(r[4] for r in rows)
        bar.advance(task, k)

    write_stream(partial, sources, p.stream_patches, mod, p.seed, p.affine_p,
                 lambda jobs: run_ordered(jobs, p.workers), on_chunk, p.roi_min)
    partial.replace(folder / STREAM_FILE)
    return {"sup_stream_good": done["n"] - done["defects"], "sup_stream_synthetic": done["defects"]}


def _unaugmented(work: Path, sources: list, p: BuildParams, writer, bar, ordered) -> int:
    """§3.2.4: ``unaugmented/good/<k>.png``, fault-free patches at random ROI positions, not augmented."""
    if not p.unaugmented or not sources:
        return 0
    folder = work / UNAUGMENTED_DIR / GOOD_DIR
    folder.mkdir(parents=True, exist_ok=True)
    task = bar.add_task("unaugmented", total=p.unaugmented)
    width = max(6, len(str(p.unaugmented)))

    def job(k: int):
        def run():
            patch, rel, y, x = unaugmented_patch(k, sources, p.seed, p.roi_min)
            write_png(folder / f"{k:0{width}d}.png", patch)
            return (f"{UNAUGMENTED_DIR}/{GOOD_DIR}/{k:0{width}d}.png", rel, x, y, "none", p.seed)
        return run

    for row in ordered([job(k) for k in range(p.unaugmented)]):
        writer.write([row])
        bar.advance(task)
    return p.unaugmented


def _notes(src, entries, split, counts, groups) -> list[str]:
    notes = []
    defective = [a for a in src.acquisitions if a.defective]
    if not defective:
        notes.append("no real defects and no defective test patches: the source has no defective acquisitions "
                     "(the unsupervised train/test good splits are built; data check needs test defects)")
    elif not any(split[a.rel] == TRAIN for a in defective):
        notes.append(f"no real defects for supervision: all {len(defective)} defective acquisition(s) are in the test split "
                     "(real-defect crops come from training acquisitions only; add defective acquisitions)")
    unmapped = sorted(c for c, g in groups.items() if g not in GROUPS)
    if unmapped:
        notes.append(f"test classes {unmapped} map to no group (area/points): pass --defect-groups to data build "
                     "and data check, and data.init_args.defect_groups to the datamodules")
    small = sum(e["skipped_small"] for e in entries)
    if small:
        notes.append(f"{small} acquisition(s) smaller than a window skipped (--small skip)")
    return notes


def summary(results: list[BuildResult], out: Path) -> None:
    """Counts per modality, split and group (as ``data check`` prints them), notes, and the next commands."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"Built dataset at {out}")
    for column in ("modality", "split", "group", "patches"):
        table.add_column(column, justify="right" if column == "patches" else "left")
    for r in results:
        for key, n in r.counts.items():
            if key.startswith("test/"):
                split, group = key, r.groups.get(key[5:], key[5:])
            else:
                split, group = key, ("good" if key in ("train", "train_reduced", "test_good", "sup_stream_good", "unaugmented")
                                     else {"sup_stream_synthetic": "synthetic"}.get(key, key.rsplit("_", 1)[-1]))
            table.add_row(r.modality.value, split, group, f"{n:,}")
    console = Console(width=100)
    console.print(table)
    for r in results:
        state = "already built with these sources and parameters, kept" if r.kept else "built"
        print(f"{r.modality.value}: {state} ({r.target})")
        for note in r.notes:
            print(f"  note: {note}")
    mods = ",".join(r.modality.value for r in results)
    print(f"Check it:      ispad-bench data check --root {out}")
    print(f"Benchmark it:  ispad-bench sweep --all --profile smoke --data-root {out} --modalities {mods} "
          f"--out results/runs/built")
