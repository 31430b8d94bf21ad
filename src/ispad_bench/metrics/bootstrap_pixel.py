"""Pixel metrics of every bootstrap resample (see :mod:`ispad_bench.metrics.bootstrap`).

Per image, the defect-free pixels are sorted once and counted below / equal to every distinct
defect-pixel score q. Those counts add up over images, so a resample (an integer weight per
image) needs weighted sums only:

* pixel AUROC: per (defective image i, image j) the comparisons of i's defect pixels with j's
  defect-free pixels, accumulated over q; a resample is ``w_def @ M @ w``;
* AUPRO: see :class:`_AuproPass` (one pass over q, one (defective images x images) accumulator);
* PRO: per region, the fraction of its pixels above every threshold the resamples chose.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage, sparse

from ispad_bench.metrics.functional import STRUCT_8

_CELLS = 1 << 23  # int32 count cells per chunk of defect scores (32 MB)


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


def pixel_replicates(maps, masks, weights, thresholds, limit, workers) -> dict[str, np.ndarray]:
    """Pixel AUROC, PRO (at each resample's ``thresholds``) and AUPRO@``limit`` per resample."""
    n_res, n_img = weights.shape
    nan = np.full(n_res, np.nan)
    defective = masks.reshape(n_img, -1).any(axis=1)
    if not defective.any():
        return {"pixel_auroc": nan, "pro": nan, "aupro": nan}
    dimg = np.nonzero(defective)[0]
    dmasks = masks[dimg]
    regions, n_regions = ndimage.label(dmasks, structure=STRUCT_8)
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
