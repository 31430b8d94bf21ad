"""Overlapping window maps -> one full-size map.

Rule ``mean`` (default for models with maps): a pixel's value is the mean of the maps of every window
whose footprint covers it. Every window sees the pixel in another context (near its centre in one,
near its border in another); the mean keeps the scale of the scores the threshold was fitted on (a
constant-score model gives that constant, everywhere) and damps the border artefacts of single
windows. Rule ``max`` (default for the window-score map of a model without maps): the highest
covering value, so that the flagged windows' union is exactly the thresholded map.

The coverage count is separable (rows x columns of one grid), so only the running sum is a full-size
array. Pixels no footprint covers (the outer margin a centre crop removes, e.g. 16 px at ASM's 224 crop
of 256 windows) take the value of the nearest covered row/column; :attr:`Blender.uncovered` says how many.
"""

from __future__ import annotations

import numpy as np

from ispad_bench.errors import BadArgument
from ispad_bench.inspect.tiles import Footprint, Grid

RULES = ("mean", "max")


def _coverage(length: int, starts: np.ndarray, offset: int, size: int) -> np.ndarray:
    """How many footprints cover each pixel of one axis."""
    diff = np.zeros(length + 1, np.int64)
    lo = np.clip(starts + offset, 0, length)
    hi = np.clip(starts + offset + size, 0, length)
    np.add.at(diff, lo, 1)
    np.add.at(diff, hi, -1)
    return np.cumsum(diff[:-1])


def _nearest_covered(count: np.ndarray) -> np.ndarray | None:
    """Index of the nearest covered position for every position (``None``: all covered)."""
    covered = np.flatnonzero(count)
    if len(covered) == len(count):
        return None
    pos = np.arange(len(count))
    right = np.clip(np.searchsorted(covered, pos), 0, len(covered) - 1)
    left = np.clip(right - 1, 0, len(covered) - 1)
    pick_left = np.abs(pos - covered[left]) <= np.abs(covered[right] - pos)
    return np.where(pick_left, covered[left], covered[right])


class Blender:
    """Accumulates footprint-sized window maps of one grid; :meth:`result` is the full map (float32)."""

    def __init__(self, grid: Grid, fp: Footprint, rule: str = "mean") -> None:
        if rule not in RULES:
            raise BadArgument(f"blend rule must be one of {RULES}, got {rule!r}")
        self.grid, self.fp, self.rule = grid, fp, rule
        fill = -np.inf if rule == "max" else 0.0
        self.acc = np.full((grid.height, grid.width), fill, np.float32)
        self.rows = _coverage(grid.height, grid.ys, fp.y, fp.height)
        self.cols = _coverage(grid.width, grid.xs, fp.x, fp.width)
        self.uncovered = int(grid.height * grid.width - np.count_nonzero(self.rows) * np.count_nonzero(self.cols))

    def add(self, corners: np.ndarray, maps: np.ndarray) -> None:
        """``maps`` (n, fp.height, fp.width) of the windows at ``corners`` (n, 2)."""
        fp = self.fp
        for (y, x), m in zip(corners, maps, strict=True):
            view = self.acc[y + fp.y:y + fp.y + fp.height, x + fp.x:x + fp.x + fp.width]
            if self.rule == "mean":
                view += m
            else:
                np.maximum(view, m, out=view)

    def result(self) -> np.ndarray:
        """The blended map; frees the accumulator."""
        out, self.acc = self.acc, None
        if self.rule == "mean":
            inv_r = np.where(self.rows > 0, 1.0 / np.maximum(self.rows, 1), 0.0).astype(np.float32)
            inv_c = np.where(self.cols > 0, 1.0 / np.maximum(self.cols, 1), 0.0).astype(np.float32)
            out *= inv_r[:, None]
            out *= inv_c[None, :]
        return _fill_uncovered(_fill_uncovered(out, self.rows, 0), self.cols, 1)


def _fill_uncovered(out: np.ndarray, count: np.ndarray, axis: int) -> np.ndarray:
    """Uncovered rows (``axis`` 0) or columns (1) take the nearest covered one: in place at the borders (the usual
    case: a centre crop's margin), by indexing where footprints leave gaps inside the image."""
    covered = np.flatnonzero(count)
    lo, hi = int(covered[0]), int(covered[-1])
    view = out if axis == 0 else out.T
    if hi - lo + 1 == len(covered):  # one covered run: copy it outward
        view[:lo] = view[lo]
        view[hi + 1:] = view[hi]
        return out
    return np.take(out, _nearest_covered(count), axis=axis)
