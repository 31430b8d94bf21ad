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
