"""The records of a sweep folder and their report order: what the tables (``report.py``) and the
figures (``figures.py``) both need, below both so that neither imports the other."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

from ispad_bench.sweep import records
from ispad_bench.sweep.grid import PAPER_METHODS, Row

PAPER_NAMES = {"efficient_ad": "EfficientAD", "uflow": "U-Flow", "glass": "GLASS", "ddad": "DDAD", "supervised": "ResNet18"}


def load_records(runs_dir: Path) -> tuple[list[dict], list[dict]]:
    """(successful records, failed records), one per (profile, method, modality, row, seed):
    when a config changed between sweeps, the most recently finished run of that slot counts."""
    latest: dict[tuple, dict] = {}
    latest_failed: dict[tuple, dict] = {}
    for record in records.iter_records(runs_dir):
        slot = (*(record.get(k) for k in ("profile", "method", "modality", "row", "seed")), contamination_of(record))
        table = latest if record.get("status") == "ok" else latest_failed
        if slot not in table or str(record.get("finished")) > str(table[slot].get("finished")):
            table[slot] = record
    # a failure counts unless a later run of the same slot succeeded (e.g. after a config fix)
    failed = [r for slot, r in latest_failed.items()
              if slot not in latest or str(r.get("finished")) > str(latest[slot].get("finished"))]
    return list(latest.values()), failed


def method_order(method: str) -> tuple[int, str]:
    return (PAPER_METHODS.index(method) if method in PAPER_METHODS else len(PAPER_METHODS), method)


def row_order(slug: str | None) -> tuple[int, Fraction]:
    if not isinstance(slug, str) or not slug:  # unsupervised (None / NaN in a frame)
        return (0, Fraction(0))
    row = Row.parse(slug)
    return ({"none": 0, "points": 1, "area": 2, "mixed": 3, "real-only": 4}[row.group], row.fraction)


def contamination_of(record: dict) -> float:
    """``data.init_args.train_contamination`` of a record's config (0 when absent)."""
    data = ((record.get("config") or {}).get("data") or {}).get("init_args") or {}
    return float(data.get("train_contamination") or 0.0)
