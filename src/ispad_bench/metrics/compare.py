"""Paired comparisons of two methods on the same test images: bootstrap difference and DeLong.

* :func:`paired_difference`: the percentile interval of the per-resample difference A − B of any
  metric, from the replicates of two :class:`~ispad_bench.metrics.bootstrap.BootstrapResult`
  drawn on the same images with the same seed (equal ``fingerprint``), and a two-sided
  bootstrap p-value (twice the smaller share of resamples on either side of 0).
* :func:`delong`: DeLong, DeLong & Clarke-Pearson (1988) test of two correlated image AUROCs,
  with the placement-value (structural component) variance; ties count 1/2.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ispad_bench.metrics.bootstrap import BootstrapResult, percentile_interval
from ispad_bench.metrics.functional import as_binary, as_scores


def paired_difference(a: Any, b: Any, level: float = 0.95) -> dict[str, float]:
    """Difference A − B of paired replicates: ``diff`` (mean), ``lower``, ``upper``, ``p``.

    ``a``/``b``: replicate arrays of the same resamples (same length, same order). The p-value
    is two-sided: 2 · min(share of diffs <= 0, share >= 0), capped at 1.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired replicates differ in shape: {a.shape} vs {b.shape}")
    diff = a - b
    diff = diff[np.isfinite(diff)]
    if not diff.size:
        return {"diff": math.nan, "lower": math.nan, "upper": math.nan, "p": math.nan}
    lo, hi = percentile_interval(diff, level)
    p = min(1.0, 2.0 * min(np.mean(diff <= 0), np.mean(diff >= 0)))
    return {"diff": float(diff.mean()), "lower": lo, "upper": hi, "p": float(p)}


def compare(a: BootstrapResult, b: BootstrapResult, key: str = "mcc") -> dict[str, float]:
    """:func:`paired_difference` of one metric of two bootstrap results; refuses unpaired ones."""
    if a.fingerprint != b.fingerprint:
        raise ValueError("bootstrap results are not paired: different images, strata, seed or n "
                         f"(fingerprints {a.fingerprint} != {b.fingerprint})")
    out = paired_difference(a.replicates[key], b.replicates[key], a.level)
    out["estimate_diff"] = float(a.estimate[key] - b.estimate[key])
    return out


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V10, V01): per positive, the share of negatives below it (ties 1/2); per negative, the
    share of positives above it (ties 1/2)."""
    neg_sorted, pos_sorted = np.sort(neg), np.sort(pos)
    v10 = (np.searchsorted(neg_sorted, pos, "left") + np.searchsorted(neg_sorted, pos, "right")) / (2.0 * neg.size)
    above = 2 * pos.size - np.searchsorted(pos_sorted, neg, "left") - np.searchsorted(pos_sorted, neg, "right")
    return v10, above / (2.0 * pos.size)


def delong(scores_a: Any, scores_b: Any, labels: Any) -> dict[str, float]:
    """DeLong test of AUROC(A) = AUROC(B) on the same images.

    Returns ``auroc_a``, ``auroc_b``, ``diff`` (A − B), ``se``, ``z`` and the two-sided ``p``
    (normal approximation). Identical placements (e.g. two perfect separators) give se 0, z 0
    and p 1 when the AUROCs are equal.
    """
    sa = as_scores(scores_a, "scores_a").ravel().astype(np.float64)
    sb = as_scores(scores_b, "scores_b").ravel().astype(np.float64)
    y = as_binary(labels, "labels").ravel()
    if not sa.size == sb.size == y.size:
        raise ValueError(f"scores_a ({sa.size}), scores_b ({sb.size}) and labels ({y.size}) differ in length")
    m, n = int(y.sum()), int((~y).sum())
    if m < 2 or n < 2:
        raise ValueError(f"DeLong needs >= 2 defective and >= 2 good images, got {m} and {n}")
    v10 = np.empty((2, m))
    v01 = np.empty((2, n))
    for k, s in enumerate((sa, sb)):
        v10[k], v01[k] = _placements(s[y], s[~y])
    aucs = v10.mean(axis=1)
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    diff = float(aucs[0] - aucs[1])
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        z = 0.0 if diff == 0.0 else math.copysign(math.inf, diff)
    else:
        z = diff / se
    p = math.erfc(abs(z) / math.sqrt(2.0))
    return {"auroc_a": float(aucs[0]), "auroc_b": float(aucs[1]), "diff": diff, "se": se, "z": z, "p": p}
