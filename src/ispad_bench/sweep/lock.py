"""One sweep per folder: ``<out>/.sweep.lock`` names the sweep that runs there (pid, host, start).

Two sweeps writing into one ``--out`` would overwrite each other's ``job.json``, run every job
twice and report the other's jobs as failed. The lock is an ``flock`` on the file (released by the
kernel when its holder dies, even by SIGKILL) and the file's text says who holds it, so a second
sweep refuses at once with one line naming the holder, or waits for it (``--wait``). A lock file
left by a dead sweep is taken over with a note.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ispad_bench.files import utc_now
from ispad_bench.sweep.records import SWEEP_LOCK


class SweepLocked(RuntimeError):
    """Another live sweep holds the folder; the message names it."""


def _holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a sweep whose lock file names no process"
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}"


class SweepLock:
    """Context manager holding ``<out_dir>/.sweep.lock``; ``note`` is set when a stale lock was taken over."""

    def __init__(self, out_dir: Path, wait: bool = False, poll_s: float = 1.0) -> None:
        self.path = Path(out_dir) / SWEEP_LOCK
        self.wait, self.poll_s = wait, poll_s
        self.note: str | None = None
        self._file = None

    def acquire(self, on_wait=None) -> SweepLock:
        """Take the lock; raise :class:`SweepLocked` (or, with ``wait``, poll until it is free)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        f = open(self.path, "a+")  # noqa: SIM115 (held until release)
        told = False
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(self.path)
                if not self.wait:
                    f.close()
                    raise SweepLocked(
                        f"{self.path.parent} is in use by another sweep ({_describe(holder)}); "
                        "wait for it to end, pass --wait, or choose another --out"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"waiting for the sweep in {self.path.parent} ({_describe(holder)}) to end")
                    told = True
                time.sleep(self.poll_s)
        previous = _holder(self.path)
        if previous and (previous.get("pid"), previous.get("host")) != (os.getpid(), socket.gethostname()):
            self.note = (f"took over the lock of an earlier sweep that is gone ({_describe(previous)}); "
                         "its unfinished jobs run again")
        f.seek(0)
        f.truncate()
        f.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now()}))
        f.flush()
        os.fsync(f.fileno())
        self._file = f
        return self

    def release(self) -> None:
        if self._file is None:
            return
        try:
            self._file.seek(0)
            self._file.truncate()  # an empty file: a clean end, nothing to take over
            self._file.flush()
        finally:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None

    def __enter__(self) -> SweepLock:
        return self.acquire() if self._file is None else self

    def __exit__(self, *exc) -> None:
        self.release()
