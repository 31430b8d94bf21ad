"""What the evaluator adds to :func:`evaluate` after a test epoch: cross-fit metrics and the bootstrap.

Called by :class:`~ispad_bench.metrics.ISPADMetrics` while it still holds the maps, so a job
saves intervals and per-resample values and reports never need the maps again.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from ispad_bench.metrics.bootstrap import BootstrapResult, bootstrap
from ispad_bench.metrics.crossfit import CROSSFIT_KEYS, cross_fit, cross_fit_halves
from ispad_bench.metrics.functional import STRUCT_8, group_breakdown

CONFUSION_KEYS = (*CROSSFIT_KEYS, "tn", "fp", "fn", "tp")


@dataclass
class UncertaintyOptions:
    """``n`` bootstrap resamples (0: none) with ``seed`` (fixed across methods: paired resamples),
    interval ``level``; cross-fit split seed; ``cross_fit_mode``: report cross-fitted values as
    the main thresholded metrics (``threshold: cross_fit``)."""

    n: int = 1000
    seed: int = 0
    level: float = 0.95
    cross_fit_seed: int = 0
    cross_fit_mode: bool = False


def _pro_per_image(maps: np.ndarray, masks: np.ndarray, thresholds: np.ndarray) -> float:
    """The paper's PRO with each image judged at its own threshold (cross-fit: the other half's)."""
    defective = masks.reshape(masks.shape[0], -1).any(1)
    if not defective.any():
        return math.nan
    dmasks = masks[defective]
    regions, n_regions = ndimage.label(dmasks, structure=STRUCT_8)
    region_of = regions[dmasks]
    pixel_thr = thresholds[defective][np.nonzero(dmasks)[0]]
    hit = np.bincount(region_of, weights=maps[defective][dmasks] >= pixel_thr, minlength=n_regions + 1)[1:]
    return float(np.mean(hit / np.bincount(region_of, minlength=n_regions + 1)[1:]))


def finish(
    result: dict[str, float],
    scores: np.ndarray,
    labels: np.ndarray,
    maps: np.ndarray | None,
    masks: np.ndarray | None,
    groups: Any,
    ids: Any,
    options: UncertaintyOptions,
    *,
    threshold: float | None = None,
    aupro_limit: float = 0.3,
) -> tuple[dict[str, float], BootstrapResult | None]:
    """Add ``<key>_crossfit`` to ``result`` (in cross-fit mode also replace the thresholded keys)
    and run the bootstrap. Sets with fewer than two images of a class get neither (warning)."""
    labels = np.asarray(labels, bool)
    if labels.sum() < 2 or (~labels).sum() < 2:
        warnings.warn("fewer than 2 defective or 2 good test images: no cross-fit, no bootstrap", RuntimeWarning,
                      stacklevel=2)
        return result, None
    result = dict(result)
    cf = cross_fit(scores, labels, groups, seed=options.cross_fit_seed)
    result.update({f"{k}_crossfit": cf[k] for k in CROSSFIT_KEYS})
    if options.cross_fit_mode:
        result.update({k: cf[k] for k in CONFUSION_KEYS})
        result["threshold"] = math.nan  # two thresholds: threshold_a / threshold_b
        result["threshold_a"], result["threshold_b"] = cf["threshold_a"], cf["threshold_b"]
        in_a = cross_fit_halves(labels, groups, options.cross_fit_seed)
        per_image = np.where(in_a, cf["threshold_b"], cf["threshold_a"])
        if maps is not None and "pro" in result:
            result["pro"] = _pro_per_image(maps, masks, per_image)
        if groups is not None:
            result.update(group_breakdown(np.asarray(scores) >= per_image, labels, groups))
    boot = None
    if options.n:
        boot = bootstrap(scores, labels, maps, masks, groups=groups, ids=ids, threshold=threshold, n=options.n,
                         seed=options.seed, level=options.level, cross_fit_seed=options.cross_fit_seed,
                         estimate=result, aupro_limit=aupro_limit)
        if options.cross_fit_mode:  # the main keys are the cross-fitted ones
            for key in CROSSFIT_KEYS:
                boot.replicates[key] = boot.replicates[f"{key}_crossfit"]
            for key in ("pro", "threshold"):
                boot.replicates.pop(key, None)
    return result, boot
