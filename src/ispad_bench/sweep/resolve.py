"""A job's config as ``anomalib train`` reads it, and the key that names the job.

A job's arguments are, in order: the config file, the sweep's own settings (one device, seed,
modality, data root, supervised row), the profile's overrides, the user's ``--a.b.c value``
overrides — later wins. :func:`resolve` parses them with the parser of ``anomalib train`` (so a
sweep config means exactly what it means there), and the job key hashes the fully *resolved*
config (every default filled in by jsonargparse) without output paths: a rerun with the same
effective settings finds its finished record, and any change of setting is a new job.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ispad_bench.data.modality import Modality
from ispad_bench.sweep.profile import Row, overrides_to_args

if TYPE_CHECKING:
    from ispad_bench.sweep.grid import Job

# Path placeholders a profile may use in override values, filled in per job by :func:`resolve`.
PLACEHOLDER = re.compile(r"\{(data_root|modality_dir|configs_dir)\}")  # configs_dir: the job config's configs/
# Output locations and the config-file list are not part of what a job computes.
NOT_KEYED = ("config", "__path__", "default_root_dir", "trainer.default_root_dir")


@lru_cache(maxsize=1)
def train_parser():
    """The parser of ``anomalib train`` (so a sweep config means exactly what it means there).

    Lightning is imported first: ``typing`` caches ``Union[int, float]`` and ``Union[float, int]``
    as one object (they compare equal), so whichever a process evaluates first decides whether
    jsonargparse reads Lightning's ``limit_train_batches: 2`` as 2 or 2.0, and the job key hashes
    that value. Every sweep so far imported Lightning (through its data class) before the parser,
    so this keeps their keys; a process that imported a library writing ``Union[float, int]``
    (scikit-learn) before Lightning still gets 2.0 (docs/sweep.md, "The key").
    """
    import lightning.pytorch  # noqa: F401 (import order, above)
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI.__new__(AnomalibCLI)  # build the parsers only; nothing is run
    cli.parser = cli.init_parser()
    cli.subcommand_parsers, cli.subcommand_method_arguments = {}, {}
    cli.add_subcommands()
    return cli.subcommand_parsers["train"]


def parse(config_file: Path, args: tuple[str, ...] | list[str]):
    """jsonargparse namespace of ``anomalib train --config config_file *args``."""
    return train_parser().parse_args(["--config", str(config_file), *args])


def import_path(path: str):
    """The object at a dotted import path (``anomalib.models.Padim``); ImportError/AttributeError otherwise."""
    module, _, name = path.rpartition(".")
    if not module:
        raise ImportError(f"{path!r} is not a dotted import path")
    return getattr(importlib.import_module(module), name)


@lru_cache(maxsize=None)
def class_params(class_path: str) -> tuple[frozenset[str], bool]:
    """(init parameter names, takes **kwargs) of a class given by its import path."""
    params = inspect.signature(import_path(class_path)).parameters
    return frozenset(params), any(p.kind is p.VAR_KEYWORD for p in params.values())


def yaml_section(config_file: Path, section: str) -> dict:
    """One top-level section of a config YAML as written (``{}``: absent, not a mapping or unreadable)."""
    try:
        node = (yaml.safe_load(Path(config_file).read_text()) or {}).get(section)
    except (OSError, yaml.YAMLError, AttributeError):
        return {}
    return node if isinstance(node, dict) else {}


def yaml_class_path(config_file: Path, section: str) -> str | None:
    """``<section>.class_path`` read straight from a config YAML (``None``: absent or unreadable)."""
    path = yaml_section(config_file, section).get("class_path")
    return path if isinstance(path, str) and "." in path else None


def _data_class(config_file: Path, args: tuple[str, ...]) -> str | None:
    """The datamodule class path from the YAML when no argument can change it (saves one full
    parse per job); ``None``: only a parse can tell."""
    if any(a.split("=", 1)[0] in ("--data", "--data.class_path", "--config") for a in args):
        return None
    return yaml_class_path(config_file, "data")


def _data_accepts(class_path: str | None, name: str) -> bool:
    if not class_path:
        return False
    names, var_kw = class_params(class_path)
    return name in names or var_kw


def _parsed_data_class(cfg) -> str | None:
    from jsonargparse import Namespace

    data = cfg.get("data")
    return data.get("class_path") if isinstance(data, Namespace) else None


def config_dict(cfg) -> dict:
    """Plain, JSON-able dict of a resolved namespace (output paths removed)."""
    text = train_parser().dump(cfg, skip_none=False, skip_validation=True)
    data = yaml.safe_load(text)
    for dotted in NOT_KEYED:
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.get(p, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return data


def job_key(method: str, modality: str, seed: int, row: Row | None, config: dict) -> str:
    """16 hex digits naming a job. Finished sweeps are found again by it: never change the payload."""
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
        configs_dir = str(Path(job.config_file).resolve().parents[1])
        args = _fill(args, {**_job_paths(base, job.modality), "configs_dir": configs_dir})
    if cfg is None or data or args != job.args:
        cfg = parse(job.config_file, args)
    config = config_dict(cfg)
    key = job_key(job.method, job.modality, job.seed, job.row, config)
    return replace(job, args=args, data_args=(), key=key, config=config)
