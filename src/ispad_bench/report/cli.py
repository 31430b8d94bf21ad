"""``ispad-bench report RUNS_DIR``: tables and figures again from a sweep folder's records."""

from __future__ import annotations

import sys
from pathlib import Path


def add_parser(subparsers) -> None:
    report = subparsers.add_parser("report", help="tables (md/csv/tex) and figures from a sweep folder")
    report.add_argument("runs_dir", type=Path, nargs="?", help="sweep folder (holding */record.json)")
    report.add_argument("--out", type=Path, help="where to write (default: RUNS_DIR; with --paper: results/paper)")
    report.add_argument("--no-figures", action="store_true")
    report.add_argument("--paper", action="store_true", help="write the paper's Tables 2-6 (tables.md) instead")
    report.set_defaults(func=main_report)


def main_report(args) -> int:
    from ispad_bench.files import atomic_write_bytes
    from ispad_bench.report.tables import paper_markdown
    from ispad_bench.report.write import FILES, no_success_message, unreadable_message, write_report

    if args.paper:
        path = (args.out or Path("results/paper")) / FILES["md"]
        atomic_write_bytes(path, paper_markdown().encode())
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
    if bad := unreadable_message(args.runs_dir):
        print(f"report: {bad}", file=sys.stderr)
        return 1
    return 0
