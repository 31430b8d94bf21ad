"""A user's own inspection data in the ISP-AD layout, made from the generator's output (no external data).

``own_data(src, dst)`` copies one generated modality folder with the defect folders renamed to
another line's names (``RENAMES``), optionally every image and its mask resized to a variable,
non-square size, and without ``train_reduced/`` (as a user's data would come). ``OWN_GROUPS`` maps
the new names to the groups the original names have, so metrics per group must not change.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image

RENAMES = {"misalignment": "break", "squeegee_stroke": "fray", "grid": "uneven",
           "pinhole": "blowhole", "dot": "crack", "fibre": "hole", "scratch": "spot"}
OWN_GROUPS = {"break": "area", "fray": "area", "uneven": "area",
              "blowhole": "points", "crack": "points", "hole": "points", "spot": "points"}


def own_data(src: Path, dst: Path, resize: bool = False, reduced: bool = False, supervised: bool = False) -> Path:
    """Copy modality folder ``src`` to ``dst`` (a modality folder too), renamed (and resized)."""
    dst = Path(dst)
    if supervised and (src / "supervised").is_dir():
        shutil.copytree(src / "supervised", dst / "supervised")
    for part in ("train", "test", "ground_truth", *(["train_reduced"] if reduced else [])):
        if not (src / part).is_dir():
            continue
        for folder in sorted(p for p in (src / part).iterdir() if p.is_dir()):
            target = dst / part / RENAMES.get(folder.name, folder.name)
            shutil.copytree(folder, target)
    if resize:
        for i, image in enumerate(sorted((dst / "test").rglob("*.png")) + sorted((dst / "train").rglob("*.png"))):
            size = (300 + 37 * (i % 5), 200 + 23 * (i % 7))  # variable, non-square, like photos of a line
            with Image.open(image) as img:
                img.resize(size, Image.BILINEAR).save(image)
            mask = dst / "ground_truth" / image.parent.name / f"{image.stem}_mask.png"
            if image.parts[-3] == "test" and mask.is_file():
                with Image.open(mask) as m:
                    m.resize(size, Image.NEAREST).save(mask)
    return dst
