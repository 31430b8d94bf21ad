"""Official GLASS model selection: the tested weights are those of the best image + pixel AUROC sum."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping
from torch.utils.data import DataLoader, TensorDataset

from ispad_bench.models.selection import BestSumSelection

# (image_AUROC, pixel_AUROC) per epoch: sums 1.0, 1.5, 1.5 (tie: the earlier epoch stays), 1.2, nan
SCRIPT = [(0.5, 0.5), (0.7, 0.8), (0.8, 0.7), (0.6, 0.6), (math.nan, 0.9)]


class Scripted(LightningModule):
    """Its only weight counts training epochs; validation logs the scripted AUROCs of the epoch."""

    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Linear(1, 1, bias=False)
        torch.nn.init.zeros_(self.head.weight)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        del batch, batch_idx
        with torch.no_grad():
            self.head.weight.fill_(self.current_epoch + 1.0)  # weights after epoch e hold e + 1

    def validation_step(self, batch, batch_idx):
        del batch, batch_idx

    def on_validation_epoch_end(self) -> None:
        image, pixel = SCRIPT[self.current_epoch]
        self.log("image_AUROC", image)
        self.log("pixel_AUROC", pixel)

    def configure_optimizers(self):
        return None


def _loader() -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(2, 1)), batch_size=1)


def _fit(callbacks, tmp_path) -> Scripted:
    model = Scripted()
    trainer = Trainer(max_epochs=len(SCRIPT), callbacks=callbacks, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                      default_root_dir=tmp_path, accelerator="cpu")
    trainer.fit(model, _loader(), _loader())
    return model


def test_tested_weights_are_the_best_sum_and_ties_keep_the_first(tmp_path):
    selector = BestSumSelection(modules=["head"])
    model = _fit([selector], tmp_path)
    assert selector.best_epoch == 1  # 1.5 at epoch 1; epoch 2 ties at 1.5 and loses; nan never wins
    assert model.head.weight.item() == 2.0  # the weights after epoch 1, not the last epoch's 5.0
    summary = selector.summary()
    assert summary["evaluations"] == len(SCRIPT) and summary["restored"]
    assert summary["selected_metrics"]["sum"] == pytest.approx(1.5)


def test_early_stopping_reading_tests_the_last_epoch(tmp_path):
    stop = EarlyStopping(monitor="pixel_AUROC", mode="max", patience=1, check_on_train_epoch_end=False)
    model = _fit([stop], tmp_path)
    # pixel AUROC 0.5, 0.8, 0.7 -> stops after epoch 2 (patience 1), weights of that last epoch
    assert model.head.weight.item() == 3.0


def test_missing_metric_names_what_to_log():
    selector = BestSumSelection()
    with pytest.raises(KeyError, match="val_metrics"):
        selector.update(0, {"pixel_AUROC": 0.9}, Scripted())


def test_glass_selection_option_and_restored_weights():
    from ispad_bench.models import GlassISPAD

    model = GlassISPAD(image_size=32, pre_trained=False, limit=4)
    assert model.selection == "official" and model.trainer_arguments["check_val_every_n_epoch"] == 1
    selector = model.selector
    assert selector in model.configure_callbacks()
    assert selector.modules == ("model.discriminator", "model.projection")
    selector.update(0, {"image_AUROC": 0.6, "pixel_AUROC": 0.6}, model)
    kept = {k: v.clone() for k, v in model.model.discriminator.state_dict().items()}
    with torch.no_grad():
        for p in model.model.discriminator.parameters():
            p.add_(1.0)
    selector.update(1, {"image_AUROC": 0.6, "pixel_AUROC": 0.6}, model)  # a tie: epoch 0 stays
    selector.restore(model)
    assert all(torch.equal(v, kept[k]) for k, v in model.model.discriminator.state_dict().items())
    assert model.procedure()["selected_epoch"] == 0 and model.procedure()["texture_source"] == "generated"
    engine_rule = GlassISPAD(image_size=32, pre_trained=False, selection="early_stopping", patience=7)
    stops = [c for c in engine_rule.configure_callbacks() if isinstance(c, EarlyStopping)]
    assert engine_rule.selector is None and stops[0].patience == 7 and stops[0].monitor == "pixel_AUROC"
    with pytest.raises(ValueError, match="selection"):
        GlassISPAD(image_size=32, pre_trained=False, selection="best")


def _glass_capped(synth_root, tmp_path, *extra: str):
    """The shipped LSM-2 GLASS config on the 20-patch set at batch 2 with ``limit 4``: the cap binds at 3 batches."""
    from anomalib.cli import AnomalibCLI

    from ispad_bench.sweep.procedure import EpochTracker

    config = Path(__file__).resolve().parents[1] / "configs" / "glass" / "lsm2.yaml"
    cli = AnomalibCLI(args=[
        "train", "--config", str(config), "--data.init_args.root", str(synth_root), "--data.init_args.num_workers", "0",
        "--data.init_args.train_batch_size", "2", "--data.init_args.eval_batch_size", "8",
        "--model.init_args.image_size", "32", "--model.init_args.pre_trained", "false", "--model.init_args.limit", "4",
        "--model.init_args.visualizer", "false", "--trainer.max_epochs", "3", "--trainer.accelerator", "cpu",
        "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
        "--trainer.callbacks+=ispad_bench.sweep.procedure.EpochTracker", "--default_root_dir", str(tmp_path / "out"),
        *extra,
    ])
    (tracker,) = [c for c in cli.engine.trainer.callbacks if isinstance(c, EpochTracker)]
    assert len(cli.datamodule.train_data) > 6  # the cap really binds
    return cli.engine.model, tracker


def test_glass_official_selection_runs_when_the_epoch_cap_binds(synth_root, tmp_path, monkeypatch):
    """The cap binds (train set > limit): every meta-epoch is evaluated and the selected weights are tested.

    On the 20-patch LSM-2 set at batch 2, ``limit 4`` gives the official 3 batches (6 samples) per meta-epoch;
    before issue 20 the cap ended each epoch before its validation (0 evaluations, the last epoch tested).
    """
    from ispad_bench.sweep.procedure import weights_digest

    monkeypatch.chdir(tmp_path)
    model, tracker = _glass_capped(synth_root, tmp_path)
    assert tracker.batches == [3, 3, 3] and model.epoch_batches == 3 and tracker.images_seen == 18
    assert tracker.evaluations == 3 and model.selector.summary()["evaluations"] == 3
    best = model.selector.best_epoch
    assert best is not None and model.selector.restored
    assert weights_digest(model) == tracker.epoch_digests[best] == tracker.tested_digest  # the selected weights tested
    assert tracker.tested_epoch() == best and model.procedure()["tested"] == f"epoch {best} (selected)"


@pytest.mark.slow  # ~20 s; the official selection under the binding cap stays in the default run
def test_glass_early_stopping_validates_when_the_epoch_cap_binds(synth_root, tmp_path, monkeypatch):
    """``selection: early_stopping`` under the binding cap: every epoch is evaluated, the stopping rule sees each
    pixel AUROC, and the last epoch's weights are tested (the engine rule: no selection)."""
    from ispad_bench.sweep.procedure import weights_digest

    monkeypatch.chdir(tmp_path)
    model, tracker = _glass_capped(synth_root, tmp_path, "--model.init_args.selection", "early_stopping",
                                   "--model.init_args.patience", "30")
    assert model.selector is None and tracker.stopping == [("pixel_AUROC", 30)]
    assert tracker.batches == [3, 3, 3] and tracker.evaluations == 3
    assert [h["epoch"] for h in tracker.history] == [0, 1, 2]  # the monitor's value after every epoch
    assert tracker.tested_epoch() == 2 and weights_digest(model) == tracker.epoch_digests[2]
    assert model.procedure()["selection"] == "early_stopping"
