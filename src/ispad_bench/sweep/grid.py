"""The benchmark grid: which methods and modalities a sweep selects, and its jobs.

Configs live in ``configs/<method>/``: either one YAML per modality (``lsm1.yaml``, ``lsm2.yaml``,
``asm.yaml``) or one YAML for every modality (the sweep then sets ``data.init_args.modality``);
a method named on the command line without a folder (an Anomalib model, a class path) gets a
generated config (``catalog.py``). Every file is an ``anomalib train --config`` file.

:func:`select` makes the :class:`Selection` (methods x modalities x their config files) once per
sweep; the override plan (``overrides.py``) and :func:`expand` both read it, so no discovery or
config generation runs twice. :func:`expand` then lists the jobs, ordered method -> modality ->
row -> seed; ``resolve.py`` parses and keys each one.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ispad_bench.data.modality import Modality
from ispad_bench.paper import SUPERVISED_METHODS, method_order
from ispad_bench.sweep.profile import (
    PROFILE_DIR, REAL_ONLY_ARGS, ROW_FRACTION_KEY, ROW_GROUP_KEY, Profile, Row, overrides_to_args,
)

MODALITIES = tuple(m.value for m in Modality)


@dataclass(frozen=True)
class Job:
    """One fit+test run of the grid. ``key``/``config`` are filled in by ``resolve.resolve``.

    On disk a job is a folder (:meth:`rel_dir`); each try at running it is an attempt
    (``executors.Attempt``), described by the folder's ``job.json`` and run by ``job.py``.
    """

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
        return sorted(available, key=method_order)
    missing = [m for m in methods if m not in available]
    if missing:
        raise ValueError(f"no configs for method(s) {missing}; available: {sorted(available)}")
    return list(methods)


@dataclass(frozen=True)
class Selection:
    """What one sweep runs: its methods (in order) and modalities, and every known method's configs."""

    configs_dir: Path
    methods: tuple[str, ...]
    modalities: tuple[str, ...]
    available: dict[str, dict[str | None, Path]] = field(default_factory=dict)  # configs/ + generated

    def config(self, method: str, modality: str) -> Path | None:
        """The config file of ``method`` for ``modality`` (``None``: the method has none for it)."""
        files = self.available[method]
        return files.get(modality) or files.get(None)

    def files(self) -> dict[str, list[Path]]:
        """Per selected method, its config files for the selected modalities."""
        return {m: [f for f in (self.config(m, mod) for mod in self.modalities) if f is not None] for m in self.methods}


def select(configs_dir: Path, profile: Profile | None = None, methods: list[str] | None = None,
           modalities: list[str] | None = None) -> Selection:
    """The sweep's selection. ``methods``: names (``None``: every configs/ folder plus the profile's
    ``include``); Anomalib names, ``anomalib`` and class paths get generated configs, built once here."""
    from ispad_bench.sweep import catalog  # imports nothing of the grid

    available = method_configs(configs_dir)
    if methods is None and profile is not None and profile.include:
        methods = [*select_methods(available, None), *profile.include]
    if methods is not None:
        methods = catalog.expand_names(methods, available)
        available = catalog.with_generated(available, methods)
    mods = tuple(Modality.parse(m).value for m in (modalities or MODALITIES))
    return Selection(Path(configs_dir), tuple(select_methods(available, methods)), mods, available)


def expand(
    configs_dir: Path,
    profile: Profile,
    methods: list[str] | None = None,
    modalities: list[str] | None = None,
    seeds: list[int] | None = None,
    rows: list[str] | None = None,
    data_root: Path | None = None,
    overrides: list[str] | dict[str, list[str]] | None = None,
    selection: Selection | None = None,
) -> list[Job]:
    """The unresolved grid, ordered method -> modality -> row -> seed (``selection``: made once by
    the caller, else from ``configs_dir``/``methods``/``modalities``)."""
    selection = selection or select(configs_dir, profile, methods, modalities)
    seed_list = list(seeds) if seeds is not None else list(profile.seeds)
    jobs = []
    for method in selection.methods:
        if profile.skip_supervised and method in SUPERVISED_METHODS:
            continue
        method_rows: list[Row | None] = [None]
        if method in SUPERVISED_METHODS:
            method_rows = [Row.parse(r) for r in rows] if rows else list(profile.supervised_rows)
        user = overrides.get(method, []) if isinstance(overrides, dict) else (overrides or [])  # overrides.py
        if method in SUPERVISED_METHODS:
            refuse_row_keys(method, [*profile.args_for(method), *user])
        for modality in selection.modalities:
            config = selection.config(method, modality)
            if config is None:
                continue  # method has per-modality configs and none for this modality
            per_modality = modality in selection.available[method]
            for row in method_rows:
                for point, seed in itertools.product(profile.grid_points(), seed_list):  # grid point x seed
                    own = {"trainer.devices": 1, "seed_everything": seed, **point, **(row.args() if row else {})}
                    data_args = {"seed": seed}  # supervised defect subset, held-out split
                    if not per_modality:
                        data_args["modality"] = modality
                    if data_root is not None:
                        data_args["root"] = str(Path(data_root).resolve())
                    args = (*overrides_to_args(own), *profile.args_for(method), *user)
                    jobs.append(
                        Job(method, modality, seed, Path(config).resolve(), args, row, tuple(data_args.items()))
                    )
    return jobs


def refuse_row_keys(method: str, args: list[str]) -> None:
    """A supervised row chooses the real defects (group, fraction, real-only): an override of those keys
    would train another row under this row's name (a "cold start" on real defects), so it is refused."""
    keys = {ROW_GROUP_KEY, ROW_FRACTION_KEY, *REAL_ONLY_ARGS}
    for arg in args:
        key = str(arg).lstrip("-").split("=", 1)[0]
        if str(arg).startswith("--") and key in keys:
            raise ValueError(
                f"--{key} would relabel {method}'s rows (each row sets {', '.join(sorted(keys))}): "
                f"choose the rows with --rows (e.g. --rows none,mixed-1,real-only) instead")


__all__ = ["MODALITIES", "Job", "Selection", "expand", "method_configs", "select", "select_methods"]
