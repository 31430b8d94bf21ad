"""``ispad-bench sweep`` (run the grid, then the report), ``methods`` (what it can run) and
``config`` (the resolved config of one job)."""

from __future__ import annotations

import errno
import inspect
import json
from pathlib import Path
from typing import Any

import yaml

from ispad_bench import paper
from ispad_bench.cli import comma_list, non_negative_int, positive_float, positive_int
from ispad_bench.models.keep import KEEP_CHOICES
from ispad_bench.sweep.grid import method_configs, select_methods
from ispad_bench.sweep.profile import default_configs_dir, load_profile

EXECUTORS = ("local", "ray")


def add_parser(subparsers) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="run the benchmark grid (resumable) and write the report",
        description="Run methods x modalities x seeds (+ the supervised rows of Tables 2-3) from configs/. "
        "Unknown --a.b.c value arguments are Anomalib config overrides, applied to every job whose config "
        "accepts the key (skipped, with a note, for the others); --<method>.a.b.c value applies to one method.",
    )
    sweep.add_argument("--all", action="store_true", help="every method that has configs (paper order)")
    sweep.add_argument("--methods", type=comma_list, help="comma list, e.g. glass,uflow")
    sweep.add_argument("--modalities", type=comma_list, help="comma list (default: LSM-1,LSM-2,ASM)")
    sweep.add_argument("--seeds", type=lambda s: [int(x) for x in comma_list(s)], help="comma list (default: profile's)")
    sweep.add_argument("--rows", type=comma_list, help="supervised rows, e.g. none,mixed-1_16 (default: profile's)")
    sweep.add_argument("--data-root", type=Path, help="dataset root (overrides data.init_args.root)")
    sweep.add_argument("--out", type=Path, help="sweep folder (default: results/runs/<profile>)")
    sweep.add_argument("--profile", default="paper", help="settings profile in configs/profiles/ (paper, official, paper-text, smoke)")
    sweep.add_argument("--configs", type=Path, help="configs folder (default: ./configs)")
    sweep.add_argument("--dry-run", action="store_true", help="print the grid with each job's status and exit")
    sweep.add_argument("--devices", type=comma_list, help="GPU ids, e.g. 0,1 (one job per GPU at a time; see --jobs-per-device)")
    sweep.add_argument("--jobs-per-device", type=positive_int, default=1,
                       help="with --devices: jobs sharing one GPU at a time; a job that runs out of memory "
                       "while sharing is retried alone once")
    sweep.add_argument("--executor", choices=EXECUTORS, default="local")
    sweep.add_argument("--ray-address", help="Ray cluster address (default: start/join a local Ray)")
    sweep.add_argument("--gpus-per-job", type=float, default=None, help="Ray: GPUs per task (default 1 if any)")
    sweep.add_argument("--cpus-per-job", type=float, default=1, help="Ray: CPUs per task")
    sweep.add_argument("--job-timeout", type=positive_float, help="seconds after which a job is killed (failure record)")
    sweep.add_argument("--maps-per-group", type=non_negative_int, default=2, help="anomaly maps kept per test group for figures")
    sweep.add_argument("--no-report", action="store_true", help="skip writing tables/figures at the end")
    sweep.add_argument("--wait", action="store_true", help="if another sweep runs in --out, wait for it (default: refuse)")
    sweep.add_argument("--skip-weights-check", action="store_true", help="start even if weight files are missing")
    sweep.add_argument("--threshold", choices=("oracle", "validation", "cross_fit"),
                       help="image threshold protocol of every job's evaluator (default: the configs', oracle)")
    sweep.add_argument("--save-images", action="store_true",
                       help="keep Anomalib's per-image visualisations (off: one PNG per test image and job)")
    sweep.add_argument("--keep", choices=KEEP_CHOICES, default="model",
                       help="what a job keeps of its model: model = the tested weights without optimizer state or "
                       "tensors the config rebuilds (model.ckpt, default); all = also Anomalib's checkpoints; none")
    sweep.add_argument("--override", action="append", metavar="METHOD:KEY=VALUE",
                       help="an override for one method, e.g. glass:model.init_args.lr=1e-4 (repeatable)")
    sweep.set_defaults(func=main_sweep, accepts_overrides=True,
                       on_interrupt="finished jobs are kept: rerun the same command to resume")

    methods = subparsers.add_parser("methods", help="list every method the sweep can run (paper configs, Anomalib models)")
    methods.add_argument("--configs", type=Path, help="configs folder (default: ./configs)")
    methods.add_argument("--profile", default="smoke", help="profile whose status is shown (default: smoke)")
    methods.add_argument("--json", action="store_true", help="machine-readable output")
    methods.set_defaults(func=main_methods)

    config = subparsers.add_parser("config", help="print the complete resolved config a sweep job would run",
                                   description="Unknown --a.b.c value arguments are config overrides.")
    config.add_argument("method", nargs="?", help="configs/ folder name, Anomalib model name, or a dotted class path")
    config.add_argument("--predict", type=Path, metavar="JOB_DIR",
                        help="print a finished job's config as `anomalib predict --config` accepts it (docs/inspect.md)")
    config.add_argument("--modality", default="LSM-1")
    config.add_argument("--profile", default="paper")
    config.add_argument("--seed", type=int, default=0)
    config.add_argument("--data-root", type=Path)
    config.add_argument("--configs", type=Path)
    config.set_defaults(func=main_config, accepts_overrides=True)

    configs = subparsers.add_parser("configs", help="compare the authors' configuration files with the harness's")
    configs_sub = configs.add_subparsers(dest="configs_command", required=True)
    compare = configs_sub.add_parser(
        "compare", help="list every key where files in DIR differ from configs/<method>/<modality>.yaml",
        description="Reads Anomalib YAML, the official DDAD config.yaml, GLASS arguments in shell scripts and JSON.")
    compare.add_argument("dir", help="folder (searched recursively) or one file")
    compare.add_argument("--method", help="method of every file (default: from each file's path)")
    compare.add_argument("--modality", help="modality of every file (default: from each file's path)")
    compare.add_argument("--configs", type=Path, help="configs folder (default: ./configs)")
    compare.set_defaults(func=_compare)


def _compare(args) -> int:
    from ispad_bench.sweep.compare import run

    return run(args)


def _configs_dir(path: Path | None) -> Path:
    return (path or default_configs_dir()).resolve()


# ------------------------------------------------------------------------------ sweep
def _make_executor(args):
    from ispad_bench.sweep.executors import DevicesExecutor, LocalExecutor, RayExecutor

    if args.jobs_per_device > 1 and (args.executor == "ray" or not args.devices):
        raise RuntimeError("--jobs-per-device needs --devices (with --executor ray, --gpus-per-job 0.5 packs two)")
    if args.executor == "ray":
        gpus = args.gpus_per_job
        if gpus is None:
            gpus = 1.0 if args.devices or _has_cuda() else 0.0
        return RayExecutor(args.ray_address, num_gpus=gpus, num_cpus=args.cpus_per_job, timeout=args.job_timeout)
    if args.devices:
        return DevicesExecutor(args.devices, timeout=args.job_timeout, jobs_per_device=args.jobs_per_device)
    return LocalExecutor(timeout=args.job_timeout)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _status_table(jobs, out_dir: Path):
    from rich.table import Table

    from ispad_bench.sweep.runner import job_status

    table = Table(title=f"{len(jobs)} jobs -> {out_dir}")
    for col in ("#", "method", "modality", "row", "seed", "key", "status"):
        table.add_column(col)
    for i, job in enumerate(jobs, 1):
        status = job_status(out_dir, job)
        color = {"done": "green", "failed": "red"}.get(status, "")
        table.add_row(str(i), job.method, job.modality, job.row.slug if job.row else "", str(job.seed), job.key,
                      f"[{color}]{status}[/]" if color else status)
    return table


def _announce(console, total: int):
    """``on_parse`` of :func:`resolve_all`: one line before the first job config that must be parsed."""
    said = []

    def on_parse(job) -> None:
        if not said:
            console.print(f"resolving job configs (of {total}) ...")
            said.append(True)

    return on_parse


def main_sweep(args) -> int:
    from rich.console import Console

    from ispad_bench.report.write import FIGURES, FILES, no_success_message, report_is_current, write_report
    from ispad_bench.sweep import grid, tiny
    from ispad_bench.sweep.lock import SweepLock, SweepLocked
    from ispad_bench.sweep.overrides import for_sweep as fit_overrides
    from ispad_bench.sweep.resolve import resolve
    from ispad_bench.sweep.preflight import check_arguments, check_data_roots, check_weights, unwritable
    from ispad_bench.sweep.resolved import resolve_all
    from ispad_bench.sweep.runner import job_status, run_jobs

    console = Console(stderr=True)
    if not args.all and not args.methods:
        console.print("[red]sweep: choose --all or --methods a,b[/]")
        return 2
    configs = _configs_dir(args.configs)
    threshold = [f"--model.init_args.evaluator.init_args.threshold={args.threshold}"] if args.threshold else []
    try:
        profile = load_profile(args.profile, configs)
        selection = grid.select(configs, profile, args.methods, args.modalities)  # once: overrides and grid share it
        profile, methods = tiny.for_others(profile, selection.methods)
        if methods != selection.methods:  # random-weights classes stand in for some (generated configs)
            selection = grid.select(configs, profile, list(methods), args.modalities)
        plan = fit_overrides(configs, None, None, list(getattr(args, "overrides", []) or []),
                             getattr(args, "override", None), profile, selection=selection)
        jobs = grid.expand(configs, profile, seeds=args.seeds, rows=args.rows, data_root=args.data_root,
                           overrides={m: a + threshold for m, a in plan.args.items()}, selection=selection)
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]sweep: {err}[/]")
        return 2
    for note in plan.notes:
        console.print(f"[yellow]{note}[/]")
    if args.all and not args.methods:
        missing = [m for m in paper.PAPER_METHODS if m not in selection.available]
        if missing:
            console.print(f"[yellow]no configs yet for {', '.join(missing)} in {configs}: not in this sweep[/]")
    out_dir = (args.out or Path("results/runs") / args.profile).resolve()
    try:
        resolved, parsed = resolve_all(jobs, out_dir, resolve, on_parse=_announce(console, len(jobs)))
    except (Exception, SystemExit) as err:  # noqa: BLE001 (jsonargparse exits on a bad config; its message is printed)
        job = getattr(err, "job", None)
        why = "" if isinstance(err, SystemExit) else f": {err}"  # not SystemExit's bare exit code (': 2')
        where = f" for {job.label()} ({job.config_file})" if job is not None else ""
        console.print(f"[red]sweep: bad config{where}{why}[/]")
        return 2
    if len(jobs) - parsed:
        console.print(f"{len(jobs) - parsed} job configs unchanged since the last run (not parsed again)")
    # the pre-flights look at the jobs that will run: a finished job needs neither its weights nor its data again
    todo = resolved if args.dry_run else [j for j in resolved if job_status(out_dir, j) != "done"]
    arguments_ok = check_arguments(todo, console)  # every pre-flight speaks before the sweep refuses
    roots_ok = check_data_roots(todo, console, args.dry_run)
    if not arguments_ok:
        return 2
    if args.dry_run:
        Console().print(_status_table(resolved, out_dir))
        return 0
    weights_ok = args.skip_weights_check or not todo or check_weights(todo, console)
    if not (roots_ok and weights_ok):
        return 2
    try:
        executor = _make_executor(args)
    except RuntimeError as err:
        console.print(f"[red]sweep: {err}[/]")
        return 2
    if (why := unwritable(out_dir)) is not None:
        console.print(f"[red]sweep: --out {out_dir} {why}[/]", highlight=False, soft_wrap=True)
        return 2
    try:  # one sweep per folder: a second one would run every job again (docs/reliability.md)
        lock = SweepLock(out_dir, wait=args.wait).acquire(on_wait=lambda m: console.print(m, soft_wrap=True))
    except SweepLocked as err:
        console.print(f"[red]sweep: {err}[/]", highlight=False, soft_wrap=True)
        return 3
    if lock.note:
        console.print(f"[yellow]sweep: {lock.note}[/]", highlight=False, soft_wrap=True)
    try:
        summary = run_jobs(resolved, out_dir, executor, profile=args.profile, maps_per_group=args.maps_per_group,
                           console=console, save_images=args.save_images, keep=args.keep)
    except OSError as err:
        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        console.print(f"[red]sweep: no space left on the disk holding {out_dir} ({err.filename or err}): stopped. "
                      "Finished jobs are kept and every record is complete; free space and rerun to resume[/]",
                      highlight=False, soft_wrap=True)
        return 1
    finally:
        lock.release()
    console.print(
        f"[bold]sweep done[/] in {summary.seconds:.1f}s: {summary.ok} ok, {len(summary.failed)} failed, "
        f"{summary.skipped} skipped (already finished) of {summary.total}"
    )
    for folder in summary.failed:
        console.print(f"  [red]failed[/]: {folder}/record.json")
    if not args.no_report and report_is_current(out_dir):
        console.print(f"report: {out_dir / FILES['md']} is current (no record changed since it was written)")
    elif not args.no_report and (message := no_success_message(out_dir)):
        console.print(f"[red]report: {message}[/]", highlight=False, soft_wrap=True)
    elif not args.no_report:
        paths = write_report(out_dir)
        figures = any(k.startswith(("roc", "overlay")) for k in paths)
        console.print(f"report: {paths['md']} (also .csv/.tex)" + (f", figures in {out_dir / FIGURES}" if figures else ""))
    return 0 if summary.success else 1


# ------------------------------------------------------------------------------ methods, config
def method_listing(configs: Path, profile_name: str, only: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per method: paper configs, then Anomalib image models, then refused models
    (``only``: just these names, in that order)."""
    from ispad_bench.models.fetch import needed_files
    from ispad_bench.sweep.catalog import (
        MAX_EPOCHS,
        VIDEO_REASON,
        anomalib_image_models,
        anomalib_video_models,
        class_path,
        expand_names,
        is_class_path,
        learning_type,
        method_model,
        one_epoch,
        protocol_notes,
        refusal,
    )

    configured = method_configs(configs)
    try:
        profile = load_profile(profile_name, configs)
        in_profile = set(select_methods(configured, None)) | set(expand_names(profile.include, configured))
    except (FileNotFoundError, ValueError):
        profile, in_profile = None, set()
    names = select_methods(configured, None)
    names += [n for n in anomalib_image_models() if n not in configured]
    names += [n for n in profile.include if is_class_path(n)] if profile else []
    video = anomalib_video_models()
    names = names if only is None else [n for n in only if n not in video]
    out = []
    for name in names:
        row: dict[str, Any] = {"method": name}
        reason = refusal(name)
        try:
            cls, init_args = method_model(name, configured)
        except ValueError as err:
            out.append({**row, "source": "?", "refused": str(err)})
            continue
        source = "class path" if is_class_path(name) else "anomalib"
        row["source"] = "paper config" if name in configured else source
        row["class_path"] = class_path(cls)
        row["learning_type"] = learning_type(cls)
        if name in paper.SUPERVISED_METHODS:  # Anomalib has no supervised learning type; the engine sees one_class
            row["learning_type"] = "mixed_supervised"
        if reason:
            out.append({**row, "refused": reason})
            continue
        files, error = needed_files(cls, init_args)
        row["weights"] = [{"file": f.name, "kind": f.kind, "present": f.present} for f in files]
        if error:
            row["weights_error"] = error
        has_switch = "pre_trained" in inspect.signature(cls).parameters
        random_files = needed_files(cls, {**init_args, "pre_trained": False})[0] if has_switch else files
        short = ", ".join(short_weight_name(f.name) for f in random_files)
        needs = f"needs {short}" if has_switch else f"no switch: needs {short}"
        row["random_weights"] = "yes" if not random_files else needs
        if name in configured:
            row["epochs"], row["notes"] = "as configured", []
        else:
            row["epochs"] = "1" if one_epoch(cls) else f"<= {MAX_EPOCHS}, early stop"
            row["notes"] = protocol_notes(cls)
        row[profile_name] = "in profile" if name in in_profile else "-"
        out.append(row)
    for name in video if only is None else [n for n in only if n in video]:
        out.append({"method": name, "source": "anomalib (video)", "refused": VIDEO_REASON})
    return out


def short_weight_name(name: str) -> str:
    """``timm/resnet18.a1_in1k:model.safetensors`` -> ``timm/resnet18.a1_in1k``."""
    return name.split(":", 1)[0]


def main_methods(args) -> int:
    from rich.console import Console
    from rich.table import Table

    data = method_listing(_configs_dir(args.configs), args.profile)
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
        wtext = f"{have}/{len(weights)} " + ", ".join(short_weight_name(w["file"]) for w in weights) if weights else "none"
        note = r.get("refused") or "; ".join(r.get("notes", []))
        table.add_row(r["method"], r.get("source", ""), r.get("learning_type", ""), "" if r.get("refused") else wtext,
                      r.get("random_weights", ""), r.get("epochs", ""), r.get(args.profile, ""),
                      f"[red]refused:[/] {note}" if r.get("refused") else note)
    Console(width=200).print(table)
    runnable = sum(1 for r in data if not r.get("refused"))
    print(f"{runnable} runnable, {len(data) - runnable} refused")
    return 0


def main_config(args) -> int:
    import sys

    if args.predict is not None:
        from ispad_bench.inspect.predict import main_predict_config

        return main_predict_config(args.predict)
    if args.method is None:
        print("config: give a METHOD, or --predict JOB_DIR", file=sys.stderr)
        return 2
    from ispad_bench.sweep import grid
    from ispad_bench.sweep.resolve import resolve

    configs = _configs_dir(args.configs)
    try:
        profile = load_profile(args.profile, configs)
        jobs = grid.expand(configs, profile, methods=[args.method], modalities=[args.modality], seeds=[args.seed],
                           data_root=args.data_root, overrides=list(getattr(args, "overrides", []) or []))
        if not jobs:
            raise ValueError(f"{args.method} has no config for {args.modality}")
        job = resolve(jobs[0])
    except (FileNotFoundError, ValueError) as err:
        print(f"config: {err}", file=sys.stderr)
        return 2
    print(f"# {job.label()} (profile {args.profile}); run: anomalib train --config <this file>")
    print(yaml.safe_dump(job.config, sort_keys=False), end="")
    return 0
