"""The files of a sweep and job folder and the record format: names, schema, reading (no torch, no anomalib).

Every name a job folder holds is defined here, once (the folder layout is documented in
docs/sweep.md, "The sweep folder"). Every file is written through :mod:`ispad_bench.files`
(atomically), so a reader or a resumed sweep never sees a partial record.
"""

from __future__ import annotations

from pathlib import Path

from ispad_bench.files import read_json

SWEEP = "sweep.json"  # <out>/: the grid of the last invocation
SWEEP_LOCK = ".sweep.lock"  # <out>/: the running sweep (lock.py)
RECORD = "record.json"  # outcome of the job's latest attempt (metrics, timings, provenance, error)
SPEC = "job.json"  # what the current attempt runs (written by the runner, read by job.py)
CONFIG = "config.yaml"  # the resolved config (``anomalib train --config <job>/config.yaml`` reruns it)
LOG = "log.txt"  # the job process's stdout and stderr
PREDICTIONS = "predictions.npz"  # per-image scores/labels/groups and a few maps (figures, DeLong)
BOOTSTRAP = "bootstrap.npz"  # bootstrap replicates per metric (intervals, paired tests)
ANOMALIB = "anomalib"  # Anomalib's own output folder (checkpoints, images with --save-images)
LOCK = ".lock"  # the job lock: held by the process running an attempt (pid, attempt id)
SCHEMA = 1


def iter_records(runs_dir: Path):
    """Every readable ``record.json`` below ``runs_dir`` (sorted by path), with ``_dir`` set."""
    for path in sorted(Path(runs_dir).rglob(RECORD)):
        record = read_json(path)
        if record is not None and record.get("schema") == SCHEMA:
            record["_dir"] = str(path.parent)
            yield record
