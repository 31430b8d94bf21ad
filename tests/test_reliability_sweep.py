"""Hostile-but-fair use of the sweep (docs/reliability.md): an empty report, two sweeps into one
folder, a stale lock, a killed fork server and a job killed together with its sweep."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ispad_bench.cli import main
from ispad_bench import files
from ispad_bench.sweep import records
from ispad_bench.sweep.lock import SweepLock, SweepLocked

CONFIGS = Path(__file__).parent / "sweep_configs"
ENV = {**os.environ, "PYTHONWARNINGS": "ignore"}


def _wait(cond, proc, timeout=300.0, what=""):
    t0 = time.time()
    while not cond():
        assert proc is None or proc.poll() is None, f"sweep ended (rc {proc.returncode}) before: {what}"
        assert time.time() - t0 < timeout, f"timed out waiting for: {what}"
        time.sleep(0.1)


def _job_pid(job_dir: Path) -> int | None:
    try:
        return int((job_dir / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _sweep_argv(tiny_root, out, method="padim"):
    return ["sweep", "--configs", str(CONFIGS), "--methods", method, "--modalities", "LSM-1", "--seeds", "0",
            "--data-root", str(tiny_root), "--out", str(out), "--no-report"]


def _start(argv):
    return subprocess.Popen([sys.executable, "-m", "ispad_bench.cli", *argv], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_report_of_empty_folder_and_of_failed_jobs(tiny_root, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 1  # was: AttributeError 'DataFrame' object has no attribute 'table'
    assert f"no successful job in {empty} (no job records)" in capsys.readouterr().err

    data, out = tmp_path / "data", tmp_path / "runs"  # every job fails: a truncated training image
    shutil.copytree(tiny_root / "LSM-1", data / "LSM-1")
    bad = data / "LSM-1" / "train_reduced" / "good" / "001.png"
    bad.write_bytes(bad.read_bytes()[:2000])
    # read in a DataLoader worker, whose re-raised error the record unwraps to the one line
    assert main([*_sweep_argv(data, out)[:-1], "--data.init_args.num_workers", "1"]) == 1  # not a crash
    err = capsys.readouterr().err
    assert "no successful job in" in err and "1 failed" in err and "log.txt" in err
    assert main(["report", str(out)]) == 1
    assert "padim LSM-1 seed 0: exception" in capsys.readouterr().err
    record = json.loads(next(out.rglob(records.RECORD)).read_text())
    assert record["error"]["message"].startswith(f"{bad}: unreadable image (")  # was: image file is truncated
    assert f"{bad}: unreadable image" in next(out.rglob(records.LOG)).read_text()  # the job's terminal


def test_sweep_lock_refuses_waits_and_takes_over_a_stale_one(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from ispad_bench.sweep.lock import SweepLock; "
         "l = SweepLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(float(sys.argv[2])); l.release()",
         str(tmp_path), "3"], stdout=subprocess.PIPE, text=True, env=ENV)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(SweepLocked, match=rf"in use by another sweep \(pid {holder.pid} on "):
        SweepLock(tmp_path).acquire()
    waited = []
    t0 = time.time()
    lock = SweepLock(tmp_path, wait=True, poll_s=0.05).acquire(on_wait=waited.append)
    assert time.time() - t0 > 0.5 and waited and f"pid {holder.pid}" in waited[0]
    assert lock.note is None  # the holder released cleanly
    lock.release()
    holder.wait()

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a pid that no longer runs, as left by a SIGKILLed sweep
    (tmp_path / ".sweep.lock").write_text(json.dumps({"pid": dead.pid, "host": "h", "started": "t"}))
    with SweepLock(tmp_path) as lock:
        assert f"pid {dead.pid} on h" in lock.note and "took over" in lock.note
        assert json.loads((tmp_path / ".sweep.lock").read_text())["pid"] == os.getpid()


def test_two_sweeps_into_one_folder_run_each_job_once(tiny_root, tmp_path, capsys):
    out = tmp_path / "runs"
    argv = _sweep_argv(tiny_root, out)
    first = _start(argv)
    _wait(lambda: any(_job_pid(p.parent) for p in out.rglob(records.SPEC)), first, what="first job running")
    spec_path = next(out.rglob(records.SPEC))
    spec = json.loads(spec_path.read_text())

    t0 = time.time()
    assert main(argv) == 3  # refused at once, naming the holder
    assert time.time() - t0 < 30
    assert f"in use by another sweep (pid {first.pid} on " in capsys.readouterr().err
    assert json.loads(spec_path.read_text())["attempt_id"] == spec["attempt_id"]  # nothing overwritten

    assert main([*argv, "--wait"]) == 0  # waits for the first, then finds its job finished
    err = capsys.readouterr().err
    assert "waiting for the sweep" in err and "1 already finished, 0 to run" in err
    assert first.wait(timeout=300) == 0
    record = json.loads((spec_path.parent / records.RECORD).read_text())
    assert record["status"] == "ok" and record["attempt"] == 1 and record["attempt_id"] == spec["attempt_id"]
    assert not (out / ".sweep.lock").read_text()  # released cleanly


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.mark.slow  # ~2 min: three sweeps, one full FastFlow job
@pytest.mark.skipif(sys.platform != "linux", reason="fork server and /proc are Linux")
def test_killed_fork_server_and_killed_sweep_are_recorded_and_numbered(tiny_root, tmp_path):
    out = tmp_path / "runs"
    argv = _sweep_argv(tiny_root, out, "fastflow")

    def job_dir():
        specs = list(out.rglob(records.SPEC))
        return specs[0].parent if specs else None

    # 1) the fork server dies (OOM killer, operator): the job goes with it -> "killed", not "crash (255)"
    proc = _start(argv)
    _wait(lambda: job_dir() and _job_pid(job_dir()) and (job_dir() / "anomalib").is_dir(), proc, what="job fitting")
    first_pid = _job_pid(job_dir())
    os.kill(_ppid(first_pid), signal.SIGKILL)
    assert proc.wait(timeout=120) == 1
    rec = json.loads((job_dir() / records.RECORD).read_text())
    assert rec["attempt"] == 1 and rec["error"]["kind"] == "killed" and "fork server" in rec["error"]["message"]

    # 2) the sweep is SIGKILLed while its job trains: no record from the job itself ...
    proc = _start(argv)
    _wait(lambda: _job_pid(job_dir()) not in (None, first_pid) and (job_dir() / "anomalib").is_dir(), proc,
          what="second attempt fitting")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert json.loads((job_dir() / records.RECORD).read_text())["attempt"] == 1

    # 3) ... so the next sweep records the interrupted attempt 2 and runs attempt 3 in a clean folder
    assert _start(argv).wait(timeout=600) == 0
    rec = json.loads((job_dir() / records.RECORD).read_text())
    assert rec["status"] == "ok" and rec["attempt"] == 3
    versions = sorted(p.name for p in (job_dir() / "anomalib").rglob("v*") if p.is_dir())
    assert versions == ["v0"], versions  # no v0/v1/v2 left by the killed attempts


def test_interrupted_attempt_is_recorded_once_and_only_if_it_started(tmp_path):
    import fcntl

    from ispad_bench.sweep.runner import _record_interrupted

    spec = {"key": "k", "method": "padim", "modality": "LSM-1", "seed": 0, "row": None, "profile": "smoke",
            "config_file": "c.yaml", "args": [], "job_dir": str(tmp_path), "attempt": 2, "attempt_id": "a2"}
    files.write_json(tmp_path / records.SPEC, spec)
    assert _record_interrupted(tmp_path, "k") is None  # spec written, job never started (no lock)
    (tmp_path / ".lock").write_text("123\na1\n")
    assert _record_interrupted(tmp_path, "k") is None  # the lock names an earlier attempt
    (tmp_path / ".lock").write_text("124\na2\n")
    with open(tmp_path / ".lock", "a") as held:  # the attempt still runs (flock: per open file, so this blocks)
        fcntl.flock(held, fcntl.LOCK_EX)
        assert _record_interrupted(tmp_path, "k") is None
    assert _record_interrupted(tmp_path, "other-key") is None
    record = _record_interrupted(tmp_path, "k")
    assert record["attempt"] == 2 and record["status"] == "failed" and record["error"]["kind"] == "killed"
    assert json.loads((tmp_path / records.RECORD).read_text())["attempt_id"] == "a2"
    assert _record_interrupted(tmp_path, "k") is None  # recorded once


def test_out_that_is_a_file_or_under_a_file_is_one_line(tiny_root, tmp_path, capsys):
    """Was a 50-line traceback; now one line before any job (read-only folders: root ignores modes, not tested)."""
    target = tmp_path / "a-file"
    target.write_text("x")
    for out, why in ((target, "is a file, not a folder"), (target / "sub", "is not writable (Not a directory)")):
        assert main(_sweep_argv(tiny_root, out)) == 2
        assert f"sweep: --out {out} {why}" in " ".join(capsys.readouterr().err.split())


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs (needs mount rights: root with CAP_SYS_ADMIN); grown to 512 MiB by calling it."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here (needs root with mount rights)")

    def grow():
        subprocess.run(["mount", "-o", "remount,size=512m", str(disk)], check=True)

    yield disk, grow
    subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow  # ~40 s: two sweeps on a small tmpfs
def test_full_disk_stops_the_sweep_cleanly_and_it_resumes(tiny_root, small_disk, capsys):
    """Was: the whole sweep aborted with a traceback while writing a failure record. Now: one line, complete
    records only, no temporary files; after space is freed the rerun finishes the jobs."""
    disk, grow = small_disk
    out = disk / "runs"
    argv = _sweep_argv(tiny_root, out)
    assert main(argv) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert f"sweep: no space left on the disk holding {out}" in err and "rerun to resume" in err
    for path in out.rglob(records.RECORD):
        assert json.loads(path.read_text())["status"] in ("ok", "failed")  # complete JSON only
    assert not [p for p in out.rglob("*.tmp")]
    grow()
    assert main(argv) == 0
    assert all(json.loads(p.read_text())["status"] == "ok" for p in out.rglob(records.RECORD))


@pytest.mark.slow  # ~3 min: four sweeps, each with a fresh fork server after the kill
@pytest.mark.skipif(sys.platform != "linux", reason="fork server and /proc are Linux")
def test_job_and_fork_server_killed_in_either_order_are_recorded_right(tiny_root, tmp_path):
    """Kill a job and its fork server in both orders with small random delays: the job that died is `killed`,
    never `crash (255)`; the sweep does not crash on the next launch (ConnectionRefusedError) and the next,
    untouched job runs on a fresh server and succeeds."""
    import random

    rng = random.Random(0)
    for i in range(4):
        out = tmp_path / f"runs{i}"
        argv = [*_sweep_argv(tiny_root, out), "--modalities", "LSM-1,LSM-2"]
        proc = subprocess.Popen([sys.executable, "-m", "ispad_bench.cli", *argv], env=ENV, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        first = out / "padim" / "lsm1"
        _wait(lambda first=first: first.is_dir() and any(_job_pid(p.parent) for p in first.rglob(records.SPEC)), proc,
              what="first job running")
        job_dir = next(first.rglob(records.SPEC)).parent
        pid = _job_pid(job_dir)
        server = _ppid(pid)
        victims = [pid, server] if i % 2 == 0 else [server, pid]
        for victim in victims:
            time.sleep(rng.uniform(0.0, 0.15))
            with contextlib.suppress(ProcessLookupError):
                os.kill(victim, signal.SIGKILL)
        output, _ = proc.communicate(timeout=600)
        assert "Traceback" not in output and "ConnectionRefused" not in output, output
        assert proc.returncode == 1, output
        failed = json.loads((job_dir / records.RECORD).read_text())
        assert failed["status"] == "failed" and failed["error"]["kind"] in ("killed", "oom"), failed["error"]
        second = json.loads(next((out / "padim" / "lsm2").rglob(records.RECORD)).read_text())
        assert second["status"] == "ok" and second["attempt"] == 1, second.get("error")
