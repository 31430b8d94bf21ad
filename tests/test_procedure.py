"""Procedure of a run: named readings of the paper vs the official code, EfficientAD's schedule, report marks."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from ispad_bench import files
from ispad_bench.report import notes
from ispad_bench.report import tables as report
from ispad_bench.sweep import grid, procedure, records
from ispad_bench.sweep.profile import load_profile
from ispad_bench.sweep.resolve import resolve

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _resolved(profile: str, method: str, modality: str = "LSM-1") -> dict:
    (job,) = grid.expand(CONFIGS, load_profile(profile, CONFIGS), methods=[method], modalities=[modality],
                         seeds=[0], rows=["none"] if method == "supervised" else None)
    return resolve(job).config


@pytest.mark.parametrize(
    ("profile", "method", "reading", "matches"),
    [
        ("paper", "glass", "official", True),
        ("paper", "ddad", "official-code", True),  # the configs' default since issue 20 (§4.3.5)
        ("paper-text", "ddad", "paper-text", True),
        ("official", "ddad", "official-code", True),
        ("paper", "efficient_ad", "anomalib-v1", True),
        ("smoke", "glass", "official-custom-length", False),  # 1 epoch, random weights
        ("smoke", "ddad", "custom", False),
    ],
)
def test_readings_of_the_shipped_configs(profile, method, reading, matches):
    config = _resolved(profile, method)
    assert procedure.method_reading(method, config) == reading
    out = procedure.describe({"method": method, "profile": profile}, config, None, None, None)
    assert out["matches_paper_runs"] is matches and out["name"] == profile


def test_official_profile_runs_ddad_as_main_py():
    args = _resolved("official", "ddad")["model"]["init_args"]
    assert (args["diffusion_steps"], args["diffusion_unit"], args["test_checkpoint"]) == (3000, "epochs", 2000)
    assert _resolved("paper", "ddad")["model"]["init_args"]["test_checkpoint"] == 2000  # the configs' default
    assert _resolved("paper-text", "ddad")["model"]["init_args"]["test_checkpoint"] is None  # paper text: last


def test_efficient_ad_has_anomalib_max_steps_and_lr_step_at_95_percent():
    from ispad_bench.models import EfficientAdISPAD

    trainer = _resolved("paper", "efficient_ad")["trainer"]
    assert (trainer["max_steps"], trainer["max_epochs"]) == (70000, 300)
    model = EfficientAdISPAD(model_size="small", teacher_out_channels=16, pre_trained=False, evaluator=False,
                             visualizer=False)
    loader = range(500)  # 500 training patches at batch 1 (§4.3.6 reduced split)
    model._trainer = SimpleNamespace(max_steps=trainer["max_steps"], max_epochs=trainer["max_epochs"],
                                     datamodule=SimpleNamespace(train_dataloader=lambda: loader))
    scheduler = model.configure_optimizers()["lr_scheduler"]
    assert scheduler.step_size == 66_500 and scheduler.gamma == pytest.approx(0.1)
    # without the step limit the drop would sit at 0.95 x 300 epochs x 500 steps
    model._trainer.max_steps = -1
    assert model.configure_optimizers()["lr_scheduler"].step_size == 142_500


def _record(root: Path, method: str, seed: int, proc: dict | None, modality: str = "LSM-1", **metrics) -> None:
    rec = {"schema": records.SCHEMA, "status": "ok", "key": f"{method}{seed}", "method": method, "modality": modality,
           "seed": seed, "row": "none" if method == "supervised" else None, "profile": "paper",
           "metrics": {"MCC": 0.8, "image_AUROC": 0.9, **metrics}, "timing": {}, "finished": "2026-01-01T00:00:00"}
    if proc is not None:
        rec["procedure"] = proc
    files.write_json(root / method / modality / f"s{seed}" / records.RECORD, rec)


def test_report_marks_procedures_and_shows_epochs_and_group_fns(tmp_path):
    official = {"name": "paper", "reading": "official", "matches_paper_runs": True, "selection": "official",
                "tested": "epoch 7 (selected)", "selected_epoch": 7, "epochs_trained": 160, "texture_source": "dtd"}
    _record(tmp_path, "glass", 0, official)
    _record(tmp_path, "uflow", 0, {"name": "smoke", "reading": "custom", "matches_paper_runs": False,
                                   "tested": "last epoch", "epochs_trained": 1})
    _record(tmp_path, "efficient_ad", 0, {**official, "reading": "anomalib-v1", "texture_source": None})
    _record(tmp_path, "ddad", 0, {**official, "reading": "official-code", "texture_source": None})
    _record(tmp_path, "glass", 0, {**official, "texture_source": "generated"}, modality="ASM")
    _record(tmp_path, "glass", 0, {**official, "matches_paper_runs": False, "tested": "last epoch",
                                   "mismatches": ["0 evaluations in 160 epochs (official: 160); model selection did not run"]},
            modality="LSM-2")
    for seed, (epoch, fn_area) in enumerate([(9, 3), (11, 5)]):
        _record(tmp_path, "supervised", seed, {"name": "paper", "reading": "paper", "matches_paper_runs": True,
                                               "selected_epoch": epoch, "epochs_trained": epoch + 20},
                FN=fn_area + 1, fn_area=fn_area, fn_points=1)
    df, _ = report.summarise(tmp_path)
    by = {m.rstrip(notes.MARK_PROCEDURE + notes.MARK_TEXTURES) + ("" if mod == "LSM-1" else f" {mod}"): r
          for m, mod, r in zip(df.method, df.modality, df.itertuples())}
    assert by["GLASS"].method == "GLASS" and by["GLASS"].mcc_delta == pytest.approx(0.8 - 0.89)
    assert by["U-Flow"].method == "U-Flow" + notes.MARK_PROCEDURE and pd.isna(by["U-Flow"].mcc_delta)
    assert pd.notna(by["U-Flow"].mcc_paper)  # the paper's number stays, only Δ is withheld
    assert by["DDAD"].method == "DDAD" and pd.notna(by["DDAD"].mcc_delta)
    glass_asm = by["GLASS ASM"]  # generated textures: marked, but still the paper's procedure (Δ kept)
    assert glass_asm.method == "GLASS" + notes.MARK_TEXTURES and pd.notna(glass_asm.mcc_delta)
    sup = by["ResNet18"]
    assert (sup.best_epoch_mean, sup.epochs_mean, sup.fn_area_mean, sup.fn_points_mean) == (10, 30, 4, 1)
    text = report.to_markdown(df, [])
    assert "FN-area" in text and "Best epoch" in text and "10 ± 1.4" in text.split("ResNet18")[1]
    assert "procedure paper/official, selection official, tested epoch 7 (selected), textures dtd" in text
    assert notes.FOOTNOTE in text
    glass_lsm2 = by["GLASS LSM-2"]  # measured: the selection never ran, so no Δ and the reason is printed
    assert glass_lsm2.method == "GLASS" + notes.MARK_PROCEDURE and pd.isna(glass_lsm2.mcc_delta)
    assert "NOT as the reading requires: 0 evaluations in 160 epochs" in report.to_markdown(df, [])


def test_epoch_tracker_best_epoch_follows_the_monitor_mode():
    tracker = procedure.EpochTracker()
    tracker.monitors = {"val_loss": "min"}
    tracker.history = [{"epoch": 0, "val_loss": 0.5}, {"epoch": 1, "val_loss": 0.2}, {"epoch": 2, "val_loss": 0.2}]
    assert tracker.best_epoch() == ("val_loss", 1)
    tracker.monitors = {"pixel_AUROC": "max"}
    tracker.history = [{"epoch": 0, "pixel_AUROC": 0.7}, {"epoch": 3, "pixel_AUROC": 0.9}]
    assert tracker.best_epoch() == ("pixel_AUROC", 3)


def test_ddad_reconstructions_are_stored_and_drawn_as_triplets(tmp_path):
    """Fig. 6-style figure: the collector keeps a model's ``last_reconstruction`` beside image and map."""
    import torch
    from anomalib.data import ImageBatch

    from ispad_bench.sweep.callbacks import PredictionCollector
    from ispad_bench.report.figures import reconstruction_grid

    batch = ImageBatch(image=torch.rand(2, 3, 16, 16), gt_label=torch.tensor([0, 1]),
                       gt_mask=torch.zeros(2, 16, 16, dtype=torch.bool), image_path=["t/good/0.png", "t/dot/1.png"],
                       pred_score=torch.tensor([0.1, 0.9]), anomaly_map=torch.rand(2, 1, 16, 16))
    recon = torch.zeros(2, 3, 16, 16)
    recon[1, :, :8] = 1.0  # a recognisable reconstruction for the second image
    module = SimpleNamespace(model=SimpleNamespace(last_reconstruction=recon))
    collector = PredictionCollector(maps_per_group=1)
    collector.on_test_batch_end(None, module, batch, batch, 0)
    collector.on_test_epoch_end(None, module)
    arrays = collector.arrays()
    order = [str(p) for p in arrays["map_paths"]]
    dot = order.index("t/dot/1.png")
    assert arrays[f"reconstruction_{dot}"][:8].min() == 255 and arrays[f"reconstruction_{dot}"][8:].max() == 0
    assert reconstruction_grid("DDAD, LSM-1", arrays, tmp_path / "r.png").stat().st_size > 0
    plain = {k: v for k, v in arrays.items() if not k.startswith("reconstruction_")}
    assert reconstruction_grid("U-Flow", plain, tmp_path / "u.png") is None and not (tmp_path / "u.png").exists()


def test_a_glass_job_whose_selection_did_not_run_does_not_match_the_paper_runs():
    """The label comes from what ran: the paper config with no evaluation is not the official selection."""
    from ispad_bench.models import GlassISPAD

    config = _resolved("paper", "glass")
    model = GlassISPAD(image_size=32, pre_trained=False, evaluator=False, visualizer=False)
    tracker = procedure.EpochTracker()
    tracker.epochs_trained, tracker.batches = 160, [50] * 160
    tracker.epoch_digests = {e: f"d{e}" for e in range(160)}
    tracker.tested_digest = "d159"
    config["model"]["init_args"]["pre_trained"] = True
    out = procedure.describe({"method": "glass", "profile": "paper"}, config, model, tracker, None)
    assert out["reading"] == "official" and out["matches_paper_runs"] is False
    assert any("0 evaluations in 160 epochs" in m for m in out["mismatches"]), out["mismatches"]
    assert out["measured"]["tested_epoch"] == 159

    # the same run with its 160 evaluations, the selected epoch's weights tested: it matches
    for epoch in range(160):
        model.selector.update(epoch, {"image_AUROC": 0.5 + (epoch == 37) * 0.1, "pixel_AUROC": 0.5}, model)
    model.selector.restored, model.epoch_batches = True, 50
    tracker.evaluations, tracker.tested_digest = 160, "d37"
    out = procedure.describe({"method": "glass", "profile": "paper"}, config, model, tracker, None)
    assert out["mismatches"] == [] and out["matches_paper_runs"] is True
    assert out["selected_epoch"] == out["measured"]["tested_epoch"] == 37
    tracker.tested_digest = "d159"  # restored flag set, but the last epoch's weights were tested
    out = procedure.describe({"method": "glass", "profile": "paper"}, config, model, tracker, None)
    assert out["matches_paper_runs"] is False and "selected was 37" in out["mismatches"][0]


def test_epoch_tracker_records_warm_restarts_not_warm_up(tmp_path):
    """A real Lightning fit: cosine warm restarts every 3 steps (after a 2-step linear warm-up) over 4 epochs of 2
    batches. The rises back to the start LR are restarts; the warm-up's rises are not."""
    import lightning.pytorch as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, _):
            return self.layer(batch[0]).square().mean()

        def configure_optimizers(self):
            opt = torch.optim.SGD(self.parameters(), lr=1.0)
            warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.25, total_iters=2)
            cosine = torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3)
            sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cosine], milestones=[2])
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    tracker = procedure.EpochTracker()
    data = DataLoader(TensorDataset(torch.ones(4, 2)), batch_size=2)
    pl.Trainer(max_epochs=4, callbacks=[tracker], logger=False, enable_checkpointing=False, accelerator="cpu",
               enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path).fit(Tiny(), data)
    m = tracker.measured()
    assert m["optimizer_steps"] == 8 and m["batches_per_epoch"] == [2]
    assert m["lr_restarts"] == [5]  # warm-up at steps 0-1 (rising), cosine from step 2: it restarts at step 5
    assert [c["step"] for c in m["lr_changes"]] == [0, 2, 4, 6, 8]
