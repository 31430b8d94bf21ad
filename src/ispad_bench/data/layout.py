"""On-disk layout of an ISP-AD dataset root, as read by the loaders and written by ``data synth``.

::

    <root>/
      <modality>/                       LSM-1 | LSM-2 | ASM (any spelling Modality.parse accepts)
        train/good/*.png                full unsupervised training split (MVTec scheme)
        train_reduced/good/*.png        the <=500-patch split the paper trained on (§3.2.1, §4.3.6)
        test/good/*.png
        test/<defect>/*.png             <defect> maps to a group (area/points) via DEFECT_GROUPS
        ground_truth/<defect>/<stem>_mask.png
        supervised/
          *.h5 | *.hdf5                 stream: images (N,256,256) uint8, ``syn_stream`` labels (N,),
                                        ``ground_truth`` masks (N,256,256); see data/hdf5.py
          real_defects/{area,points}/*.png   512x512 single-channel real-defect patches

The real Zenodo record's internal names are not published (the paper names neither them nor the HDF5 keys); the readers discover them
and fail with the keys they found.
"""

from __future__ import annotations

from pathlib import Path

from ispad_bench.data.modality import Modality
from ispad_bench.errors import MissingDataError

TRAIN_DIRS = {"full": "train", "reduced": "train_reduced"}
TEST_DIR = "test"
GOOD_DIR = "good"
MASK_DIR = "ground_truth"
MASK_SUFFIX = "_mask"
SUPERVISED_DIR = "supervised"
REAL_DEFECTS_DIR = "real_defects"
GROUPS = ("area", "points")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")  # files read as images
REDUCED_MAX = 500  # §3.2.1: the reduced unsupervised training splits hold at most 500 patches

# Defect folder -> defect group. The real test split uses the groups as folder names;
# the generated dataset uses one folder per defect type, like MVTec.
DEFECT_GROUPS: dict[str, str] = {
    "area": "area",
    "points": "points",
    "misalignment": "area",
    "squeegee_stroke": "area",
    "grid": "area",
    "pinhole": "points",
    "dot": "points",
    "fibre": "points",
    "scratch": "points",
}


def defect_group(defect_folder: str, mapping: dict[str, str] | None = None) -> str:
    """Group of a test folder: ``good`` for defect-free, else the mapped group or the folder name."""
    if defect_folder == GOOD_DIR:
        return GOOD_DIR
    return (mapping or DEFECT_GROUPS).get(defect_folder, defect_folder)


def list_images(folder: Path) -> list[Path]:
    """The image files directly in ``folder`` (by suffix, sorted): what the loaders and ``data check`` read."""
    return sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def modality_dir(root: str | Path, modality: Modality | str) -> Path:
    """The folder of ``modality`` under a dataset root; ``root`` may be that folder itself."""
    root, modality = Path(root), Modality.parse(modality)
    for candidate in (root, *sorted(p for p in root.iterdir() if p.is_dir())) if root.is_dir() else ():
        try:
            if Modality.parse(candidate.name) is modality:
                return candidate
        except ValueError:
            continue
    raise MissingDataError(f"no {modality.value} folder under {root} (expected e.g. {root / modality.value})")
