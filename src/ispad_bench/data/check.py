"""``ispad-bench data check``: validate an ISP-AD root and compare its counts with Table 7.

Every problem is one line naming the file (or folder) and what is wrong, so a user can fix a
broken download or a hand-made subset without guessing. Images are fully decoded (truncated
PNGs only fail on decode), in a thread pool because the real dataset holds ~560k patches.
"""

from __future__ import annotations

import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ispad_bench.data.hdf5 import (
    StreamFormatError,
    discover_stream,
    hdf5_files,
    is_real_defect_file,
    real_defect_pools,
)
from ispad_bench.data.layout import (
    DEFECT_GROUPS,
    GOOD_DIR,
    GROUPS,
    IMAGE_SUFFIXES,
    MASK_DIR,
    MASK_SUFFIX,
    REAL_DEFECTS_DIR,
    REDUCED_MAX,
    SUPERVISED_DIR,
    TEST_DIR,
    TRAIN_DIRS,
    defect_group,
)
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE, Modality



@dataclass(frozen=True)
class _Task:
    path: Path
    size: int
    channels: int
    is_mask: bool = False
    defect_mask: bool = False  # a defect's mask must not be empty


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _inspect(task: _Task) -> tuple[str | None, tuple[int, int] | None]:
    """(problem or None, (height, width) or None) for one image file."""
    from PIL import Image

    try:
        with Image.open(task.path) as img:
            img.load()
            bands, (width, height) = len(img.getbands()), img.size
            array = np.asarray(img) if task.defect_mask else None
    except Exception as err:  # PIL raises many types for corrupt files
        return f"{task.path}: unreadable or truncated image ({type(err).__name__}: {err})", None
    kind = "mask" if task.is_mask else "image"
    if (height, width) != (task.size, task.size):
        return f"{task.path}: {kind} is {width}x{height}, expected {task.size}x{task.size}", (height, width)
    if bands != task.channels:
        return f"{task.path}: {kind} has {bands} channel(s), expected {task.channels}", (height, width)
    if array is not None and not array.any():
        return f"{task.path}: mask of a defect image is empty (all zero)", (height, width)
    return None, (height, width)


class _Scan:
    def __init__(self, root: Path):
        self.root = root
        self.problems: list[str] = []
        self.notes: list[str] = []
        self.counts: dict[tuple[str, str], int] = {}
        self.tasks: list[_Task] = []

    def folder_images(self, folder: Path, must_exist: bool = True) -> list[Path]:
        if not folder.is_dir():
            if must_exist:
                self.problems.append(f"{folder}: missing folder")
            return []
        files = _images(folder)
        if not files:
            self.problems.append(f"{folder}: empty folder (no images)")
        return files

    def modality(self, mod: Modality, base: Path) -> None:
        channels = mod.channels
        for split, name in (("train", TRAIN_DIRS["full"]), ("train_reduced", TRAIN_DIRS["reduced"])):
            files = self.folder_images(base / name / GOOD_DIR, must_exist=split == "train")
            self.counts[(mod.value, split)] = len(files)
            if split == "train_reduced" and len(files) > REDUCED_MAX:
                folder = base / name / GOOD_DIR
                self.problems.append(f"{folder}: reduced split holds {len(files)} > {REDUCED_MAX} images")
            self.tasks += [_Task(p, PATCH_SIZE, channels) for p in files]
        self.test(mod, base)
        self.supervised(mod, base)

    def test(self, mod: Modality, base: Path) -> None:
        test_dir, mask_dir = base / TEST_DIR, base / MASK_DIR
        groups: Counter[str] = Counter({GOOD_DIR: 0, **{g: 0 for g in GROUPS}})
        if not test_dir.is_dir():
            self.problems.append(f"{test_dir}: missing folder")
        defects = sorted(p.name for p in test_dir.iterdir() if p.is_dir()) if test_dir.is_dir() else []
        if test_dir.is_dir() and GOOD_DIR not in defects:
            self.problems.append(f"{test_dir / GOOD_DIR}: missing folder")
        for defect in defects:
            files = self.folder_images(test_dir / defect)
            groups[defect_group(defect)] += len(files)
            self.tasks += [_Task(p, PATCH_SIZE, mod.channels) for p in files]
            if defect == GOOD_DIR:
                continue
            if defect not in DEFECT_GROUPS:
                self.notes.append(f"{test_dir / defect}: defect folder not in DEFECT_GROUPS, counted as its own group")
            masks = {p.name: p for p in _images(mask_dir / defect)} if (mask_dir / defect).is_dir() else {}
            for image in files:
                mask = mask_dir / defect / f"{image.stem}{MASK_SUFFIX}.png"
                if masks.pop(mask.name, None) is None:
                    self.problems.append(f"{image}: image without mask (expected {mask})")
                else:
                    self.tasks.append(_Task(mask, PATCH_SIZE, 1, is_mask=True, defect_mask=True))
            self.problems += [f"{m}: mask without image in {test_dir / defect}" for m in masks.values()]
        if mask_dir.is_dir():
            for folder in sorted(p for p in mask_dir.iterdir() if p.is_dir() and p.name not in defects):
                self.problems += [f"{m}: mask without image (no {test_dir / folder.name})" for m in _images(folder)]
        for group, n in groups.items():
            self.counts[(mod.value, f"test_{group}")] = n

    def supervised(self, mod: Modality, base: Path) -> None:
        sup = base / SUPERVISED_DIR
        if not sup.is_dir():
            return  # the supervised part is optional (the unsupervised benchmark does not need it)
        labels = Counter()
        for path in hdf5_files(base):
            try:
                if is_real_defect_file(path):
                    continue  # checked through real_defect_pools below
            except OSError as err:
                self.problems.append(f"{path}: not a readable HDF5 file ({err})")
                continue
            try:
                layout = discover_stream(path)
            except StreamFormatError as err:
                self.problems.append(" | ".join(line.strip() for line in str(err).splitlines()))
                continue
            with h5py.File(path, "r") as f:
                values, counts = np.unique(f[layout.labels_key][()], return_counts=True)
                labels.update({int(k): int(v) for k, v in zip(values, counts)})
        self.counts[(mod.value, "sup_stream_good")] = labels[0]
        self.counts[(mod.value, "sup_stream_synthetic")] = labels[1]
        real = sup / REAL_DEFECTS_DIR
        for group in GROUPS:
            if (real / group).is_dir():
                files = self.folder_images(real / group)
                self.tasks += [_Task(p, REAL_DEFECT_SIZE, 1) for p in files]
        try:
            pools = real_defect_pools(base)
        except StreamFormatError as err:
            self.problems.append(" | ".join(line.strip() for line in str(err).splitlines()))
            pools = {}
        for group in GROUPS:
            self.counts[(mod.value, f"sup_real_{group}")] = len(pools[group]) if group in pools else 0

    def run_tasks(self) -> None:
        workers = min(16, os.cpu_count() or 1)
        with ThreadPoolExecutor(workers) as pool:
            results = list(pool.map(_inspect, self.tasks, chunksize=64))
        self.problems += [problem for problem, _ in results if problem]


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
            scan.problems.append(f"{folder}: unknown modality folder (expected {names})")
    found.sort(key=lambda item: list(Modality).index(item[0]))
    if not found:
        scan.problems.append(f"{root}: no modality folder found (expected LSM-1, LSM-2 and/or ASM)")
    return found


def scan(root: str | Path) -> _Scan:
    """Walk ``root`` once: counts per (modality, split), problems and notes."""
    root = Path(root)
    result = _Scan(root)
    if not root.is_dir():
        result.problems.append(f"{root}: dataset root does not exist")
        return result
    for mod, base in _modality_dirs(root, result):
        result.modality(mod, base)
    result.run_tasks()
    return result


def find_problems(root: str | Path) -> list[str]:
    """Every problem of a dataset root, one line each naming the file; empty when valid."""
    return scan(root).problems


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


def main_check(root: str | Path) -> int:
    """Print counts beside the paper's (Table 7) and every problem; 0 when valid, else 1."""
    from rich.console import Console
    from rich.table import Table

    result = scan(root)
    table = Table(title=f"ISP-AD at {root}")
    for column in ("modality", "split", "found", "paper (Table 7)"):
        table.add_column(column, justify="right" if column in ("found", "paper (Table 7)") else "left")
    for (modality, split), found in result.counts.items():
        field = _PAPER.get(split)
        if field is not None:
            paper = str(getattr(Modality.parse(modality).splits, field))
        else:
            paper = "<=500" if split == "train_reduced" else "-"
        table.add_row(modality, split, str(found), paper)
    Console(width=100).print(table)
    for note in result.notes:
        print(f"note: {note}")
    if result.problems:
        print(f"{len(result.problems)} problem(s):")
        for problem in result.problems:
            print(problem)
        return 1
    print("OK: no problems found")
    return 0
