"""U-Flow (§4.3.1, §4.3.5: patches resized to 448) as Anomalib's ``Uflow``, with an offline weight check.

Anomalib's ``Uflow`` builds its timm backbones with ``pretrained=True`` unconditionally (``mcait`` =
CaiT-M48 at 448 + CaiT-S24 at 224). ``UflowISPAD`` checks the timm weights before anything is built
(one clear error naming the files, ``download: true`` and ``pre_trained: false``), builds them from the
local files without contacting the hub (:mod:`.offline_timm`), and adds ``pre_trained=False`` (random
frozen backbones: tests and speed checks only) and an ``image_size`` for the CNN backbones.
"""

from __future__ import annotations

from anomalib.metrics import Evaluator
from anomalib.models.image.uflow.lightning_model import Uflow
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from torchvision.transforms.v2 import Compose, Normalize, Resize

from ispad_bench.models.args import check
from ispad_bench.models.offline_timm import deferred_backbone_context
from ispad_bench.models.weights import RaiseMissingWeightsAtSetup

# timm models each U-Flow backbone loads with ImageNet weights
BACKBONE_WEIGHTS = {
    "mcait": ("cait_m48_448", "cait_s24_224"),
    "resnet18": ("resnet18",),
    "wide_resnet50_2": ("wide_resnet50_2",),
}
MCAIT_SIZE = 448  # CaiT-M48 runs at 448 px; Anomalib's extractor hard-codes it


class UflowISPAD(RaiseMissingWeightsAtSetup, Uflow):
    """Anomalib ``Uflow`` (default ``mcait`` backbone at 448 px, §4.3.5) with an offline weight check.

    Args:
        image_size: resize of the input (448 for ``mcait``; CNN backbones accept other sizes).
        pre_trained: ImageNet backbone weights from the local timm/Hugging Face cache (one clear error
            before building when absent); ``False`` keeps random frozen backbones (tests, speed checks).
        download: let timm fetch missing backbone weights from the Hugging Face hub (default: never).
        Other arguments: as ``anomalib.models.Uflow``.
    """

    def __init__(
        self,
        backbone: str = "mcait",
        flow_steps: int = 4,
        affine_clamp: float = 2.0,
        affine_subnet_channels_ratio: float = 1.0,
        permute_soft: bool = False,
        image_size: int = MCAIT_SIZE,
        pre_trained: bool = True,
        download: bool = False,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check("UflowISPAD", affine_clamp=(affine_clamp, "(0, inf)"),
              affine_subnet_channels_ratio=(affine_subnet_channels_ratio, "(0, inf)"),
              integers=dict(flow_steps=(flow_steps, "[1, inf)"), image_size=(image_size, "[1, inf)")))
        if backbone not in BACKBONE_WEIGHTS:
            msg = f"U-Flow backbone must be one of {sorted(BACKBONE_WEIGHTS)}, got {backbone!r}"
            raise ValueError(msg)
        if backbone == "mcait" and image_size != MCAIT_SIZE:
            msg = f"U-Flow's mcait backbone needs image_size {MCAIT_SIZE}, got {image_size}"
            raise ValueError(msg)
        if pre_processor is True:
            pre_processor = PreProcessor(
                transform=Compose([
                    Resize((image_size, image_size), antialias=True),
                    Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
                ])
            )
        what = f"U-Flow backbone {backbone}"
        backbones, missing = deferred_backbone_context(BACKBONE_WEIGHTS[backbone], what, pre_trained, download)
        with backbones:
            super().__init__(
                backbone=backbone,
                flow_steps=flow_steps,
                affine_clamp=affine_clamp,
                affine_subnet_channels_ratio=affine_subnet_channels_ratio,
                permute_soft=permute_soft,
                pre_processor=pre_processor,
                post_processor=post_processor,
                evaluator=evaluator,
                visualizer=visualizer,
            )
        self.pre_trained, self.download = pre_trained, download
        self.missing_weights = missing  # raised in setup(), before training
