"""The paper-scale rehearsal (benchmarks/paper_scale.py): paper configs at the paper's counts match the table."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "paper_scale.py"


def _rehearsal():
    spec = importlib.util.spec_from_file_location("paper_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_glass_row_at_the_paper_counts(tmp_path, one_thread, monkeypatch):
    """LSM-2's 401 reduced patches at batch 8: the official cap gives 50 batches, and every meta-epoch is evaluated."""
    monkeypatch.chdir(tmp_path)
    ps = _rehearsal()
    sizes = ps.split_sizes("LSM-2")
    assert {k: sizes[k] for k in ("train", "good", "area", "points")} == {"train": 401, "good": 382, "area": 63,
                                                                          "points": 33}  # Table 7
    ps.write_split(tmp_path / "data", "LSM-2")
    row = ps.rehearse("glass", "LSM-2", tmp_path / "data", tmp_path / "runs")
    assert row["mismatches"] == [], row
    assert row["measured"]["batches_per_epoch"] == [50] and row["measured"]["evaluations"] == 3
    assert row["tested_epoch"] == row["selected_epoch"] is not None


def test_supervised_stream_epoch_at_the_paper_count(tmp_path):
    """Table 7's LSM-2 stream (50,036 + 49,964 patches) gives the 3125 batches of 32 the rehearsal expects per epoch,
    and T_0 = 7813 steps puts the first warm restart 2.5 epochs in (3 epochs rehearsed)."""
    from ispad_bench.data import ISPADSupervised

    ps = _rehearsal()
    ps.write_split(tmp_path, "LSM-2", test={"good": 2, "area": 1, "points": 1})
    assert ps.write_stream(tmp_path, "LSM-2") == 100_000
    dm = ISPADSupervised(root=tmp_path, modality="LSM-2", num_workers=0)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == dm.train_data.batches_per_pass == ps.stream_batches(100_000) == 3125
    batch = next(iter(loader))
    assert batch["image"].shape[0] == 32 and batch["image"].float().std() > 0  # varied patches
    assert ps.shortening("supervised", ps.split_sizes("LSM-2")) == {"max_epochs": 3}
    assert ps.expected("supervised", ps.split_sizes("LSM-2"), {"max_epochs": 3})["lr_restarts"] == [7813]


@pytest.mark.slow
def test_every_rehearsed_paper_config_matches_the_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "rows.json"
    assert _rehearsal().main(["--json", str(out)]) == 0, out.read_text()
