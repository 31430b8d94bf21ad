"""Bootstrap confidence intervals for every metric of :func:`~ispad_bench.metrics.evaluate`.

Resampling unit: the *image* (pixels of one image are not independent), stratified by label and
defect group, so every resample has the test split's composition. A resample is an integer
weight per image (how often it was drawn), and every metric is a weighted sum:

* image AUROC: negatives sorted once; per resample a cumulative sum of their weights, read at
  each positive's rank;
* oracle threshold (re-chosen in every resample: that is the oracle's own variability): weighted
  cumulative TP / predicted-positive counts over the distinct scores, F1 argmax (first = highest
  score on ties, exactly as :func:`f1_optimal_threshold`); MCC, recall, precision, FPR follow;
* cross-fit (:mod:`~ispad_bench.metrics.crossfit`): the same tables restricted to each half;
* pixel AUROC, AUPRO, PRO (:mod:`~ispad_bench.metrics.bootstrap_pixel`): per image, the
  defect-free pixels are sorted once and counted below / equal to every distinct defect-pixel
  score. Those counts are additive over images, so a resample needs weighted sums of per-image
  tables, never a re-sort.

With one resample of weight 1 per image the result is :func:`evaluate`'s, which
``benchmarks/bootstrap_speed.py`` checks. Intervals are percentile intervals.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ispad_bench.metrics.bootstrap_pixel import pixel_replicates
from ispad_bench.metrics.crossfit import cross_fit, cross_fit_halves, strata
from ispad_bench.metrics.functional import as_binary, as_maps3d, as_scores, evaluate

IMAGE_KEYS = ("image_auroc", "threshold", "f1", "mcc", "recall", "precision", "fpr")
CROSSFIT_KEYS = ("mcc_crossfit", "recall_crossfit", "precision_crossfit", "fpr_crossfit", "f1_crossfit")
PIXEL_KEYS = ("pixel_auroc", "pro", "aupro")


@dataclass
class BootstrapResult:
    """Full-set values (``estimate``), per-resample values (``replicates``) and their intervals.

    Two results with the same ``fingerprint`` drew the same resamples of the same images, so
    their replicates are paired (see :mod:`~ispad_bench.metrics.compare`).
    """

    estimate: dict[str, float]
    replicates: dict[str, np.ndarray]
    n: int
    seed: int
    level: float
    fingerprint: str

    def interval(self, key: str) -> tuple[float, float]:
        return percentile_interval(self.replicates[key], self.level)

    @property
    def intervals(self) -> dict[str, tuple[float, float]]:
        return {k: self.interval(k) for k in self.replicates}

    def summary(self) -> dict[str, Any]:
        """JSON-able description (no replicates): n, seed, level, fingerprint, intervals."""
        return {"n": self.n, "seed": self.seed, "level": self.level, "fingerprint": self.fingerprint,
                "intervals": {k: [lo, hi] for k, (lo, hi) in self.intervals.items()}}


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of the finite values (``nan`` bounds when there are none)."""
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if not values.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def resample_weights(labels: Any, groups: Any = None, *, n: int = 1000, seed: int = 0, ids: Any = None):
    """(n, N) int32 draw counts, stratified by label and group; and the fingerprint of the draw.

    Within a stratum the images are ordered by ``ids`` (e.g. image paths) when given, so two
    methods evaluated on the same images in a different order still get the same resamples.
    """
    labels = as_binary(labels, "image_labels").ravel()
    names = strata(labels, groups)
    keys = np.arange(labels.size).astype(str) if ids is None else np.asarray([str(i) for i in ids])
    if keys.size != labels.size:
        raise ValueError(f"ids has {keys.size} entries but there are {labels.size} images")
    rng = np.random.default_rng(seed)
    weights = np.zeros((n, labels.size), np.int32)
    layout = []
    for name in sorted(set(names.tolist())):
        members = np.nonzero(names == name)[0]
        members = members[np.argsort(keys[members], kind="stable")]
        m = members.size
        draws = rng.integers(0, m, size=(n, m)) + np.arange(n)[:, None] * m  # m draws with replacement
        weights[:, members] = np.bincount(draws.ravel(), minlength=n * m).reshape(n, m)
        layout.append([name, keys[members].tolist()])
    digest = hashlib.sha256(json.dumps([n, seed, layout]).encode()).hexdigest()[:16]
    return weights, digest


# ------------------------------------------------------------------------------ image level
def _confusion(tn, fp, fn, tp) -> dict[str, np.ndarray]:
    """:func:`confusion_metrics` on arrays of counts (same formulas, same float operations)."""
    tn, fp, fn, tp = (np.asarray(v, np.int64) for v in (tn, fp, fn, tp))

    def ratio(a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)

    denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    with np.errstate(invalid="ignore", divide="ignore"):
        mcc = np.where(denom > 0, (tp * tn - fp * fn) / np.sqrt(np.maximum(denom, 1).astype(np.float64)), 0.0)
    return {"recall": ratio(tp, tp + fn), "precision": ratio(tp, tp + fp), "fpr": ratio(fp, fp + tn),
            "f1": ratio(2 * tp, 2 * tp + fp + fn), "mcc": mcc}


class _ImageTables:
    """Weighted cumulative counts over the distinct image scores (descending)."""

    def __init__(self, scores: np.ndarray, weights: np.ndarray) -> None:
        self.order = np.argsort(-scores, kind="stable")
        s = scores[self.order]
        self.starts = np.r_[0, np.nonzero(s[1:] != s[:-1])[0] + 1]
        self.candidates = s[self.starts]
        self.ordered = weights[:, self.order].astype(np.int32)  # draw counts <= N < 2**31
        self.ties = self.starts.size < scores.size

    def cum(self, select: np.ndarray) -> np.ndarray:
        """(n, G): weight of the selected images scoring >= the g-th distinct score."""
        w = self.ordered * select[self.order]
        if self.ties:
            w = np.add.reduceat(w, self.starts, axis=1)
        return np.cumsum(w, axis=1, dtype=np.int64)

    def midpoint_index(self, fit_cum: np.ndarray, best: np.ndarray) -> np.ndarray:
        """Per resample, the last distinct score >= the midpoint between the chosen score and the
        next lower score present in the fitting half (see :mod:`.crossfit`)."""
        n_groups = fit_cum.shape[1]
        present = np.diff(fit_cum, axis=1, prepend=0) > 0
        first = np.where(present, np.arange(n_groups), n_groups)
        following = np.minimum.accumulate(first[:, ::-1], axis=1)[:, ::-1]  # first present index >= g
        nxt = np.where(best + 1 < n_groups, following[np.arange(best.size), np.minimum(best + 1, n_groups - 1)],
                       n_groups)
        cand = self.candidates.astype(np.float64)
        t = np.where(nxt < n_groups, (cand[best] + cand[np.minimum(nxt, n_groups - 1)]) / 2, cand[best])
        return np.searchsorted(-cand, -t, "right") - 1

    @staticmethod
    def f1_argmax(pos: np.ndarray, every: np.ndarray) -> np.ndarray:
        """Index of the F1-optimal distinct score per resample (ties: the first, i.e. highest)."""
        n_pos = pos[:, -1:]
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2.0 * pos / (every + n_pos)
        if not (n_pos > 0).all():  # a resample without positives: no threshold (nan metrics)
            f1 = np.nan_to_num(f1, nan=-1.0)
        return np.argmax(f1, axis=1)


def _image_replicates(scores, labels, weights, threshold, in_a) -> dict[str, np.ndarray]:
    w = weights.astype(np.int64)
    rows = np.arange(w.shape[0])
    n_pos = w[:, labels].sum(1)
    n_neg = w[:, ~labels].sum(1)
    out: dict[str, np.ndarray] = {}
    # AUROC: cumulative weight of the sorted negatives, read at each positive's rank
    neg = np.nonzero(~labels)[0]
    neg = neg[np.argsort(scores[neg], kind="stable")]
    pos = np.nonzero(labels)[0]
    lt = np.searchsorted(scores[neg], scores[pos], "left")
    le = np.searchsorted(scores[neg], scores[pos], "right")
    cum_neg = np.zeros((w.shape[0], neg.size + 1), np.int64)
    np.cumsum(w[:, neg], axis=1, out=cum_neg[:, 1:])
    num = (w[:, pos] * (cum_neg[:, lt] + cum_neg[:, le])).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out["image_auroc"] = num.astype(np.float64) / (2.0 * n_pos * n_neg)
    tables = _ImageTables(scores, w)
    ones = np.ones(labels.size, bool)
    if threshold is None:  # the oracle, re-chosen per resample
        tp_c, all_c = tables.cum(labels), tables.cum(ones)
        best = tables.f1_argmax(tp_c, all_c)
        tp, pp = tp_c[rows, best], all_c[rows, best]
        out["threshold"] = tables.candidates[best].astype(np.float64)
    else:
        pred = scores >= threshold
        tp, pp = w[:, labels & pred].sum(1), w[:, pred].sum(1)
        out["threshold"] = np.full(w.shape[0], float(threshold))
    out.update(_confusion(n_neg - (pp - tp), pp - tp, n_pos - tp, tp))
    if in_a is not None:  # cross-fit: each half's F1 threshold applied to the other, pooled
        counts = np.zeros((4, w.shape[0]), np.int64)
        ok = np.ones(w.shape[0], bool)
        tp_a, all_a = tables.cum(labels & in_a), tables.cum(in_a)
        if threshold is not None:
            tp_c, all_c = tables.cum(labels), tables.cum(ones)
        halves = ((tp_a, all_a), (tp_c - tp_a, all_c - all_a))
        for (tp_f, all_f), (tp_o, all_o) in (halves, halves[::-1]):
            ok &= tp_f[:, -1] > 0
            best = tables.f1_argmax(tp_f, all_f)
            k = tables.midpoint_index(all_f, best)
            tp_x, pp_x = tp_o[rows, k], all_o[rows, k]
            pos_x, neg_x = tp_o[:, -1], all_o[:, -1] - tp_o[:, -1]
            counts += [neg_x - (pp_x - tp_x), pp_x - tp_x, pos_x - tp_x, tp_x]
        for key, value in _confusion(*counts).items():
            if key in ("mcc", "recall", "precision", "fpr", "f1"):
                out[f"{key}_crossfit"] = np.where(ok, value, np.nan)
    return out


# ------------------------------------------------------------------------------ entry point
def bootstrap(
    image_scores: Any,
    image_labels: Any,
    anomaly_maps: Any = None,
    gt_masks: Any = None,
    *,
    aupro_limit: float = 0.3,
    groups: Any = None,
    threshold: float | None = None,
    n: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    ids: Any = None,
    cross_fit_seed: int | None = 0,
    weights: np.ndarray | None = None,
    estimate: dict[str, float] | None = None,
    workers: int | None = None,
) -> BootstrapResult:
    """Percentile bootstrap intervals of every metric of :func:`evaluate` (same inputs).

    Args:
        n, seed: number of resamples and their seed (keep ``seed`` fixed across methods: equal
            seeds on equal images give paired resamples).
        level: interval coverage (0.95 = 2.5th to 97.5th percentile).
        ids: per-image identifiers (paths) that order each stratum, making resamples independent
            of the order the images arrived in.
        cross_fit_seed: also resample the cross-fitted metrics (``*_crossfit``) with this split
            seed; ``None`` skips them.
        weights: (n, N) draw counts to use instead of drawing (e.g. all ones: the full set).
        estimate: the :func:`evaluate` result of these inputs when already computed (saves
            sorting the maps twice); it is taken as given.
    """
    scores = as_scores(image_scores, "image_scores").ravel().astype(np.float64)
    labels = as_binary(image_labels, "image_labels").ravel()
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if estimate is None:
        estimate = evaluate(scores, labels, anomaly_maps, gt_masks, aupro_limit=aupro_limit, threshold=threshold,
                            workers=workers)
    estimate = dict(estimate)
    if weights is None:
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        weights, digest = resample_weights(labels, groups, n=n, seed=seed, ids=ids)
    else:
        weights = np.asarray(weights)
        if weights.ndim != 2 or weights.shape[1] != labels.size:
            raise ValueError(f"weights must have shape (n, {labels.size}), got {weights.shape}")
        digest = hashlib.sha256(weights.tobytes()).hexdigest()[:16]
    in_a = None
    if cross_fit_seed is not None and labels.sum() >= 2 and (~labels).sum() >= 2:
        in_a = cross_fit_halves(labels, groups, cross_fit_seed)
        cf = cross_fit(scores, labels, groups, seed=cross_fit_seed)
        estimate.update({f"{k}_crossfit": cf[k] for k in ("mcc", "recall", "precision", "fpr", "f1")})
    reps = _image_replicates(scores, labels, weights, threshold, in_a)
    if anomaly_maps is not None:
        maps = as_maps3d(as_scores(anomaly_maps, "anomaly_maps"), "anomaly_maps")
        masks = as_maps3d(as_binary(gt_masks, "gt_masks"), "gt_masks")
        if not workers:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            workers = min(8, cores)
        reps.update(pixel_replicates(maps, masks, weights, reps["threshold"], aupro_limit, workers))
    return BootstrapResult(estimate, reps, int(weights.shape[0]), seed, level, digest)
