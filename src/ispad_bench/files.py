"""Files every part writes: atomic writes (JSON, NPZ, bytes), tolerant reads, the UTC timestamp.

Every file the harness leaves (records, tables, figures, generated configs) goes through
:func:`atomic_write_bytes`: an ``os.replace`` of a fsynced temporary in the same folder, so a
reader or a resumed sweep sees the previous complete file or the new complete file, never a
partial one, whatever moment the writer is killed at.
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# mkstemp creates 0600 files; records and tables get the usual mode instead (0644 under umask 022).
# Read once at import, while nothing else runs (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def utc_now() -> str:
    """``2026-12-02T15:46:39+00:00``: the timestamp of records, locks and reports."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(folder: Path) -> None:
    with suppress(OSError):  # not every filesystem lets a directory be opened/fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def jsonable(obj: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN); numpy/torch scalars -> Python; paths -> str."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(jsonable(obj), indent=2, sort_keys=False).encode())


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or ``None`` if missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_npz(path: Path, **arrays) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as PNG, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def clean_temporaries(folder: Path) -> int:
    """Remove temporaries left by a writer that was killed mid-write (they are never read)."""
    removed = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        with suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed
