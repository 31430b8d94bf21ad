"""``ispad-bench weights fetch|check``: every weight file the chosen methods load, fetched once for
offline nodes (a command: it reads the sweep's method catalog)."""

from __future__ import annotations

from pathlib import Path

from ispad_bench.cli import comma_list


def add_parser(subparsers) -> None:
    weights = subparsers.add_parser("weights", help="fetch or check the weight files methods need (offline nodes)")
    sub = weights.add_subparsers(dest="action", required=True)
    for action, text in (("fetch", "download what is missing into the standard caches"),
                         ("check", "say per method what is present and what is missing")):
        p = sub.add_parser(action, help=text)
        p.add_argument("--methods", type=comma_list, help="comma list (names as in `ispad-bench methods`)")
        p.add_argument("--all", action="store_true", help="every runnable method")
        p.add_argument("--configs", type=Path)
        p.set_defaults(func=main_weights)


def main_weights(args) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from ispad_bench.sweep import catalog, grid
    from ispad_bench.sweep.profile import default_configs_dir

    console = Console(stderr=True)
    configured = grid.method_configs((args.configs or default_configs_dir()).resolve())
    if args.all:
        names = [*grid.select_methods(configured, None), catalog.ANOMALIB_GROUP]
    elif args.methods:
        names = args.methods
    else:
        console.print("[red]weights: choose --all or --methods a,b[/]")
        return 2
    try:
        per_method = catalog.weight_files(names, configured)
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
