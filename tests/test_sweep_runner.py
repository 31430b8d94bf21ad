"""Real sweep jobs (PaDiM / FastFlow, ResNet18 random weights, offline, on the tiny ISP-AD tree):
records, failure isolation, resume, SIGKILL at several moments, and the Ray executor."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ispad_bench.cli import main
from ispad_bench import files
from ispad_bench.sweep import records
from ispad_bench.sweep.callbacks import FiniteLossGuard
from ispad_bench.sweep.job import _error_kind

CONFIGS = Path(__file__).parent / "sweep_configs"


def _records(out: Path) -> dict[str, dict]:
    """modality -> record (asserting one record per job folder and per modality)."""
    found = {}
    for path in sorted(out.rglob(records.RECORD)):
        rec = json.loads(path.read_text())  # every record on disk is complete JSON
        assert rec["modality"] not in found, f"duplicate record for {rec['modality']}: {path}"
        found[rec["modality"]] = {**rec, "_path": path}
    return found


def test_loss_guard_and_error_kinds():
    guard = FiniteLossGuard()

    class T:
        current_epoch, global_step = 2, 7

    guard.on_train_batch_end(T(), None, {"loss": torch.tensor(1.0)}, None, 0)
    guard.on_train_batch_end(T(), None, None, None, 0)  # models without a loss (PaDiM)
    with pytest.raises(FloatingPointError, match="epoch 2, step 7"):
        guard.on_train_batch_end(T(), None, {"loss": torch.tensor(float("nan"))}, None, 0)
    assert _error_kind(FloatingPointError("x")) == "nan"
    assert _error_kind(torch.cuda.OutOfMemoryError("CUDA out of memory")) == "oom"
    assert _error_kind(RuntimeError("DefaultCPUAllocator: can't allocate memory: out of memory")) == "oom"
    assert _error_kind(ValueError("bad")) == "exception"


def test_atomic_write_never_leaves_partial_file(tmp_path):
    target = tmp_path / "record.json"
    files.write_json(target, {"a": 1, "nan": float("nan")})
    assert json.loads(target.read_text()) == {"a": 1, "nan": None}
    umask = os.umask(0o022)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask  # readable like any file, not mkstemp's 0600

    class Boom:
        def __str__(self):
            raise RuntimeError("serialisation failed")

    with pytest.raises(RuntimeError):
        files.write_json(target, {"a": Boom()})
    assert json.loads(target.read_text()) == {"a": 1, "nan": None}  # previous complete file kept
    assert not list(tmp_path.glob(".*.tmp"))


def test_failure_record_then_resume_reruns_only_the_failed_job(tiny_root, tmp_path):
    data, out = tmp_path / "data", tmp_path / "runs"
    shutil.copytree(tiny_root / "LSM-1", data / "LSM-1")  # ASM missing: that job must fail
    argv = ["sweep", "--configs", str(CONFIGS), "--methods", "padim", "--modalities", "LSM-1,ASM",
            "--profile", "smoke", "--data-root", str(data), "--out", str(out)]
    assert main(argv + ["--no-report"]) == 1  # one job failed -> nonzero exit, the other still ran

    recs = _records(out)
    ok, bad = recs["LSM-1"], recs["ASM"]
    assert ok["status"] == "ok" and bad["status"] == "failed"
    assert bad["error"]["kind"] == "exception" and "ASM" in bad["error"]["traceback"]
    m = ok["metrics"]
    for key in ("image_AUROC", "MCC", "recall", "precision", "FPR", "TN", "TP", "FN", "FP", "threshold",
                "pixel_AUROC", "PRO", "AUPRO", "recall_points", "recall_area"):
        assert isinstance(m[key], float), key
    assert m["TN"] + m["FP"] == 3 and m["TP"] + m["FN"] == 3  # tiny tree: 3 good, 3 defective test images
    assert ok["checks"]["image_auroc_matches"] and ok["checks"]["mcc_matches"]
    assert ok["seed"] == 0 and ok["config"]["data"]["init_args"]["modality"] == "LSM-1"
    assert ok["timing"]["train_s"] > 0 and ok["timing"]["test_images"] == 6 and ok["timing"]["test_images_per_s"] > 0
    fit = ok["timing"]  # the fit as it ran: its batches, their step and loader-wait time
    assert fit["fit_batches"] >= 1 and fit["fit_step_s"] > 0 and 0 < fit["fit_data_wait_share"] < 1
    assert fit["peak_gpu_bytes"] is None
    assert ok["versions"]["anomalib"].startswith("2.7") and ok["versions"]["torch"]
    assert "commit" in ok["git"] and ok["device"]["type"] == "cpu"
    with np.load(ok["_path"].parent / records.PREDICTIONS) as p:
        assert len(p["scores"]) == 6 and set(p["labels"].tolist()) == {0, 1}
        assert len(p["map_paths"]) == 5  # 2 good, 2 pinhole (points), 1 squeegee_stroke (area)
        assert p["map_0"].shape == p["mask_0"].shape and p["image_0"].dtype == np.uint8
    lo, hi = ok["uncertainty"]["intervals"]["MCC"]  # the bootstrap ran inside the job
    assert lo <= m["MCC"] <= hi and ok["uncertainty"]["n"] == 1000 and "MCC_crossfit" in m
    with np.load(ok["_path"].parent / ok["artifacts"]["bootstrap"]) as b:
        assert b["MCC"].shape == (1000,) and b["AUPRO"].dtype == np.float32
    kept, job_dir = ok["kept"], ok["_path"].parent  # --keep model (default): the tested weights, nothing more
    assert kept["keep"] == "model" and (job_dir / records.MODEL).stat().st_size == kept["bytes"]
    assert kept["tensors_rebuilt"] > 0 and kept["bytes"] < kept["kept_tensor_bytes"] + 100_000
    assert not list(job_dir.rglob("*.ckpt"))[1:] and kept["removed_bytes"] > kept["bytes"]
    finished = ok["_path"].stat().st_mtime_ns

    shutil.copytree(tiny_root / "ASM", data / "ASM")  # fix the cause; same command resumes
    assert main(argv) == 0
    recs = _records(out)
    assert recs["LSM-1"]["_path"].stat().st_mtime_ns == finished  # finished job skipped
    assert recs["ASM"]["status"] == "ok" and recs["ASM"]["attempt"] == 2 and recs["ASM"]["key"] == bad["key"]
    assert (out / "tables.md").is_file() and (out / "figures" / "overlay_asm.png").is_file()
    assert "padim" in (out / "tables.md").read_text() and (out / "report.html").is_file()


def _wait(cond, proc, timeout=600.0, what=""):
    t0 = time.time()
    while not cond():
        assert proc.poll() is None, f"sweep ended (rc {proc.returncode}) before: {what}"
        assert time.time() - t0 < timeout, f"timed out waiting for: {what}"
        time.sleep(0.2)


def _lock_free(job_dir: Path, timeout: float = 30.0) -> bool:
    """True once no process holds the job's lock (i.e. no job of a killed sweep lives on)."""
    t0 = time.time()
    while time.time() - t0 < timeout:
        with open(job_dir / ".lock", "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                time.sleep(0.2)
    return False


def _job_pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.mark.slow  # ~105 s (four sweep starts); test_failure_record_then_resume_reruns_only_the_failed_job stays in the default run
def test_sigkill_at_several_moments_then_resume(tiny_root, tmp_path):
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ispad_bench.cli", "sweep", "--configs", str(CONFIGS), "--methods", "fastflow",
           "--modalities", "LSM-1,LSM-2", "--seeds", "0", "--data-root", str(tiny_root), "--out", str(out),
           "--no-report"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def start():
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def job_dirs():
        return sorted(p.parent for p in out.rglob(records.SPEC))

    def started_fit(d):
        return (d / "anomalib").is_dir()

    def check_consistent():
        for path in out.rglob(records.RECORD):
            rec = json.loads(path.read_text())  # complete JSON, never half-written
            assert rec["status"] in ("ok", "failed") and path.parent.name.endswith(rec["key"][:10])
            if rec["status"] == "ok":
                assert "MCC" in rec["metrics"]

    # 1) kill the sweep right after the first job was launched (job still starting up)
    proc = start()
    _wait(lambda: job_dirs() and _job_pid(job_dirs()[0]), proc, what="first job launched")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _lock_free(job_dirs()[0]), "job outlived the killed sweep"
    check_consistent()

    # 2) kill the sweep while the first job is training (a new attempt: a new job pid)
    first = job_dirs()[0]
    old = _job_pid(first)
    proc = start()
    _wait(lambda: _job_pid(first) not in (None, old), proc, what="second attempt running")
    _wait(lambda: started_fit(first), proc, what="fit started")
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert _lock_free(first)
    check_consistent()

    # 3) the job process itself dies (as under the OOM killer): failure record, the sweep goes on;
    #    then kill the sweep in the middle of the second job
    old = _job_pid(first)
    proc = start()
    _wait(lambda: _job_pid(first) not in (None, old), proc, what="third attempt running")
    time.sleep(2.0)
    os.kill(_job_pid(first), signal.SIGKILL)
    _wait(lambda: (first / records.RECORD).is_file() and len(job_dirs()) == 2 and _job_pid(job_dirs()[1]),
          proc, what="second job running")
    failed = json.loads((first / records.RECORD).read_text())
    assert failed["status"] == "failed" and failed["error"]["kind"] == "oom" and "signal 9" in failed["error"]["message"]
    second = job_dirs()[1]
    _wait(lambda: started_fit(second), proc, what="second job training")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert all(_lock_free(d) for d in job_dirs())
    check_consistent()

    # 4) resume to the end
    proc = start()
    assert proc.wait(timeout=900) == 0
    recs = _records(out)
    assert set(recs) == {"LSM-1", "LSM-2"} and all(r["status"] == "ok" for r in recs.values())
    assert len({r["key"] for r in recs.values()}) == 2 and len(job_dirs()) == 2
    assert recs[json.loads((first / records.RECORD).read_text())["modality"]]["attempt"] >= 2
    assert not list(out.rglob(".*.tmp"))


@pytest.mark.slow  # ~40 s, mostly starting Ray
def test_ray_executor_runs_two_jobs(tiny_root, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install 'ispad-bench[ray]')")
    out = tmp_path / "runs"
    try:
        rc = main(["sweep", "--configs", str(CONFIGS), "--methods", "padim", "--modalities", "LSM-1,ASM",
                   "--profile", "smoke", "--data-root", str(tiny_root), "--out", str(out), "--executor", "ray",
                   "--cpus-per-job", "1", "--no-report"])
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert rc == 0
    recs = _records(out)
    assert set(recs) == {"LSM-1", "ASM"} and all(r["status"] == "ok" and "MCC" in r["metrics"] for r in recs.values())
