"""GLASS as the ISP-AD paper ran it (§4.3.4–4.3.6): official LAS/GAS, manifold GAS, no foreground masks, offline.

Differences to Anomalib's ``Glass`` (why this class exists): the official local anomaly synthesis
(:mod:`.las`), a texture source that never downloads (:mod:`.textures`), torchvision-equivalent
WideResNet-50-2 weights (timm ``wide_resnet50_2.tv_in1k``; timm's default tag is ``racm_in1k``) checked
before anything is built, a frozen backbone also with ``pre_trained=False`` (Anomalib crashes there),
the official 392-sample epoch cap as a batch limit that still validates (:mod:`..epochs`), the feature centre computed only when GAS needs it (hypersphere), and
the official model selection (best image + pixel AUROC evaluation is tested, :mod:`..selection`) or, with
``selection: early_stopping``, Anomalib's engine rule (stop after ``patience`` evaluations without a better
pixel AUROC, test the last epoch).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.models.image.glass.lightning_model import Glass
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import optim
from torchvision.transforms.v2 import Compose, Normalize

from ispad_bench.models.args import check
from ispad_bench.models.epochs import apply_cap, glass_cap, loader_shape
from ispad_bench.models.offline_timm import deferred_backbone_context
from ispad_bench.models.selection import BestSumSelection
from ispad_bench.models.weights import RaiseMissingWeightsAtSetup

from .las import LocalAnomalySynthesis
from .textures import source_name, texture_source
from .torch_model import GlassISPADModel

logger = logging.getLogger(__name__)


class GlassISPAD(RaiseMissingWeightsAtSetup, AnomalibModule):
    """GLASS (Chen et al., ECCV 2024) with the official training procedure, as an Anomalib model.

    Args:
        image_size: resize of the input patches (§4.3.5: 256; 224 for ASM, centre-cropped by the datamodule).
        texture_resize: shorter side of the LAS textures before their centre crop to the input size
            (official: the image resize, 256 also when cropping to 224); ``None`` → ``image_size``.
        backbone: timm model tag; ``wide_resnet50_2.tv_in1k`` = torchvision ImageNet weights (official).
        pre_trained: load ImageNet weights from the local Hugging Face cache (one clear error before
            building when absent); ``False`` keeps a frozen random backbone (tests, speed checks: scores
            then mean nothing).
        download: let timm fetch missing backbone weights from the Hugging Face hub (default: never).
        lr: adaptor learning rate; the discriminator uses ``2·lr`` (official). §4.3.6: 1.25e-5 … 5e-5.
        gas: global anomaly synthesis: ``"manifold"`` (§4.3.5) or ``"hypersphere"``.
        step, gaussian_noise_std, radius_quantile, focal_quantile, mining: official GAS/loss constants
            (20, 0.015, 0.75, 0.5, True).
        limit: training samples per epoch: an epoch stops once more than ``limit`` samples were used
            (official ``--limit 392``: 50 batches of 8). Applied at fit start as the trainer's
            ``limit_train_batches`` (``limit // batch + 1``), so every meta-epoch is still evaluated.
        texture_dir: local DTD-layout folder (``images/<category>/*.jpg``, ``ispad-bench data textures``);
            ``None`` → generated textures.
        texture_fallback: a ``texture_dir`` without textures gives generated ones with a warning (default)
            instead of an error. The record of a run says which source was used.
        texture_augmentations, beta_mean, beta_std: LAS constants (3, 0.5, 0.1).
        seed: seed of every LAS draw (mask, texture, augmentation, β).
        selection: ``"official"`` (cqylunlun/GLASS ``trainer``/``tester``: evaluate every ``eval_epochs``
            meta-epochs, test the weights of the highest image + pixel AUROC, first on ties) or
            ``"early_stopping"`` (engine rule: stop after ``patience`` evaluations without a higher pixel
            AUROC and test the last epoch; both need the evaluator to log the AUROCs in validation).
        eval_epochs: meta-epochs between evaluations (official ``--eval_epochs 1``); sets the trainer's
            ``check_val_every_n_epoch``.
        patience: evaluations without improvement before ``early_stopping`` stops (§4.3.5: 30).
    """

    def __init__(
        self,
        image_size: int = 256,
        texture_resize: int | None = None,
        backbone: str = "wide_resnet50_2.tv_in1k",
        pre_trained: bool = True,
        download: bool = False,
        layers: list[str] | None = None,
        pretrain_embed_dim: int = 1536,
        target_embed_dim: int = 1536,
        patchsize: int = 3,
        pre_projection: int = 1,
        discriminator_layers: int = 2,
        discriminator_hidden: int = 1024,
        lr: float = 5e-5,
        gas: str = "manifold",
        step: int = 20,
        gaussian_noise_std: float = 0.015,
        radius_quantile: float = 0.75,
        focal_quantile: float = 0.5,
        mining: bool = True,
        limit: int = 392,
        texture_dir: str | None = None,
        texture_fallback: bool = True,
        texture_augmentations: int = 3,
        beta_mean: float = 0.5,
        beta_std: float = 0.1,
        seed: int = 0,
        selection: str = "official",
        eval_epochs: int = 1,
        patience: int = 30,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check("GlassISPAD", lr=(lr, "(0, inf)"), gaussian_noise_std=(gaussian_noise_std, "(0, inf)"),
              radius_quantile=(radius_quantile, "[0, 1]"), focal_quantile=(focal_quantile, "[0, 1]"),
              beta_mean=(beta_mean, "[0, 1]"), beta_std=(beta_std, "[0, inf)"),
              integers=dict(image_size=(image_size, "[1, inf)"), texture_resize=(texture_resize, "[1, inf)"),
                            pretrain_embed_dim=(pretrain_embed_dim, "[1, inf)"),
                            target_embed_dim=(target_embed_dim, "[1, inf)"), patchsize=(patchsize, "[1, inf)"),
                            pre_projection=(pre_projection, "[0, inf)"),
                            discriminator_layers=(discriminator_layers, "[1, inf)"),
                            discriminator_hidden=(discriminator_hidden, "[1, inf)"), step=(step, "[0, inf)"),
                            limit=(limit, "[1, inf)"), texture_augmentations=(texture_augmentations, "[0, inf)"),
                            seed=(seed, "[0, 4294967296)")))
        if pre_processor is True:
            pre_processor = Glass.configure_pre_processor((image_size, image_size))
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        if selection not in ("official", "early_stopping"):
            raise ValueError(f"GLASS selection must be 'official' or 'early_stopping', got {selection!r}")
        if eval_epochs < 1 or patience < 1:
            raise ValueError(f"GLASS eval_epochs and patience must be >= 1, got {eval_epochs}, {patience}")
        textures = texture_source(texture_dir, seed=seed, fallback=texture_fallback)  # checked now, not mid-training
        mean, std = _normalisation(self.pre_processor)
        backbones, missing = deferred_backbone_context([backbone], f"GLASS backbone {backbone}", pre_trained, download)
        with backbones:
            self.model = GlassISPADModel(
                input_shape=(image_size, image_size),
                backbone=backbone,
                pre_trained=pre_trained,
                layers=layers,
                pretrain_embed_dim=pretrain_embed_dim,
                target_embed_dim=target_embed_dim,
                patchsize=patchsize,
                pre_projection=pre_projection,
                discriminator_layers=discriminator_layers,
                discriminator_hidden=discriminator_hidden,
                step=step,
                gas=gas,
                gaussian_noise_std=gaussian_noise_std,
                radius_quantile=radius_quantile,
                focal_loss_quantile_threshold=focal_quantile,
                mining=mining,
                normalize_mean=mean,
                normalize_std=std,
                las=LocalAnomalySynthesis(
                    textures, resize=texture_resize or image_size, beta_mean=beta_mean, beta_std=beta_std,
                    augmentations=texture_augmentations, seed=seed,
                ),
            )
        self.missing_weights = missing  # raised in setup(), before training
        self.lr = lr
        self.limit = limit
        self._epoch_samples = 0
        self.epoch_batches: int | None = None  # batches per meta-epoch, set at fit start from the loader
        self.automatic_optimization = False
        self.selection, self.eval_epochs, self.patience = selection, int(eval_epochs), int(patience)
        self.texture_source = source_name(textures)
        self.texture_dir = str(getattr(textures, "root", "")) or None
        self.selector = BestSumSelection(modules=self._trained_modules()) if selection == "official" else None

    def _trained_modules(self) -> list[str]:
        """The weights GLASS trains (official ``state_dict``: discriminator, pre-projection)."""
        return ["model.discriminator"] + (["model.projection"] if self.model.pre_projection > 0 else [])

    def configure_callbacks(self) -> list[Callback]:
        """Anomalib's callbacks plus the selection rule: official best-sum selection or early stopping."""
        callbacks = list(super().configure_callbacks())
        if self.selector is not None:
            callbacks.append(self.selector)
        else:
            callbacks.append(EarlyStopping(monitor="pixel_AUROC", mode="max", patience=self.patience,
                                           check_on_train_epoch_end=False))
        return callbacks

    def procedure(self) -> dict[str, Any]:
        """How the tested weights were chosen, for the run's record (``sweep/procedure.py``)."""
        info: dict[str, Any] = {"selection": self.selection, "eval_epochs": self.eval_epochs,
                                "texture_source": self.texture_source, "texture_dir": self.texture_dir,
                                "epoch_batches": self.epoch_batches}
        if self.selector is not None:
            info.update(self.selector.summary())
            info["tested"] = f"epoch {self.selector.best_epoch} (selected)" if self.selector.restored else "last epoch"
        else:
            info.update(rule=f"early stopping on pixel_AUROC, patience {self.patience}", tested="last epoch")
        return info

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to 256 (§4.3.5) and ImageNet normalisation."""
        return Glass.configure_pre_processor(image_size or (256, 256))

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """Anomalib's GLASS evaluator (image + pixel AUROC in validation); the ISP-AD configs set their own."""
        return Glass.configure_evaluator()

    def configure_optimizers(self) -> list[optim.Optimizer]:
        """Official optimisers: AdamW(discriminator, 2·lr) and Adam(adaptor, lr, weight decay 1e-5)."""
        optimizers = [optim.AdamW(self.model.discriminator.parameters(), lr=self.lr * 2)]
        if self.model.pre_projection > 0:
            optimizers.append(optim.Adam(self.model.projection.parameters(), lr=self.lr, weight_decay=1e-5))
        return optimizers

    def on_fit_start(self) -> None:
        """The official epoch cap as a batch limit, so Lightning still validates after every meta-epoch."""
        shape = loader_shape(self.trainer)
        if shape is None:  # no datamodule: the fallback in on_train_batch_start ends epochs without validation
            logger.warning("GLASS: no datamodule, so the %d-sample epoch cap cannot be set as a batch limit; epochs "
                           "it cuts short skip their evaluation", self.limit)
            return
        _, batch_size, batches = shape
        self.epoch_batches = apply_cap(self.trainer, glass_cap(self.limit, batch_size, batches), batches)

    def on_train_epoch_start(self) -> None:
        """Reset the epoch sample count; the hypersphere GAS also needs the mean normal feature (manifold does not)."""
        self._epoch_samples = 0
        if self.model.svd == 1:
            self.model.calculate_center(self.trainer.train_dataloader, self.device)

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> int | None:
        """Fallback of the epoch cap (never binds once ``on_fit_start`` set the batch limit)."""
        del batch, batch_idx
        return -1 if self._epoch_samples > self.limit else None

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        """One official discriminator/adaptor update on a batch (LAS + GAS losses)."""
        del batch_idx
        optimizers = self.optimizers()
        optimizers = optimizers if isinstance(optimizers, list) else [optimizers]
        self.model.discriminator.train()
        if self.model.pre_projection > 0:
            self.model.projection.train()
        for opt in optimizers:
            opt.zero_grad()
        losses = self.model(batch.image)
        self.manual_backward(losses["loss"])
        for opt in reversed(optimizers):  # official order: adaptor step, then discriminator step
            opt.step()
        self._epoch_samples += batch.image.shape[0]
        for name, value in losses.items():
            self.log(name, value.detach(), prog_bar=name == "loss", batch_size=batch.image.shape[0])
        return {"loss": losses["loss"].detach()}

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        """Scores and anomaly maps of a batch (discriminator/adaptor in eval mode)."""
        del args, kwargs
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """No gradient clipping (manual optimisation), no sanity validation, an evaluation every ``eval_epochs``."""
        return {"gradient_clip_val": 0, "num_sanity_val_steps": 0, "check_val_every_n_epoch": self.eval_epochs}

    @property
    def learning_type(self) -> LearningType:
        """GLASS trains on normal images only."""
        return LearningType.ONE_CLASS


def _normalisation(pre_processor: torch.nn.Module | None) -> tuple[list[float] | None, list[float] | None]:
    """Mean/std of the pre-processor's ``Normalize`` (LAS blends textures in the same normalised space)."""
    transform = getattr(pre_processor, "transform", None)
    transforms = transform.transforms if isinstance(transform, Compose) else [transform]
    for t in transforms:
        if isinstance(t, Normalize):
            return [float(x) for x in t.mean], [float(x) for x in t.std]
    return None, None


__all__ = ["GlassISPAD"]
