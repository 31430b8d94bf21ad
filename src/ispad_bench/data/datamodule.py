"""``ISPAD``: Anomalib datamodule for the unsupervised split of one ISP-AD modality.

Reads the MVTec folder scheme of ``data/layout.py``. Every item passes through a fixed
*geometry* (resize to the native 256 px patch, optional ASM border crop, optional centre crop,
optional final resize) before the augmentations and the model's own resize that Anomalib
appends, so crops are always taken on native-resolution patches and masks follow their images.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from anomalib import TaskType
from anomalib.data import AnomalibDataModule
from anomalib.data.dataclasses import ImageItem
from anomalib.data.datasets.base.image import AnomalibDataset
from anomalib.data.utils import Split, TestSplitMode, ValSplitMode
from torchvision.transforms import v2
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Mask

from ispad_bench.data.groups import register_samples
from ispad_bench.data.images import read_binary_mask, read_patch
from ispad_bench.data.layout import (
    DEFECT_GROUPS,
    GOOD_DIR,
    MASK_DIR,
    MASK_SUFFIX,
    REDUCED_MAX,
    TEST_DIR,
    TRAIN_DIRS,
    defect_group,
    list_images,
    modality_dir,
)
from ispad_bench.data.modality import PATCH_SIZE, Modality
from ispad_bench.errors import BadArgument, MissingDataError

logger = logging.getLogger(__name__)

VAL_SPLIT_MODES = ("same_as_test", "from_train")


def train_folder(mod_dir: Path, train_split: str) -> Path:
    """``train_reduced/good`` or ``train/good``; a missing reduced split falls back to a small ``train``."""
    if train_split not in TRAIN_DIRS:
        raise BadArgument(f"train_split must be one of {sorted(TRAIN_DIRS)}, got {train_split!r}")
    folder = mod_dir / TRAIN_DIRS[train_split] / GOOD_DIR
    if folder.is_dir():
        return folder
    full = mod_dir / TRAIN_DIRS["full"] / GOOD_DIR
    if train_split == "reduced" and full.is_dir():
        count = len(list_images(full))
        if count <= REDUCED_MAX:
            logger.warning("%s missing; training on %s (%d <= %d images)", folder, full, count, REDUCED_MAX)
            return full
        raise MissingDataError(
            f"{folder} missing and {full} holds {count} > {REDUCED_MAX} images; the paper trained on the "
            f"reduced split (§3.2.1, §4.3.6): provide it or pass train_split='full'"
        )
    raise MissingDataError(f"training folder not found: {folder}")


def make_ispad_samples(
    mod_dir: Path, split: Split | str, train_split: str = "reduced", mapping: dict[str, str] | None = None
) -> pd.DataFrame:
    """Samples table (Anomalib columns plus ``defect`` and ``defect_group``) of one split."""
    split = Split(split)
    rows = []
    if split == Split.TRAIN:
        folder = train_folder(mod_dir, train_split)
        rows = [(p, "", 0, GOOD_DIR) for p in list_images(folder)]
    else:
        test_dir = mod_dir / TEST_DIR
        if not test_dir.is_dir():
            raise MissingDataError(f"test folder not found: {test_dir}")
        for folder in sorted(p for p in test_dir.iterdir() if p.is_dir()):
            for image in list_images(folder):
                if folder.name == GOOD_DIR:
                    rows.append((image, "", 0, GOOD_DIR))
                    continue
                mask = mod_dir / MASK_DIR / folder.name / f"{image.stem}{MASK_SUFFIX}.png"
                if not mask.is_file():
                    raise MissingDataError(f"no mask for defect image {image}: expected {mask}")
                rows.append((image, str(mask), 1, folder.name))
    if not rows:
        where = train_folder(mod_dir, train_split) if split == Split.TRAIN else mod_dir / TEST_DIR
        raise MissingDataError(f"no images in {where}")
    samples = pd.DataFrame(rows, columns=["image_path", "mask_path", "label_index", "defect"])
    samples["image_path"] = samples["image_path"].map(str)
    samples["label"] = samples["label_index"].map({0: "normal", 1: "abnormal"})
    samples["defect_group"] = samples["defect"].map(lambda d: defect_group(d, mapping))
    samples["split"] = split.value
    samples.attrs["task"] = TaskType.SEGMENTATION
    return samples


def geometry(
    border_crop: int = 0, center_crop: int | None = None, image_size: int | Sequence[int] | None = None
) -> Transform:
    """Resize to the native patch, crop ``border_crop`` columns left and right, centre-crop, resize.

    Crop sizes are in native 256 px patch pixels; ``image_size`` is the size after cropping.
    """
    height, width = PATCH_SIZE, PATCH_SIZE - 2 * border_crop
    steps: list[Transform] = [v2.Resize((PATCH_SIZE, PATCH_SIZE))]  # no-op on native patches
    if border_crop:
        steps.append(v2.CenterCrop((height, width)))  # same rows, ``border_crop`` fewer columns each side
    if center_crop:
        height, width = min(center_crop, height), min(center_crop, width)
        steps.append(v2.CenterCrop((height, width)))
    if image_size:
        steps.append(v2.Resize((image_size, image_size) if isinstance(image_size, int) else tuple(image_size)))
    return v2.Compose(steps)


class ISPADDataset(AnomalibDataset):
    """One split of one ISP-AD modality; ``geometry`` runs before the (Anomalib-managed) augmentations."""

    def __init__(
        self,
        root: str | Path,
        modality: Modality | str = "LSM-1",
        split: Split | str = Split.TEST,
        train_split: str = "reduced",
        defect_groups: dict[str, str] | None = None,
        geometry: Transform | None = None,
        augmentations: Transform | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.modality = Modality.parse(modality)
        self.root = modality_dir(root, self.modality)
        self.category = self.modality.value
        self.geometry = geometry
        self.samples = make_ispad_samples(self.root, split, train_split, defect_groups)
        register_samples(self.samples)  # the group travels by image path to metrics and records (data/groups.py)

    @property
    def name(self) -> str:
        return "ISPAD"

    def __getitem__(self, index: int) -> ImageItem:
        row = self.samples.iloc[index]
        image = read_patch(row.image_path)  # RGB in [0, 1]: grayscale ASM -> 3 equal channels; 16-bit scaled
        if row.label_index == 1:
            mask = read_binary_mask(row.mask_path)  # a bad file raises naming itself (data/images.py)
            if mask.shape[-2:] != image.shape[-2:]:
                mask = fit_mask(mask, image.shape[-2:], row.mask_path)
        else:
            mask = Mask(torch.zeros(image.shape[-2:], dtype=torch.uint8))
        for transform in (self.geometry, self.augmentations):
            if transform is not None:
                image, mask = transform(image, mask)
        return ImageItem(
            image=image,
            gt_mask=mask,
            gt_label=torch.tensor(int(row.label_index)),
            image_path=row.image_path,
            mask_path=row.mask_path,
        )


_WARNED_MASK_SIZE: set[str] = set()


def fit_mask(mask: Mask, size, path: str) -> Mask:
    """A mask of another size than its image, resized to the image (nearest neighbour, so it stays binary) with a
    warning naming the first such file per folder (``data check`` reports every one)."""
    folder = str(Path(path).parent)
    if folder not in _WARNED_MASK_SIZE:
        _WARNED_MASK_SIZE.add(folder)
        logger.warning("%s is %dx%d, its image %dx%d: the mask is resized to the image (nearest) for training and "
                       "test; `ispad-bench data check` lists every such mask", path, mask.shape[-1], mask.shape[-2],
                       size[-1], size[-2])
    resized = v2.functional.resize(mask.unsqueeze(0), list(size), interpolation=v2.InterpolationMode.NEAREST_EXACT)
    return Mask(resized[0])


class ISPAD(AnomalibDataModule):
    """ISP-AD unsupervised split of one modality (MVTec folder scheme), for Anomalib.

    Args:
        root: dataset root (holding ``LSM-1/``, ``LSM-2/``, ``ASM/``) or the modality folder itself.
        modality: ``LSM-1``, ``LSM-2`` or ``ASM`` (any spelling ``Modality.parse`` accepts).
        train_split: ``reduced`` (``train_reduced/good``, <=500 patches; the paper's setting, §4.3.6)
            or ``full`` (``train/good``).
        val_split_mode: ``same_as_test`` (default, the paper's protocol: ISP-AD has no validation
            split (§3.2.5), so the paper validated and selected models and F1 thresholds on the test
            split, an optimistic "oracle" protocol); ``from_train`` (hold out ``val_split_ratio`` of
            the *good* training images: no test leakage, but the validation set has no defects, so
            Anomalib's F1 threshold falls back to the highest normal score and validation AUROC
            is undefined).
        defect_groups: test folder -> group (``area``/``points``) mapping; default ``DEFECT_GROUPS``.
        border_crop: columns cropped on the left and right of every evaluation (val/test) image and
            mask; ``None`` uses ``Modality.border_crop_px`` (8 px for ASM, §3.2.5), ``0`` disables.
        border_crop_train: crop the training images the same way (keeps train/test geometry equal).
        center_crop: centre crop (native pixels) applied to every split, e.g. 224 as in §4.3.5.
        image_size: final resize after cropping (before the model's own resize), e.g. 448.
        seed: seed of the ``from_train`` hold-out and of the contaminating images.
        train_contamination: fraction of training images replaced by defective test images that
            count as normal (paper §6.1's noisy training data; they leave the test split and are
            listed in ``contamination_record``; :mod:`~ispad_bench.data.contamination`).
    """

    def __init__(
        self,
        root: str | Path = "./datasets/ISP-AD",
        modality: str = "LSM-1",
        train_split: str = "reduced",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        val_split_mode: str = "same_as_test",
        val_split_ratio: float = 0.1,
        defect_groups: dict[str, str] | None = None,
        border_crop: int | None = None,
        border_crop_train: bool = False,
        center_crop: int | None = None,
        image_size: int | list[int] | None = None,
        seed: int | None = None,
        train_contamination: float = 0.0,
    ) -> None:
        mode = str(getattr(val_split_mode, "value", val_split_mode)).lower()
        if not 0.0 <= float(train_contamination) < 1.0:
            raise BadArgument(f"train_contamination must be in [0, 1), got {train_contamination}")
        if mode not in VAL_SPLIT_MODES:
            raise BadArgument(f"val_split_mode must be one of {VAL_SPLIT_MODES}, got {val_split_mode!r}")
        if train_split not in TRAIN_DIRS:
            raise BadArgument(f"train_split must be one of {sorted(TRAIN_DIRS)}, got {train_split!r}")
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=TestSplitMode.FROM_DIR,
            val_split_mode=ValSplitMode(mode),
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        self.modality = Modality.parse(modality)
        self.root = Path(root)
        self.category = self.modality.value  # output folder: <results>/<Model>/ISPAD/<modality>/
        self.train_split = train_split
        self.defect_groups = dict(defect_groups) if defect_groups else dict(DEFECT_GROUPS)
        crop = self.modality.border_crop_px if border_crop is None else int(border_crop)
        if not 0 <= 2 * crop < PATCH_SIZE:
            raise BadArgument(f"border_crop={crop} leaves no image of a {PATCH_SIZE} px patch")
        self.border_crop = crop
        self.eval_geometry = geometry(crop, center_crop, image_size)
        self.train_geometry = geometry(crop if border_crop_train else 0, center_crop, image_size)
        self.train_contamination = float(train_contamination)
        self.contamination_record: dict | None = None

    @property
    def name(self) -> str:
        return "ISPAD"

    @property
    def modality_dir(self) -> Path:
        return modality_dir(self.root, self.modality)

    def prepare_data(self) -> None:
        """Fail early, with the commands that create data, when the modality folder is missing."""
        try:
            self.modality_dir  # noqa: B018
        except FileNotFoundError as err:
            raise MissingDataError(
                f"{err}. Get ISP-AD with `ispad-bench data download --root {self.root}` or generate a "
                f"miniature with `ispad-bench data synth --root {self.root}`"
            ) from err

    def _dataset(self, split: Split, transform: Transform) -> ISPADDataset:
        return ISPADDataset(
            self.modality_dir, self.modality, split, self.train_split, self.defect_groups, geometry=transform
        )

    def _setup(self, _stage: str | None = None) -> None:
        self.train_data = self._dataset(Split.TRAIN, self.train_geometry)
        self.test_data = self._dataset(Split.TEST, self.eval_geometry)
        if self.train_contamination:
            from ispad_bench.data.contamination import contaminate

            self.train_data.samples, self.test_data.samples, self.contamination_record = contaminate(
                self.train_data.samples, self.test_data.samples, self.train_contamination, self.seed
            )

    def _create_val_split(self) -> None:
        super()._create_val_split()
        if self.val_split_mode == ValSplitMode.FROM_TRAIN:
            self.val_data.geometry = self.eval_geometry  # held-out train images are evaluated like test ones
            self.val_data.samples["split"] = Split.VAL.value
