"""``ispad-bench methods`` (what the sweep can run), ``config`` (a job's resolved config) and
``weights fetch|check`` (every file the chosen methods load, fetched once for offline nodes)."""

from __future__ import annotations

import inspect
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> None:
    methods = subparsers.add_parser("methods", help="list every method the sweep can run (paper configs, Anomalib models)")
    methods.add_argument("--configs", type=Path, help="configs folder (default: ./configs)")
    methods.add_argument("--profile", default="smoke", help="profile whose status is shown (default: smoke)")
    methods.add_argument("--json", action="store_true", help="machine-readable output")
    methods.set_defaults(func=main_methods)

    config = subparsers.add_parser("config", help="print the complete resolved config a sweep job would run",
                                   description="Unknown --a.b.c value arguments are config overrides.")
    config.add_argument("method", help="configs/ folder name, Anomalib model name, or a dotted class path")
    config.add_argument("--modality", default="LSM-1")
    config.add_argument("--profile", default="paper")
    config.add_argument("--seed", type=int, default=0)
    config.add_argument("--data-root", type=Path)
    config.add_argument("--configs", type=Path)
    config.set_defaults(func=main_config, accepts_overrides=True)

    weights = subparsers.add_parser("weights", help="fetch or check the weight files methods need (offline nodes)")
    sub = weights.add_subparsers(dest="action", required=True)
    for action, text in (("fetch", "download what is missing into the standard caches"),
                         ("check", "say per method what is present and what is missing")):
        p = sub.add_parser(action, help=text)
        p.add_argument("--methods", type=_csv, help="comma list (names as in `ispad-bench methods`)")
        p.add_argument("--all", action="store_true", help="every runnable method")
        p.add_argument("--configs", type=Path)
        p.set_defaults(func=main_weights)


# ------------------------------------------------------------------------------ per-method facts
def _configs_dir(path: Path | None) -> Path:
    from ispad_bench.sweep import grid

    return (path or grid.default_configs_dir()).resolve()


def _simple(init_args: dict[str, Any]) -> dict[str, Any]:
    """Init args that build the model alone (nested processors/evaluators are left to their defaults)."""
    skip = {"pre_processor", "post_processor", "evaluator", "visualizer"}
    return {k: v for k, v in (init_args or {}).items()
            if k not in skip and not (isinstance(v, dict) and "class_path" in v)}


def _model_section(config_file: Path) -> tuple[str, dict[str, Any]]:
    data = yaml.safe_load(Path(config_file).read_text()) or {}
    model = data.get("model") or {}
    return model.get("class_path", ""), _simple(model.get("init_args") or {})


def method_model(name: str, configured: dict[str, dict]) -> tuple[type, dict[str, Any]]:
    """(model class, init args) a method runs with by default: its config, else Anomalib's defaults."""
    from ispad_bench.sweep import catalog

    if name in configured:
        files = configured[name]
        path, init_args = _model_section(next(iter(files.values())))
        return catalog.model_class(path), init_args
    return catalog.model_class(name), {}


def needs(cls: type, init_args: dict[str, Any]):
    from ispad_bench.models.fetch import needed_files

    return needed_files(cls, init_args)


def rows(configs: Path, profile_name: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per method: paper configs, then Anomalib image models, then refused models
    (``only``: just these names, in that order)."""
    from ispad_bench.sweep import catalog, grid

    configured = grid.method_configs(configs)
    try:
        profile = grid.load_profile(profile_name, configs)
        in_profile = set(grid.select_methods(configured, None)) | set(catalog.expand_names(profile.include, configured))
    except (FileNotFoundError, ValueError):
        profile, in_profile = None, set()
    names = grid.select_methods(configured, None)
    names += [n for n in catalog.anomalib_image_models() if n not in configured]
    names += [n for n in profile.include if catalog.is_class_path(n)] if profile else []
    video = catalog.anomalib_video_models()
    names = names if only is None else [n for n in only if n not in video]
    out = []
    for name in names:
        row: dict[str, Any] = {"method": name}
        reason = catalog.refusal(name)
        try:
            cls, init_args = method_model(name, configured)
        except ValueError as err:
            out.append({**row, "source": "?", "refused": str(err)})
            continue
        row["source"] = "paper config" if name in configured else ("class path" if catalog.is_class_path(name) else "anomalib")
        row["class_path"] = catalog.class_path(cls)
        row["learning_type"] = catalog.learning_type(cls)
        if name in grid.SUPERVISED_METHODS:  # Anomalib has no supervised learning type; the engine sees one_class
            row["learning_type"] = "mixed_supervised"
        if reason:
            out.append({**row, "refused": reason})
            continue
        files, error = needs(cls, init_args)
        row["weights"] = [{"file": f.name, "kind": f.kind, "present": f.present} for f in files]
        if error:
            row["weights_error"] = error
        has_switch = "pre_trained" in inspect.signature(cls).parameters
        random_files = needs(cls, {**init_args, "pre_trained": False})[0] if has_switch else files
        short = ", ".join(_short(f.name) for f in random_files)
        row["random_weights"] = "yes" if not random_files else (f"needs {short}" if has_switch else f"no switch: needs {short}")
        if name in configured:
            row["epochs"], row["notes"] = "as configured", []
        else:
            row["epochs"] = "1" if catalog.one_epoch(cls) else f"<= {catalog.MAX_EPOCHS}, early stop"
            row["notes"] = catalog.protocol_notes(cls)
        row[profile_name] = "in profile" if name in in_profile else "-"
        out.append(row)
    for name in video if only is None else [n for n in only if n in video]:
        out.append({"method": name, "source": "anomalib (video)", "refused": catalog.VIDEO_REASON})
    return out


def _short(name: str) -> str:
    """``timm/resnet18.a1_in1k:model.safetensors`` -> ``timm/resnet18.a1_in1k``."""
    return name.split(":", 1)[0]


def main_methods(args) -> int:
    from rich.console import Console
    from rich.table import Table

    data = rows(_configs_dir(args.configs), args.profile)
    if args.json:
        print(json.dumps(data, indent=1))
        return 0
    table = Table(title="methods the sweep can run (ispad-bench sweep --methods NAME; class paths work too)")
    for col in ("method", "source", "learning", "weights (present/needed)", "pre_trained: false", "epochs",
                args.profile, "notes / refused because"):
        table.add_column(col)
    for r in data:
        weights = r.get("weights", [])
        have = sum(w["present"] for w in weights)
        wtext = f"{have}/{len(weights)} " + ", ".join(_short(w["file"]) for w in weights) if weights else "none"
        note = r.get("refused") or "; ".join(r.get("notes", []))
        table.add_row(r["method"], r.get("source", ""), r.get("learning_type", ""), "" if r.get("refused") else wtext,
                      r.get("random_weights", ""), r.get("epochs", ""), r.get(args.profile, ""),
                      f"[red]refused:[/] {note}" if r.get("refused") else note)
    Console(width=200).print(table)
    runnable = sum(1 for r in data if not r.get("refused"))
    print(f"{runnable} runnable, {len(data) - runnable} refused")
    return 0


def main_config(args) -> int:
    from ispad_bench.sweep import grid

    configs = _configs_dir(args.configs)
    try:
        profile = grid.load_profile(args.profile, configs)
        jobs = grid.expand(configs, profile, methods=[args.method], modalities=[args.modality], seeds=[args.seed],
                           data_root=args.data_root, overrides=list(getattr(args, "overrides", []) or []))
        if not jobs:
            raise ValueError(f"{args.method} has no config for {args.modality}")
        job = grid.resolve(jobs[0])
    except (FileNotFoundError, ValueError) as err:
        print(f"config: {err}", file=sys.stderr)
        return 2
    print(f"# {job.label()} (profile {args.profile}); run: anomalib train --config <this file>")
    print(yaml.safe_dump(job.config, sort_keys=False), end="")
    return 0


# ------------------------------------------------------------------------------------- weights
def weight_files(names: list[str], configs: Path) -> dict[str, tuple[list, str | None]]:
    """``{method: (files, error)}``; refused or unknown methods raise ``ValueError``."""
    from ispad_bench.sweep import catalog, grid

    configured = grid.method_configs(configs)
    out = {}
    for name in catalog.expand_names(names, configured):
        if catalog.refusal(name):
            raise ValueError(f"method {name!r} cannot run on ISP-AD: {catalog.refusal(name)}")
        out[name] = needs(*method_model(name, configured))
    return out


def job_weight_files(jobs) -> dict[str, list]:
    """Missing weight files of resolved sweep jobs, by job label (one discovery per distinct model config)."""
    from ispad_bench.sweep import catalog

    cache: dict[str, list] = {}
    missing: dict[str, list] = {}
    for job in jobs:
        model = (job.config or {}).get("model") or {}
        key = json.dumps(model, sort_keys=True, default=str)
        if key not in cache:
            try:
                cls = catalog.model_class(model.get("class_path", ""))
                cache[key] = [f for f in needs(cls, _simple(model.get("init_args") or {}))[0] if not f.present]
            except ValueError:
                cache[key] = []
        if cache[key]:
            missing[job.label()] = cache[key]
    return missing


def check_before_sweep(jobs, console) -> bool:
    """The sweep's pre-flight: True when every job's weight files are present (else says what to fetch)."""
    missing = job_weight_files(jobs)
    if not missing:
        return True
    methods = sorted({label.split(" ")[0] for label in missing})
    console.print(f"[red]sweep: {len(missing)} job(s) need weight files that are not present:[/]")
    for f in sorted({f.describe() for files in missing.values() for f in files}):
        console.print(f"  missing: {f}")
    console.print(f"fetch them once with `ispad-bench weights fetch --methods {','.join(methods)}` (online), "
                  "set `pre_trained: false`, or pass --skip-weights-check")
    return False


def main_weights(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from ispad_bench.sweep import catalog, grid

    console = Console(stderr=True)
    configs = _configs_dir(args.configs)
    if args.all:
        configured = grid.method_configs(configs)
        names = [*grid.select_methods(configured, None), catalog.ANOMALIB_GROUP]
    elif args.methods:
        names = args.methods
    else:
        console.print("[red]weights: choose --all or --methods a,b[/]")
        return 2
    try:
        per_method = weight_files(names, configs)
    except ValueError as err:
        console.print(f"[red]weights: {err}[/]")
        return 2
    failed = 0
    if args.action == "fetch":
        from ispad_bench.data.download import DownloadError
        from ispad_bench.models.fetch import fetch

        todo = list({f.url: f for files, _ in per_method.values() for f in files if not f.present}.values())
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                      console=console) as progress:
            for f in todo:
                try:
                    path = fetch(f, progress)
                    progress.console.print(f"fetched {f.name} -> {path}")
                except (DownloadError, OSError, RuntimeError, ValueError) as err:
                    failed += 1
                    progress.console.print(f"[red]failed {f.name}: {err}[/]")
    for name, (files, error) in per_method.items():
        have = [f for f in files if f.present]
        status = "ok" if len(have) == len(files) else f"MISSING {len(files) - len(have)}"
        print(f"{name}: {status} ({len(have)}/{len(files)} present)" + (f"  [could not build: {error}]" if error else ""))
        for f in files:
            print(f"  {'present' if f.present else 'missing'}  {f.describe()}")
    missing = sum(1 for files, _ in per_method.values() for f in files if not f.present)
    return 1 if missing or failed else 0
