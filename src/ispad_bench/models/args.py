"""Range checks of the models' numeric init arguments, run at construction.

A NaN or out-of-range hyperparameter used to reach torch and fail far away (GLASS
``gaussian_noise_std: .nan`` ended in ``binary_cross_entropy``: "all elements of input should be
between 0 and 1"). :func:`check` turns it into one line naming the model and the argument.
Intervals are written as text: ``"(0, inf)"``, ``"[0, 1]"``, ``"[1, inf)"``; ``int`` ones also
require a whole number.
"""

from __future__ import annotations

import math
import numbers

from ispad_bench.errors import BadArgument


def _parse(interval: str) -> tuple[float, float, bool, bool]:
    low, high = (float(x) for x in interval[1:-1].split(","))
    return low, high, interval[0] == "[", interval[-1] == "]"


def check(owner: str, integers: dict | None = None, **floats) -> None:
    """Raise ``BadArgument("<owner>: <arg> must be ... in <interval>, got <value>")`` for the first
    bad argument. ``floats``/``integers`` map an argument name to ``(value, interval)``; a value
    of ``None`` is skipped (optional arguments)."""
    for kind, args in (("a finite number", floats), ("a whole number", integers or {})):
        for name, (value, interval) in args.items():
            if value is None:
                continue
            low, high, closed_low, closed_high = _parse(interval)
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
            if ok and kind == "a whole number":
                ok = float(value).is_integer()
            if ok:
                ok = (value >= low if closed_low else value > low) and (value <= high if closed_high else value < high)
            if not ok:
                raise BadArgument(f"{owner}: {name} must be {kind} in {interval}, got {value!r}")
