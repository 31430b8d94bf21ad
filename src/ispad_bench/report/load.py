"""The records of a sweep folder and the arrays their jobs saved: all the report reads.

``load_records`` picks one record per slot (profile, method, modality, row, seed, contamination);
``predictions`` and ``replicates`` read a job's ``predictions.npz`` / ``bootstrap.npz`` (cached:
the tables, the significance marks and the figures read the same files).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ispad_bench.files import read_json
from ispad_bench.sweep import records


def contamination_of(record: dict) -> float:
    """``data.init_args.train_contamination`` of a record's config (0 when absent)."""
    data = ((record.get("config") or {}).get("data") or {}).get("init_args") or {}
    return float(data.get("train_contamination") or 0.0)


SLOT = ("profile", "method", "modality", "row", "seed")  # with the contamination, one table cell's run


def load_records(runs_dir: Path) -> tuple[list[dict], list[dict]]:
    """(successful records, failed records), one per (profile, method, modality, row, seed):
    when a config changed between sweeps, the most recently finished run of that slot counts.
    An unreadable ``record.json`` is a failed entry of kind ``unreadable record`` (its slot read from the
    folder's ``job.json`` where that can be read), never dropped."""
    latest: dict[tuple, dict] = {}
    latest_failed: dict[tuple, dict] = {}
    problems: list[tuple[Path, str]] = []
    for record in records.iter_records(runs_dir, problems):
        slot = (*(record.get(k) for k in SLOT), contamination_of(record))
        table = latest if record.get("status") == "ok" else latest_failed
        if slot not in table or str(record.get("finished")) > str(table[slot].get("finished")):
            table[slot] = record
    # a failure counts unless a later run of the same slot succeeded (e.g. after a config fix)
    failed = [r for slot, r in latest_failed.items()
              if slot not in latest or str(r.get("finished")) > str(latest[slot].get("finished"))]
    unreadable = [unreadable_entry(path, why) for path, why in problems]
    for entry in unreadable:  # an older run of its slot must not stand in for it: the row is missing, not stale
        for slot, r in list(latest.items()):
            if slot[:5] == tuple(entry.get(k) for k in SLOT) and str(r.get("finished")) < entry["written"]:
                del latest[slot]
    return list(latest.values()), failed + unreadable


def data_root_of(record: dict) -> str | None:
    """``data.init_args.root`` of a record's resolved config."""
    data = ((record.get("config") or {}).get("data") or {}).get("init_args") or {}
    return str(data["root"]) if data.get("root") is not None else None


def other_root_runs(runs_dir: Path) -> list[str]:
    """One line per table cell whose shown (latest) run used another data root than an earlier successful run of
    the same cell in this folder: the newer run replaced it in the tables, which should say so."""
    by_slot: dict[tuple, list[dict]] = {}
    for record in records.iter_records(runs_dir):
        if record.get("status") == "ok":
            slot = (*(record.get(k) for k in SLOT), contamination_of(record))
            by_slot.setdefault(slot, []).append(record)
    lines = []
    for slot, runs in by_slot.items():
        roots = {data_root_of(r) for r in runs}
        if len(roots) > 1:
            shown = max(runs, key=lambda r: str(r.get("finished")))
            others = sorted(str(r) for r in roots - {data_root_of(shown)})
            _, method, modality, row, seed, _ = slot
            lines.append(f"{method} {modality}{f' {row}' if row else ''} seed {seed}: the tables show the run on "
                         f"{data_root_of(shown)}; this folder also holds a run on {', '.join(others)}")
    return sorted(lines)


def unreadable_entry(path: Path, why: str) -> dict:
    """A failed-job entry for a ``record.json`` that cannot be used (the report lists it and exits non-zero)."""
    from datetime import datetime, timezone

    spec = read_json(path.parent / records.SPEC) or {}
    entry = {k: spec.get(k) for k in SLOT}
    entry["method"] = entry["method"] or path.parent.parent.parent.name  # <out>/<method>/<modality>/<job>/
    entry["modality"] = entry["modality"] or path.parent.parent.name
    try:  # the records' own format for ``finished`` (files.utc_now), so the two compare as strings
        written = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat(timespec="seconds")
    except OSError:
        written = ""
    return {**entry, "status": "unreadable", "_dir": str(path.parent), "written": written,
            "error": {"kind": "unreadable record", "message": f"{path} {why}"}}


def _npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def predictions(record: dict) -> dict[str, np.ndarray] | None:
    """The job's ``predictions.npz`` (per-image ``paths/scores/labels/groups``, ``map_<i>``...), or ``None``."""
    return _npz(Path(record["_dir"]) / (record.get("artifacts") or {}).get("predictions", records.PREDICTIONS))


_REPLICATES: dict[str, dict[str, np.ndarray] | None] = {}


def replicates(record: dict) -> dict[str, np.ndarray] | None:
    """The job's bootstrap replicates as float64 (``None`` when it saved none)."""
    name = (record.get("artifacts") or {}).get("bootstrap")
    if not name or "_dir" not in record:
        return None
    path = str(Path(record["_dir"]) / name)
    if path not in _REPLICATES:
        data = _npz(Path(path))
        _REPLICATES[path] = {k: v.astype(np.float64) for k, v in data.items()} if data is not None else None
    return _REPLICATES[path]
