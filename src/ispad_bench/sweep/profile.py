"""What a sweep asks for: profiles (named settings in ``configs/profiles/``) and the supervised rows.

A profile sets default seeds, overrides for every method and per method, the supervised rows of
Tables 2-3, extra methods ``--all`` includes, and an optional grid of override values (one job
per combination). Override values are written as command-line arguments (:func:`overrides_to_args`)
so that a profile means exactly what the same ``--a.b.c value`` means to ``anomalib train``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import yaml

PROFILE_DIR = "profiles"
# Init args of the supervised datamodule that select a row of Tables 2-3.
ROW_GROUP_KEY = "data.init_args.real_group"
ROW_FRACTION_KEY = "data.init_args.real_fraction"
# The real-only baseline of ref [35] (§5.2, §6): all real defects, oversampled, no synthetic defects.
REAL_ONLY = "real-only"
REAL_ONLY_ARGS = {ROW_GROUP_KEY: "mixed", ROW_FRACTION_KEY: "1", "data.init_args.real_only": True}
ROW_GROUPS = ("none", "points", "area", "mixed", REAL_ONLY)  # the order of Tables 2-3


@dataclass(frozen=True)
class Row:
    """A row of Tables 2-3: real-defect group and fraction injected into the synthetic stream."""

    group: str  # "none" (purely synthetic), "points", "area", "mixed" or "real-only" (ref [35])
    fraction: Fraction

    @property
    def slug(self) -> str:
        if self.group in ("none", REAL_ONLY):
            return self.group
        frac = str(self.fraction).replace("/", "_")
        return f"{self.group}-{frac}"

    @classmethod
    def parse(cls, text: str) -> Row:
        """``none``, ``mixed-1_16``, ``points-1/16``, ``mixed-1``."""
        if text == "none":
            return cls("none", Fraction(0))
        if text == REAL_ONLY:
            return cls(REAL_ONLY, Fraction(1))
        match = re.fullmatch(r"(points|area|mixed)-(\d+)(?:[_/](\d+))?", text)
        if not match:
            raise ValueError(f"bad supervised row {text!r}: expected none, real-only, <points|area|mixed>-<n>_<d>")
        group, num, den = match.groups()
        return cls(group, Fraction(int(num), int(den or 1)))

    def args(self) -> dict[str, Any]:
        """The supervised datamodule's init args of this row (the cold start keeps the config's group)."""
        if self.group == REAL_ONLY:
            return dict(REAL_ONLY_ARGS)
        return {**({ROW_GROUP_KEY: self.group} if self.group != "none" else {}), ROW_FRACTION_KEY: str(self.fraction)}


def row_order(slug: str | None) -> tuple[int, Fraction]:
    """Sort key of a row slug in the order of Tables 2-3 (``None``/NaN: an unsupervised row, first)."""
    if not isinstance(slug, str) or not slug:
        return (0, Fraction(0))
    row = Row.parse(slug)
    return (ROW_GROUPS.index(row.group), row.fraction)


# §5.2 / Tables 2-3: purely synthetic; each group alone at the smallest fraction; mixed at
# every fraction 1/16 ... 1 (nested prefixes of one seeded shuffle); the real-only baseline.
SUPERVISED_ROWS = (
    Row("none", Fraction(0)),
    Row("points", Fraction(1, 16)),
    Row("area", Fraction(1, 16)),
    *(Row("mixed", Fraction(1, d)) for d in (16, 8, 4, 2, 1)),
    Row(REAL_ONLY, Fraction(1)),  # §5.2/§6: the real-only baseline of ref [35] (text only, no table row)
)


@dataclass(frozen=True)
class Profile:
    """Named settings: default seeds, overrides for all methods and per method, supervised rows."""

    name: str
    seeds: tuple[int, ...] = (0,)
    overrides: dict[str, Any] = field(default_factory=dict)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    supervised_rows: tuple[Row, ...] = SUPERVISED_ROWS
    include: tuple[str, ...] = ()  # methods ``--all`` adds to configs/ (Anomalib names, class paths, "anomalib")
    grid: dict[str, list] = field(default_factory=dict)  # override -> values: one job per combination
    skip_supervised: bool = False  # e.g. the contamination study: unsupervised methods only
    tiny_for_others: bool = False  # methods without an entry get sweep/tiny.py's settings (smoke)

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the ``grid`` values (one empty point without a grid)."""
        points: list[dict[str, Any]] = [{}]
        for key, values in self.grid.items():
            points = [{**p, key: v} for p in points for v in values]
        return points

    def args_for(self, method: str) -> list[str]:
        return overrides_to_args({**self.overrides, **self.methods.get(method, {})})


def overrides_to_args(overrides: dict[str, Any]) -> list[str]:
    """``{"a.b": 1}`` -> ``["--a.b=1"]`` (lists/dicts as JSON, which jsonargparse reads as YAML)."""
    args = []
    for key, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif value is None:
            text = "null"
        elif isinstance(value, (list, dict)):
            text = json.dumps(value)
        else:
            text = str(value)
        args.append(f"--{key}={text}")
    return args


def default_configs_dir() -> Path:
    """``./configs`` when run from a checkout, else the checkout this package was installed from."""
    here = Path("configs")
    if here.is_dir():
        return here.resolve()
    return Path(__file__).resolve().parents[3] / "configs"


_PROFILE_KEYS = {"seeds", "overrides", "methods", "supervised_rows", "description", "include", "grid", "skip_supervised",
                 "tiny_for_others"}


def load_profile(name: str, configs_dir: Path) -> Profile:
    """``name``: a YAML file, or ``<configs_dir>/profiles/<name>.yaml`` (else the project's own)."""
    candidates = [Path(name)] if name.endswith((".yaml", ".yml")) else [
        Path(configs_dir) / PROFILE_DIR / f"{name}.yaml",
        default_configs_dir() / PROFILE_DIR / f"{name}.yaml",
    ]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        known = sorted({p.stem for c in candidates for p in c.parent.glob("*.yaml")})
        raise FileNotFoundError(f"profile {name!r} not found: no {' or '.join(map(str, candidates))} (known: {known})")
    name = path.stem
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - _PROFILE_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
    rows = data.get("supervised_rows")
    return Profile(
        name=name,
        seeds=tuple(int(s) for s in data.get("seeds", [0])),
        overrides=dict(data.get("overrides") or {}),
        methods={k: dict(v or {}) for k, v in (data.get("methods") or {}).items()},
        supervised_rows=tuple(Row.parse(r) for r in rows) if rows else SUPERVISED_ROWS,
        include=tuple(str(m) for m in data.get("include") or ()),
        grid={k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in (data.get("grid") or {}).items()},
        skip_supervised=bool(data.get("skip_supervised", False)),
        tiny_for_others=bool(data.get("tiny_for_others", False)),
    )
