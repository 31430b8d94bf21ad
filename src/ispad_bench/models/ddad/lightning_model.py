"""DDAD as an Anomalib model: diffusion training, then domain adaptation, then test, in one ``fit``.

Defaults are the official code's (§4.3.5: the paper ran it with its configuration files): phase 1
trains the UNet for ``diffusion_steps: 3000`` *epochs* (Adam, official ``train.py``; its loader drops
the last, partial batch) and tests checkpoint ``test_checkpoint: 2000``; the paper's text, 3000
optimiser steps and the last weights, is ``diffusion_unit: steps`` with ``test_checkpoint: null``
(profile ``paper-text``). Phase 2 starts at the next epoch boundary and runs ``da_epochs`` passes over
the training data, fine-tuning the feature extractor (AdamW, official ``feature_extractor.py``) on
batches of ``da_batch_size`` images (official 16: 8 targets + 8 inputs, drop_last). Training then
stops by itself; ``anomalib train`` goes on to test. Both phases use manual optimisation with
one optimiser each; the step counters are buffers, so Lightning checkpoints (saved at every
epoch end) carry the phase and a resumed run continues where it stopped. The current phase is
logged as ``phase`` (1 or 2) in the progress bar, and each transition is printed.

With ``test_checkpoint: N`` the UNet weights of checkpoint N are kept and put back when phase 1 ends,
so domain adaptation and test use them, as the official ``main.py`` does with ``load_chp``. In steps,
checkpoint N is the UNet after N steps. In epochs it is the official file ``N``: ``train.py`` saves it
when ``(epoch + 1) % 250 == 0 and step == 0``, i.e. after the *first* step of epoch N,
``(N - 1) · batches + 1`` optimiser steps (123,939 for N = 2000 at 62 batches).

Validation is switched off (``limit_val_batches: 0``): DDAD trains for a fixed budget and never
selects a model, and a validation pass costs as much as a test pass.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT

from ispad_bench.models.args import check
from ispad_bench.models.epochs import apply_cap, drop_last_cap, loader_shape
from ispad_bench.models.ddad.torch_model import DdadModel, load_state, center_crop, load_official_unet
from ispad_bench.models.weights import MissingWeightsError, RaiseMissingWeightsAtSetup

logger = logging.getLogger(__name__)


class Ddad(RaiseMissingWeightsAtSetup, AnomalibModule):
    """DDAD: reconstruction by target-conditioned denoising diffusion plus domain-adapted features.

    Defaults are the ISP-AD paper's settings (§4.3.5-4.3.6) and, where the paper is silent, the
    official ``config.yaml``. See ``DdadModel`` for the model arguments.

    Args:
        image_size: UNet architecture size (32, 64, 128, 224 or 256; 224 runs the 256 network).
        in_channels: image channels seen by the UNet (grayscale inputs are repeated to 3).
        unet_base_channels, unet_heads, unet_dropout: UNet width / heads / dropout (official 64 / 4 / 0).
        unet_attention_resolutions: feature-map sizes with self-attention (official 32, 16, 8).
        feature_backbone: ``wide_resnet101_2`` (official default), ``wide_resnet50_2``, ``resnet50``,
            ``resnet18`` (small, for tests).
        pre_trained: ImageNet weights for the feature extractor (from the torch hub cache). When the
            file is missing, the model is built with random weights and ``setup`` raises one error naming
            the file and where it goes, before any training step.
        download: let torchvision fetch missing ImageNet weights (default: never, as the other methods).
        diffusion_steps: phase-1 length (official ``epochs: 3000``; §4.3.6 "3000 steps"); 0 skips phase 1.
        diffusion_unit: ``epochs`` (official ``train.py``, default: 62 steps each at 500 images, batch 8,
            drop_last) or ``steps`` (the paper's wording).
        test_checkpoint: checkpoint (in ``diffusion_unit``) whose UNet weights are adapted and tested;
            ``None`` = the last (official ``load_chp``: 2000, default; see the module docstring).
        drop_last: leave out the last, partial training batch of every epoch, as the official loaders
            (default); ``False`` keeps it (Anomalib's loader).
        da_batch_size: images per domain-adaptation step, half targets, half inputs (official
            ``DA_batch_size`` 16, gathered from consecutive training batches, an incomplete rest dropped
            at each epoch end); ``None`` = one training batch per step (paper batch 8: 4 + 4).
        lr: UNet learning rate (paper: 5e-5 ... 1e-4; official 3e-4).
        weight_decay: UNet Adam weight decay (official 0.05).
        trajectory_steps, beta_start, beta_end: DDPM schedule (official 1000, 1e-4, 0.02).
        w: test conditioning (paper 3). w_da: domain-adaptation conditioning (paper 3).
        da_epochs: phase-2 epochs (paper 4); 0 skips domain adaptation.
        da_lr, da_weight_decay: AdamW for the extractor (official: lr 1e-4, torch default wd 0.01).
        da_lambda: drift weight (official ``DLlambda`` 0.1).
        test_start, skip, eta: test trajectory start, stride and stochasticity (paper 250, 25, 1).
        v: pixel-distance weight in the map (official config 1).
        normalization: ``batch`` (official; batch size is logged as ``ddad_norm_batch_size``) or
            ``per_image`` (batch independent).
        map_crop: centre-crop map (and mask) to this size at evaluation, as official ``ddad.py``.
        seed: evaluation noise seed (per image; ``None`` = global RNG).
        unet_checkpoint: official DDAD UNet checkpoint to start from (``module.`` prefixes and
            extension-less files accepted).
        feature_checkpoint: official ``feat<N>`` feature-extractor checkpoint to start from.
        save_phase_checkpoints: write weights-only ``ddad_phase1.ckpt`` / ``ddad_phase2.ckpt`` next
            to Anomalib's ``model.ckpt`` when each phase ends.
    """

    def __init__(
        self,
        image_size: int = 256,
        in_channels: int = 3,
        unet_base_channels: int = 64,
        unet_heads: int = 4,
        unet_dropout: float = 0.0,
        unet_attention_resolutions: Sequence[int] = (32, 16, 8),
        feature_backbone: str = "wide_resnet101_2",
        pre_trained: bool = True,
        download: bool = False,
        diffusion_steps: int = 3000,
        diffusion_unit: str = "epochs",
        test_checkpoint: int | None = 2000,
        drop_last: bool = True,
        da_batch_size: int | None = 16,
        lr: float = 1e-4,
        weight_decay: float = 0.05,
        trajectory_steps: int = 1000,
        beta_start: float = 1e-4,
        beta_end: float = 0.02,
        w: float = 3.0,
        w_da: float = 3.0,
        da_epochs: int = 4,
        da_lr: float = 1e-4,
        da_weight_decay: float = 0.01,
        da_lambda: float = 0.1,
        test_start: int = 250,
        skip: int = 25,
        eta: float = 1.0,
        v: float = 1.0,
        normalization: str = "batch",
        map_crop: int | None = None,
        seed: int | None = 0,
        unet_checkpoint: str | Path | None = None,
        feature_checkpoint: str | Path | None = None,
        save_phase_checkpoints: bool = True,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        check("Ddad", unet_dropout=(unet_dropout, "[0, 1)"), lr=(lr, "(0, inf)"), weight_decay=(weight_decay, "[0, inf)"),
              beta_start=(beta_start, "(0, 1)"), beta_end=(beta_end, "(0, 1)"), w=(w, "[0, inf)"),
              w_da=(w_da, "[0, inf)"), da_lr=(da_lr, "(0, inf)"), da_weight_decay=(da_weight_decay, "[0, inf)"),
              da_lambda=(da_lambda, "[0, inf)"), eta=(eta, "[0, inf)"), v=(v, "[0, inf)"),
              integers=dict(image_size=(image_size, "[1, inf)"), in_channels=(in_channels, "[1, inf)"),
                            unet_base_channels=(unet_base_channels, "[1, inf)"), unet_heads=(unet_heads, "[1, inf)"),
                            diffusion_steps=(diffusion_steps, "[0, inf)"), da_epochs=(da_epochs, "[0, inf)"),
                            trajectory_steps=(trajectory_steps, "[1, inf)"), test_start=(test_start, "[1, inf)"),
                            skip=(skip, "[1, inf)"), map_crop=(map_crop, "[1, inf)"), seed=(seed, "[0, 4294967296)"),
                            da_batch_size=(da_batch_size, "[2, inf)")))
        super().__init__(
            pre_processor=pre_processor, post_processor=post_processor, evaluator=evaluator, visualizer=visualizer
        )
        if diffusion_steps < 0 or da_epochs < 0:
            raise ValueError(f"diffusion_steps and da_epochs must be >= 0, got {diffusion_steps}, {da_epochs}")
        if diffusion_unit not in ("steps", "epochs"):
            raise ValueError(f"DDAD diffusion_unit must be 'steps' or 'epochs', got {diffusion_unit!r}")
        if test_checkpoint is not None and not 0 < int(test_checkpoint) <= diffusion_steps:
            msg = f"DDAD test_checkpoint must be in 1..diffusion_steps ({diffusion_steps}), got {test_checkpoint}"
            raise ValueError(msg)
        model_args = dict(
            image_size=image_size, in_channels=in_channels, base_channels=unet_base_channels, heads=unet_heads,
            dropout=unet_dropout, attention_resolutions=unet_attention_resolutions,
            feature_backbone=feature_backbone, trajectory_steps=trajectory_steps, beta_start=beta_start,
            beta_end=beta_end, w=w, w_da=w_da, start=test_start, skip=skip, eta=eta, da_lambda=da_lambda, v=v,
            normalization=normalization, seed=seed, map_crop=map_crop,
        )
        try:
            self.model = DdadModel(**model_args, pre_trained=pre_trained, download=download)
        except MissingWeightsError as err:  # raised at setup: jsonargparse would bury it while parsing the YAML
            self.missing_weights = err
            self.model = DdadModel(**model_args, pre_trained=False)
        if unet_checkpoint:
            load_official_unet(self.model.unet, unet_checkpoint)
        if feature_checkpoint:
            self.model.feature_extractor.load_backbone_state(load_state(feature_checkpoint))
        self.diffusion_steps, self.da_epochs = int(diffusion_steps), int(da_epochs)
        self.diffusion_unit = diffusion_unit
        self.test_checkpoint = None if test_checkpoint is None else int(test_checkpoint)
        self._checkpoint_step = 0  # optimiser step of test_checkpoint; set at train start
        self.snapshot_step: int | None = None  # the step whose UNet was kept for test (measured)
        self.drop_last, self.da_batch_size = bool(drop_last), da_batch_size
        self.epoch_batches: int | None = None  # training batches per epoch, set at fit start
        self.da_optimizer_steps = 0
        self._da_buffer: list[torch.Tensor] = []
        self._unet_snapshot: dict[str, torch.Tensor] | None = None
        self._diffusion_total = self.diffusion_steps  # optimiser steps; set per epoch count at train start
        self.lr, self.weight_decay = lr, weight_decay
        self.da_lr, self.da_weight_decay = da_lr, da_weight_decay
        self.automatic_optimization = False
        # progress counters live in the state dict, so checkpoints record how far each phase got
        self.register_buffer("diffusion_steps_done", torch.zeros((), dtype=torch.long))
        self.register_buffer("da_steps_done", torch.zeros((), dtype=torch.long))
        self.save_phase_checkpoints = save_phase_checkpoints
        self._da_total = 0
        self._phase2_saved = False
        self._eval_batch_size = 0

    # ---- Anomalib plumbing -----------------------------------------------------------------------
    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Images stay in [0, 1] at their size (DDAD rescales to [-1, 1] itself; no ImageNet norm)."""
        del image_size
        return PreProcessor()

    @property
    def learning_type(self) -> LearningType:
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """The phases define the length of training; no validation; manual optimisation rules."""
        return {
            "max_epochs": -1,
            "max_steps": -1,
            "limit_val_batches": 0,
            "num_sanity_val_steps": 0,
            "gradient_clip_val": 0,
            "accumulate_grad_batches": 1,
        }

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        """Adam for the UNet (phase 1), AdamW for the feature extractor (phase 2)."""
        return list(self.model.make_optimizers(self.lr, self.weight_decay, self.da_lr, self.da_weight_decay))

    # ---- phases ----------------------------------------------------------------------------------
    @property
    def phase(self) -> int:
        """1 = diffusion training, 2 = domain adaptation, 3 = done."""
        if int(self.diffusion_steps_done) < self._diffusion_total:
            return 1
        return 2 if int(self.da_steps_done) < self._da_total else 3

    def on_fit_start(self) -> None:
        """The official loaders' ``drop_last`` as a batch limit (:mod:`..epochs`)."""
        shape = loader_shape(self.trainer)
        if self.drop_last and shape is not None:
            size, batch_size, batches = shape
            apply_cap(self.trainer, drop_last_cap(size, batch_size), batches)

    def on_train_start(self) -> None:
        batches = int(self.trainer.num_training_batches)
        self.epoch_batches = batches
        self._da_total = self.da_epochs * batches
        per_unit = batches if self.diffusion_unit == "epochs" else 1
        self._diffusion_total = self.diffusion_steps * per_unit
        chp = self.test_checkpoint or 0  # official epoch checkpoint N: saved after the first step of epoch N
        self._checkpoint_step = (chp - 1) * batches + 1 if chp and self.diffusion_unit == "epochs" else chp
        done_1, done_2 = int(self.diffusion_steps_done), int(self.da_steps_done)
        self.print(
            f"DDAD phase 1/2: diffusion training, {done_1}/{self._diffusion_total} steps done; "
            f"phase 2/2: domain adaptation, {self.da_epochs} epochs x {self.trainer.num_training_batches} "
            f"batches, {done_2}/{self._da_total} steps done"
        )

    def on_train_batch_start(self, batch: Batch, batch_idx: int) -> int | None:
        del batch
        phase = self.phase
        if phase == 2 and int(self.da_steps_done) == 0 and batch_idx > 0:
            return -1  # phase 1 ended mid-epoch: start domain adaptation with a fresh epoch
        if phase == 3:
            self.trainer.should_stop = True
            return -1
        return None

    def training_step(self, batch: Batch, batch_idx: int) -> STEP_OUTPUT:
        del batch_idx
        opt_unet, opt_fe = self.optimizers()
        if self.phase == 1:
            loss = self.model.diffusion_step(batch.image, opt_unet, self.manual_backward)
            self.diffusion_steps_done += 1
            self.log("train_loss", loss, prog_bar=True)
            self.log("phase", 1.0, prog_bar=True)
            if int(self.diffusion_steps_done) == self._checkpoint_step < self._diffusion_total:
                self._unet_snapshot = {k: v.detach().cpu().clone() for k, v in self.model.unet.state_dict().items()}
                self.snapshot_step = int(self.diffusion_steps_done)
                self.print(f"DDAD: UNet weights after {self.test_checkpoint} {self.diffusion_unit} kept for test")
            if int(self.diffusion_steps_done) == self._diffusion_total:
                if self._unet_snapshot is not None:  # official load_chp: adapt and test the kept weights
                    self.model.unet.load_state_dict(self._unet_snapshot)
                    self.print(f"DDAD: UNet of {self.test_checkpoint} {self.diffusion_unit} restored")
                self.print(f"DDAD phase 1 done ({self._diffusion_total} diffusion steps); phase 2: domain "
                           f"adaptation, {self.da_epochs} epochs from the next epoch on")
                self._save_phase_checkpoint(1)
            return {"loss": loss}
        self.da_steps_done += 1
        self.log("phase", 2.0, prog_bar=True)
        images = self._da_batch(batch.image)
        if images is None or images.shape[0] < 2:  # gathering, or one image cannot be split into target and input
            return None
        loss = self.model.domain_adaptation_step(images, opt_fe, self.manual_backward)
        self.da_optimizer_steps += 1
        self.log("da_loss", loss, prog_bar=True)
        return {"loss": loss}

    def _da_batch(self, images: torch.Tensor) -> torch.Tensor | None:
        """The next domain-adaptation batch: ``da_batch_size`` images from consecutive training batches."""
        if self.da_batch_size is None:
            return images
        self._da_buffer.append(images)
        gathered = torch.cat(self._da_buffer)
        if gathered.shape[0] < self.da_batch_size:
            return None
        rest = gathered[self.da_batch_size:]
        self._da_buffer = [rest] if rest.shape[0] else []
        return gathered[: self.da_batch_size]

    def on_train_epoch_start(self) -> None:
        self._da_buffer = []  # official drop_last: an incomplete domain-adaptation batch is not carried over

    def on_train_epoch_end(self) -> None:
        if self.phase == 2 and int(self.da_steps_done):
            epoch = -(-int(self.da_steps_done) // max(int(self.trainer.num_training_batches), 1))
            self.print(f"DDAD phase 2: domain-adaptation epoch {epoch}/{self.da_epochs} done")
        if self.phase == 3:
            if self._da_total and not self._phase2_saved:
                self.print(f"DDAD phase 2 done ({self.da_epochs} epochs, {int(self.da_steps_done)} steps); testing next")
                self._save_phase_checkpoint(2)
                self._phase2_saved = True
            self.trainer.should_stop = True

    def procedure(self) -> dict[str, Any]:
        """Phase-1 length and which UNet weights were tested, for the run's record (``sweep/procedure.py``)."""
        tested = self.test_checkpoint or self.diffusion_steps
        done = int(self.diffusion_steps_done)
        last = self.test_checkpoint is None or self._checkpoint_step >= self._diffusion_total
        tested_step = done if last else self.snapshot_step
        restored = self._unet_snapshot is not None or last
        return {
            "diffusion_unit": self.diffusion_unit, "diffusion_length": self.diffusion_steps,
            "diffusion_optimizer_steps": done, "diffusion_steps_planned": self._diffusion_total,
            "test_checkpoint": tested, "tested_step": tested_step, "tested_step_planned": self._diffusion_total if last else self._checkpoint_step,
            "tested": f"UNet {'checkpoint' if not last else 'after'} {tested} of {self.diffusion_steps} "
                      f"{self.diffusion_unit} (step {tested_step})"
                      + ("" if restored else " (NOT restored: phase 1 did not reach the checkpoint in this process)"),
            "epoch_batches": self.epoch_batches, "drop_last": self.drop_last,
            "da_epochs": self.da_epochs, "da_batch_size": self.da_batch_size,
            "da_optimizer_steps": self.da_optimizer_steps,
        }

    # ---- checkpoints -----------------------------------------------------------------------------
    def _save_phase_checkpoint(self, phase: int) -> None:
        """Weights-only ``ddad_phase<N>.ckpt`` next to Anomalib's checkpoint at the end of phase N.

        ``ddad_phase1.ckpt`` holds the trained UNet before domain adaptation (the official
        ``checkpoints/<category>/<epoch>``), ``ddad_phase2.ckpt`` the adapted extractor (``feat<N>``).
        """
        if not self.save_phase_checkpoints or self.trainer is None:
            return
        callback = self.trainer.checkpoint_callback
        folder = Path(callback.dirpath) if callback is not None and callback.dirpath else Path(self.trainer.default_root_dir)
        path = folder / f"ddad_phase{phase}.ckpt"
        self.trainer.save_checkpoint(path, weights_only=True)
        self.print(f"DDAD phase {phase} checkpoint: {path}")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Record the phase and its progress in every checkpoint (also in the state-dict buffers)."""
        phase = self.phase
        checkpoint["ddad"] = {
            "phase": {1: "diffusion", 2: "domain_adaptation", 3: "done"}[phase],  # current / next phase
            "completed_phases": list(range(1, phase)),
            "diffusion_steps_done": int(self.diffusion_steps_done),
            "diffusion_steps": self._diffusion_total,
            "da_steps_done": int(self.da_steps_done),
            "da_epochs": self.da_epochs,
            "normalization": self.model.normalization,
        }

    # ---- evaluation ------------------------------------------------------------------------------
    def _predict(self, batch: Batch) -> STEP_OUTPUT:
        predictions = self.model(batch.image)
        self._eval_batch_size = max(self._eval_batch_size, int(batch.image.shape[0]))
        changes = predictions._asdict()
        crop = self.model.map_crop
        if crop is not None:  # official ddad.py: mask (and here the image) cropped like the map
            changes["image"] = center_crop(batch.image, crop)
            if batch.gt_mask is not None:
                changes["gt_mask"] = center_crop(batch.gt_mask, crop)
        return batch.update(**changes)

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._predict(batch)

    def test_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs
        return self._predict(batch)

    def on_test_epoch_end(self) -> None:
        if self.model.normalization == "batch" and self._eval_batch_size:
            # official normalisation: scores depend on the test batch size, so record it with results
            self.log("ddad_norm_batch_size", float(self._eval_batch_size))
