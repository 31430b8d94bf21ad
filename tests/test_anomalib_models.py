"""Every runnable Anomalib image model end to end on the generated set at tiny sizes (`-m slow`).

Random weights (``pre_trained: false`` or :mod:`ispad_bench.models.random_init`), 64 px, one epoch of two
batches, the smoke profile's trainer. A model is either run (and must succeed) or blocked because it loads
a file directly that no random stand-in can replace (named in the reason); none may fail.
"""

from __future__ import annotations

import pytest


@pytest.mark.slow
def test_every_runnable_anomalib_model_runs(synth_root, tmp_path, monkeypatch):
    from ispad_bench.sweep import catalog
    from ispad_bench.testing import run_all

    monkeypatch.setenv("ISPAD_GENERATED_DIR", str(tmp_path / "generated"))
    models = catalog.runnable_anomalib_models()
    results = run_all(models, synth_root, tmp_path / "runs", timeout=900)
    failed = {r["model"]: r["error"] for r in results if r["status"] == "failed"}
    assert not failed, failed
    blocked = {r["model"]: r["reason"] for r in results if r["status"] == "blocked"}
    assert all("weights fetch" in reason for reason in blocked.values())
    ran = [r for r in results if r["status"] == "ok"]
    assert len(ran) >= len(models) - len(blocked) and all(r["test_images_per_s"] > 0 for r in ran)
