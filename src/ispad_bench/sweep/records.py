"""The files of a sweep and job folder and the record format: names, schema, reading (no torch, no anomalib).

Every name a job folder holds is defined here, once (the folder layout is documented in
docs/sweep.md, "The sweep folder"). Every file is written through :mod:`ispad_bench.files`
(atomically), so a reader or a resumed sweep never sees a partial record.
"""

from __future__ import annotations

import json
from pathlib import Path

SWEEP = "sweep.json"  # <out>/: the grid of the last invocation
SWEEP_LOCK = ".sweep.lock"  # <out>/: the running sweep (lock.py)
RECORD = "record.json"  # outcome of the job's latest attempt (metrics, timings, provenance, error)
SPEC = "job.json"  # what the current attempt runs (written by the runner, read by job.py)
CONFIG = "config.yaml"  # the resolved config (``anomalib train --config <job>/config.yaml`` reruns it)
LOG = "log.txt"  # the job process's stdout and stderr
PREDICTIONS = "predictions.npz"  # per-image scores/labels/groups and a few maps (figures, DeLong)
BOOTSTRAP = "bootstrap.npz"  # bootstrap replicates per metric (intervals, paired tests)
INSPECTION = "inspection.json"  # an `ispad-bench inspect` output folder (inside a sweep: the report shows it)
MODEL = "model.ckpt"  # the tested model without optimizer state or rebuilt tensors (--keep model|all; models/keep.py)
ANOMALIB = "anomalib"  # Anomalib's own output folder (checkpoints, images with --save-images)
LOCK = ".lock"  # the job lock: held by the process running an attempt (pid, attempt id)
SCHEMA = 1


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """``(record, None)``, or ``(None, why it cannot be used)`` for an unreadable or foreign ``record.json``."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as err:
        return None, f"cannot be read ({err.strerror or err})"
    except ValueError as err:
        return None, f"is not valid JSON ({err})"
    if not isinstance(data, dict):
        return None, f"holds a JSON {type(data).__name__}, not a record"
    if data.get("schema") != SCHEMA:
        return None, f"has record schema {data.get('schema')!r}, this version reads {SCHEMA}"
    return data, None


def iter_records(runs_dir: Path, problems: list[tuple[Path, str]] | None = None):
    """Every usable ``record.json`` below ``runs_dir`` (sorted by path), with ``_dir`` set; the others are
    appended to ``problems`` as (path, reason) when it is given (a report must not drop them silently)."""
    for path in sorted(Path(runs_dir).rglob(RECORD)):
        record, why = read_record(path)
        if record is not None:
            record["_dir"] = str(path.parent)
            yield record
        elif problems is not None:
            problems.append((path, why))
