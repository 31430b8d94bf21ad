"""``ispad-bench data defects``: the random-walk synthesizer on a folder of the user's own patches.

For people who only want synthetic defects (§3.2, ref [25]: "a stochastic process resembling a
random walk with momentum"): each image of ``--images`` gets, with probability ``share`` (seeded per
file name), one defect from ``synthesize_defect`` (the generator's algorithm, data/synth/defects.py);
written to ``<out>/images/<name>.png`` with ``<out>/masks/<stem>_mask.png`` (0/255; all zero for
an untouched patch) and ``<out>/labels.csv`` (``file, defect``). Gray and RGB patches keep their
channels; the same seed gives the same bytes.
"""

from __future__ import annotations

import csv
import io
import sys
import zlib
from pathlib import Path

import numpy as np

from ispad_bench.data.build.extract import png_bytes
from ispad_bench.data.build.sources import SourceError, read_pixels
from ispad_bench.data.layout import MASK_SUFFIX, list_images
from ispad_bench.errors import InputError
from ispad_bench.files import atomic_write_bytes


def add_defects(images: Path, out: Path, seed: int = 0, strength: float = 1.0, share: float = 1.0) -> list[tuple[str, int]]:
    """Write the defective copies, masks and labels; returns ``[(file name, 0|1), ...]``."""
    from PIL import Image

    from ispad_bench.data.synth.defects import synthesize_defect

    images, out = Path(images), Path(out)
    if not images.is_dir():
        raise SourceError(f"{images}: folder does not exist")
    files = list_images(images)
    if not files:
        raise SourceError(f"{images}: no images (png, jpg, bmp, tif)")
    if not 0 < share <= 1:
        raise SourceError(f"share must lie in (0, 1], got {share}")
    labels = []
    for path in files:
        with Image.open(path) as img:
            channels = 3 if img.mode in ("RGB", "RGBA", "P") else 1
        pixels = read_pixels(path, channels)
        rng = np.random.default_rng([seed, zlib.crc32(path.name.encode())])
        defect = bool(rng.random() < share)
        mask = np.zeros(pixels.shape[:2], np.uint8)
        if defect:
            try:
                pixels, mask = synthesize_defect(pixels, rng, strength=strength)
            except ValueError as err:
                raise SourceError(f"{path}: {err}") from err
        atomic_write_bytes(out / "images" / f"{path.stem}.png", png_bytes(pixels))
        atomic_write_bytes(out / "masks" / f"{path.stem}{MASK_SUFFIX}.png", png_bytes(mask))
        labels.append((f"{path.stem}.png", int(defect)))
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(("file", "defect"))
    writer.writerows(labels)
    atomic_write_bytes(out / "labels.csv", text.getvalue().encode())
    return labels


def main_defects(images: Path, out: Path, seed: int = 0, strength: float = 1.0, share: float = 1.0) -> int:
    try:
        labels = add_defects(images, out, seed, strength, share)
    except InputError as err:
        print(f"ispad-bench data defects: error: {err}", file=sys.stderr)
        return 2
    print(f"{sum(d for _, d in labels)} of {len(labels)} patches with a synthetic defect -> {out}/images, "
          f"masks in {out}/masks, labels in {out}/labels.csv")
    return 0
