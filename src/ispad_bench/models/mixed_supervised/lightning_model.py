"""``MixedSupervised``: the paper's mixed-supervised ResNet18 (§4.1-4.2, §5.2) as an Anomalib module.

Pair it with :class:`ispad_bench.data.ISPADSupervised` (stream + injected real defects). Training
follows §4.2: BCE on image labels; SGD (lr 2.5e-5...5e-5, weight decay 1e-2, momentum 0.9);
``CosineAnnealingWarmRestarts(T_0=7813, T_mult=2)`` stepped every batch; mixed precision on CUDA;
early stopping after 20 epochs without validation-loss improvement; the lowest-validation-loss
weights are restored before testing (and are the weights of the saved checkpoint).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from anomalib import LearningType
from anomalib.callbacks.checkpoint import ModelCheckpoint
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.callbacks import EarlyStopping
from torch import nn

from ispad_bench.models import keep
from ispad_bench.models.args import check
from ispad_bench.models.mixed_supervised.torch_model import MixedSupervisedModel
from ispad_bench.models.weights import MissingWeightsError, RaiseMissingWeightsAtSetup

logger = logging.getLogger(__name__)

MONITOR = "val_loss"


class RestoreBestWeights(Callback):
    """Keeps a CPU copy of the weights with the lowest ``val_loss`` and loads it when fitting ends."""

    def __init__(self, monitor: str = MONITOR) -> None:
        self.monitor, self.best, self.best_epoch, self.state = monitor, float("inf"), -1, None

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or not float(value) < self.best:
            return
        self.best, self.best_epoch = float(value), trainer.current_epoch
        self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.model.state_dict().items()}

    def on_fit_end(self, trainer, pl_module) -> None:
        if self.state is not None:
            pl_module.model.load_state_dict(self.state)
            pl_module.best_val = {"val_loss": self.best, "epoch": self.best_epoch}
            logger.info("restored the lowest-%s weights (%.5f, epoch %d)", self.monitor, self.best, self.best_epoch)


class MixedSupervised(RaiseMissingWeightsAtSetup, AnomalibModule):
    """ResNet18 defect classifier trained on the mixed synthetic/real stream (paper §4.1-4.2).

    Args:
        pre_trained: start from torchvision's ImageNet ResNet18 (``IMAGENET1K_V1``, as the paper);
            read from ``$TORCH_HOME/hub/checkpoints`` (one clear error when absent offline).
        lr: SGD learning rate (§4.2: 2.5e-5 to 5e-5, same within a modality).
        weight_decay, momentum: §4.2 (1e-2, 0.9).
        t_0, t_mult: ``CosineAnnealingWarmRestarts`` in optimizer steps (§4.2: 7813, 2).
        early_stopping_patience: epochs without ``val_loss`` improvement before stopping (§4.2: 20);
            ``0`` disables early stopping (the best weights are still restored).
        precision: Lightning precision; ``auto`` = ``bf16-mixed`` on CUDA with bf16, ``16-mixed`` on
            other CUDA, ``32-true`` on CPU (§4.2 trained in mixed precision).
        image_size: side the pre-processor resizes patches to (paper: 256, the native size; smaller only
            for quick CPU checks).
        warm_start: a checkpoint or sweep job folder (its ``model.ckpt``) whose trained weights are loaded
            when fitting starts, before the first step (incremental refinement, §1/§6); strict. The record
            keeps the parent's job key and the checkpoint's sha256 (``warm_started``).
    """

    def __init__(
        self,
        pre_trained: bool = True,
        lr: float = 5e-5,
        weight_decay: float = 1e-2,
        momentum: float = 0.9,
        t_0: int = 7813,
        t_mult: int = 2,
        early_stopping_patience: int = 20,
        precision: str = "auto",
        image_size: int = 256,
        warm_start: str | None = None,
        pre_processor: nn.Module | bool = True,
        post_processor: nn.Module | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check("MixedSupervised", lr=(lr, "(0, inf)"), weight_decay=(weight_decay, "[0, inf)"),
              momentum=(momentum, "[0, 1)"),
              integers=dict(t_0=(t_0, "[1, inf)"), t_mult=(t_mult, "[1, inf)"),
                            early_stopping_patience=(early_stopping_patience, "[0, inf)"),
                            image_size=(image_size, "[1, inf)")))
        super().__init__(pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator,
                         visualizer=visualizer)
        if pre_processor is True and image_size != 256:
            self.pre_processor = self.configure_pre_processor((image_size, image_size))
        try:
            self.model = MixedSupervisedModel(pre_trained=pre_trained)
        except MissingWeightsError as err:  # raised at setup: jsonargparse would bury it while parsing the YAML
            self.missing_weights = err
            self.model = MixedSupervisedModel(pre_trained=False)
        self.lr, self.weight_decay, self.momentum = lr, weight_decay, momentum
        self.t_0, self.t_mult = t_0, t_mult
        self.early_stopping_patience = early_stopping_patience
        self.precision = precision
        self.best_val: dict[str, float] = {}
        self.warm_start, self.warm_started = warm_start, None

    # -- Anomalib plumbing ---------------------------------------------------------------------
    @property
    def learning_type(self) -> LearningType:
        # Anomalib 2.7 has no supervised learning type; ONE_CLASS gives the plain fit -> test path.
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        precision = self.precision
        if precision == "auto":
            if torch.cuda.is_available():
                precision = "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
            else:
                precision = "32-true"
        return {"precision": precision, "num_sanity_val_steps": 0}

    @staticmethod
    def configure_evaluator() -> Evaluator:
        """The paper's metrics (``ispad_bench.metrics``): raw scores, F1-optimal threshold on the test set."""
        from ispad_bench.metrics import ispad_evaluator

        return ispad_evaluator()

    def configure_post_processor(self) -> PostProcessor:
        """Raw probabilities (no min-max, no clamping) for the paper's metrics (``ispad_bench.metrics``)."""
        from ispad_bench.metrics import RawScorePostProcessor

        return RawScorePostProcessor()

    def configure_callbacks(self):
        callbacks = list(super().configure_callbacks())
        callbacks.append(RestoreBestWeights(MONITOR))
        if self.early_stopping_patience > 0:
            callbacks.append(EarlyStopping(monitor=MONITOR, mode="min", patience=self.early_stopping_patience))
        trainer = getattr(self, "_trainer", None)
        if trainer is not None and not getattr(trainer, "barebones", False) and trainer.default_root_dir:
            # Replaces the engine's last-epoch checkpoint: the saved model is the one tested.
            callbacks.append(ModelCheckpoint(dirpath=Path(trainer.default_root_dir) / "weights" / "lightning",
                                             filename="model", monitor=MONITOR, mode="min",
                                             auto_insert_metric_name=False))
        return callbacks

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.model.parameters(), lr=self.lr, momentum=self.momentum,
                              weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=self.t_0, T_mult=self.t_mult)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- steps -----------------------------------------------------------------------------------
    def training_step(self, batch: Batch, *args, **kwargs) -> torch.Tensor:
        del args, kwargs
        logits = self.model(batch.image)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.gt_label.float())
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(logits))
        return loss

    def validation_step(self, batch: Batch, *args, **kwargs) -> Batch:
        del args, kwargs
        logits, local = self.model.logits_and_cam(batch.image)
        loss = F.binary_cross_entropy_with_logits(logits.float(), batch.gt_label.float())
        self.log(MONITOR, loss, on_epoch=True, prog_bar=True, batch_size=len(logits))
        predictions = self.model.inference(logits, local, batch.image.shape[-2:])
        return batch.update(**predictions._asdict())

    def on_fit_start(self) -> None:
        """Load the warm start's weights; log which real defects the datamodule injects (tables must say)."""
        if self.warm_start and self.warm_started is None:
            self.warm_started = keep.warm_start(self, self.warm_start)
        dm = getattr(self.trainer, "datamodule", None)
        ids = getattr(dm, "real_defect_ids", None) if dm is not None else None
        if ids is not None:
            self.hparams["real_defect_ids"] = ids
            if self.logger is not None:
                self.logger.log_hyperparams({"real_defect_ids": ids, "real_defect_count": len(ids)})
