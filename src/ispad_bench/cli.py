"""``ispad-bench`` command line. Each sub-command lives beside the code it drives.

A module listed in ``COMMANDS`` exposes ``add_parser(subparsers)``, which registers its
sub-command and sets ``func`` (called with the parsed namespace, returns the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Callable
from typing import Any

COMMANDS = (
    "ispad_bench.data.cli",  # data synth | check | download | textures
    "ispad_bench.sweep.cli",  # sweep, methods, config
    "ispad_bench.report.cli",  # report
    "ispad_bench.models.cli",  # weights fetch | check
    "ispad_bench.inspect.cli",  # inspect
)


def comma_list(text: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``: the value of every comma-list option."""
    return [t.strip() for t in text.split(",") if t.strip()]


def bounded(cast: Callable[[str], Any], expected: str, ok: Callable[[Any], bool]) -> Callable[[str], Any]:
    """An argparse ``type`` that casts the text and refuses values outside ``ok`` with ``expected ..., got '<text>'``
    (argparse prints it in one line)."""
    def parse(text: str):
        try:
            value = cast(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


positive_float = bounded(float, "a number > 0", lambda v: 0 < v < math.inf)  # NaN fails both comparisons
positive_int = bounded(int, "an integer >= 1", lambda v: v >= 1)
non_negative_int = bounded(int, "an integer >= 0", lambda v: v >= 0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ispad-bench", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    from ispad_bench.quiet import quiet_known_warnings

    quiet_known_warnings()  # third-party deprecation notices only (quiet.py)
    args, extra = build_parser().parse_known_args(argv)
    if extra and not getattr(args, "accepts_overrides", False):
        build_parser().error(f"unrecognized arguments: {' '.join(extra)}")
    args.overrides = extra
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # one line, not a traceback through the sweep's loops
        note = getattr(args, "on_interrupt", None)
        print(f"\nispad-bench {args.command}: interrupted" + (f"; {note}" if note else ""), file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
