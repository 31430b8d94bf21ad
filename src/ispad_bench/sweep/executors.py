"""Where jobs run: one at a time here, one per GPU here (``--devices``), or as Ray tasks.

Every job is a child process ``python -m ispad_bench.sweep.job job.json``: a crash, an OOM kill
or a leak stays inside it and its memory is returned when it exits. Locally the child is bound
to the sweep with ``PR_SET_PDEATHSIG``, so killing the sweep (even with SIGKILL) kills the job
too and nothing keeps running (or writing) behind a resumed sweep.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PR_SET_PDEATHSIG = 1
SERVER_DIED = -1000  # pseudo return code: the fork server died, so the job's exit status is unknown


@dataclass
class Attempt:
    """One try at running a job: its spec file ``job.json`` (written by the runner) and log file."""

    index: int
    spec: dict
    spec_path: Path
    log_path: Path
    label: str


@dataclass
class Outcome:
    returncode: int | None  # None: killed by the timeout
    record_text: str | None = None  # returned by remote executors, written by the runner
    device: str | None = None
    packed: float = 1  # jobs that shared the device with it at most (1: alone); a packed OOM is retried alone


def _bind_to_parent(parent_pid: int) -> Callable[[], None]:
    def preexec() -> None:
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:  # not Linux: the child may outlive a killed sweep; the job lock still serialises
            pass
        if os.getppid() != parent_pid:  # the sweep died between fork and prctl
            os._exit(1)

    return preexec


_FORK_CONTEXT = None
# Imported once by the fork server (anomalib.cli pulls in every Anomalib model and Lightning).
PRELOAD = ("ispad_bench.sweep.forkserver_quiet", "torch", "lightning", "anomalib.cli", "ispad_bench.sweep.job", "ispad_bench.sweep.callbacks",
           "ispad_bench.sweep.resolve", "ispad_bench.data", "ispad_bench.sweep.forkserver_exit")


def _fork_context():
    """A forkserver that has imported torch/Lightning/Anomalib once: each job forks from it.

    A fresh interpreter pays 10-30 s of imports per job (more than a smoke job's compute); a fork
    of the preloaded server pays none and is still a separate process, freed when the job exits.
    The server imports nothing that initialises CUDA, so each job can still pick its GPU.
    """
    global _FORK_CONTEXT
    if _FORK_CONTEXT is None:
        import multiprocessing

        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(list(PRELOAD))
        _FORK_CONTEXT = ctx
    return _FORK_CONTEXT


def _forked_job(spec_path: str, log_path: str, env: dict[str, str], server_pid: int) -> None:
    """Body of a forked job: bind to the server's life, send output to the log, run the job."""
    from multiprocessing import forkserver

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass
    # multiprocessing hands every forked child the write end of the server's "alive" pipe, so the
    # server only exits once the sweep AND all jobs are gone: a job would outlive a killed sweep.
    # Dropping it here lets the server exit with the sweep, and PDEATHSIG then ends this job.
    alive = getattr(forkserver._forkserver, "_forkserver_alive_fd", None)  # noqa: SLF001 (multiprocessing keeps the pipe private)
    if alive is not None:
        os.close(alive)
        forkserver._forkserver._forkserver_alive_fd = None  # noqa: SLF001 (see above)
    if os.getppid() != server_pid:  # the server (and so the sweep) died before prctl took effect
        os._exit(1)
    os.environ.update(env)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    from ispad_bench.sweep import job

    code = job.run(Path(spec_path))
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)


def launcher() -> str:
    """``fork`` (forkserver, Linux default) or ``process`` (a new interpreter per job); env
    ``ISPAD_SWEEP_LAUNCHER`` chooses."""
    choice = os.environ.get("ISPAD_SWEEP_LAUNCHER", "fork" if sys.platform == "linux" else "process")
    if choice not in ("fork", "process"):
        raise ValueError(f"ISPAD_SWEEP_LAUNCHER must be 'fork' or 'process', got {choice!r}")
    return choice


def launch(spec_path: Path, log_path: Path, env: dict[str, str] | None = None, timeout: float | None = None) -> int | None:
    """Run one job process to the end; its stdout/stderr go to ``log_path``. ``None`` = timed out."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if launcher() == "fork":
        return _launch_forked(spec_path, log_path, env or {}, timeout)
    cmd = [sys.executable, "-m", "ispad_bench.sweep.job", str(spec_path)]
    full_env = {**os.environ, **(env or {})}
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env=full_env, preexec_fn=_bind_to_parent(os.getpid())
        )
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None
        except BaseException:  # Ctrl-C / sweep error: never leave the job running
            proc.kill()
            proc.wait()
            raise


def _launch_forked(spec_path: Path, log_path: Path, env: dict[str, str], timeout: float | None) -> int | None:
    """Fork the job from the preloaded server. The server can die at any moment (OOM killer, an operator's
    kill): a start on a dying server is retried on a fresh one; a job that never started because its server
    died is launched once more; a 255 from a dying server is :data:`SERVER_DIED`, never a crash code."""
    code = _fork_once(spec_path, log_path, env, timeout)
    if code == SERVER_DIED and not attempt_started(spec_path):
        code = _fork_once(spec_path, log_path, env, timeout)  # it never ran: no record, nothing to call killed
    return code


def _fork_once(spec_path: Path, log_path: Path, env: dict[str, str], timeout: float | None) -> int | None:
    from multiprocessing import forkserver

    ctx = _fork_context()
    for tries in range(1, SERVER_RETRIES + 1):
        forkserver.ensure_running()  # reaps a dead server and starts a new one
        server_pid = forkserver._forkserver._forkserver_pid  # noqa: SLF001 (the job binds its life to it)
        proc = ctx.Process(target=_forked_job, args=(str(spec_path), str(log_path), env, server_pid), daemon=False)
        try:
            proc.start()
            break
        except (OSError, EOFError):  # ConnectionRefused/Reset, BrokenPipe: the server died after ensure_running
            if tries == SERVER_RETRIES:
                raise
            _wait_dead(server_pid, 2.0)
    try:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()
            proc.join()
            return None
        if proc.exitcode == 255 and _wait_dead(server_pid, 2.0):  # the server reports 255 when it cannot say
            return SERVER_DIED
        return proc.exitcode
    except BaseException:
        proc.kill()
        proc.join()
        raise


SERVER_RETRIES = 3


def attempt_started(spec_path: Path) -> bool:
    """Whether the attempt of ``spec_path`` got as far as taking its job lock (``job.run`` writes its attempt id)."""
    import json

    from ispad_bench.sweep import records

    try:
        spec = json.loads(Path(spec_path).read_text())
        lines = (Path(spec["job_dir"]) / records.LOCK).read_text().split()
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return len(lines) >= 2 and lines[1] == str(spec.get("attempt_id"))


def _wait_dead(pid: int, seconds: float) -> bool:
    """True once the server ``pid`` has exited, waiting up to ``seconds``: its pipes close a moment before the
    kernel marks it exited, so an immediate check can still see a dying server alive."""
    import time

    deadline = time.monotonic() + seconds
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` (a child of this process: the fork server) still runs; never reaps it
    (multiprocessing's ``ensure_running`` waits for it and then starts a new server)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


class LocalExecutor:
    """Sequential jobs on this machine (CPU, or whatever single device the trainer picks)."""

    name = "local"

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout

    @property
    def parallelism(self) -> int:
        return 1

    def run(self, attempts: Sequence[Attempt], on_start, on_done) -> None:
        for attempt in attempts:
            on_start(attempt, None)
            on_done(attempt, Outcome(launch(attempt.spec_path, attempt.log_path, timeout=self.timeout)))


class DevicesExecutor:
    """Up to ``jobs_per_device`` jobs on each listed GPU at a time, each pinned with ``CUDA_VISIBLE_DEVICES``.

    Packing several jobs on one GPU can run it out of memory; such an attempt comes back from
    ``on_done`` as a retry (the runner decides), which then runs *alone*: the device it is given takes
    no new jobs until it has drained, runs the retry by itself, then fills again. Nothing is lost and
    no device ever holds more than ``jobs_per_device`` jobs.
    """

    name = "devices"

    def __init__(
        self, devices: Sequence[str], timeout: float | None = None, jobs_per_device: int = 1, launch_fn=None
    ) -> None:
        if not devices:
            raise ValueError("DevicesExecutor needs at least one device id")
        if jobs_per_device < 1:
            raise ValueError(f"jobs_per_device must be >= 1, got {jobs_per_device}")
        self.devices = list(dict.fromkeys(devices))
        self.timeout = timeout
        self.jobs_per_device = jobs_per_device
        self.launch = launch_fn or launch  # tests pass a fake to check the assignment on CPU

    @property
    def parallelism(self) -> int:
        return len(self.devices) * self.jobs_per_device

    def run(self, attempts: Sequence[Attempt], on_start, on_done) -> None:
        queued = list(attempts)  # FIFO
        alone: list[Attempt] = []  # retries waiting for a device of their own
        running = {d: set() for d in self.devices}  # device -> indices of the attempts on it
        peak: dict[int, int] = {}  # attempt index -> most jobs on its device while it ran
        reserved: dict[str, Attempt] = {}  # device -> the retry it drains for
        cond = threading.Condition()
        errors: list[BaseException] = []

        def pick() -> tuple[Attempt, str, bool] | None:
            for attempt in list(alone):  # a retry reserves the least busy free device, then waits for it
                if attempt not in reserved.values():
                    free = [d for d in self.devices if d not in reserved]
                    if free:
                        reserved[min(free, key=lambda d: len(running[d]))] = attempt
            for device, attempt in list(reserved.items()):
                if not running[device]:
                    alone.remove(attempt)
                    return attempt, device, True
            if queued:
                open_ = [d for d in self.devices if d not in reserved and len(running[d]) < self.jobs_per_device]
                if open_:
                    return queued.pop(0), min(open_, key=lambda d: len(running[d])), False
            return None

        def worker() -> None:
            while True:
                with cond:
                    while True:
                        if errors:
                            return
                        got = pick()
                        if got is not None:
                            break
                        if not queued and not alone and not any(running.values()):
                            cond.notify_all()
                            return
                        cond.wait()
                    attempt, device, exclusive = got
                    running[device].add(attempt.index)
                    for i in running[device]:
                        peak[i] = max(peak.get(i, 0), len(running[device]))
                    try:
                        on_start(attempt, device)
                    except BaseException as err:  # noqa: BLE001 (re-raised in the main thread)
                        errors.append(err)
                        cond.notify_all()
                        return
                try:
                    rc = self.launch(attempt.spec_path, attempt.log_path, {"CUDA_VISIBLE_DEVICES": device}, self.timeout)
                    with cond:
                        running[device].discard(attempt.index)
                        if exclusive:
                            reserved.pop(device, None)
                        retry = on_done(attempt, Outcome(rc, device=device, packed=peak.pop(attempt.index, 1)))
                        if retry is not None:
                            alone.append(retry)
                        cond.notify_all()
                except BaseException as err:  # noqa: BLE001 (re-raised in the main thread)
                    with cond:
                        running[device].discard(attempt.index)
                        errors.append(err)
                        cond.notify_all()
                    return

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(self.parallelism)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]


def _ray_task(spec: dict, spec_text: str, timeout: float | None) -> tuple[int | None, str | None, str]:
    """Body of a Ray task: write the spec where the job expects it, run the job, return its record."""
    from ispad_bench.files import atomic_write_bytes
    from ispad_bench.sweep import records

    job_dir = Path(spec["job_dir"])
    spec_path = job_dir / records.SPEC
    atomic_write_bytes(spec_path, spec_text.encode())
    rc = launch(spec_path, job_dir / records.LOG, timeout=timeout)
    record = job_dir / records.RECORD
    return rc, (record.read_text() if record.is_file() else None), os.uname().nodename


class RayExecutor:
    """Each attempt a Ray task on an existing cluster (``address``; default: start/join a local one).

    A task asks for ``num_gpus`` GPUs (Ray then sets ``CUDA_VISIBLE_DEVICES``) or, without GPUs,
    ``num_cpus`` CPUs. The job writes into the sweep folder, which must be on a filesystem the
    workers share for the artifacts (maps, checkpoints); the record itself also travels back as
    the task's return value and is written by the driver.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, num_gpus: float = 0, num_cpus: float = 1, timeout: float | None = None
    ) -> None:
        try:
            import ray
        except ImportError as err:
            raise RuntimeError("--executor ray needs Ray: pip install 'ispad-bench[ray]'") from err
        self.ray = ray
        self.address, self.num_gpus, self.num_cpus, self.timeout = address, num_gpus, num_cpus, timeout

    @property
    def parallelism(self) -> int:
        ray = self.ray
        if not ray.is_initialized():
            return 1
        res = ray.cluster_resources()
        if self.num_gpus:
            return max(1, int(res.get("GPU", 0) // self.num_gpus))
        return max(1, int(res.get("CPU", 1) // max(self.num_cpus, 1e-9)))

    def run(self, attempts: Sequence[Attempt], on_start, on_done) -> None:
        import json

        ray = self.ray
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"address": self.address} if self.address else {}
            # the package is importable on the workers: same venv locally; on a cluster, install it there
            ray.init(**kwargs, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
        remote = ray.remote(num_gpus=self.num_gpus, num_cpus=self.num_cpus, max_retries=0)(_ray_task)
        # fractional GPUs share a device: an OOM there is retried as a task that asks for a whole GPU
        packed = 1 / self.num_gpus if 0 < self.num_gpus < 1 else 1
        pending = {}

        def submit(attempt: Attempt, task) -> None:
            on_start(attempt, "ray")
            pending[task.remote(attempt.spec, json.dumps(attempt.spec), self.timeout)] = attempt

        for attempt in attempts:
            submit(attempt, remote)
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                attempt = pending.pop(ref)
                try:
                    rc, record_text, node = ray.get(ref)
                except Exception as err:  # noqa: BLE001 (worker died: the runner writes a failure record)
                    on_done(attempt, Outcome(-1, device=f"ray: {type(err).__name__}: {err}"))
                    continue
                retry = on_done(attempt, Outcome(rc, record_text, device=f"ray:{node}", packed=packed))
                if retry is not None:
                    submit(retry, remote.options(num_gpus=1))
