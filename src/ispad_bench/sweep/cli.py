"""``ispad-bench sweep`` (run the grid) and ``ispad-bench report`` (tables and figures)."""

from __future__ import annotations

import sys
from pathlib import Path

EXECUTORS = ("local", "ray")


def _csv(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def add_parser(subparsers) -> None:
    sweep = subparsers.add_parser(
        "sweep",
        help="run the benchmark grid (resumable) and write the report",
        description="Run methods x modalities x seeds (+ the supervised rows of Tables 2-3) from configs/. "
        "Unknown --a.b.c value arguments are Anomalib config overrides, applied to every job whose config "
        "accepts the key (skipped, with a note, for the others); --<method>.a.b.c value applies to one method.",
    )
    sweep.add_argument("--all", action="store_true", help="every method that has configs (paper order)")
    sweep.add_argument("--methods", type=_csv, help="comma list, e.g. glass,uflow")
    sweep.add_argument("--modalities", type=_csv, help="comma list (default: LSM-1,LSM-2,ASM)")
    sweep.add_argument("--seeds", type=lambda s: [int(x) for x in _csv(s)], help="comma list (default: profile's)")
    sweep.add_argument("--rows", type=_csv, help="supervised rows, e.g. none,mixed-1_16 (default: profile's)")
    sweep.add_argument("--data-root", type=Path, help="dataset root (overrides data.init_args.root)")
    sweep.add_argument("--out", type=Path, help="sweep folder (default: results/runs/<profile>)")
    sweep.add_argument("--profile", default="paper", help="settings profile in configs/profiles/ (paper, official, smoke)")
    sweep.add_argument("--configs", type=Path, help="configs folder (default: ./configs)")
    sweep.add_argument("--dry-run", action="store_true", help="print the grid with each job's status and exit")
    sweep.add_argument("--devices", type=_csv, help="GPU ids, one job per GPU at a time, e.g. 0,1")
    sweep.add_argument("--executor", choices=EXECUTORS, default="local")
    sweep.add_argument("--ray-address", help="Ray cluster address (default: start/join a local Ray)")
    sweep.add_argument("--gpus-per-job", type=float, default=None, help="Ray: GPUs per task (default 1 if any)")
    sweep.add_argument("--cpus-per-job", type=float, default=1, help="Ray: CPUs per task")
    sweep.add_argument("--job-timeout", type=float, help="seconds after which a job is killed (failure record)")
    sweep.add_argument("--maps-per-group", type=int, default=2, help="anomaly maps kept per test group for figures")
    sweep.add_argument("--no-report", action="store_true", help="skip writing tables/figures at the end")
    sweep.add_argument("--wait", action="store_true", help="if another sweep runs in --out, wait for it (default: refuse)")
    sweep.add_argument("--skip-weights-check", action="store_true", help="start even if weight files are missing")
    sweep.add_argument("--threshold", choices=("oracle", "validation", "cross_fit"),
                       help="image threshold protocol of every job's evaluator (default: the configs', oracle)")
    sweep.add_argument("--save-images", action="store_true",
                       help="keep Anomalib's per-image visualisations (off: one PNG per test image and job)")
    sweep.add_argument("--override", action="append", metavar="METHOD:KEY=VALUE",
                       help="an override for one method, e.g. glass:model.init_args.lr=1e-4 (repeatable)")
    sweep.set_defaults(func=main_sweep, accepts_overrides=True)

    report = subparsers.add_parser("report", help="tables (md/csv/tex) and figures from a sweep folder")
    report.add_argument("runs_dir", type=Path, nargs="?", help="sweep folder (holding */record.json)")
    report.add_argument("--out", type=Path, help="where to write (default: RUNS_DIR; with --paper: results/paper)")
    report.add_argument("--no-figures", action="store_true")
    report.add_argument("--paper", action="store_true", help="write the paper's Tables 2-6 (tables.md) instead")
    report.set_defaults(func=main_report)


def _make_executor(args):
    from ispad_bench.sweep.executors import DevicesExecutor, LocalExecutor, RayExecutor

    if args.executor == "ray":
        gpus = args.gpus_per_job
        if gpus is None:
            gpus = 1.0 if args.devices or _has_cuda() else 0.0
        return RayExecutor(args.ray_address, num_gpus=gpus, num_cpus=args.cpus_per_job, timeout=args.job_timeout)
    if args.devices:
        return DevicesExecutor(args.devices, timeout=args.job_timeout)
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


def main_sweep(args) -> int:
    from rich.console import Console

    from ispad_bench.sweep import grid
    from ispad_bench.sweep.lock import SweepLock, SweepLocked
    from ispad_bench.sweep.overrides import for_sweep as fit_overrides
    from ispad_bench.sweep.report import no_success_message, write_report
    from ispad_bench.sweep.runner import run_jobs

    console = Console(stderr=True)
    if not args.all and not args.methods:
        console.print("[red]sweep: choose --all or --methods a,b[/]")
        return 2
    configs = (args.configs or grid.default_configs_dir()).resolve()
    try:
        profile = grid.load_profile(args.profile, configs)
        plan = fit_overrides(configs, None if args.all and not args.methods else args.methods, args.modalities,
                             list(getattr(args, "overrides", []) or []), getattr(args, "override", None), profile)
        jobs = grid.expand(
            configs,
            profile,
            methods=None if args.all and not args.methods else args.methods,
            modalities=args.modalities,
            seeds=args.seeds,
            rows=args.rows,
            data_root=args.data_root,
            overrides={m: a + ([f"--model.init_args.evaluator.init_args.threshold={args.threshold}"]
                               if args.threshold else []) for m, a in plan.args.items()},
        )
    except (FileNotFoundError, ValueError) as err:
        console.print(f"[red]sweep: {err}[/]")
        return 2
    for note in plan.notes:
        console.print(f"[yellow]{note}[/]")
    if args.all and not args.methods:
        missing = [m for m in grid.PAPER_METHODS if m not in grid.method_configs(configs)]
        if missing:
            console.print(f"[yellow]no configs yet for {', '.join(missing)} in {configs}: not in this sweep[/]")
    out_dir = (args.out or Path("results/runs") / args.profile).resolve()
    console.print(f"resolving {len(jobs)} job configs ...")
    resolved = []
    for job in jobs:
        try:
            resolved.append(grid.resolve(job))
        except (Exception, SystemExit) as err:  # jsonargparse exits on a bad config (its message is printed)
            why = "" if isinstance(err, SystemExit) else f": {err}"  # not SystemExit's bare exit code (': 2')
            console.print(f"[red]sweep: bad config for {job.label()} ({job.config_file}){why}[/]")
            return 2
    if args.dry_run:
        Console().print(_status_table(resolved, out_dir))
        return 0
    from ispad_bench.sweep.methods_cli import check_before_sweep

    if not args.skip_weights_check and not check_before_sweep(resolved, console):
        return 2
    try:
        executor = _make_executor(args)
    except RuntimeError as err:
        console.print(f"[red]sweep: {err}[/]")
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
                           console=console, save_images=args.save_images)
    finally:
        lock.release()
    console.print(
        f"[bold]sweep done[/] in {summary.seconds:.1f}s: {summary.ok} ok, {len(summary.failed)} failed, "
        f"{summary.skipped} skipped (already finished) of {summary.total}"
    )
    for folder in summary.failed:
        console.print(f"  [red]failed[/]: {folder}/record.json")
    if not args.no_report and (message := no_success_message(out_dir)):
        console.print(f"[red]report: {message}[/]", highlight=False, soft_wrap=True)
    elif not args.no_report:
        paths = write_report(out_dir)
        console.print(f"report: {paths['md']} (also .csv/.tex)" + (f", figures in {out_dir / 'figures'}"
                                                                    if any(k.startswith(('roc', 'overlay')) for k in paths) else ""))
    return 0 if summary.success else 1


def main_report(args) -> int:
    from ispad_bench.sweep import records
    from ispad_bench.sweep.report import no_success_message, paper_markdown, write_report

    if args.paper:
        path = (args.out or Path("results/paper")) / "tables.md"
        records.atomic_write_bytes(path, paper_markdown().encode())
        print(f"md: {path}")
        return 0
    if args.runs_dir is None or not args.runs_dir.is_dir():
        print(f"report: {args.runs_dir} is not a folder (give the sweep folder, or --paper)", file=sys.stderr)
        return 2
    paths = write_report(args.runs_dir, args.out, figures=not args.no_figures)
    for name, path in paths.items():
        print(f"{name}: {path}")
    if message := no_success_message(args.runs_dir):
        print(f"report: {message}", file=sys.stderr)
        return 1
    return 0
