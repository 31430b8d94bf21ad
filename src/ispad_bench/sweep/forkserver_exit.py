"""Imported only by the sweep's fork server (``executors.PRELOAD``): when the sweep is gone, exit at once.

The server learns of the sweep's end (normal or killed) from its closed "alive" pipe and then runs a
normal interpreter shutdown, whose garbage collection over the preloaded torch/Lightning/Anomalib
object graph took 30 s and more of CPU on a loaded 2-core machine. Its jobs are bound to its life
(``PR_SET_PDEATHSIG``), so that long shutdown kept a killed sweep's job running. ``os._exit`` in
the last-registered ``atexit`` handler (run first) skips it. Forked jobs have another pid and are
not affected (they end through ``os._exit`` anyway).
"""

from __future__ import annotations

import atexit
import os

_SERVER_PID = os.getpid()


def _exit_now() -> None:
    if os.getpid() == _SERVER_PID:
        os._exit(0)


atexit.register(_exit_now)
