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
* pixel AUROC, AUPRO: per image, the defect-free pixels are sorted once and counted below /
  equal to every distinct defect-pixel score. Those counts are additive over images, so the
  counts of a resample are ``weights @ counts`` (one matrix product) instead of a re-sort;
* PRO: per region, the fraction of its pixels above every threshold the resamples chose.

With one resample of weight 1 per image the result is :func:`evaluate`'s, which
``benchmarks/bootstrap_speed.py`` checks. Intervals are percentile intervals.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage, sparse

from ispad_bench.metrics.crossfit import cross_fit, cross_fit_halves, strata
from ispad_bench.metrics.functional import _STRUCT_8, _binary, _maps3d, _scores, evaluate

IMAGE_KEYS = ("image_auroc", "threshold", "f1", "mcc", "recall", "precision", "fpr")
CROSSFIT_KEYS = ("mcc_crossfit", "recall_crossfit", "precision_crossfit", "fpr_crossfit", "f1_crossfit")
PIXEL_KEYS = ("pixel_auroc", "pro", "aupro")
_CELLS = 1 << 23  # int32 count cells per pixel chunk (32 MB)


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
    labels = _binary(labels, "image_labels").ravel()
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


# ------------------------------------------------------------------------------ pixel level
def _sorted_negatives(maps, masks, defective, workers):
    """Every image's defect-free pixels, sorted, in one buffer; (buffer, offsets, counts)."""
    n_img = maps.shape[0]
    per = int(np.prod(maps.shape[1:]))
    counts = np.full(n_img, per, np.int64)
    counts[defective] -= masks[defective].reshape(int(defective.sum()), -1).sum(1)
    offsets = np.r_[0, np.cumsum(counts)]
    buf = np.empty(int(offsets[-1]), maps.dtype)

    def fill(j: int) -> None:
        seg = buf[offsets[j] : offsets[j + 1]]
        seg[...] = maps[j][~masks[j]] if defective[j] else maps[j].reshape(-1)
        seg.sort()

    _parallel(fill, range(n_img), workers)
    return buf, offsets, counts


def _parallel(fn, items, workers: int) -> None:
    items = list(items)
    if workers > 1 and len(items) > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(fn, items))
    else:
        for item in items:
            fn(item)


def _count_sorted(seg: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(#seg < q_k, #seg <= q_k) for sorted ``seg`` and sorted distinct ``q``.

    Either a binary search per q, or (when fewer values of ``seg`` lie within [q_0, q_last]
    than there are q) one per such value into ``q`` and a cumulative histogram.
    """
    lo, hi = int(np.searchsorted(seg, q[0], "left")), int(np.searchsorted(seg, q[-1], "right"))
    if 2 * (hi - lo) < q.size:
        inner = seg[lo:hi]
        lt = lo + np.cumsum(np.bincount(np.searchsorted(q, inner, "right"), minlength=q.size + 1))[: q.size]
        le = lo + np.cumsum(np.bincount(np.searchsorted(q, inner, "left"), minlength=q.size + 1))[: q.size]
        return lt, le
    a = np.searchsorted(seg, q, "left")
    b = a.copy()
    tie = a < seg.size
    tie[tie] = seg[a[tie]] == q[tie]
    if tie.any():
        b[tie] = np.searchsorted(seg, q[tie], "right")
    return a, b


def _pixel_replicates(maps, masks, weights, thresholds, limit, workers) -> dict[str, np.ndarray]:
    n_res, n_img = weights.shape
    nan = np.full(n_res, np.nan)
    defective = masks.reshape(n_img, -1).any(axis=1)
    if not defective.any():
        return {"pixel_auroc": nan, "pro": nan, "aupro": nan}
    dimg = np.nonzero(defective)[0]
    dmasks = masks[dimg]
    regions, n_regions = ndimage.label(dmasks, structure=_STRUCT_8)
    region_of = regions[dmasks] - 1
    pos = maps[dimg][dmasks]
    dloc = np.nonzero(dmasks)[0]  # defective image (0..Nd-1) of every defect pixel, same order
    sizes = np.bincount(region_of, minlength=n_regions).astype(np.float64)
    region_img = np.zeros(n_regions, np.int64)
    region_img[region_of] = dloc
    wf = weights.astype(np.float64)
    wd = wf[:, dimg]
    regions_b = wd @ np.bincount(region_img, minlength=dimg.size).astype(np.float64)
    out: dict[str, np.ndarray] = {}
    # PRO at each resample's own threshold
    uniq, which = np.unique(thresholds, return_inverse=True)
    k = np.searchsorted(uniq, pos, "right")  # pixel >= uniq[t] for every t < k
    hist = np.zeros((n_regions, uniq.size + 1), np.float64)
    np.add.at(hist, (region_of, k), 1.0)
    hits = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # hits[r, t] = #pixels of r >= uniq[t]
    frac = hits / sizes[:, None]
    per_res = np.ascontiguousarray((frac[:, which] * wd[:, region_img].T).T)
    out["pro"] = per_res.sum(axis=1) / regions_b
    # pixel AUROC and AUPRO from per-image negative counts at every distinct defect score
    buf, offsets, n_clean = _sorted_negatives(maps, masks, defective, workers)
    n_neg = wf @ n_clean.astype(np.float64)
    n_pos = wd @ np.bincount(dloc, minlength=dimg.size).astype(np.float64)
    if not (n_neg > 0).all():
        return {**out, "pixel_auroc": nan, "aupro": nan}
    q, inverse = np.unique(pos, return_inverse=True)
    ones = np.ones(pos.size)
    count_q = sparse.csc_matrix((ones, (dloc, inverse)), shape=(dimg.size, q.size))
    inv_size = sparse.csc_matrix((1.0 / sizes[region_of], (dloc, inverse)), shape=(dimg.size, q.size))
    pair = np.zeros((dimg.size, n_img))  # sum over the defect pixels of i of (#neg of j < q) + (#neg <= q)
    aupro = _AuproPass(wf, wd, regions_b, n_neg, n_clean.astype(np.float64), limit)
    step = max(1, _CELLS // n_img)
    for k0 in range(0, q.size, step):
        qc = q[k0 : k0 + step]
        lt = np.empty((n_img, qc.size), np.int32)
        le = np.empty((n_img, qc.size), np.int32)

        def count(j: int, qc=qc, lt=lt, le=le) -> None:
            lt[j], le[j] = _count_sorted(buf[offsets[j] : offsets[j + 1]], qc)

        _parallel(count, range(n_img), workers)
        both = (lt.astype(np.float64) + le).T  # (c, n_img)
        pair += count_q[:, k0 : k0 + qc.size] @ both
        aupro.chunk(lt, le, both, inv_size[:, k0 : k0 + qc.size])
    out["aupro"] = aupro.result()
    num = ((wd @ pair) * wf).sum(1)
    out["pixel_auroc"] = num / (2.0 * n_pos * n_neg)
    return out


class _AuproPass:
    """AUPRO of every resample from one ascending pass over the distinct defect scores q.

    With FPR b(q) = share of negatives >= q and a(q) = share > q (both falling in q), the area is
    sum_q w_q * [limit - (a + b) / 2] over the q with b(q) <= limit (a suffix, from k*), plus the
    one segment crossing the limit (at k* - 1: a < limit < b). The weights w_q sum to 1, so the
    suffix sum is limit * (1 - sum_{q<k*} w_q) - sum_{q>=k*} w_q m(q) / N, with m(q) the negatives
    above q (ties half). w_q and m(q) are weighted sums over images, so sum_q w_q m(q) is
    ``wd @ P @ w / R`` with ``P = sum_q u_iq (n_j - (lt_j(q) + le_j(q)) / 2)`` (defect image i x
    image j): one (defect images x images) accumulator instead of a (resamples x images x q)
    product. Only the chunk where a resample crosses the limit is evaluated per resample.
    """

    def __init__(self, wf, wd, regions_b, n_neg, n_clean, limit) -> None:
        self.wf, self.wd, self.regions, self.n_neg, self.limit = wf, wd, regions_b, n_neg, limit
        self.n_clean = n_clean
        n_res, n_def, n_img = wf.shape[0], wd.shape[1], wf.shape[1]
        self.prefix = np.zeros((n_def, n_img))  # P at the current chunk start
        self.u_prefix = np.zeros(n_def)  # sum_{q < start} u_iq
        self.before = np.full(n_res, np.nan)  # sum_{q < k*} w_q m(q), per resample
        self.w_before = np.zeros(n_res)  # sum_{q < k*} w_q
        self.part = np.zeros(n_res)  # the crossing segment
        self.last = None  # (lt, le, u) of the previous chunk's last q

    def _fpr(self, rows, lt, le):
        g_lt = self.wf[rows] @ lt.astype(np.float64)
        g_le = self.wf[rows] @ le.astype(np.float64) if (lt != le).any() else g_lt
        n = self.n_neg[rows, None] if g_lt.ndim == 2 else self.n_neg[rows]
        return (n - g_le) / n, (n - g_lt) / n, g_lt, g_le  # a, b, G_lt, G_le

    def _crossing(self, a, b):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where((a < self.limit) & (b > self.limit), (self.limit - a) ** 2 / (2.0 * (b - a)), 0.0)

    def chunk(self, lt, le, both, u) -> None:
        u = u.toarray()
        _, b_last, _, _ = self._fpr(slice(None), lt[:, -1], le[:, -1])
        rows = np.nonzero(np.isnan(self.before) & (b_last <= self.limit))[0]
        if rows.size:
            a, b, g_lt, g_le = self._fpr(rows, lt, le)
            first = np.argmax(b <= self.limit, axis=1)  # k* within the chunk
            w = (self.wd[rows] @ u) / self.regions[rows, None]
            upto = np.arange(b.shape[1]) < first[:, None]
            start = ((self.wd[rows] @ self.prefix) * self.wf[rows]).sum(1) / self.regions[rows]
            above = self.n_neg[rows, None] - (g_lt + g_le) / 2.0
            self.before[rows] = start + (w * above * upto).sum(1)
            self.w_before[rows] = (self.wd[rows] @ self.u_prefix) / self.regions[rows] + (w * upto).sum(1)
            inside = first > 0
            r = np.arange(rows.size)[inside]
            k = first[inside] - 1
            self.part[rows[inside]] = w[r, k] * self._crossing(a[r, k], b[r, k])
            if self.last is not None and (~inside).any():
                self._part_at_last(rows[~inside])
        self.prefix += u @ (self.n_clean[None, :] - both / 2.0)
        self.u_prefix += u.sum(1)
        self.last = (lt[:, -1].copy(), le[:, -1].copy(), u[:, -1].copy())

    def _part_at_last(self, rows) -> None:
        lt, le, u = self.last
        a, b, _, _ = self._fpr(rows, lt, le)
        self.part[rows] = (self.wd[rows] @ u) / self.regions[rows] * self._crossing(a, b)

    def result(self) -> np.ndarray:
        never = np.isnan(self.before)  # FPR > limit even at the highest defect score
        if never.any() and self.last is not None:
            self._part_at_last(np.nonzero(never)[0])
        total = ((self.wd @ self.prefix) * self.wf).sum(1) / self.regions
        full = self.limit * (1.0 - self.w_before) - (total - self.before) / self.n_neg
        return (np.where(never, 0.0, full) + self.part) / self.limit


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
    scores = _scores(image_scores, "image_scores").ravel().astype(np.float64)
    labels = _binary(image_labels, "image_labels").ravel()
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
        maps = _maps3d(_scores(anomaly_maps, "anomaly_maps"), "anomaly_maps")
        masks = _maps3d(_binary(gt_masks, "gt_masks"), "gt_masks")
        if not workers:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            workers = min(8, cores)
        reps.update(_pixel_replicates(maps, masks, weights, reps["threshold"], aupro_limit, workers))
    return BootstrapResult(estimate, reps, int(weights.shape[0]), seed, level, digest)
