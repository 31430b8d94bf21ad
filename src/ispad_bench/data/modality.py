"""The three ISP-AD imaging modalities and every per-modality fact the code needs.

All numbers come from the paper (arXiv 2503.04997): split sizes from Table 7
(``reference/dataset_splits.csv``), augmentation ranges from Table 8
(``reference/augmentation.csv``), preprocessing from §4.2, the ASM border caveat from §3.2.5.
This module is the single place those facts live.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from enum import Enum
from functools import cached_property
from importlib import resources

from ispad_bench.errors import BadArgument


def _reference_rows(name: str) -> dict[str, dict[str, str]]:
    text = resources.files("ispad_bench.reference").joinpath(name).read_text()
    return {row["modality"]: row for row in csv.DictReader(text.splitlines())}


@dataclass(frozen=True)
class SplitSizes:
    """Table 7 of the paper."""

    unsup_train_good: int
    sup_train_good: int
    sup_train_synthetic: int
    sup_train_real_area: int
    sup_train_real_points: int
    test_good: int
    test_area: int
    test_points: int


@dataclass(frozen=True)
class Augmentation:
    """Table 8 of the paper: augmentation of the supervised training data.

    Affine transforms go to 80-95 % of the patches (§3.2.3); brightness/contrast are
    ``None`` where the paper applies none (ASM).
    """

    rotation_deg: float
    scale: tuple[float, float]
    shear_deg: float
    vflip: bool
    hflip: bool
    brightness: tuple[float, float] | None
    contrast: tuple[float, float] | None


class Modality(str, Enum):
    """An ISP-AD imaging modality. ``Modality.parse`` accepts ``LSM-1``, ``lsm1``, ``LSM_1``..."""

    LSM1 = "LSM-1"  # line scan, darkfield, RGB
    LSM2 = "LSM-2"  # line scan, transmission, RGB
    ASM = "ASM"  # area scan, brightfield, single channel

    @classmethod
    def parse(cls, name: str | Modality) -> Modality:
        if isinstance(name, Modality):
            return name
        key = re.sub(r"[-_\s]", "", str(name)).upper()
        for modality in cls:
            if modality.value.replace("-", "") == key:
                return modality
        valid = ", ".join(m.value for m in cls)
        raise BadArgument(f"unknown modality {name!r}; valid names: {valid} (also e.g. 'lsm1', 'LSM_1')")

    @property
    def slug(self) -> str:
        """Lower-case name for file and config names: ``lsm1``, ``lsm2``, ``asm``."""
        return self.value.replace("-", "").lower()

    @property
    def channels(self) -> int:
        """Channels of the unsupervised/test PNGs (§3.2.2). Supervised HDF5 patches are always 1."""
        return 1 if self is Modality.ASM else 3

    @cached_property
    def splits(self) -> SplitSizes:
        row = _reference_rows("dataset_splits.csv")[self.value]
        return SplitSizes(**{f: int(row[f]) for f in SplitSizes.__dataclass_fields__})

    @cached_property
    def augmentation(self) -> Augmentation:
        row = _reference_rows("augmentation.csv")[self.value]

        def rng(key: str) -> tuple[float, float] | None:
            lo, hi = row[f"{key}_min"], row[f"{key}_max"]
            return (float(lo), float(hi)) if lo else None

        return Augmentation(
            rotation_deg=float(row["rotation_deg"]),
            scale=rng("scale"),  # type: ignore[arg-type]
            shear_deg=float(row["shear_deg"]),
            vflip=row["vflip"] == "yes",
            hflip=row["hflip"] == "yes",
            brightness=rng("brightness"),
            contrast=rng("contrast"),
        )

    @property
    def brightness_factor(self) -> float:
        """Supervised preprocessing (§4.2): LSM-1 patches are brightened by 1.5."""
        return 1.5 if self is Modality.LSM1 else 1.0

    @property
    def center_crop(self) -> int | None:
        """§4.3.5: where the paper crops (GLASS, U-Flow, DDAD and every Anomalib model it adds), ASM
        patches are centre-cropped to 224, which also drops the masked side borders (§3.2.5)."""
        return 224 if self is Modality.ASM else None

    @property
    def border_crop_px(self) -> int:
        """Masked left/right borders of ASM patches (§3.2.5: "a few pixels"); cropped at evaluation.

        The paper gives no number; 8 px per side is this project's choice.
        """
        return 8 if self is Modality.ASM else 0


PATCH_SIZE = 256  # unsupervised, test and supervised stream patches (§3.2.2)
REAL_DEFECT_SIZE = 512  # real-defect patches, centre-cropped to 256 after augmentation (§3.2)
