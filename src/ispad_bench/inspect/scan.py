"""A generated full acquisition with planted defects and its mask, to try ``inspect`` without a real scan.

``python -m ispad_bench.inspect.scan OUT_DIR [--size 2048] [--modality ASM] [--seed 0]`` writes
``OUT_DIR/scan.png`` and ``OUT_DIR/masks/scan_mask.png``: a printed-plate-like background (a halftone dot
screen under a slow illumination gradient, sensor noise) with seeded bright and dark blobs of *area* and
*points* sizes and one thin stroke. Not ISP-AD data: the scores of a model trained on generated patches
mean nothing; the files exercise the whole command.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np

from ispad_bench.data.modality import Modality


def generate_scan(size: int = 2048, modality: Modality | str = "ASM", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(image uint8: (size, size) or (size, size, 3) as the modality's channels, mask bool (size, size))."""
    modality = Modality.parse(modality)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    period = 12.0
    dots = (np.cos(2 * np.pi * yy / period) * np.cos(2 * np.pi * xx / period) > 0.3).astype(np.float32)
    light = 0.85 + 0.15 * np.sin(np.pi * xx / size) * np.cos(0.5 * np.pi * yy / size)
    img = (110 + 50 * dots) * light + rng.normal(0, 4, (size, size)).astype(np.float32)
    mask = np.zeros((size, size), bool)
    n_blobs = max(4, size * size // 400_000)
    for i in range(n_blobs):
        r = float(rng.uniform(22, 45) if i % 2 == 0 else rng.uniform(3, 8))  # area (>= 1024 px) / points
        cy, cx = rng.uniform(r + 8, size - r - 8, 2)
        blob = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        img[blob] = 245.0 if i % 3 else 25.0
        mask |= blob
    t = np.linspace(0, 1, 4 * size)
    y0, x0 = rng.uniform(0.2, 0.4, 2) * size
    path_y = (y0 + 0.4 * size * t + 20 * np.sin(6 * t)).astype(int)
    path_x = (x0 + 0.3 * size * t).astype(int)
    for dy in (0, 1):
        img[np.clip(path_y + dy, 0, size - 1), np.clip(path_x, 0, size - 1)] = 235.0
        mask[np.clip(path_y + dy, 0, size - 1), np.clip(path_x, 0, size - 1)] = True
    img8 = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if modality.channels == 3:
        img8 = np.stack([img8, (img8 * 0.9).astype(np.uint8), (img8 * 0.8).astype(np.uint8)], axis=-1)
    return img8, mask


def _png(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    from ispad_bench.files import atomic_write_bytes

    parser = argparse.ArgumentParser(prog="python -m ispad_bench.inspect.scan", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--modality", default="ASM")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    image, mask = generate_scan(args.size, args.modality, args.seed)
    atomic_write_bytes(args.out / "scan.png", _png(image))
    atomic_write_bytes(args.out / "masks" / "scan_mask.png", _png(mask.astype(np.uint8) * 255))
    print(f"wrote {args.out / 'scan.png'} ({args.size}x{args.size}) and {args.out / 'masks' / 'scan_mask.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
