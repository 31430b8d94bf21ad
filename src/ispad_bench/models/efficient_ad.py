"""EfficientAD-M (§4.3.2, §4.3.5) as Anomalib's ``EfficientAd``, with its two auxiliary downloads made explicit.

Anomalib's ``EfficientAd`` fetches a GitHub release zip of pretrained teachers into
``<anomalib cache>/pre_trained/`` and the 1.5 GB Imagenette archive into ``imagenet_dir`` when training
starts. ``EfficientAdISPAD`` checks both before training (``setup("fit")``) and, when one is missing,
raises ONE :class:`~ispad_bench.models.weights.MissingWeightsError` naming every missing item, where it
goes, and the setting that runs without it; it downloads only with ``download: true``.
"""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import torch
from anomalib.data.utils import download_and_extract
from anomalib.models.image.efficient_ad.lightning_model import (
    IMAGENETTE_DOWNLOAD_INFO,
    WEIGHTS_DOWNLOAD_INFO,
    EfficientAd,
)
from anomalib.models.image.efficient_ad.torch_model import EfficientAdModelSize
from anomalib.metrics import Evaluator
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.utils.path import get_pretrained_weights_dir
from anomalib.visualization import Visualizer

from ispad_bench.models.args import check
from ispad_bench.models.weights import MissingWeightsError

logger = logging.getLogger(__name__)

TEACHER_DIR = "efficientad_pretrained_weights"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".JPEG")
MIN_IMAGE_SIZE = 256  # the autoencoder's encoder halves 5 times, then applies an 8x8 convolution


def teacher_path(model_size: str | EfficientAdModelSize = "medium") -> Path:
    """Where Anomalib keeps the distilled teacher: ``<cache>/pre_trained/efficientad_pretrained_weights/pretrained_teacher_<size>.pth``."""
    size = EfficientAdModelSize(model_size).value
    return get_pretrained_weights_dir() / TEACHER_DIR / f"pretrained_teacher_{size}.pth"


def has_images(folder: Path) -> bool:
    """True when ``folder`` is an ImageFolder root: ``<folder>/<class>/<image>`` with at least one image."""
    return folder.is_dir() and any(p.suffix in IMAGE_SUFFIXES for p in folder.glob("*/*"))


class EfficientAdISPAD(EfficientAd):
    """Anomalib ``EfficientAd`` (default ``model_size="medium"``, §4.3.5) that never downloads unasked.

    Args:
        imagenet_dir: ImageNet(te) images in ImageFolder layout (``<dir>/<class>/*.JPEG``) for the
            student's penalty loss; any local folder of natural images in that layout works.
        image_size: input resize (§4.3.5: kept at 256, the smallest size its autoencoder accepts).
        pre_trained: load the distilled teacher (``teacher_weights`` or the Anomalib cache);
            ``False`` keeps a random teacher (tests and speed checks only: scores then mean nothing).
        teacher_weights: explicit teacher ``.pth`` (state dict); ``None`` → Anomalib's cache path.
        download: let Anomalib download what is missing (teacher zip, Imagenette) before training.
        teacher_stats_batches: training batches (of 1 image) the teacher's channel mean/std is
            computed on before training; ``None`` (default, as Anomalib and the paper): every one.
        Other arguments: as ``anomalib.models.EfficientAd``.
    """

    def __init__(
        self,
        imagenet_dir: Path | str = "./datasets/imagenette",
        teacher_out_channels: int = 384,
        model_size: EfficientAdModelSize | str = EfficientAdModelSize.M,
        image_size: int = 256,
        lr: float = 0.0001,
        weight_decay: float = 0.00001,
        padding: bool = False,
        pad_maps: bool = True,
        pre_trained: bool = True,
        teacher_weights: str | None = None,
        download: bool = False,
        teacher_stats_batches: int | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check("EfficientAdISPAD", lr=(lr, "(0, inf)"), weight_decay=(weight_decay, "[0, inf)"),
              integers=dict(teacher_out_channels=(teacher_out_channels, "[1, inf)"), image_size=(image_size, "[1, inf)")))
        if image_size < MIN_IMAGE_SIZE:
            msg = f"EfficientAD needs image_size >= {MIN_IMAGE_SIZE} (its autoencoder), got {image_size}"
            raise ValueError(msg)
        if pre_processor is True:
            pre_processor = EfficientAd.configure_pre_processor((image_size, image_size))
        super().__init__(
            imagenet_dir=imagenet_dir,
            teacher_out_channels=teacher_out_channels,
            model_size=model_size,
            lr=lr,
            weight_decay=weight_decay,
            padding=padding,
            pad_maps=pad_maps,
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.pre_trained = pre_trained
        self.teacher_weights = Path(teacher_weights).expanduser() if teacher_weights else None
        self.download = download
        if teacher_stats_batches is not None and int(teacher_stats_batches) < 1:
            raise ValueError(f"teacher_stats_batches must be >= 1 or null (every training batch), got {teacher_stats_batches}")
        self.teacher_stats_batches = teacher_stats_batches

    @property
    def teacher_file(self) -> Path:
        """The teacher state dict that will be loaded."""
        return self.teacher_weights or teacher_path(self.model_size)

    def missing_resources(self) -> list[str]:
        """One line per auxiliary file that training needs but cannot find locally."""
        missing = []
        if self.pre_trained and not self.teacher_file.is_file():
            missing.append(
                f"EfficientAD teacher weights: {self.teacher_file} (from {WEIGHTS_DOWNLOAD_INFO.url}, unzipped into "
                f"{get_pretrained_weights_dir()}; or set `teacher_weights: <file.pth>`; "
                "`pre_trained: false` trains against a random teacher)"
            )
        if not has_images(self.imagenet_dir):
            missing.append(
                f"Imagenette images: {self.imagenet_dir.resolve()} (ImageFolder layout <dir>/<class>/*.JPEG, from "
                f"{IMAGENETTE_DOWNLOAD_INFO.url}; any local image folder in that layout can be set as `imagenet_dir`)"
            )
        return missing

    def setup(self, stage: str | None = None) -> None:
        """Before training: find teacher and Imagenette, or fail once with everything that is missing."""
        super().setup(stage)
        if stage not in ("fit", None):
            return
        missing = self.missing_resources()
        if missing and self.download:
            if self.pre_trained and self.teacher_weights is None and not self.teacher_file.is_file():
                download_and_extract(get_pretrained_weights_dir(), WEIGHTS_DOWNLOAD_INFO)
            if not has_images(self.imagenet_dir):
                download_and_extract(self.imagenet_dir, IMAGENETTE_DOWNLOAD_INFO)
            missing = self.missing_resources()
        if missing:
            lines = "\n  - ".join(missing)
            msg = f"EfficientAD cannot train offline; missing:\n  - {lines}\nor set `download: true` to fetch them."
            raise MissingWeightsError(msg)

    def prepare_pretrained_model(self) -> None:
        """Load the teacher from ``teacher_file`` (checked in ``setup``), or keep it random with ``pre_trained=False``."""
        if not self.pre_trained:
            logger.warning("EfficientAD: pre_trained=false, the teacher is random (scores are not meaningful)")
            return
        state = torch.load(self.teacher_file, map_location=self.device, weights_only=True)
        self.model.teacher.load_state_dict(state)

    def teacher_channel_mean_std(self, dataloader) -> dict[str, torch.Tensor]:
        """Anomalib's statistics pass, over the first ``teacher_stats_batches`` batches when set."""
        if self.teacher_stats_batches is None:
            return super().teacher_channel_mean_std(dataloader)
        return super().teacher_channel_mean_std(list(itertools.islice(dataloader, int(self.teacher_stats_batches))))

    def prepare_imagenette_data(self, image_size: tuple[int, int] | torch.Size) -> None:
        """Anomalib's Imagenette loader, but never a download (``setup`` guaranteed the folder)."""
        if not has_images(self.imagenet_dir):
            msg = f"Imagenette folder {self.imagenet_dir} vanished after setup"
            raise MissingWeightsError(msg)
        super().prepare_imagenette_data(image_size)
