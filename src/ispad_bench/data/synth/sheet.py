"""A picture of a dataset (``contact_sheet``): patches, their masks, stream and real-defect patches."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ispad_bench.data import layout
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE, Modality


def _outline(img: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """RGB copy of ``img`` with a red ring drawn just outside ``mask`` (the defect stays visible)."""
    from scipy import ndimage

    rgb = np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img.copy()
    if mask is not None and mask.any():
        inner = ndimage.binary_dilation(mask > 0, iterations=1)
        rgb[ndimage.binary_dilation(inner, iterations=1) & ~inner] = (255, 0, 0)
    return rgb


def contact_sheet(
    root: str | Path, modality: Modality | str, path: str | Path, per_folder: int = 1, supervised: bool = True
) -> Path:
    """Save a picture of a generated (or real) modality; defects outlined in red (around, not on, them).

    Row 1: the first ``per_folder`` patches of ``test/good`` and each ``test/<defect>``; row 2:
    the same with their mask outlines. With ``supervised`` (and a ``supervised/`` folder), row 3
    shows stream patches from the HDF5 file, fault-free and synthetic-defect ones alternating
    (masks outlined), and row 4 the central 256 px of the real-defect patches, area and points
    alternating. Handy to eyeball a dataset.
    """
    from ispad_bench.data.hdf5 import StreamFormatError, discover_real_defects, discover_stream, hdf5_files

    folder = layout.modality_dir(root, modality)
    test = folder / layout.TEST_DIR
    top, bottom = [], []
    for sub in [layout.GOOD_DIR, *sorted(d.name for d in test.iterdir() if d.is_dir() and d.name != layout.GOOD_DIR)]:
        for file in sorted((test / sub).glob("*.png"))[:per_folder]:
            img = np.asarray(Image.open(file).convert("RGB"))
            mask_file = folder / layout.MASK_DIR / sub / f"{file.stem}{layout.MASK_SUFFIX}.png"
            top.append(img)
            bottom.append(_outline(img, np.asarray(Image.open(mask_file)) if mask_file.exists() else None))
    rows = [top, bottom]
    found = None
    for file in hdf5_files(folder) if supervised else []:
        try:
            found = discover_stream(file)
            break
        except StreamFormatError:
            continue  # e.g. an HDF5 file of real defects
    if found is not None:
        with h5py.File(found.path, "r") as f:
            labels = f[found.labels_key][()].ravel()
            picks = [np.flatnonzero(labels == v)[: (len(top) + 1) // 2] for v in (0, 1)]
            order = [int(i) for pair in zip(*picks) for i in pair][: len(top)]
            rows.append([_outline(f[found.images_key][i].squeeze(), f[found.masks_key][i].squeeze()) for i in order])
    real = discover_real_defects(folder) if supervised else {}
    if real:
        files = [f for pair in zip(*real.values()) for f in pair][: len(top)]
        c0 = (REAL_DEFECT_SIZE - PATCH_SIZE) // 2
        rows.append([_outline(np.asarray(Image.open(f).convert("L"))[c0 : c0 + PATCH_SIZE, c0 : c0 + PATCH_SIZE], None) for f in files])
    width = len(top)
    blank = np.zeros((PATCH_SIZE, PATCH_SIZE, 3), np.uint8)
    sheet = np.concatenate([np.concatenate(row + [blank] * (width - len(row)), 1) for row in rows if row], 0)
    path = Path(path)
    Image.fromarray(sheet).save(path)
    return path
