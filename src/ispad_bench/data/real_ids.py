"""Real-defect fraction lists (``real_ids_file``): which real defects a supervised row injects.

The paper sampled its real-defect fractions by one random shuffle, extracted in order so smaller
fractions are contained in larger ones (§5.2.1); it does not publish those lists, nor announce them
(§5.2.2: results "are based on the initial random selection"). By default the harness draws its own seeded shuffle
(:func:`ispad_bench.data.supervised.select_real`); with ``real_ids_file`` the listed ids are used
instead. Two formats, one list of ids per (group, fraction), optionally per modality:

* JSON: ``{"mixed": {"1/16": ["points/0003", "area/0001"], ...}, "area": {...}}`` or the same
  nested under modality names (``{"LSM-1": {"mixed": {...}}, "ASM": {...}}``);
* CSV with a header: ``group,fraction,id`` (and optionally ``modality``), one row per defect.

An id is ``<pool>/<name>`` (``points`` or ``area`` pool, file name without extension), as the
``ids`` of a run's ``real_defects.json``; in a ``points``/``area`` list a bare name means that pool.
"""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from pathlib import Path

from ispad_bench.data.layout import GROUPS

REAL_GROUPS = ("points", "area", "mixed")


def _fraction(text: object, path: Path) -> Fraction:
    try:
        return Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"{path}: fraction {text!r} is not a number (e.g. 1/16)") from None


def _nested(data: dict, path: Path, modality: str) -> dict[tuple[str, Fraction], list[str]]:
    if modality in data or any(k in data for k in ("LSM-1", "LSM-2", "ASM")):
        if modality not in data:
            raise ValueError(f"{path}: no entry for modality {modality} (found {sorted(data)})")
        data = data[modality]
    out: dict[tuple[str, Fraction], list[str]] = {}
    for group, lists in data.items():
        if not isinstance(lists, dict):
            raise ValueError(f"{path}: {group!r} must map fractions to id lists, got {type(lists).__name__}")
        for frac, ids in lists.items():
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ValueError(f"{path}: {group} {frac} must be a list of id strings")
            out[(group, _fraction(frac, path))] = list(ids)
    return out


def _rows(path: Path, modality: str) -> dict[tuple[str, Fraction], list[str]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"group", "fraction", "id"} - set(reader.fieldnames or [])
        if missing:
            raise ValueError(f"{path}: CSV needs the columns group, fraction, id (missing {sorted(missing)})")
        out: dict[tuple[str, Fraction], list[str]] = {}
        for line, row in enumerate(reader, start=2):
            if row.get("modality") and row["modality"].strip() != modality:
                continue
            if not (row["id"] or "").strip():
                raise ValueError(f"{path}:{line}: empty id")
            out.setdefault((row["group"].strip(), _fraction(row["fraction"], path)), []).append(row["id"].strip())
    return out


def load_lists(path: str | Path, modality: str) -> dict[tuple[str, Fraction], list[str]]:
    """Every (group, fraction) -> ids list of ``path`` for ``modality`` (JSON or CSV, by suffix)."""
    path = Path(path)
    if not path.is_file():
        hint = ("; `ispad-bench data synth` and `data build` write the data's own lists there (a folder generated "
                "before they did: generate it again with --overwrite)") if path.name == "real_ids.json" else ""
        raise FileNotFoundError(f"real_ids_file {path} does not exist{hint}")
    if path.suffix.lower() == ".csv":
        lists = _rows(path, modality)
    else:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err}); use .csv for the CSV format") from err
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object {{group: {{fraction: [ids]}}}}")
        lists = _nested(data, path, modality)
    bad = sorted({g for g, _ in lists if g not in REAL_GROUPS})
    if bad:
        raise ValueError(f"{path}: unknown group(s) {bad}; expected {list(REAL_GROUPS)}")
    return lists


def listed_ids(path: str | Path, modality: str, group: str, fraction: Fraction,
               pool_ids: dict[str, list[str]]) -> list[tuple[str, int]]:
    """The (pool, index) pairs ``path`` lists for ``group`` at ``fraction``; clear errors for unknown ids."""
    lists = load_lists(path, modality)
    key = (group, Fraction(fraction))
    if key not in lists:
        found = ", ".join(f"{g} {f}" for g, f in sorted(lists)) or "none"
        raise ValueError(f"real_ids_file {path}: no list for {modality} {group} {fraction} (lists: {found})")
    chosen, unknown = [], []
    for item in lists[key]:
        pool, _, name = item.rpartition("/")
        pool = pool or (group if group in GROUPS else "")
        if pool not in GROUPS or name not in pool_ids.get(pool, []):
            unknown.append(item)
            continue
        if group in GROUPS and pool != group:
            raise ValueError(f"real_ids_file {path}: {item} is not in the {group} pool ({group} {fraction} list)")
        chosen.append((pool, pool_ids[pool].index(name)))
    if unknown:
        raise ValueError(f"real_ids_file {path}: {len(unknown)} id(s) not among the real defects: {unknown[:5]} "
                         f"(ids are <points|area>/<file name without extension>)")
    if len(set(chosen)) != len(chosen):
        raise ValueError(f"real_ids_file {path}: duplicate ids in the {group} {fraction} list")
    return chosen


__all__ = ["listed_ids", "load_lists"]
