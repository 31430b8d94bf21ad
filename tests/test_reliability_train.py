"""Plain ``anomalib train --config`` of a project config is reproducible (anomalib_cli.py), and every
model refuses out-of-range numeric arguments at construction, naming the argument."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "sweep_configs"

RUN_TWICE = """
import json, sys
from anomalib.cli import AnomalibCLI  # imported first, as under the `anomalib` console script
out = []
for i in range(2):
    cli = AnomalibCLI(["train", "--config", sys.argv[1], "--data.init_args.root", sys.argv[2],
                       "--data.init_args.modality", "LSM-1", "--default_root_dir", f"{sys.argv[3]}/run{i}",
                       "--seed_everything", "0"])
    out.append({k: float(v) for k, v in cli.engine.trainer.callback_metrics.items()})
print("METRICS " + json.dumps(out), flush=True)
# then a truncated training image read by a DataLoader worker: uncaught, as under the console script
AnomalibCLI(["train", "--config", sys.argv[1], "--data.init_args.root", sys.argv[4], "--data.init_args.modality",
             "LSM-1", "--default_root_dir", f"{sys.argv[3]}/bad", "--data.init_args.num_workers", "1"])
"""


@pytest.fixture
def global_rng_restored():
    """Seeding sets the global RNGs and PL_GLOBAL_SEED / PL_SEED_WORKERS: undo it for later tests."""
    import random

    import numpy as np
    import torch

    env = {k: os.environ.get(k) for k in ("PL_GLOBAL_SEED", "PL_SEED_WORKERS")}
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    yield
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])
    for key, value in env.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def test_cli_hook_seeds_before_instantiation_and_prints_input_errors_in_one_line(monkeypatch, capsys,
                                                                                  global_rng_restored):
    import sys as _sys

    import torch
    from anomalib.cli import cli as anomalib_cli
    from jsonargparse import Namespace

    from ispad_bench import anomalib_cli as hook
    from ispad_bench.data.images import ImageReadError

    monkeypatch.setattr(anomalib_cli.AnomalibCLI, "before_instantiate_classes", lambda self: None)
    monkeypatch.setattr(_sys, "excepthook", lambda *a: print("default hook", file=_sys.stderr))
    assert hook.install() and not hook.install()  # once
    cli = anomalib_cli.AnomalibCLI.__new__(anomalib_cli.AnomalibCLI)
    for seed in (5, 5, 7):
        cli.config = Namespace(subcommand="train", train=Namespace(seed_everything=seed))
        torch.manual_seed(123)
        cli.before_instantiate_classes()
        assert torch.initial_seed() == seed
    cli.config = Namespace(subcommand="train", train=Namespace(seed_everything=False))
    cli.before_instantiate_classes()
    assert torch.initial_seed() == 7  # False: no seeding, as in Lightning

    _sys.excepthook(ImageReadError, ImageReadError("a.png: unreadable image (x)"), None)
    _sys.excepthook(RuntimeError, RuntimeError("a bug"), None)
    # our error as one line of its own, then the bug handed on to the previous hook
    assert capsys.readouterr().err.splitlines()[-2:] == ["error: a.png: unreadable image (x)", "default hook"]


@pytest.mark.slow  # ~30 s: two real `anomalib train` runs in a fresh interpreter
def test_anomalib_train_twice_gives_identical_metrics_and_bad_input_is_one_line(tiny_root, tmp_path):
    # PaDiM with random ResNet18 weights and a random feature subset: every number depends on the seed
    # (unseeded, on main: pixel AUROC 0.592 vs 0.556, thresholds 4.82 vs 4.71)
    bad_root = tmp_path / "bad"
    shutil.copytree(tiny_root / "LSM-1", bad_root / "LSM-1")
    bad = bad_root / "LSM-1" / "train_reduced" / "good" / "002.png"
    bad.write_bytes(bad.read_bytes()[:1500])
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("ISPAD_TRACEBACK", None)
    proc = subprocess.run([sys.executable, "-c", RUN_TWICE, str(CONFIGS / "padim" / "default.yaml"), str(tiny_root),
                           str(tmp_path), str(bad_root)], capture_output=True, text=True, env=env, timeout=600)
    line = [t for t in proc.stdout.splitlines() if t.startswith("METRICS ")]
    assert line, proc.stderr[-3000:]
    first, second = json.loads(line[0][len("METRICS "):])
    assert first["pixel_AUROC"] > 0 and "threshold" in first
    assert first == second
    # was a traceback ending in "OSError: image file is truncated", the file unnamed
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {bad}: unreadable image (")


@pytest.mark.parametrize(("model", "arg", "value"), [
    ("GlassISPAD", "gaussian_noise_std", float("nan")),  # was: binary_cross_entropy deep in training
    ("GlassISPAD", "radius_quantile", 1.5),
    ("GlassISPAD", "limit", 0),
    ("Ddad", "beta_end", 1.0),
    ("Ddad", "lr", float("inf")),
    ("MixedSupervised", "momentum", -0.1),
    ("MixedSupervised", "lr", float("nan")),
    ("EfficientAdISPAD", "lr", 0.0),
    ("UflowISPAD", "flow_steps", 2.5),
    ("UflowISPAD", "affine_clamp", float("nan")),
])
def test_model_refuses_bad_numbers_naming_the_argument(model, arg, value):
    import ispad_bench.models as models

    with pytest.raises(ValueError, match=rf"^{model}: {arg} must be a (finite|whole) number in .*, got {value!r}$"):
        getattr(models, model)(**{arg: value}, pre_trained=False)


def test_config_instantiation_error_is_reduced_to_its_reason():
    from anomalib.utils.config import update_config

    from ispad_bench.anomalib_cli import config_errors
    from ispad_bench.sweep import resolve as grid

    config = Path(__file__).parents[1] / "configs" / "glass" / "lsm1.yaml"
    cfg = grid.parse(config, ["--model.init_args.pre_trained", "false", "--model.init_args.radius_quantile", "2"])
    with pytest.raises(ValueError) as info:  # jsonargparse wraps it with the whole config (40 lines)
        grid.train_parser().instantiate_classes(update_config(cfg))
    assert config_errors(info.value) == "GlassISPAD: radius_quantile must be a finite number in [0, 1], got 2.0"
    assert config_errors(ValueError("other")) is None
