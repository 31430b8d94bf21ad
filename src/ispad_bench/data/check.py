"""``ispad-bench data check``: validate a dataset root in the ISP-AD layout; counts beside Table 7.

Every finding is one line naming the file (or folder) and what is wrong, and has a severity by one
rule: an **error** stops or corrupts training (unreadable images, bit depths the loaders refuse, a
missing or empty mask, training images whose pixels are also in the test split, a test split
without defects, no usable training split); a **warning** is something the loaders handle and
says what they do (images that are not 256x256 are resized, other channel counts converted, 16-bit
rescaled, masks of another size resized, multi-valued masks binarised at > 0, dangling links
skipped, an unmapped defect folder becomes its own group, stream labels used as given). Every
check runs on every file. Images are fully decoded (truncated PNGs only fail on decode; the
decoded pixels are hashed to find the same image in two splits), in a thread pool because the real
dataset holds ~560k patches.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ispad_bench.data.hdf5 import (
    StreamFormatError,
    discover_real_defects,
    discover_stream,
    hdf5_files,
    is_real_defect_file,
    real_defect_pools,
)
from ispad_bench.data.images import MODE_BITS
from ispad_bench.data.layout import (
    DEFECT_GROUPS,
    GOOD_DIR,
    GROUPS,
    MASK_DIR,
    MASK_SUFFIX,
    REAL_DEFECTS_DIR,
    REDUCED_MAX,
    SUPERVISED_DIR,
    TEST_DIR,
    TRAIN_DIRS,
    defect_group,
    list_images,
)
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE, Modality
from ispad_bench.errors import one_line

ERROR, WARNING = "error", "warning"

# kind -> (severity, one-line summary of the kind); the order is the print order
KINDS: dict[str, tuple[str, str]] = {
    "layout": (ERROR, "missing or empty folders"),
    "train_split": (ERROR, "no usable training split for the default train_split 'reduced'"),
    "unreadable": (ERROR, "unreadable or truncated images"),
    "bit_depth": (ERROR, "images with a bit depth other than 8 or 16 (refused when read; the layout is 8-bit)"),
    "leakage": (ERROR, "training images whose pixels are also in the test split (train/test leakage; §3.2 splits before extraction)"),
    "no_defects": (ERROR, "test splits without defect images (every method's test and metrics need them)"),
    "real_size": (ERROR, f"real-defect patches that are not {REAL_DEFECT_SIZE}x{REAL_DEFECT_SIZE}"),
    "mask_missing": (ERROR, "defect images without a mask, or masks without an image"),
    "mask_empty": (ERROR, "empty masks of defect images"),
    "hdf5": (ERROR, "unreadable or malformed HDF5 files"),
    "modality": (ERROR, "no modality folder"),
    "resize": (WARNING, f"images that are not {PATCH_SIZE}x{PATCH_SIZE}; the datamodules resize them (masks follow)"),
    "channels": (WARNING, "images with another channel count than the modality's; converted when read"),
    "bit_depth16": (WARNING, "16-bit images; the loaders rescale them to [0, 1] by the 16-bit range (12-bit data looks dark)"),
    "mask_size": (WARNING, "masks whose size differs from their image's; the loaders resize them to the image (nearest)"),
    "mask_values": (WARNING, "masks with several non-zero values (e.g. resized with interpolation); every non-zero pixel "
                    "counts as defect, as Anomalib's read_mask"),
    "dangling": (WARNING, "symbolic links to missing files; training skips them (the counts leave them out)"),
    "unreachable": (WARNING, "defect masks wholly outside the modality's evaluation crop: the image stays defective, "
                    "but no pixel of its defect can be found"),
    "vanishes": (WARNING, "defect masks that vanish at the model input size (nearest resize after the border crop)"),
    "stream_labels": (WARNING, "stream labels that contradict their masks; training uses the labels (masks only with read_masks)"),
    "mask_value": (WARNING, "masks with one non-zero value other than 255 (counted as defect; the layout uses 0/255)"),
    "train_fallback": (WARNING, "training-split notes"),
    "groups": (WARNING, "defect folders and the group mapping"),
    "ignored": (WARNING, "folders that training ignores"),
}
EXAMPLES = 3  # lines shown per kind without --verbose


@dataclass(frozen=True)
class Finding:
    kind: str
    message: str

    @property
    def severity(self) -> str:
        return KINDS[self.kind][0]


@dataclass(frozen=True)
class _Task:
    path: Path
    size: int  # expected square size
    channels: int
    role: str = "image"  # image | real | mask
    image: Path | None = None  # a mask's image
    split: str = ""  # train | test (images): duplicates across them are leakage
    modality: Modality | None = None  # a mask's modality (its evaluation crops)
    input_size: int | None = None  # a model input size to predict vanishing thin defects at


@dataclass
class _Result:
    findings: list[Finding] = field(default_factory=list)
    size: tuple[int, int] | None = None  # (width, height)
    digest: bytes | None = None  # of the decoded pixels (duplicates across splits)


def bit_depth(mode: str) -> int:
    """Bits per channel of a PIL mode (``I;16`` -> 16), from the loaders' table."""
    return 16 if mode.startswith("I;16") else MODE_BITS.get(mode, 8)


def _inspect(task: _Task) -> _Result:
    """Every per-file check of one image or mask (no early return)."""
    from PIL import Image

    out = _Result()
    try:
        with Image.open(task.path) as img:
            img.load()
            mode, bands, out.size = img.mode, len(img.getbands()), img.size
            array = np.asarray(img) if task.role == "mask" else None
            if task.role == "image":
                pixels = np.ascontiguousarray(np.asarray(img))
                out.digest = hashlib.blake2b(repr(pixels.shape).encode() + pixels.tobytes(), digest_size=16).digest()
    except Exception as err:  # noqa: BLE001 (PIL raises many types for corrupt files)
        out.findings.append(Finding("unreadable", f"{task.path}: unreadable or truncated image ({type(err).__name__}: {err})"))
        return out
    width, height = out.size
    add = out.findings.append
    if task.role != "mask" and bit_depth(mode) != 8:
        kind = "bit_depth16" if bit_depth(mode) == 16 else "bit_depth"
        add(Finding(kind, f"{task.path}: bit depth {bit_depth(mode)} (mode {mode}), expected 8"))
    if task.role == "real" and (width, height) != (task.size, task.size):
        add(Finding("real_size", f"{task.path}: image is {width}x{height}, expected {task.size}x{task.size}"))
    elif task.role == "image" and (width, height) != (task.size, task.size):
        add(Finding("resize", f"{task.path}: image is {width}x{height}, expected {task.size}x{task.size}"))
    if task.role != "mask" and bands != task.channels:
        add(Finding("channels", f"{task.path}: image has {bands} channel(s), expected {task.channels}"))
    if array is not None:
        if array.ndim == 3:
            array = array.max(axis=-1)  # a colour mask: Anomalib's read_mask converts to L, nonzero = defect
        values = np.unique(array)
        nonzero = values[values != 0]
        if task.modality is not None and len(nonzero):
            out.findings += _geometry_findings(array != 0, task)
        if not len(nonzero):
            add(Finding("mask_empty", f"{task.path}: mask of a defect image is empty (all zero)"))
        elif len(nonzero) > 1:
            shown = ", ".join(str(v) for v in values[:6]) + (", ..." if len(values) > 6 else "")
            add(Finding("mask_values", f"{task.path}: mask has {len(nonzero)} non-zero values ({shown}), expected 0 and one value (255)"))
        elif array.dtype == bool or int(nonzero[0]) == 255 or mode == "1":
            pass
        else:
            add(Finding("mask_value", f"{task.path}: mask values 0/{int(nonzero[0])}, expected 0/255"))
    return out


def _geometry_findings(mask: np.ndarray, task: _Task) -> list[Finding]:
    """What the loaders' geometry (``datamodule.geometry``: native 256, border crop, centre crop, nearest resize)
    leaves of a defect mask: nothing inside the border crop (every method) or the centre crop (§4.3.5: GLASS,
    U-Flow, DDAD and the added Anomalib models crop ASM to 224), or nothing at ``task.input_size``."""
    mod, size = task.modality, task.input_size
    if not (mod.border_crop_px or mod.center_crop or size):
        return []  # no crop and no input size: every defect pixel stays
    import torch
    from torchvision.transforms.v2 import functional as F
    from torchvision.tv_tensors import Mask

    from ispad_bench.data.datamodule import geometry

    tensor = Mask(torch.from_numpy(np.ascontiguousarray(mask)).to(torch.uint8)[None])
    border = geometry(mod.border_crop_px)(tensor)
    crops = [(border, f"{mod.border_crop_px}-px border crop (every method)")]
    if mod.center_crop:
        crops.append((geometry(mod.border_crop_px, mod.center_crop)(tensor),
                      f"centre-{mod.center_crop} crop (GLASS, U-Flow, DDAD, added models; §4.3.5)"))
    found = [Finding("unreachable", f"{task.path}: the defect lies wholly outside the {mod.value} {name}")
             for cropped, name in crops if not bool(cropped.any())][:1]
    if size and bool(border.any()) and not bool(F.resize(border, [size, size]).any()):
        found.append(Finding("vanishes", f"{task.path}: the defect vanishes when the mask is resized to "
                                         f"{size}x{size} (nearest, after the border crop)"))
    return found


def _hdf5_problem(path: Path, err: Exception) -> Finding:
    text = str(err)
    inner = re.search(r"\(([^()]*)\)\s*$", text)
    return Finding("hdf5", f"{path}: not a readable HDF5 file ({inner.group(1) if inner else text})")


class _Scan:
    def __init__(self, root: Path, defect_groups: dict[str, str] | None = None, input_size: int | None = None):
        self.root, self.input_size = root, input_size
        self.mapping = dict(defect_groups) if defect_groups else dict(DEFECT_GROUPS)
        self.findings: list[Finding] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.tasks: list[_Task] = []
        self.sizes: dict[Path, tuple[int, int]] = {}
        self.defect_folders: set[str] = set()

    @property
    def errors(self) -> list[str]:
        return [f.message for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[str]:
        return [f.message for f in self.findings if f.severity == WARNING]

    problems = errors  # the name older callers use

    def add(self, kind: str, message: str) -> None:
        self.findings.append(Finding(kind, message))

    def folder_images(self, folder: Path, must_exist: bool = True) -> list[Path]:
        if not folder.is_dir():
            if must_exist:
                self.add("layout", f"{folder}: missing folder")
            return []
        files = list_images(folder)
        for link in sorted(p for p in folder.iterdir() if p.is_symlink() and not p.exists()):
            self.add("dangling", f"{link}: symbolic link to a missing file ({os.readlink(link)})")
        if not files:
            self.add("layout", f"{folder}: empty folder (no images)")
        return files

    def modality(self, mod: Modality, base: Path) -> None:
        full_dir, reduced_dir = (base / TRAIN_DIRS[s] / GOOD_DIR for s in ("full", "reduced"))
        reduced = self.folder_images(reduced_dir, must_exist=False)
        full = self.folder_images(full_dir, must_exist=not reduced_dir.is_dir())
        if not full_dir.is_dir() and reduced_dir.is_dir():
            self.add("train_fallback", f"{full_dir}: missing folder; train_split 'full' will not work")
        self.counts[(mod.value, "train")] = len(full)
        self.counts[(mod.value, "train_reduced")] = len(reduced)
        if len(reduced) > REDUCED_MAX:
            self.add("train_fallback", f"{reduced_dir}: reduced split holds {len(reduced)} > {REDUCED_MAX} images (§3.2.1)")
        if not reduced_dir.is_dir() and full:
            if len(full) > REDUCED_MAX:
                self.add("train_split", f"{reduced_dir}: missing and {full_dir} holds {len(full):,} > {REDUCED_MAX} "
                         "images: training with train_split 'reduced' (the default) stops; pass "
                         "--data.init_args.train_split full (or create the folder with <= 500 images)")
            else:
                self.add("train_fallback", f"{reduced_dir}: missing; train_split 'reduced' trains on "
                         f"{full_dir} ({len(full)} <= {REDUCED_MAX} images)")
        self.tasks += [_Task(p, PATCH_SIZE, mod.channels, split="train") for p in full + reduced]
        self.test(mod, base)
        self.supervised(mod, base)

    def test(self, mod: Modality, base: Path) -> None:
        test_dir, mask_dir = base / TEST_DIR, base / MASK_DIR
        groups: Counter[str] = Counter({GOOD_DIR: 0, **{g: 0 for g in GROUPS}})
        if not test_dir.is_dir():
            self.add("layout", f"{test_dir}: missing folder")
        defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
        if test_dir.is_dir() and GOOD_DIR not in defects:
            self.add("layout", f"{test_dir / GOOD_DIR}: missing folder")
        self.defect_folders.update(defects)
        for defect in defects:
            files = self.folder_images(test_dir / defect)
            groups[defect_group(defect, self.mapping)] += len(files)
            self.tasks += [_Task(p, PATCH_SIZE, mod.channels, split="test") for p in files]
            if defect == GOOD_DIR:
                continue
            if defect not in self.mapping:
                self.add("groups", f"{test_dir / defect}: defect folder not in the group mapping, counted as its own "
                         f"group '{defect}' (map it with --defect-groups / data.init_args.defect_groups)")
            masks = {p.name: p for p in list_images(mask_dir / defect)} if (mask_dir / defect).is_dir() else {}
            for image in files:
                mask = mask_dir / defect / f"{image.stem}{MASK_SUFFIX}.png"
                if masks.pop(mask.name, None) is None:
                    self.add("mask_missing", f"{image}: image without mask (expected {mask})")
                else:
                    self.tasks.append(_Task(mask, PATCH_SIZE, 1, role="mask", image=image, modality=mod,
                                            input_size=self.input_size))
            for m in masks.values():
                self.add("mask_missing", f"{m}: mask without image in {test_dir / defect}")
        if mask_dir.is_dir():
            for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir() and p.name not in defects):
                for m in list_images(folder):
                    self.add("mask_missing", f"{m}: mask without image (no {test_dir / folder.name})")
        for group, n in groups.items():
            self.counts[(mod.value, f"test_{group}")] = n
        if test_dir.is_dir() and not any(n for g, n in groups.items() if g != GOOD_DIR):
            self.add("no_defects", f"{test_dir}: no defect folder with images (only {GOOD_DIR}/); training would stop "
                     "after fitting, at the test (put defect images in test/<defect>/ with masks in ground_truth/)")

    def supervised(self, mod: Modality, base: Path) -> None:
        sup = base / SUPERVISED_DIR
        if not sup.is_dir():
            return  # the supervised part is optional (the unsupervised benchmark does not need it)
        labels: Counter[int] = Counter()
        unreadable = False
        reported: set[str] = set()
        for path in hdf5_files(base):
            try:
                if is_real_defect_file(path):
                    continue  # checked through real_defect_pools below
                layout = discover_stream(path)
                with h5py.File(path, "r") as f:
                    values, counts = np.unique(f[layout.labels_key][()], return_counts=True)
                self.stream_labels(path, layout)
            except StreamFormatError as err:
                reported.add(one_line(err))
                self.add("hdf5", one_line(err))
                unreadable = True
                continue
            except (OSError, KeyError, ValueError) as err:  # h5py: truncated, not HDF5, unreadable chunk
                self.findings.append(_hdf5_problem(path, err))
                unreadable = True
                continue
            labels.update({int(k): int(v) for k, v in zip(values, counts)})
        self.counts[(mod.value, "sup_stream_good")] = labels[0]
        self.counts[(mod.value, "sup_stream_synthetic")] = labels[1]
        for group in GROUPS:
            if (sup / REAL_DEFECTS_DIR / group).is_dir():
                files = self.folder_images(sup / REAL_DEFECTS_DIR / group)
                self.tasks += [_Task(p, REAL_DEFECT_SIZE, 1, role="real") for p in files]
        pools: dict = {}
        try:
            pools = real_defect_pools(base)
        except (StreamFormatError, OSError) as err:
            if not isinstance(err, StreamFormatError) and not unreadable:
                raise
            if isinstance(err, StreamFormatError) and one_line(err) not in reported:  # not the stream's own error
                self.add("hdf5", one_line(err))
            if unreadable:  # a stream file is unreadable (reported above): count the real defects without it
                pools = {g: files for g, files in discover_real_defects(base).items() if files}
        for group in GROUPS:
            self.counts[(mod.value, f"sup_real_{group}")] = len(pools[group]) if group in pools else 0

    def run_tasks(self) -> None:
        workers = min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_inspect, self.tasks, chunksize=64))
        for task, result in zip(self.tasks, results):
            self.findings += result.findings
            if result.size is not None:
                self.sizes[task.path] = result.size
        self.leakage([(t, r) for t, r in zip(self.tasks, results) if r.digest is not None])
        for task, result in zip(self.tasks, results):
            own = self.sizes.get(task.image) if task.image is not None else None
            if own is not None and result.size is not None and result.size != own:
                self.add("mask_size", f"{task.path}: mask is {result.size[0]}x{result.size[1]}, "
                         f"its image {task.image.name} is {own[0]}x{own[1]}")

    def leakage(self, hashed: list[tuple[_Task, _Result]]) -> None:
        """A training image whose decoded pixels equal a test image's, within one modality folder."""
        tests: dict[tuple[Path, bytes], Path] = {}
        for task, result in hashed:
            if task.split == "test":
                tests.setdefault((task.path.parents[2], result.digest), task.path)
        for task, result in hashed:
            other = tests.get((task.path.parents[2], result.digest)) if task.split == "train" else None
            if other is not None:
                self.add("leakage", f"{task.path}: the same pixels as test image {other}")

    def stream_labels(self, path: Path, layout) -> None:
        """Label-1 patches with an empty mask and label-0 patches with a defect mask (read in blocks)."""
        empty_defects = hidden = 0
        with h5py.File(path, "r") as f:
            labels, masks = f[layout.labels_key], f[layout.masks_key]
            for start in range(0, layout.length, 2048):
                stop = min(layout.length, start + 2048)
                marked = np.asarray(masks[start:stop]).reshape(stop - start, -1).any(axis=1)
                label = np.asarray(labels[start:stop]).reshape(-1) != 0
                empty_defects += int((label & ~marked).sum())
                hidden += int((~label & marked).sum())
        if empty_defects or hidden:
            self.add("stream_labels", f"{path}: {empty_defects:,} label-1 patch(es) with an empty mask, {hidden:,} "
                     "label-0 patch(es) with a defect in their mask")


def _modality_dirs(root: Path, scan: _Scan) -> list[tuple[Modality, Path]]:
    try:
        return [(Modality.parse(root.name), root)]  # root is a modality folder itself
    except ValueError:
        pass
    found = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            found.append((Modality.parse(folder.name), folder))
        except ValueError:
            names = ", ".join(m.value for m in Modality)
            scan.add("ignored", f"{folder}: unknown modality folder (expected {names}), ignored")
    found.sort(key=lambda item: list(Modality).index(item[0]))
    if not found:
        scan.add("modality", f"{root}: no modality folder found (expected LSM-1, LSM-2 and/or ASM)")
    return found


def scan(root: str | Path, defect_groups: dict[str, str] | None = None, input_size: int | None = None) -> _Scan:
    """Walk ``root`` once: counts per (modality, split) and every finding (errors and warnings); with
    ``input_size``, also the defect masks that vanish at that model input size."""
    root = Path(root)
    result = _Scan(root, defect_groups, input_size)
    if not root.is_dir():
        result.add("modality", f"{root}: dataset root does not exist")
        return result
    for mod, base in _modality_dirs(root, result):
        result.modality(mod, base)
    if defect_groups:
        for name in sorted(set(defect_groups) - result.defect_folders):
            result.add("groups", f"{root}: the group mapping names '{name}', but no test folder has that name")
    result.run_tasks()
    return result


def find_problems(root: str | Path, defect_groups: dict[str, str] | None = None) -> list[str]:
    """Every error of a dataset root (what stops or corrupts training), one line each; empty when valid."""
    return scan(root, defect_groups).errors


def find_warnings(root: str | Path, defect_groups: dict[str, str] | None = None, input_size: int | None = None) -> list[str]:
    """Every warning (what training handles, e.g. resizing), one line each."""
    return scan(root, defect_groups, input_size).warnings


_PAPER = {  # check split -> Table 7 field (None: no single paper number)
    "train": "unsup_train_good",
    "train_reduced": None,
    "test_good": "test_good",
    "test_area": "test_area",
    "test_points": "test_points",
    "sup_stream_good": "sup_train_good",
    "sup_stream_synthetic": "sup_train_synthetic",
    "sup_real_area": "sup_train_real_area",
    "sup_real_points": "sup_train_real_points",
}


def matches_paper(counts: dict[tuple[str, str], int], modality: str) -> bool:
    """True when every test/train count of ``modality`` equals Table 7 (i.e. the data is ISP-AD's).

    Only the unsupervised train and test counts are compared (the supervised part is optional).
    """
    from ispad_bench.data.fingerprint import matches_paper as same

    mod = Modality.parse(modality)
    return same({split: n for (m, split), n in counts.items() if m == mod.value}, mod)


def summary_lines(findings: list[Finding], verbose: bool = False) -> list[str]:
    """Per severity a header, per kind one summary line, then a few examples (all with ``verbose``)."""
    lines = []
    for severity, title in ((ERROR, "will stop or corrupt training"), (WARNING, "training handles these")):
        mine = [f for f in findings if f.severity == severity]
        if not mine:
            continue
        lines.append(f"{len(mine):,} {severity}(s) ({title}):")
        by_kind: dict[str, list[Finding]] = {}
        for f in mine:
            by_kind.setdefault(f.kind, []).append(f)
        for kind in (k for k in KINDS if k in by_kind):
            items = by_kind[kind]
            lines.append(f"  {severity}: {len(items):,} x {KINDS[kind][1]}")
            shown = items if verbose else items[:EXAMPLES]
            lines += [f"    {f.message}" for f in shown]
            if len(items) > len(shown):
                lines.append(f"    ... {len(items) - len(shown):,} more (--verbose lists all)")
    return lines


def main_check(root: str | Path, defect_groups: dict[str, str] | None = None, verbose: bool = False,
               input_size: int | None = None) -> int:
    """Print counts beside the paper's (Table 7), errors and warnings; 1 when there is an error, else 0."""
    from rich.console import Console
    from rich.table import Table

    result = scan(root, defect_groups, input_size)
    table = Table(title=f"Dataset at {root}")
    for column in ("modality", "split", "found", "paper (Table 7)"):
        table.add_column(column, justify="right" if column in ("found", "paper (Table 7)") else "left")
    for (modality, split), found in result.counts.items():
        field_ = _PAPER.get(split)
        if field_ is not None:
            paper = str(getattr(Modality.parse(modality).splits, field_))
        else:
            paper = "<=500" if split == "train_reduced" else "-"
        table.add_row(modality, split, str(found), paper)
    Console(width=100).print(table)
    modalities = dict.fromkeys(m for m, _ in result.counts)
    for modality in modalities:
        same = matches_paper(result.counts, modality)
        print(f"{modality}: counts {'match' if same else 'differ from'} ISP-AD's Table 7"
              + ("" if same else " (not the ISP-AD data; reports show no comparison with the paper)"))
    for line in summary_lines(result.findings, verbose):
        print(line)
    if result.errors:
        return 1
    n = len(result.warnings)
    print(f"OK: no errors{f' ({n:,} warning(s))' if n else ''}")
    return 0
