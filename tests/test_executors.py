"""Packing several jobs per device: the assignment logic on fake device ids, and the OOM retry alone."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

from ispad_bench.files import read_json, write_json
from ispad_bench.sweep import records
from ispad_bench.sweep.executors import Attempt, DevicesExecutor
from ispad_bench.sweep.grid import Job
from ispad_bench.sweep.runner import run_jobs


class FakeLaunch:
    """Stands in for the job process: tracks how many jobs each device holds, writes the job's record."""

    def __init__(self, oom_when_shared: set[str] = frozenset(), oom_always: set[str] = frozenset(), seed: int = 0):
        self.lock = threading.Lock()
        self.on_device: dict[str, int] = {}
        self.peak: dict[str, int] = {}
        self.launched: list[tuple[str, str, int]] = []  # (label, device, jobs on it at start incl. this one)
        self.alone_throughout: dict[str, bool] = {}
        self.oom_when_shared, self.oom_always = oom_when_shared, oom_always
        self.rng = random.Random(seed)

    def __call__(self, spec_path: Path, log_path: Path, env: dict, timeout) -> int:
        spec = json.loads(Path(spec_path).read_text())
        device, name = env["CUDA_VISIBLE_DEVICES"], Path(spec["job_dir"]).name
        with self.lock:
            self.on_device[device] = self.on_device.get(device, 0) + 1
            now = self.on_device[device]
            self.peak[device] = max(self.peak.get(device, 0), now)
            self.launched.append((name, device, now))
            pause = self.rng.uniform(0.01, 0.05)
        time.sleep(pause)
        with self.lock:
            shared = self.peak_during(device, now)
            self.on_device[device] -= 1
        oom = name in self.oom_always or (name in self.oom_when_shared and shared)
        record = {"key": spec["key"], "attempt": spec["attempt"], "attempt_id": spec["attempt_id"],
                  "status": "failed" if oom else "ok", "metrics": {}, "retry_of": spec.get("retry_of")}
        if oom:
            record["error"] = {"kind": "oom", "message": "CUDA out of memory (fake)"}
        write_json(Path(spec["job_dir"]) / records.RECORD, record)
        return 1 if oom else 0

    def peak_during(self, device: str, at_start: int) -> bool:
        return at_start > 1 or self.on_device[device] > 1


def _attempts(tmp_path: Path, n: int) -> list[Attempt]:
    out = []
    for i in range(n):
        job_dir = tmp_path / f"job{i}"
        spec = {"key": f"k{i}", "job_dir": str(job_dir), "attempt": 1, "attempt_id": f"a{i}"}
        job_dir.mkdir()
        write_json(job_dir / records.SPEC, spec)
        out.append(Attempt(i + 1, spec, job_dir / records.SPEC, job_dir / records.LOG, f"job{i}"))
    return out


def test_n_jobs_per_device_never_more_every_job_once(tmp_path):
    fake = FakeLaunch(seed=3)
    done: list[tuple[int, str, float]] = []
    executor = DevicesExecutor(["0", "1", "2"], jobs_per_device=3, launch_fn=fake)
    assert executor.parallelism == 9
    executor.run(_attempts(tmp_path, 25), lambda a, d: None, lambda a, o: done.append((a.index, o.device, o.packed)))
    assert sorted(i for i, _, _ in done) == list(range(1, 26))  # every job once
    assert len(fake.launched) == 25
    assert set(fake.peak) == {"0", "1", "2"}
    assert max(fake.peak.values()) == 3  # packed up to N ...
    assert all(p <= 3 for p in fake.peak.values())  # ... never over
    assert max(packed for _, _, packed in done) == 3  # the runner is told how many shared the device


def test_oom_while_packed_is_retried_alone_once_and_recorded(tmp_path):
    jobs = [Job("fake", "ASM", seed, Path("fake.yaml"), (), key=f"{seed:012d}") for seed in range(8)]
    names = [j.name for j in jobs]
    fake = FakeLaunch(oom_when_shared={names[2], names[5]}, oom_always={names[6]}, seed=1)
    executor = DevicesExecutor(["0", "1"], jobs_per_device=4, launch_fn=fake)
    summary = run_jobs(jobs, tmp_path, executor)
    recs = {j.name: read_json(tmp_path / j.rel_dir() / records.RECORD) for j in jobs}
    for name in (names[2], names[5]):  # ran out of memory while sharing: a second attempt, alone, succeeded
        assert recs[name]["status"] == "ok" and recs[name]["attempt"] == 2
        assert recs[name]["retry_of"]["kind"] == "oom" and recs[name]["retry_of"]["packed"] > 1
        starts = [n for n in fake.launched if n[0] == name]
        assert len(starts) == 2 and starts[1][2] == 1  # the retry started on an empty device
    # the retry is not retried again: OOM alone stays a failure (recorded, the sweep goes on)
    assert recs[names[6]]["status"] == "failed" and recs[names[6]]["error"]["kind"] == "oom"
    assert [n[0] for n in fake.launched].count(names[6]) == 2
    assert summary.ok == 7 and len(summary.failed) == 1 and summary.total == 8
    assert all(p <= 4 for p in fake.peak.values())


def test_oom_alone_is_not_retried(tmp_path):
    jobs = [Job("fake", "ASM", seed, Path("fake.yaml"), (), key=f"{seed:012d}") for seed in range(3)]
    fake = FakeLaunch(oom_always={jobs[1].name})
    summary = run_jobs(jobs, tmp_path, DevicesExecutor(["0", "1", "2"], jobs_per_device=1, launch_fn=fake))
    assert len(fake.launched) == 3 and summary.ok == 2 and summary.failed
