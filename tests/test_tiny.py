"""The smoke profile runs any Anomalib model it has no entry for, at tiny size with random weights."""

from __future__ import annotations

import json

import pytest

from ispad_bench.sweep import tiny
from ispad_bench.sweep.profile import default_configs_dir, load_profile


def test_smoke_fills_in_methods_without_an_entry():
    smoke = load_profile("smoke", default_configs_dir())
    assert "padim" not in smoke.methods and smoke.tiny_for_others
    profile, methods = tiny.for_others(smoke, ("glass", "padim", "fastflow"))
    assert methods == ("glass", "padim", "fastflow")
    assert profile.methods["glass"] == smoke.methods["glass"]  # entries of its own stay as they are
    assert profile.methods["fastflow"] == smoke.methods["fastflow"]
    padim = profile.methods["padim"]
    assert padim["model.init_args.pre_trained"] is False and padim["model.init_args.backbone"] == "resnet18"
    assert "--model.init_args.pre_trained=false" in [a.lower() for a in profile.args_for("padim")]
    paper = load_profile("paper", default_configs_dir())  # no stand-ins in a profile that does not ask for them
    assert tiny.for_others(paper, ("padim",)) == (paper, ("padim",))


@pytest.mark.slow
def test_sweep_smoke_runs_a_model_without_profile_entry(tiny_root, tmp_path):
    from ispad_bench.cli import main

    out = tmp_path / "runs"
    rc = main(["sweep", "--methods", "padim", "--modalities", "ASM", "--profile", "smoke",
               "--data-root", str(tiny_root), "--out", str(out), "--no-report"])
    assert rc == 0
    (job_dir,) = [p.parent for p in out.glob("padim/asm/*/record.json")]
    record = json.loads((job_dir / "record.json").read_text())
    assert record["status"] == "ok" and 0 <= record["metrics"]["image_AUROC"] <= 1
    config = (job_dir / "config.yaml").read_text()
    assert "pre_trained: false" in config and "backbone: resnet18" in config
