"""Job records on disk: atomic JSON/NPZ writes, reading, and the provenance every record carries.

A record is written once per attempt with ``os.replace`` of a fsynced temporary file in the same
folder, so a reader (or a resumed sweep) sees either the previous complete file or the new
complete file, never a partial one, whatever moment the writer is killed at.
"""

from __future__ import annotations

import json
import math
import os
import platform
import socket
import subprocess
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any

RECORD = "record.json"
SPEC = "job.json"
LOG = "log.txt"
PREDICTIONS = "predictions.npz"
SCHEMA = 1
# mkstemp creates 0600 files; records and tables get the usual mode instead (0644 under umask 022).
# Read once at import, while nothing else runs (os.umask can only be read by setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


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


def _jsonable(obj: Any) -> Any:
    """NaN/inf -> None (JSON has no NaN); numpy/torch scalars -> Python; paths -> str."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False).encode())


def read_json(path: Path) -> dict | None:
    """The JSON object at ``path``, or ``None`` if missing or unreadable."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_npz(path: Path, **arrays) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def iter_records(runs_dir: Path):
    """Every readable ``record.json`` below ``runs_dir`` (sorted by path)."""
    for path in sorted(Path(runs_dir).rglob(RECORD)):
        record = read_json(path)
        if record is not None and record.get("schema") == SCHEMA:
            record["_dir"] = str(path.parent)
            yield record


def clean_temporaries(folder: Path) -> int:
    """Remove temporaries left by a writer that was killed mid-write (they are never read)."""
    removed = 0
    for tmp in Path(folder).rglob(".*.tmp"):
        with suppress(OSError):
            tmp.unlink()
            removed += 1
    return removed


# ------------------------------------------------------------------------------ provenance
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
