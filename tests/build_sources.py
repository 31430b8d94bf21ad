"""Full acquisitions with known defects, drawn by the generator, in ``data build``'s source layout.

``write_source(root, ...)`` writes ``root/<modality>/good/*.png``, ``defective/<class>/*.png`` with
``masks/<class>/<stem>_mask.png`` (or ``defects.csv`` weak labels) and optionally ``roi/``; it returns
the defects it drew (file -> [(y, x, area)]), so tests can check what the builder found.
Area defects are discs of radius ``AREA_RADIUS`` (area >= 1024 px); point defects are random walks with
momentum (``synthesize_defect``) of a few pixels.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from ispad_bench.data.modality import Modality
from ispad_bench.data.synth.defects import synthesize_defect
from ispad_bench.data.synth.patterns import render, sample_scene, to_uint8

AREA_RADIUS = 24  # pi * 24^2 ~ 1810 px >= the default area rule of 1024 px
SCENE = 768  # the largest square the generator renders in one piece


def acquisition(modality: Modality, seed: int, size: tuple[int, int]) -> np.ndarray:
    """A fault-free acquisition of (width, height) <= 768 px: one rendered scene, cropped."""
    w, h = size
    scene = render(sample_scene(modality, np.random.default_rng([seed, 77]), SCENE))
    return to_uint8(scene)[:h, :w]


def _point(image: np.ndarray, rng: np.random.Generator, y: int, x: int):
    out, mask = synthesize_defect(image, rng, kind="blob", start=(y, x), contrast=0.6, strength=2.0)
    return out, mask > 0


def _area(image: np.ndarray, y: int, x: int):
    yy, xx = np.ogrid[: image.shape[0], : image.shape[1]]
    mask = (yy - y) ** 2 + (xx - x) ** 2 <= AREA_RADIUS**2
    out = image.astype(np.int16)
    out[mask] = np.clip(out[mask] - 60, 0, 255)
    return out.astype(np.uint8), mask


def write_source(root: Path, modality: str = "ASM", good: int = 2, defective: dict[str, int] | None = None,
                 size: tuple[int, int] = (600, 450), weak: bool = False, roi: bool = False, seed: int = 0,
                 per_image: int = 2) -> dict[str, list[tuple[float, float, int]]]:
    """Write a source modality folder; returns ``{relative file: [(y, x, area), ...]}`` of its defects.

    ``defective``: class -> number of acquisitions (area classes get discs, the others point defects);
    ``weak``: labels in defects.csv instead of masks; ``roi``: a ROI that leaves out the right quarter.
    """
    mod = Modality.parse(modality)
    folder = Path(root) / modality
    defective = {"scratch": 2, "misalignment": 2} if defective is None else defective
    (folder / "good").mkdir(parents=True, exist_ok=True)
    known: dict[str, list[tuple[float, float, int]]] = {}
    k = 0
    for i in range(good):
        Image.fromarray(acquisition(mod, seed + k, size)).save(folder / "good" / f"plate{i:02d}.png")
        k += 1
    rows = []
    for cls, count in defective.items():
        (folder / "defective" / cls).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = acquisition(mod, seed + k, size)
            rng = np.random.default_rng([seed, k])
            k += 1
            total = np.zeros(image.shape[:2], bool)
            rel = f"defective/{cls}/{cls}{i:02d}.png"
            known[rel] = []
            w, h = size
            for j in range(per_image):  # spread over the image, clear of the borders
                y, x = int(h * (0.3 + 0.4 * j / max(1, per_image - 1))), int(w * (0.25 + 0.5 * j / max(1, per_image - 1)))
                gray = image if image.ndim == 2 else None
                if cls == "misalignment":
                    image, m = _area(image, y, x)
                else:
                    if gray is None:
                        out, m = synthesize_defect(image, rng, kind="blob", start=(y, x), contrast=0.6, strength=2.0)
                        image, m = out, m > 0
                    else:
                        image, m = _point(image, rng, y, x)
                total |= m
                ys, xs = np.nonzero(m)
                known[rel].append((float(ys.mean()), float(xs.mean()), int(m.sum())))
                rows.append({"file": rel, "x": x, "y": y})
            Image.fromarray(image).save(folder / rel)
            if not weak:
                (folder / "masks" / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(total.astype(np.uint8) * 255).save(folder / "masks" / cls / f"{cls}{i:02d}_mask.png")
    if weak:
        with open(folder / "defects.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, ["file", "x", "y"])
            writer.writeheader()
            writer.writerows(rows)
    if roi:
        (folder / "roi").mkdir(exist_ok=True)
        for image in sorted(folder.glob("good/*.png")) + sorted(folder.glob("defective/*/*.png")):
            region = np.zeros(size[::-1], np.uint8)
            region[:, : size[0] * 3 // 4] = 255
            Image.fromarray(region).save(folder / "roi" / f"{image.stem}_roi.png")
    return known
