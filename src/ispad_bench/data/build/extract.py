"""One acquisition, extracted: its windows (stage 3) and defect crops (stage 4) written as PNGs.

Called once per acquisition by ``run.py``; returns the journal entry (what was written, counts,
manifest rows) and, for a training acquisition, leaves the arrays the stream samples from in the
build's cache (``.cache/<ident>.*.npy``, memory-mapped later, removed when the build finishes).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ispad_bench.data.build import crops, windows
from ispad_bench.data.build.manifest import CACHE_DIR
from ispad_bench.data.build.params import BuildParams
from ispad_bench.data.build.sources import Acquisition, read_binary, read_pixels
from ispad_bench.data.build.split import TEST, TRAIN
from ispad_bench.data.build.stream import PAD, candidates
from ispad_bench.data.layout import GOOD_DIR, MASK_DIR, MASK_SUFFIX, REAL_DEFECTS_DIR, SUPERVISED_DIR, TEST_DIR, TRAIN_DIRS
from ispad_bench.data.modality import PATCH_SIZE, Modality

PNG_LEVEL = 1  # fast zlib level (as the generator): ~15 % larger files than level 6, ~3x faster to write


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def write_png(path: Path, array: np.ndarray) -> None:
    """Plain write into the build's work folder (made whole by the journal, not per file; see manifest.py)."""
    path.write_bytes(png_bytes(array))


def _pad(array: np.ndarray, ph: int, pw: int, mode: str) -> np.ndarray:
    width = ((0, ph), (0, pw)) + ((0, 0),) * (array.ndim - 2)
    return np.pad(array, width, mode=mode) if mode != "constant" else np.pad(array, width)


def extract(acq: Acquisition, split: str, work: Path, modality: Modality, p: BuildParams, run_ordered) -> dict:
    """Write every patch of one acquisition under ``work``; the journal entry (``rows``: manifest rows)."""
    entry = {"rel": acq.rel, "split": split, "class": acq.defect_class, "good": [], "defect": 0, "crops": {"area": 0, "points": 0},
             "dropped": {"roi": 0, "touches_defect": 0, "defect_in_train": 0}, "skipped_small": 0, "rows": []}
    w, h = acq.size
    if (w < p.window or h < p.window) and p.small == "skip":
        entry["skipped_small"] = 1
        return entry
    pixels = read_pixels(acq.path, modality.channels)
    mask = read_binary(acq.mask, acq.size) if acq.mask else None
    roi = read_binary(acq.roi, acq.size) if acq.roi else None
    defects, defect_map = windows.defects_of(acq, mask, p.label_radius)
    ph, pw = max(0, p.window - h), max(0, p.window - w)
    transform = f"pad=0,{ph},0,{pw}" if ph or pw else "none"
    if ph or pw:  # the padded area is never a defect (zeros in the defect map), the ROI is reflected too
        pixels, defect_map = _pad(pixels, ph, pw, "reflect"), _pad(defect_map, ph, pw, "constant")
        roi = None if roi is None else _pad(roi, ph, pw, "reflect")
    kept, dropped = windows.windows((w + pw, h + ph), roi, defect_map, defects, p.window, p.stride, p.roi_min)
    entry["dropped"].update(dropped)
    jobs = []

    def job(rel: str, array: np.ndarray, row_transform: str, x: int, y: int):
        path = work / rel
        entry["rows"].append((rel, acq.rel, x, y, row_transform, p.seed))
        return lambda: write_png(path, array)

    folders = set()
    for win in kept:
        name = f"{acq.ident}_y{win.y:05d}_x{win.x:05d}.png"
        crop = pixels[win.y:win.y + p.window, win.x:win.x + p.window]
        if win.kind == "good":
            rel = f"{TRAIN_DIRS['full'] if split == TRAIN else TEST_DIR}/{GOOD_DIR}/{name}"
            entry["good"].append(name)
        elif split == TEST and acq.defective:
            rel = f"{TEST_DIR}/{acq.defect_class}/{name}"
            mask_rel = f"{MASK_DIR}/{acq.defect_class}/{name[:-4]}{MASK_SUFFIX}.png"
            jobs.append(job(mask_rel, defect_map[win.y:win.y + p.window, win.x:win.x + p.window].astype(np.uint8) * 255,
                            transform, win.x, win.y))
            entry["defect"] += 1
        else:  # a defect window of a training acquisition (or a labelled spot on a fault-free one): no split
            entry["dropped"]["defect_in_train" if split == TRAIN else "touches_defect"] += 1
            continue
        jobs.append(job(rel, crop, transform, win.x, win.y))
    if split == TRAIN and acq.defective:
        from ispad_bench.data.synth.patterns import to_gray

        gray = to_gray(pixels)
        for k, defect in enumerate(defects):
            group = crops.group_of(defect, acq.defect_class, p.mapping, p.area_px)
            rel = f"{SUPERVISED_DIR}/{REAL_DEFECTS_DIR}/{group}/{acq.ident}_d{k:03d}.png"
            cy, cx = int(round(defect.y)), int(round(defect.x))
            jobs.append(job(rel, crops.centred_crop(gray, defect), f"crop512;class={acq.defect_class}", cx, cy))
            entry["crops"][group] += 1
    for rel, *_ in entry["rows"]:
        folders.add((work / rel).parent)
    for folder in sorted(folders):
        folder.mkdir(parents=True, exist_ok=True)
    for _ in run_ordered(jobs):
        pass
    if split == TRAIN and p.stream_patches + p.unaugmented:
        _cache(work, acq, pixels, roi, defect_map, p)
    return entry


def _cache(work: Path, acq: Acquisition, pixels: np.ndarray, roi, defect_map: np.ndarray, p: BuildParams) -> None:
    """The arrays the stream samples from: reflection-padded pixels, the ROI/defect bits, the valid positions."""
    cache = work / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    ph, pw = (max(0, PATCH_SIZE - n) for n in pixels.shape[:2])  # stream patches are 256 whatever the window
    if ph or pw:
        pixels, defect_map = _pad(pixels, ph, pw, "reflect"), _pad(defect_map, ph, pw, "constant")
        roi = None if roi is None else _pad(roi, ph, pw, "reflect")
    h, w = pixels.shape[:2]
    valid = (np.ones((h, w), np.uint8) if roi is None else roi.astype(np.uint8)) | (defect_map.astype(np.uint8) << 1)
    width = ((PAD, PAD), (PAD, PAD)) + ((0, 0),) * (pixels.ndim - 2)
    for name, array in (("pixels", np.pad(pixels, width, mode="reflect")), ("valid", valid),
                        ("candidates", candidates(roi, defect_map, roi_min=p.roi_min))):
        tmp = cache / f".{acq.ident}.{name}.npy.tmp"
        with open(tmp, "wb") as f:
            np.save(f, array)
        tmp.replace(cache / f"{acq.ident}.{name}.npy")


def cached_source(work: Path, acq: Acquisition):
    """The stream's view of a journaled training acquisition (memory maps of its cache), or None."""
    from ispad_bench.data.build.stream import StreamSource

    cache = work / CACHE_DIR
    paths = [cache / f"{acq.ident}.{name}.npy" for name in ("pixels", "valid", "candidates")]
    if not all(path.is_file() for path in paths):
        return None
    pixels, valid, cands = (np.load(path, mmap_mode="r") for path in paths)
    return StreamSource(acq.rel, pixels, valid, np.asarray(cands)) if len(cands) else None
