"""Anomalib models by name: generated job configs, refusals, class paths, and a PatchCore job
whose written config.yaml reproduces its metrics under plain `anomalib train --config`."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ispad_bench.cli import main
from ispad_bench import paper
from ispad_bench.report import notes
from ispad_bench.sweep import catalog, grid
from ispad_bench.sweep.profile import default_configs_dir, load_profile
from ispad_bench.sweep.resolve import resolve

CONFIGS = default_configs_dir()


@pytest.fixture(autouse=True)
def generated_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("ISPAD_GENERATED_DIR", str(tmp_path / "generated"))


def _job(method: str, modality: str, profile: str = "paper", data_root: Path | None = None, overrides=None):
    jobs = grid.expand(CONFIGS, load_profile(profile, CONFIGS), methods=[method], modalities=[modality], seeds=[0],
                       data_root=data_root, overrides=overrides)
    assert len(jobs) == 1
    return resolve(jobs[0])


def test_patchcore_job_config_follows_the_protocol():
    job = _job("patchcore", "ASM")
    cfg = job.config
    assert cfg["data"]["class_path"] == "ispad_bench.data.ISPAD"
    data = cfg["data"]["init_args"]
    assert (data["modality"], data["train_split"], data["center_crop"]) == ("ASM", "reduced", 224)  # §4.3.5
    model = cfg["model"]
    assert model["class_path"] == "anomalib.models.Patchcore"
    assert model["init_args"]["post_processor"]["class_path"] == "ispad_bench.metrics.RawScorePostProcessor"
    evaluator = model["init_args"]["evaluator"]
    assert evaluator["class_path"] == "ispad_bench.metrics.ISPADEvaluator"
    assert evaluator["init_args"]["threshold"] == "oracle"
    # Anomalib's own defaults, filled in by jsonargparse from the class (not copied here)
    assert model["init_args"]["backbone"] == "wide_resnet50_2" and model["init_args"]["layers"] == ["layer2", "layer3"]
    assert cfg["trainer"]["max_epochs"] == 1 and not cfg["trainer"]["callbacks"]  # memory bank: one epoch
    lsm = _job("patchcore", "LSM-1").config["data"]["init_args"]
    assert lsm["modality"] == "LSM-1" and lsm["center_crop"] is None


def test_trained_model_stops_early_on_pixel_auroc():
    cfg = _job("fastflow", "LSM-2").config
    trainer = cfg["trainer"]
    assert trainer["max_epochs"] == 300  # §4.3.6
    (stop,) = trainer["callbacks"]
    assert stop["class_path"].endswith("EarlyStopping")
    assert (stop["init_args"]["monitor"], stop["init_args"]["mode"], stop["init_args"]["patience"]) == ("pixel_AUROC", "max", 30)
    (val,) = cfg["model"]["init_args"]["evaluator"]["init_args"]["val_metrics"]
    assert val["init_args"]["key"] == "pixel_auroc"


def test_refused_and_unknown_methods_say_why(capsys):
    with pytest.raises(ValueError, match="remote API"):
        catalog.with_generated({}, ["vlm_ad"])
    assert catalog.refusal("ai_vad") == catalog.VIDEO_REASON
    with pytest.raises(ValueError, match="not an anomalib AnomalibModule"):
        catalog.model_class("pathlib.Path")
    with pytest.raises(ValueError, match="no configs for method"):
        grid.expand(CONFIGS, load_profile("paper", CONFIGS), methods=["no_such_model"])
    assert main(["sweep", "--methods", "fuvas", "--dry-run"]) == 2
    assert "video model" in capsys.readouterr().err.replace("\n", " ")


def test_user_class_path_and_config_command(capsys):
    job = _job("anomalib.models.Padim", "LSM-1")
    assert job.config["model"]["class_path"] == "anomalib.models.Padim"
    assert job.rel_dir().parts[0] == "anomalib.models.Padim"
    assert main(["config", "padim", "--modality", "ASM", "--profile", "smoke", "--model.init_args.n_features=7"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["n_features"] == 7 and printed["trainer"]["accelerator"] == "cpu"
    assert printed["data"]["init_args"]["center_crop"] == 224


def test_smoke_profile_includes_the_handful():
    profile = load_profile("smoke", CONFIGS)
    jobs = grid.expand(CONFIGS, profile, modalities=["LSM-1"], rows=["none"])
    methods = [j.method for j in jobs]
    assert methods[:5] == list(paper.PAPER_METHODS)
    assert set(profile.include) <= set(methods)
    assert any(catalog.is_class_path(m) for m in methods)


def test_written_config_reproduces_the_job(synth_root, tmp_path, one_thread):
    """The PatchCore job (smoke sizes) and `anomalib train --config <job>/config.yaml` give the same metrics."""
    import lightning
    from anomalib.cli import AnomalibCLI

    from ispad_bench.sweep.executors import LocalExecutor
    from ispad_bench.sweep.records import CONFIG
    from ispad_bench.sweep.runner import run_jobs

    job = _job("patchcore", "LSM-1", profile="smoke", data_root=synth_root)
    summary = run_jobs([job], tmp_path / "runs", LocalExecutor())
    assert summary.ok == 1, summary
    job_dir = tmp_path / "runs" / job.rel_dir()
    record = json.loads((job_dir / "record.json").read_text())
    written = job_dir / CONFIG
    assert yaml.safe_load(written.read_text()) == job.config
    # Anomalib 2.7's CLI parses `seed_everything` but never applies it: "with the seed" = seed first
    lightning.seed_everything(record["seed"], workers=True)
    cli = AnomalibCLI(["train", "--config", str(written), "--default_root_dir", str(tmp_path / "rerun")])
    again = {k: float(v) for k, v in cli.model.evaluator.results.items()}
    from ispad_bench.metrics.anomalib import DISPLAY_NAMES

    again = {DISPLAY_NAMES.get(k, k): v for k, v in again.items()}
    assert again and all(record["metrics"][k] == v for k, v in again.items()), (record["metrics"], again)
    shutil.rmtree(tmp_path / "rerun", ignore_errors=True)


def test_report_ranks_models_beyond_the_paper_by_mcc(tmp_path):
    from ispad_bench import files
    from ispad_bench.report import tables as report
    from ispad_bench.sweep import records

    for method, mcc in (("uflow", 0.5), ("glass", 0.4), ("padim", 0.3), ("patchcore", 0.9), ("anomalib.models.Dfm", 0.6)):
        rec = {"schema": records.SCHEMA, "status": "ok", "key": method, "method": method, "modality": "ASM", "seed": 0,
               "row": None, "profile": "smoke", "metrics": {"MCC": mcc, "image_AUROC": 0.7}, "finished": "2026"}
        files.write_json(tmp_path / method / "asm" / "s0" / records.RECORD, rec)
    df, _ = report.summarise(tmp_path)
    assert list(df.method_id) == ["uflow", "glass", "patchcore", "anomalib.models.Dfm", "padim"]
    assert df.best.tolist() == [False, False, True, False, False]
    lines = report.to_markdown(df, []).splitlines()
    table = [line.split(" | ")[0].strip("| ") for line in lines if line.startswith("| ") and "Method" not in line]
    assert table == ["U-Flow", "GLASS", notes.BEYOND_LABEL, "**patchcore**", "anomalib.models.Dfm", "padim"]
    assert report.to_latex(df).count(r"\midrule") == 2  # the header rule and the separator


def test_a_sweep_start_builds_each_generated_config_once(tiny_root, monkeypatch, capsys):
    """The selection is made once and shared by the override plan and the grid: each generated
    model's config is built once per modality, not once for each (it was twice per sweep start)."""
    built: list[tuple[str, str]] = []
    real = catalog.build_config
    monkeypatch.setattr(catalog, "build_config", lambda name, modality: built.append((name, modality)) or real(name, modality))
    argv = ["sweep", "--methods", "padim,glass", "--modalities", "LSM-1,ASM", "--profile", "smoke", "--dry-run",
            "--data-root", str(tiny_root), "--configs", str(CONFIGS), "--trainer.max_epochs", "1"]
    assert main(argv) == 0
    assert sorted(built) == [("padim", "ASM"), ("padim", "LSM-1"), ("padim", "LSM-2")]  # glass: configs/ folder
    assert "padim" in capsys.readouterr().out
