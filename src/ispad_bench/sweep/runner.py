"""Run a resolved grid: skip finished jobs, launch the rest, record every outcome, show progress.

The sweep folder's layout is documented once, in docs/sweep.md ("The sweep folder"); its file
names are in ``records.py``. Resume rule: a job whose ``record.json`` says ``"status": "ok"``
with the same key is skipped; anything else (no record, a failure record, a killed attempt) is
run again.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rich.console import Console

from ispad_bench.files import atomic_write_bytes, clean_temporaries, read_json, utc_now, write_json
from ispad_bench.sweep import records
from ispad_bench.sweep.executors import SERVER_DIED, Attempt, Outcome
from ispad_bench.sweep.grid import Job

INTERRUPTED = -1001  # pseudo return code: the attempt died with an earlier sweep (no process to ask)


@dataclass
class SweepSummary:
    total: int = 0
    skipped: int = 0
    ok: int = 0
    failed: list[str] = field(default_factory=list)  # job dirs
    seconds: float = 0.0

    @property
    def success(self) -> bool:
        return not self.failed


def job_status(out_dir: Path, job: Job) -> str:
    """``done``, ``failed`` or ``todo`` for a resolved job."""
    record = read_json(Path(out_dir) / job.rel_dir() / records.RECORD)
    if record is None or record.get("key") != job.key:
        return "todo"
    return "done" if record.get("status") == "ok" else "failed"


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _log_tail(path: Path, chars: int = 4000) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - chars))
            return f.read().decode(errors="replace")
    except OSError:
        return ""


NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device": a full disk stops the sweep, not each job


def run_jobs(
    jobs: Sequence[Job],
    out_dir: Path,
    executor,
    *,
    profile: str = "",
    maps_per_group: int = 2,
    console: Console | None = None,
    save_images: bool = False,
    keep: str = "model",
) -> SweepSummary:
    """Run every unfinished job of ``jobs`` (resolved) with ``executor``; never raises for a job failure."""
    console = console or Console(stderr=True)
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    clean_temporaries(out_dir)
    unique = list({job.key: job for job in jobs}.values())  # the same job twice runs once
    summary = SweepSummary(total=len(unique))
    write_json(
        out_dir / records.SWEEP,
        {"profile": profile, "jobs": [{"key": j.key, "dir": str(j.rel_dir()), "label": j.label()} for j in unique]},
    )

    attempts: list[Attempt] = []
    for job in unique:
        job_dir = out_dir / job.rel_dir()
        previous = _record_interrupted(job_dir, job.key) or read_json(job_dir / records.RECORD)
        if previous and previous.get("key") == job.key and previous.get("status") == "ok":
            summary.skipped += 1
            continue
        number = (previous.get("attempt", 0) + 1) if previous and previous.get("key") == job.key else 1
        spec = {
            "key": job.key,
            "method": job.method,
            "modality": job.modality,
            "seed": job.seed,
            "row": job.row.slug if job.row else None,
            "profile": profile,
            "config_file": str(job.config_file),
            "args": list(job.args),
            "job_dir": str(job_dir),
            "maps_per_group": maps_per_group,
            "save_images": save_images,  # Anomalib's per-image visualisations (off by default)
            "keep": keep,  # what stays of the trained model (models/keep.py); not part of the job key
            "attempt": number,
            "attempt_id": uuid.uuid4().hex,
        }
        spec_path = job_dir / records.SPEC
        write_json(spec_path, spec)
        if job.config is not None:  # the resolved config: `anomalib train --config <job>/config.yaml` reruns it
            atomic_write_bytes(job_dir / records.CONFIG, yaml.safe_dump(job.config, sort_keys=False).encode())
        attempts.append(Attempt(len(attempts) + 1, spec, spec_path, job_dir / records.LOG, job.label()))

    n = len(attempts)
    console.print(
        f"[bold]sweep[/]: {summary.total} jobs, {summary.skipped} already finished, {n} to run "
        f"({executor.name}, {executor.parallelism} at a time) -> {out_dir}"
    )
    t0 = time.perf_counter()
    durations: list[float] = []
    started: dict[int, float] = {}

    def eta(done: int) -> float | None:
        if not durations:
            return None
        return sum(durations) / len(durations) * (n - done) / max(1, executor.parallelism)

    def on_start(attempt: Attempt, device: str | None) -> None:
        started[attempt.index] = time.perf_counter()
        where = f" on {device}" if device else ""
        console.print(
            f"[{attempt.index}/{n}] start {attempt.label}{where}  elapsed {_fmt(time.perf_counter() - t0)}"
            f"  ETA {_fmt(eta(len(durations)))}"
        )

    def on_done(attempt: Attempt, outcome: Outcome) -> Attempt | None:
        took = time.perf_counter() - started.get(attempt.index, t0)
        record = _finalize(attempt, outcome)
        status = record.get("status")
        retry = retry_alone(attempt, record, outcome)
        if retry is not None:
            console.print(
                f"[{attempt.index}/{n}] [yellow]oom[/] sharing {outcome.device} with {outcome.packed - 1:g} other job(s): "
                f"{attempt.label} runs again alone"
            )
            return retry
        durations.append(took)
        if status == "ok":
            summary.ok += 1
            m = record.get("metrics", {})
            brief = ", ".join(f"{k} {m[k]:.3f}" for k in ("image_AUROC", "MCC") if isinstance(m.get(k), float))
            line = f"[green]ok[/] {brief}"
        else:
            summary.failed.append(attempt.spec["job_dir"])
            err = record.get("error", {})
            line = f"[red]FAILED[/] ({err.get('kind')}: {str(err.get('message', ''))[:160]})"
        console.print(
            f"[{attempt.index}/{n}] {line}  {attempt.label} in {took:.1f}s  elapsed {_fmt(time.perf_counter() - t0)}"
            f"  ETA {_fmt(eta(len(durations)))}"
        )
        if status != "ok" and NO_SPACE in str((record.get("error") or {}).get("message", "")):
            raise OSError(errno.ENOSPC, NO_SPACE, attempt.spec["job_dir"])  # every next job would fail the same way
        return None

    executor.run(attempts, on_start, on_done)
    summary.seconds = time.perf_counter() - t0
    return summary


def retry_alone(attempt: Attempt, record: dict, outcome: Outcome) -> Attempt | None:
    """The one retry of an attempt that ran out of memory while sharing its device, or ``None``.

    The retry is a new attempt (number + 1) whose spec, and so its record, says what it retries
    (``retry_of``); an attempt that ran alone, or was itself a retry, stays failed.
    """
    error = record.get("error") or {}
    if record.get("status") == "ok" or error.get("kind") != "oom" or outcome.packed <= 1 or attempt.spec.get("retry_of"):
        return None
    spec = {
        **attempt.spec,
        "attempt": attempt.spec["attempt"] + 1,
        "attempt_id": uuid.uuid4().hex,
        "retry_of": {"attempt": attempt.spec["attempt"], "kind": "oom", "device": outcome.device,
                     "packed": outcome.packed, "message": str(error.get("message", ""))[:500]},
    }
    write_json(attempt.spec_path, spec)
    return Attempt(attempt.index, spec, attempt.spec_path, attempt.log_path, attempt.label)


def _record_interrupted(job_dir: Path, key: str) -> dict | None:
    """The failure record of an attempt that died with its sweep (SIGKILL) before writing one.

    Such an attempt left its ``job.json`` but no record with its ``attempt_id``; recording it keeps
    the attempt numbering going. The job lock tells whether it is really gone (the caller holds the
    sweep lock, so no other sweep can be starting it).
    """
    spec = read_json(job_dir / records.SPEC)
    if spec is None or spec.get("key") != key or "attempt_id" not in spec:
        return None
    record = read_json(job_dir / records.RECORD)
    if record is not None and record.get("attempt_id") == spec["attempt_id"]:
        return None  # that attempt recorded itself
    try:
        with open(job_dir / records.LOCK, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            lock.seek(0)
            if spec["attempt_id"] not in lock.read().split():
                return None  # written by a sweep that was killed before it started this attempt
    except BlockingIOError:
        return None  # still running somewhere: leave it alone
    except OSError:
        return None
    attempt = Attempt(0, spec, job_dir / records.SPEC, job_dir / records.LOG, "")
    return _finalize(attempt, Outcome(INTERRUPTED))


def _finalize(attempt: Attempt, outcome: Outcome) -> dict:
    """The record of this attempt; written by the runner when the job could not write its own."""
    record_path = Path(attempt.spec["job_dir"]) / records.RECORD
    if outcome.record_text is not None and not record_path.is_file():
        atomic_write_bytes(record_path, outcome.record_text.encode())  # remote worker, no shared fs
    record = read_json(record_path)
    if record is not None and record.get("attempt_id") == attempt.spec["attempt_id"]:
        return record
    if outcome.returncode is None:
        kind, message = "timeout", "job exceeded --job-timeout and was killed"
    elif outcome.returncode == INTERRUPTED:
        kind, message = "killed", "attempt interrupted: its sweep was killed before the job wrote a record"
    elif outcome.returncode == SERVER_DIED:
        kind, message = "killed", "the sweep's fork server died (killed?) and took the job with it"
    elif outcome.returncode < 0:
        sig = -outcome.returncode
        kind = "oom" if sig == 9 else "killed"
        message = f"job process killed by signal {sig}" + (" (out of memory?)" if sig == 9 else "")
    else:
        kind, message = "crash", f"job process exited with code {outcome.returncode} without a record"
    keys = ("key", "method", "modality", "seed", "row", "profile", "config_file", "args", "attempt", "attempt_id")
    record = {
        "schema": records.SCHEMA,
        **{k: attempt.spec[k] for k in keys},
        "status": "failed",
        "device": {"assigned": outcome.device},
        "error": {"kind": kind, "type": "JobProcessError", "message": message, "phase": "process",
                  "traceback": _log_tail(attempt.log_path)},
        "finished": utc_now(),
    }
    if attempt.spec.get("retry_of"):
        record["retry_of"] = attempt.spec["retry_of"]
    write_json(record_path, record)
    return record
