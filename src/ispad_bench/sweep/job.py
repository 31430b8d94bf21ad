"""One attempt at a sweep job, in its own process: ``python -m ispad_bench.sweep.job <job_dir>/job.json``.

Builds model, datamodule and trainer exactly as ``anomalib train --config`` would (same parser),
seeds everything, runs ``Engine.fit`` then ``Engine.test`` with the config's evaluator, and writes
``record.json`` (metrics, timings, provenance) plus ``predictions.npz`` (per-image scores and a few
anomaly maps). Any exception ends in a failure record with the traceback; exit code 0 = success.
"""

from __future__ import annotations

import fcntl
import math
import os
import platform
import shutil
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ispad_bench.errors import one_line
from ispad_bench.files import read_json, utc_now, write_json, write_npz
from ispad_bench.models import keep
from ispad_bench.sweep import records


def _error_kind(err: BaseException) -> str:
    name = type(err).__name__
    text = str(err).lower()
    if "OutOfMemory" in name or isinstance(err, MemoryError) or "out of memory" in text or "can't allocate memory" in text:
        return "oom"
    if isinstance(err, FloatingPointError):
        return "nan"
    return "exception"


def _real_defects(datamodule) -> Any:
    """The real defects a supervised datamodule injected (ids, count, fraction), if it records them."""
    record = getattr(datamodule, "real_defect_record", None)
    if callable(record):
        return record()
    for name in ("real_defects_used", "real_defect_ids", "real_defects"):
        value = getattr(datamodule, name, None)
        if value is not None and not callable(value):
            return value
    return None


def _to_dict(ns) -> dict:
    if hasattr(ns, "keys"):  # a jsonargparse Namespace: keys() is its API
        return {k: ns[k] for k in ns.keys()}  # noqa: SIM118
    return dict(ns)


def execute(spec: dict, state: dict) -> dict:
    """Fit and test one job; returns the record fields of a successful run."""
    import lightning
    import numpy as np
    from anomalib.engine import Engine
    from anomalib.utils.config import update_config

    from ispad_bench.data.fingerprint import describe as describe_data
    from ispad_bench.sweep import resolve
    from ispad_bench.sweep.callbacks import FiniteLossGuard, FitTimer, PredictionCollector, TestTimer
    from ispad_bench.sweep.procedure import EpochTracker, describe
    from ispad_bench.sweep.profile import Row

    job_dir = Path(spec["job_dir"])
    state["phase"] = "setup"
    lightning.seed_everything(spec["seed"], workers=True)
    cfg = resolve.parse(spec["config_file"], [*spec["args"], f"--default_root_dir={job_dir / records.ANOMALIB}"])
    config = resolve.config_dict(cfg)
    row = Row.parse(spec["row"]) if spec["row"] else None
    key = resolve.job_key(spec["method"], spec["modality"], spec["seed"], row, config)
    parser = resolve.train_parser()
    init = parser.instantiate_classes(update_config(cfg))
    model, datamodule = init.model, init.data
    built = keep.digests(model.state_dict())  # what the config and seed rebuild: the kept model leaves it out
    if not spec.get("save_images", False) and hasattr(model, "visualizer"):
        model.visualizer = None  # the sweep keeps its own maps (predictions.npz); --save-images keeps Anomalib's
    trainer_kwargs = _to_dict(init.trainer)
    user_callbacks = trainer_kwargs.pop("callbacks", None) or []
    if not isinstance(user_callbacks, list):
        user_callbacks = [user_callbacks]
    timer, collector, tracker = TestTimer(), PredictionCollector(spec.get("maps_per_group", 2)), EpochTracker()
    fit_timer = FitTimer()
    engine = Engine(callbacks=[*user_callbacks, FiniteLossGuard(), fit_timer, timer, collector, tracker], **trainer_kwargs)

    state["phase"] = "fit"
    t0, c0 = time.perf_counter(), time.process_time()  # CPU seconds: this process, all its threads
    engine.fit(model, datamodule=datamodule)
    train_s, train_cpu_s = time.perf_counter() - t0, time.process_time() - c0

    state["phase"] = "test"
    c0 = time.process_time()
    ckpt = None
    checkpoint = engine.checkpoint_callback
    if checkpoint is not None and getattr(checkpoint, "monitor", None) and checkpoint.best_model_path:
        ckpt = checkpoint.best_model_path  # a config that monitors a metric keeps its best model
    results = engine.test(model, datamodule=datamodule, ckpt_path=ckpt)
    test_cpu_s = time.process_time() - c0
    kept = keep_model(engine.trainer, job_dir, built, spec.get("keep", "model"))  # the tested weights are in `model` now
    metrics = {k: float(v) for k, v in (results[0] if results else {}).items()}
    exact = getattr(getattr(model, "evaluator", None), "results", None)
    if exact:  # ISPADEvaluator: the same numbers it logged, before Lightning's float32 logging
        from ispad_bench.metrics.anomalib import DISPLAY_NAMES

        metrics.update({DISPLAY_NAMES.get(k, k): float(v) for k, v in exact.items()})

    arrays = collector.arrays()
    if len(arrays["scores"]) and not np.isfinite(arrays["scores"]).all():
        raise FloatingPointError(f"{int((~np.isfinite(arrays['scores'])).sum())} non-finite test image scores")
    write_npz(job_dir / records.PREDICTIONS, **arrays)
    uncertainty = save_bootstrap(job_dir, getattr(getattr(model, "evaluator", None), "bootstrap", None))
    return {
        "key_in_job": key,
        "config": config,
        "metrics": metrics,
        "checks": _checks(metrics, arrays),
        "timing": {"train_s": train_s, "train_cpu_s": train_cpu_s, "test_cpu_s": test_cpu_s, **timer.summary(),
                   **fit_timer.summary()},
        "tested_checkpoint": ckpt,
        "procedure": describe(spec, config, model, tracker, ckpt),  # reading, selection, tested epoch, epochs
        "real_defects": _real_defects(datamodule),
        "warm_start": getattr(model, "warm_started", None),  # parent key + checkpoint sha256 (models/keep.py)
        "uncertainty": uncertainty,
        "contamination": getattr(datamodule, "contamination_record", None),
        "kept": kept,
        "artifacts": {"predictions": records.PREDICTIONS, "log": records.LOG, "anomalib": records.ANOMALIB,
                      **({"bootstrap": records.BOOTSTRAP} if uncertainty else {}),
                      **({"model": records.MODEL} if kept["file"] else {})},
        "data": describe_data(datamodule),  # root, file-list fingerprint, counts, ISP-AD or not (data/fingerprint.py)
    }


def keep_model(trainer, job_dir: Path, built: dict[str, str], choice: str) -> dict:
    """Write ``model.ckpt`` (``--keep model``/``all``: the tested model, :func:`ispad_bench.models.keep.slim`)
    and remove Anomalib's own checkpoints unless ``all``; returns the record's ``kept`` entry (measured sizes)."""
    import io

    import torch

    from ispad_bench.files import atomic_write_bytes

    out: dict[str, Any] = {"keep": choice, "file": None, "bytes": 0}
    if choice in ("model", "all"):
        scratch = job_dir / f".{records.MODEL}.full"
        trainer.save_checkpoint(scratch, weights_only=True)  # Lightning's format; the model now holds the tested weights
        full = torch.load(scratch, map_location="cpu", weights_only=False)
        scratch.unlink()
        slim, stats = keep.slim(full, built)
        buffer = io.BytesIO()
        torch.save(slim, buffer)
        atomic_write_bytes(job_dir / records.MODEL, buffer.getvalue())
        out.update(file=records.MODEL, bytes=len(buffer.getvalue()), **stats)
    if choice != "all":
        removed = [p for p in (job_dir / records.ANOMALIB).rglob("*.ckpt") if p.is_file()]
        out["removed_bytes"] = sum(p.stat().st_size for p in removed)
        for p in removed:
            p.unlink()
    return out


def save_bootstrap(job_dir: Path, boot) -> dict | None:
    """Write ``bootstrap.npz`` (the evaluator's replicates under the engine's metric names) and return
    the record's ``uncertainty`` entry (n, seed, level, fingerprint, intervals), or ``None``."""
    if boot is None:
        return None
    import numpy as np

    from ispad_bench.metrics.anomalib import DISPLAY_NAMES

    reps = {DISPLAY_NAMES.get(k, k): np.asarray(v, np.float32) for k, v in boot.replicates.items()}
    write_npz(Path(job_dir) / records.BOOTSTRAP, **reps)
    summary = boot.summary()
    summary["intervals"] = {DISPLAY_NAMES.get(k, k): v for k, v in summary["intervals"].items()}
    return summary


def _checks(metrics: dict, arrays: dict) -> dict:
    """Image AUROC recomputed from the stored raw scores next to the one the evaluator logged."""
    out: dict[str, Any] = {"n_images": len(arrays["scores"])}
    try:
        from ispad_bench.metrics import evaluate

        ours = evaluate(arrays["scores"], arrays["labels"])
    except Exception as err:  # noqa: BLE001 (a check must never fail the job)
        return {**out, "error": f"{type(err).__name__}: {err}"}
    for name, logged in (("image_auroc", "image_AUROC"), ("mcc", "MCC")):
        if name == "mcc" and metrics.get("threshold") is not None and math.isnan(metrics["threshold"]):
            continue  # threshold: cross_fit (two thresholds): the oracle MCC is not what was logged
        if name in ours and logged in metrics:
            out[f"{name}_from_scores"] = float(ours[name])
            out[f"{name}_matches"] = abs(float(ours[name]) - metrics[logged]) < 1e-9
    return out


# ------------------------------------------------------------------------------ provenance of a record
def versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("ispad-bench", "anomalib", "torch", "torchvision", "lightning", "numpy", "timm"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = None
    return out


def git_revision() -> dict[str, Any]:
    """Commit and dirty flag of the checkout this package runs from (``None`` outside git)."""
    repo = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(dirty)}


def device_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
    if torch.cuda.is_available():
        info["type"] = "cuda"
        info["name"] = torch.cuda.get_device_name(0)
    else:
        info["type"] = "cpu"
        info["name"] = platform.processor() or platform.machine()
    return info


def run(spec_path: Path) -> int:
    """Run the job described by ``spec_path``; always leaves a record for this attempt."""
    spec = read_json(spec_path)
    if spec is None:
        print(f"cannot read job spec {spec_path}", file=sys.stderr)
        return 2
    job_dir = Path(spec["job_dir"])
    job_dir.mkdir(parents=True, exist_ok=True)
    lock = open(job_dir / records.LOCK, "a")  # noqa: SIM115 (held for the process lifetime)
    fcntl.flock(lock, fcntl.LOCK_EX)  # wait for a stray earlier attempt, if any, to end
    lock.truncate(0)
    lock.write(f"{os.getpid()}\n{spec.get('attempt_id')}\n")  # who runs which attempt (operators, kill tests, resume)
    lock.flush()
    # outputs of an earlier, unfinished attempt (Anomalib's v0, v1, ... folders): this attempt starts clean
    shutil.rmtree(job_dir / records.ANOMALIB, ignore_errors=True)
    base = {k: spec[k] for k in ("key", "method", "modality", "seed", "row", "profile", "config_file", "args")}
    base.update(schema=records.SCHEMA, attempt=spec.get("attempt", 1), attempt_id=spec["attempt_id"], pid=os.getpid())
    if spec.get("retry_of"):  # a packed attempt ran out of memory; this one runs alone (executors.py)
        base["retry_of"] = spec["retry_of"]
    base.update(started=utc_now(), versions=versions(), git=git_revision())
    state = {"phase": "start"}
    t0 = time.perf_counter()
    try:
        base["device"] = device_info()
        result = execute(spec, state)
        record = {**base, "status": "ok", **result}
    except BaseException as err:  # every failure becomes a record
        if isinstance(err, KeyboardInterrupt):
            raise
        traceback.print_exc()
        record = {
            **base,
            "status": "failed",
            "error": {
                "kind": _error_kind(err),
                "type": type(err).__name__,
                "message": one_line(err)[:4000],  # a DataLoader worker's error unwrapped
                "phase": state["phase"],
                "traceback": traceback.format_exc()[-20000:],
            },
        }
    record["finished"] = utc_now()
    record["total_s"] = time.perf_counter() - t0
    record["total_cpu_s"] = time.process_time()  # since the job process started (a fork starts at 0)
    write_json(job_dir / records.RECORD, record)
    return 0 if record["status"] == "ok" else 1


def main(argv: list[str] | None = None) -> int:
    from ispad_bench.quiet import quiet_known_warnings

    quiet_known_warnings()  # third-party deprecation notices only (quiet.py)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ispad_bench.sweep.job <job_dir>/job.json", file=sys.stderr)
        return 2
    return run(Path(argv[0]))


if __name__ == "__main__":
    sys.exit(main())
