"""``make demo``: the smoke benchmark on a generated dataset, then the report.

    python -m ispad_bench.demo --root datasets/ispad-synth [--out results/runs/demo]

Runs ``ispad-bench sweep --all --profile smoke`` (every method x modality, tiny step limits,
random-init weights, offline) on ``--root``, which ``make demo`` generated beforehand; the sweep
writes ``tables.md/.csv/.tex`` and ``figures/`` into ``--out``. Prints the Markdown tables and
where everything is. A rerun resumes: finished jobs are skipped.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ispad_bench.cli import main as cli_main
from ispad_bench.report.write import FIGURES, FILES


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ispad_bench.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="dataset root (e.g. from `ispad-bench data synth`)")
    parser.add_argument("--out", type=Path, default=Path("results/runs/demo"), help="sweep folder")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"demo: dataset root {args.root} does not exist; generate it with "
              f"`ispad-bench data synth --root {args.root} --patches 40 --seed 0`", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    code = cli_main(["sweep", "--all", "--profile", "smoke", "--data-root", str(args.root), "--out", str(args.out)])
    seconds = time.perf_counter() - t0
    out = args.out.resolve()
    tables = out / FILES["md"]
    if tables.is_file():
        print(tables.read_text())
    figures = sorted((out / FIGURES).glob("*.png"))
    print(f"smoke sweep: {seconds:.0f} s, exit code {code}")
    print(f"tables:  {tables} (also tables.csv, tables.tex)")
    print(f"figures: {', '.join(str(f) for f in figures) if figures else 'none'}")
    print(f"records: {out}/<method>/<modality>/<job>/record.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
