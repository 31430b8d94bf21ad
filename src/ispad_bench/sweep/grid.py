"""The benchmark grid: which jobs exist, their resolved configs and their resume keys.

Configs live in ``configs/<method>/``: either one YAML per modality (``lsm1.yaml``,
``lsm2.yaml``, ``asm.yaml``) or one YAML for every modality (the sweep then sets
``data.init_args.modality``). Every file is an ``anomalib train --config`` file (class_path /
init_args). A job's arguments are, in order: the config file, the sweep's own settings (one
device, seed, modality, data root, supervised row), the profile's overrides, the user's
``--a.b.c value`` overrides — later wins. The job key hashes the fully *resolved* config
(every default filled in by jsonargparse) without output paths, so a rerun with the same
effective settings finds its finished record, and any change of setting is a new job.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import re
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ispad_bench.data.modality import Modality

# Paper order of Tables 2-6: the four unsupervised methods (Tables 4-6) and the mixed-supervised
# ResNet18 (Tables 2-3).
PAPER_METHODS = ("efficient_ad", "uflow", "glass", "ddad", "supervised")
SUPERVISED_METHODS = frozenset({"supervised"})
MODALITIES = tuple(m.value for m in Modality)
PROFILE_DIR = "profiles"
# Init args of the supervised datamodule that select a row of Tables 2-3.
ROW_GROUP_KEY = "data.init_args.real_group"
ROW_FRACTION_KEY = "data.init_args.real_fraction"
# The real-only baseline of ref [35] (§5.2, §6): all real defects, oversampled, no synthetic defects.
REAL_ONLY = "real-only"
REAL_ONLY_ARGS = {ROW_GROUP_KEY: "mixed", ROW_FRACTION_KEY: "1", "data.init_args.real_only": True}
# Path placeholders a profile may use in override values, filled in per job by :func:`resolve`.
PLACEHOLDER = re.compile(r"\{(data_root|modality_dir|configs_dir)\}")  # configs_dir: the job config's configs/


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

    def grid_points(self) -> list[dict[str, Any]]:
        """Every combination of the ``grid`` values (one empty point without a grid)."""
        points: list[dict[str, Any]] = [{}]
        for key, values in self.grid.items():
            points = [{**p, key: v} for p in points for v in values]
        return points

    def args_for(self, method: str) -> list[str]:
        return overrides_to_args({**self.overrides, **self.methods.get(method, {})})


@dataclass(frozen=True)
class Job:
    """One fit+test run. ``key``/``config`` are filled in by :func:`resolve`."""

    method: str
    modality: str
    seed: int
    config_file: Path
    args: tuple[str, ...]  # everything after ``--config config_file``
    row: Row | None = None
    data_args: tuple[tuple[str, Any], ...] = ()  # data init args set only if the data class has them
    key: str = ""
    config: dict | None = None

    @property
    def name(self) -> str:
        row = f"{self.row.slug}-" if self.row else ""
        return f"{row}s{self.seed}-{self.key[:10]}"

    def rel_dir(self) -> Path:
        return Path(self.method) / Modality.parse(self.modality).slug / self.name

    def label(self) -> str:
        row = f" {self.row.slug}" if self.row else ""
        return f"{self.method} {self.modality}{row} seed {self.seed}"


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
    unknown = set(data) - {"seeds", "overrides", "methods", "supervised_rows", "description", "include", "grid",
                           "skip_supervised"}
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
    )


def method_configs(configs_dir: Path) -> dict[str, dict[str | None, Path]]:
    """``{method: {modality or None: yaml}}`` for every ``configs/<method>/`` holding YAMLs."""
    found: dict[str, dict[str | None, Path]] = {}
    for folder in sorted(p for p in Path(configs_dir).iterdir() if p.is_dir() and p.name != PROFILE_DIR):
        files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
        if not files:
            continue
        by_mod: dict[str | None, Path] = {}
        shared = []
        for f in files:
            try:
                by_mod[Modality.parse(f.stem).value] = f
            except ValueError:
                shared.append(f)
        if shared:
            preferred = [f for f in shared if f.stem in ("default", folder.name)]
            if len(shared) > 1 and len(preferred) != 1:
                raise ValueError(
                    f"{folder}: several modality-independent configs {[f.name for f in shared]}; "
                    f"name them lsm1/lsm2/asm.yaml or keep one default.yaml"
                )
            by_mod[None] = preferred[0] if len(shared) > 1 else shared[0]
        found[folder.name] = by_mod
    return found


def select_methods(available: dict[str, Any], methods: list[str] | None) -> list[str]:
    """``None`` = all available, paper methods first (paper order), then any others sorted."""
    if methods is None:
        return [m for m in PAPER_METHODS if m in available] + sorted(set(available) - set(PAPER_METHODS))
    missing = [m for m in methods if m not in available]
    if missing:
        raise ValueError(f"no configs for method(s) {missing}; available: {sorted(available)}")
    return list(methods)


def available_methods(configs_dir: Path, profile: Profile | None, methods: list[str] | None):
    """``(available, methods)``: configs/ plus generated configs for Anomalib names and class paths
    (``methods`` or the profile's ``include``), and the requested names expanded (``None``: all)."""
    available = method_configs(configs_dir)
    from ispad_bench.sweep import catalog  # Anomalib models and class paths by name (generated configs)

    if methods is None and profile is not None and profile.include:
        methods = [*select_methods(available, None), *profile.include]
    if methods is not None:
        methods = catalog.expand_names(methods, available)
        available = catalog.with_generated(available, methods)
    return available, methods


def expand(
    configs_dir: Path,
    profile: Profile,
    methods: list[str] | None = None,
    modalities: list[str] | None = None,
    seeds: list[int] | None = None,
    rows: list[str] | None = None,
    data_root: Path | None = None,
    overrides: list[str] | dict[str, list[str]] | None = None,
) -> list[Job]:
    """The unresolved grid, ordered method -> modality -> row -> seed."""
    available, methods = available_methods(configs_dir, profile, methods)
    mods = [Modality.parse(m).value for m in (modalities or MODALITIES)]
    seed_list = list(seeds) if seeds is not None else list(profile.seeds)
    jobs = []
    for method in select_methods(available, methods):
        if profile.skip_supervised and method in SUPERVISED_METHODS:
            continue
        method_rows: list[Row | None] = [None]
        if method in SUPERVISED_METHODS:
            method_rows = [Row.parse(r) for r in rows] if rows else list(profile.supervised_rows)
        for modality in mods:
            config = available[method].get(modality) or available[method].get(None)
            if config is None:
                continue  # method has per-modality configs and none for this modality
            per_modality = modality in available[method]
            for row in method_rows:
                for point, seed in itertools.product(profile.grid_points(), seed_list):  # grid point x seed
                    own = {"trainer.devices": 1, "seed_everything": seed, **point}
                    if row is not None and row.group == REAL_ONLY:
                        own.update(REAL_ONLY_ARGS)
                    elif row is not None:  # cold start ("none"): fraction 0, the config's group (unused)
                        if row.group != "none":
                            own[ROW_GROUP_KEY] = row.group
                        own[ROW_FRACTION_KEY] = str(row.fraction)
                    data_args = {"seed": seed}  # supervised defect subset, held-out split
                    if not per_modality:
                        data_args["modality"] = modality
                    if data_root is not None:
                        data_args["root"] = str(Path(data_root).resolve())
                    user = overrides.get(method, []) if isinstance(overrides, dict) else (overrides or [])  # sweep/overrides.py
                    args = (*overrides_to_args(own), *profile.args_for(method), *user)
                    jobs.append(
                        Job(method, modality, seed, Path(config).resolve(), args, row, tuple(data_args.items()))
                    )
    return jobs


# ------------------------------------------------------------------ resolution (imports anomalib)
@lru_cache(maxsize=1)
def train_parser():
    """The parser of ``anomalib train`` (so a sweep config means exactly what it means there)."""
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI.__new__(AnomalibCLI)  # build the parsers only; nothing is run
    cli.parser = cli.init_parser()
    cli.subcommand_parsers, cli.subcommand_method_arguments = {}, {}
    cli.add_subcommands()
    return cli.subcommand_parsers["train"]


def parse(config_file: Path, args: tuple[str, ...] | list[str]):
    """jsonargparse namespace of ``anomalib train --config config_file *args``."""
    return train_parser().parse_args(["--config", str(config_file), *args])


@lru_cache(maxsize=None)
def _class_params(class_path: str) -> tuple[frozenset[str], bool]:
    """(init parameter names, takes **kwargs) of a class given by its import path."""
    from jsonargparse._typehints import import_object  # noqa: PLC2701 (stable helper since 4.0)

    params = inspect.signature(import_object(class_path)).parameters
    return frozenset(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def _data_class(config_file: Path, args: tuple[str, ...]) -> str | None:
    """The datamodule class path read straight from the YAML, when no argument can change it
    (saves one full parse per job); ``None``: only a parse can tell."""
    if any(a.split("=", 1)[0] in ("--data", "--data.class_path", "--config") for a in args):
        return None
    try:
        data = (yaml.safe_load(Path(config_file).read_text()) or {}).get("data")
    except (OSError, yaml.YAMLError, AttributeError):
        return None
    path = data.get("class_path") if isinstance(data, dict) else None
    return path if isinstance(path, str) and "." in path else None


def _data_accepts(class_path: str | None, name: str) -> bool:
    if not class_path:
        return False
    names, var_kw = _class_params(class_path)
    return name in names or var_kw


def _parsed_data_class(cfg) -> str | None:
    from jsonargparse import Namespace

    data = cfg.get("data")
    return data.get("class_path") if isinstance(data, Namespace) else None


# Output locations and the config-file list are not part of what a job computes.
_NOT_KEYED = ("config", "__path__", "default_root_dir", "trainer.default_root_dir")


def config_dict(cfg) -> dict:
    """Plain, JSON-able dict of a resolved namespace (output paths removed)."""
    text = train_parser().dump(cfg, skip_none=False, skip_validation=True)
    data = yaml.safe_load(text)
    for dotted in _NOT_KEYED:
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def job_key(method: str, modality: str, seed: int, row: Row | None, config: dict) -> str:
    payload = {"method": method, "modality": modality, "seed": seed, "row": row.slug if row else None, "config": config}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _job_paths(cfg, modality: str) -> dict[str, str]:
    """Values of the profile placeholders ``{data_root}`` and ``{modality_dir}`` for one job."""
    from ispad_bench.data.layout import modality_dir

    data = cfg.get("data")
    root = Path(str(data.get("init_args", {}).get("root") or ".")) if data is not None else Path(".")
    try:
        folder = modality_dir(root, modality)
    except (FileNotFoundError, ValueError):  # no data yet (dry run): the canonical place
        folder = root / Modality.parse(modality).value
    return {"data_root": str(root.resolve()), "modality_dir": str(folder.resolve())}


def _fill(args: tuple[str, ...], values: dict[str, str]) -> tuple[str, ...]:
    out = []
    for arg in args:
        for name, value in values.items():
            arg = arg.replace("{" + name + "}", value)
        out.append(arg)
    return tuple(out)


def resolve(job: Job) -> Job:
    """Parse the job's config (adding the data args its data class accepts), fill in the path
    placeholders ``{data_root}``/``{modality_dir}`` (profiles use them for auxiliary folders) and key it."""
    cfg = None
    class_path = _data_class(job.config_file, job.args)
    if class_path is None:
        cfg = parse(job.config_file, tuple(a for a in job.args if not PLACEHOLDER.search(a)))
        class_path = _parsed_data_class(cfg)
    data = {k: v for k, v in job.data_args if _data_accepts(class_path, k)}
    args = (*overrides_to_args({f"data.init_args.{k}": v for k, v in data.items()}), *job.args)
    if any(PLACEHOLDER.search(a) for a in args):
        base = parse(job.config_file, tuple(a for a in args if not PLACEHOLDER.search(a)))
        args = _fill(args, {**_job_paths(base, job.modality), "configs_dir": str(Path(job.config_file).resolve().parents[1])})
    if cfg is None or data or args != job.args:
        cfg = parse(job.config_file, args)
    config = config_dict(cfg)
    key = job_key(job.method, job.modality, job.seed, job.row, config)
    return replace(job, args=args, data_args=(), key=key, config=config)
