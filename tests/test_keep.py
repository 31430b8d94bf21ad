"""What a job keeps (issue 24): the slim checkpoint leaves out what the config rebuilds, and loading checks it;
the resolve cache and the report stamp that make a finished sweep's rerun cheap."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ispad_bench.models import keep
from ispad_bench.sweep.grid import Job
from ispad_bench.sweep.resolved import inputs_key


def _model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Linear(8, 1))


def test_slim_leaves_out_untrained_tensors_and_restore_checks_them():
    model = _model(0)
    built = keep.digests(model.state_dict())
    with torch.no_grad():
        model[1].weight.add_(1.0)  # "training" changed the head only
    slim, stats = keep.slim({"state_dict": model.state_dict(), "optimizer_states": [1], "hyper_parameters": {}}, built)
    assert set(slim["state_dict"]) == {"1.weight"} and set(slim[keep.REBUILT]) == {"0.weight", "0.bias", "1.bias"}
    assert "optimizer_states" not in slim and stats["dropped"] == ["optimizer_states"] and "hyper_parameters" in slim
    rebuilt = _model(0)  # the config and seed build the same frozen part
    keep.restore(rebuilt, slim)
    rebuilt.load_state_dict(slim["state_dict"])  # strict: every key is there again
    for k, v in model.state_dict().items():
        assert torch.equal(rebuilt.state_dict()[k], v)
    slim2, _ = keep.slim({"state_dict": model.state_dict()}, built)
    with pytest.raises(keep.KeptModelError, match="0.weight"):
        keep.restore(_model(1), slim2)  # another seed: refused, naming the tensor


def test_inputs_key_follows_config_args_and_refuses_own_classes(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  class_path: anomalib.models.Padim\n")
    job = Job("padim", "ASM", 0, cfg, ("--a=1",))
    first = inputs_key(job)
    assert first is not None and first == inputs_key(job)
    assert inputs_key(Job("padim", "ASM", 0, cfg, ("--a=2",))) != first
    cfg.write_text("model:\n  class_path: anomalib.models.Padim\n  init_args: {n: 2}\n")
    assert inputs_key(job) != first
    cfg.write_text("model:\n  class_path: my_pkg.models.MyModel\n")
    assert inputs_key(job) is None  # a user's own code is not hashed: always parsed


@pytest.mark.slow
def test_kept_model_retests_to_the_record_metrics(tiny_root, tmp_path):
    """`anomalib test --config <job>/config.yaml --ckpt_path <job>/model.ckpt` gives the record's metrics:
    GLASS (frozen random WRN-50 rebuilt from the seed, not stored) and PaDiM (memory bank kept)."""
    import json
    import re
    import subprocess
    import sys
    from pathlib import Path

    from ispad_bench.cli import main

    out = tmp_path / "runs"
    assert main(["sweep", "--methods", "glass,padim", "--modalities", "ASM", "--profile", "smoke",
                 "--data-root", str(tiny_root), "--out", str(out), "--no-report"]) == 0
    anomalib = Path(sys.executable).with_name("anomalib")
    for record_path in sorted(out.glob("*/asm/*/record.json")):
        record, job_dir = json.loads(record_path.read_text()), record_path.parent
        assert record["kept"]["tensors_rebuilt"] > 0 and not list((job_dir / "anomalib").rglob("*.ckpt"))
        run = subprocess.run([str(anomalib), "test", "--config", str(job_dir / "config.yaml"),
                              "--ckpt_path", str(job_dir / "model.ckpt")], capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        for metric in ("image_AUROC", "MCC"):
            found = re.search(rf"│\s*{metric}\s*│\s*(\S+)\s*│", run.stdout)
            assert found, run.stdout[-2000:]
            assert float(found.group(1)) == pytest.approx(record["metrics"][metric], abs=1e-6), (record["method"], metric)


def test_warm_start_loads_the_parents_weights_exactly_and_names_a_mismatch(tmp_path):
    import json

    from ispad_bench.models import MixedSupervised
    from ispad_bench.sweep import records

    assert (records.MODEL, records.RECORD) == (keep.MODEL_FILE, keep.RECORD_FILE)  # one name, two layers
    torch.manual_seed(0)
    parent = MixedSupervised(pre_trained=False, image_size=16)
    built = keep.digests(parent.state_dict())
    with torch.no_grad():  # "training" changed the classifier head only: the rest is left to the config
        parent.model.net.fc.weight.add_(0.5)
    job = tmp_path / "parent-job"
    job.mkdir()
    slim, _ = keep.slim({"state_dict": parent.state_dict()}, built)
    torch.save(slim, job / keep.MODEL_FILE)
    (job / keep.RECORD_FILE).write_text(json.dumps({"key": "abc123", "status": "ok"}))

    torch.manual_seed(0)  # the child is built from the same config and seed, then warm-started
    child = MixedSupervised(pre_trained=False, image_size=16, warm_start=str(job))
    assert any(not torch.equal(a, b) for a, b in zip(child.state_dict().values(), parent.state_dict().values()))
    info = keep.warm_start(child, child.warm_start)
    assert keep.digests(child.state_dict()) == keep.digests(parent.state_dict())  # exactly the parent's weights
    assert info["parent_key"] == "abc123" and len(info["sha256"]) == 64 and info["checkpoint"].endswith("model.ckpt")

    other = torch.nn.Linear(3, 2)  # another architecture: the first differing key is named
    with pytest.raises(keep.KeptModelError, match="model built here has no such tensor"):
        keep.warm_start(other, job)
    torch.save({"state_dict": {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}}, tmp_path / "wide.ckpt")
    with pytest.raises(keep.KeptModelError, match=r"'weight' has shape \(2, 4\) there and \(2, 3\)"):
        keep.warm_start(other, tmp_path / "wide.ckpt")
    torch.save({"state_dict": {**other.state_dict(), "extra": torch.zeros(1)}}, tmp_path / "extra.ckpt")
    with pytest.raises(keep.KeptModelError, match="'extra' is missing in the model built here"):
        keep.warm_start(other, tmp_path / "extra.ckpt")
    with pytest.raises(keep.KeptModelError, match="--keep none"):
        keep.warm_start(other, tmp_path)


def test_warm_start_through_a_fit_trains_from_the_parents_weights(tiny_root, tmp_path):
    """Through Lightning's fit (the hook the sweep uses): the weights at the first optimiser step are the
    parent's, to the bit, and the module reports what it loaded."""
    from lightning.pytorch import Callback, Trainer

    from ispad_bench.data import ISPADSupervised
    from ispad_bench.models import MixedSupervised

    torch.manual_seed(1)
    parent = MixedSupervised(pre_trained=False, image_size=16)
    with torch.no_grad():
        for p in parent.model.parameters():
            p.add_(0.01)  # "trained": differs everywhere from a fresh build
    job = tmp_path / "parent"
    job.mkdir()
    torch.save({"state_dict": parent.state_dict()}, job / keep.MODEL_FILE)
    expected = keep.digests(parent.model.state_dict())

    seen = []

    class FirstStep(Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if not seen:
                seen.append(keep.digests(pl_module.model.state_dict()))

    torch.manual_seed(2)
    child = MixedSupervised(pre_trained=False, image_size=16, warm_start=str(job), early_stopping_patience=0)
    assert keep.digests(child.model.state_dict()) != expected
    data = ISPADSupervised(root=tiny_root, modality="ASM", train_batch_size=2, eval_batch_size=2, num_workers=0,
                           steps_per_epoch=1, seed=0)
    trainer = Trainer(max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", callbacks=[FirstStep()])
    trainer.fit(child, datamodule=data)
    assert trainer.global_step == 1, trainer.global_step
    assert seen == [expected]
    assert child.warm_started["checkpoint"].endswith(keep.MODEL_FILE) and child.warm_started["parent_key"] is None
