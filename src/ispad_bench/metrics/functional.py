"""Exact image and pixel metrics of the paper's protocol (§4.3.6, §5.1), fast on CPU.

Conventions (also in docs/metrics.md):

* A sample is predicted defective when ``score >= threshold``.
* The oracle threshold is the image score that maximises F1 on the given set; among equal F1
  (compared exactly, in integers) the HIGHEST such score wins (fewest false positives).
* AUROC is the Mann-Whitney statistic with ties counted 1/2 (== sklearn ``roc_auc_score``).
* PRO (paper) = mean over ground-truth regions of the fraction of region pixels with
  ``map >= threshold`` (the image threshold). False positives are not penalised.
* AUPRO (MVTec AD): regions are 8-connected components of each mask; FPR over all defect-free
  pixels of all images; exact curve through every distinct score; trapezoid integral up to
  ``limit`` (interpolated at the limit) divided by ``limit``.

Pixel AUROC and AUPRO both need, for every distinct defect-pixel score, how many defect-free
pixels score below / equal to it. Those counts are additive over disjoint pixel sets, so the
defect-free pixels are sorted in independent chunks (threads; numpy releases the GIL) and
queried with ``searchsorted``; nothing of map size is copied whole. The AUPRO integral is then
a closed form per distinct score (see :func:`_aupro_from_counts`), with no curve materialised.
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from scipy import ndimage

_CHUNK = 1 << 22  # defect-free pixels sorted per task: 16 MB of float32, cache friendly
STRUCT_8 = np.zeros((3, 3, 3), dtype=bool)  # 8-connected in-plane, never across images
STRUCT_8[1] = True


# --------------------------------------------------------------------------- input handling
def _as_numpy(x: Any, name: str) -> np.ndarray:
    """numpy view of a numpy array / torch tensor / sequence (no copy for CPU tensors)."""
    if hasattr(x, "detach"):  # torch tensor without importing torch
        x = x.detach()
        if x.dtype.is_floating_point and x.dtype.itemsize < 4:  # float16/bfloat16: exact in f32
            x = x.float()
        x = x.cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name}: could not convert to a numeric array")
    return arr


def as_scores(x: Any, name: str) -> np.ndarray:
    arr = _as_numpy(x, name)
    if arr.dtype.kind not in "fiub":
        raise ValueError(f"{name}: expected numeric scores, got dtype {arr.dtype}")
    if arr.dtype.kind != "f" or arr.dtype.itemsize < 4:
        arr = arr.astype(np.float64 if arr.dtype.kind in "iu" else np.float32)
    if arr.size and not (np.isfinite(arr.min()) and np.isfinite(arr.max())):  # min/max see NaN
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name}: {bad} NaN/inf value(s); scores must be finite")
    return arr


def as_binary(x: Any, name: str) -> np.ndarray:
    """Boolean version of a {0,1} / {0,255} / bool array; anything else is a ValueError."""
    arr = _as_numpy(x, name)
    if arr.dtype == bool:
        return arr
    nz = arr != 0
    vals = arr[nz]
    if vals.size:
        top = vals.flat[0]
        if top not in (1, 255) or not np.all(vals == top):
            shown = np.unique(vals)[:5].tolist()
            raise ValueError(
                f"{name}: not binary; expected values {{0,1}}, {{0,255}} or bool, found non-zero values {shown}"
            )
    return nz


def as_maps3d(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise ValueError(f"{name}: expected shape (N, H, W) or (N, 1, H, W), got {tuple(x.shape)}")
    return x


# --------------------------------------------------------------------------- image level
def confusion_metrics(tn: int, fp: int, fn: int, tp: int) -> dict[str, float]:
    """Recall, precision, FPR, F1 and MCC of one confusion matrix.

    Undefined ratios (0/0) are ``nan``; MCC is 0 when a marginal is empty (sklearn's convention).
    """
    tn, fp, fn, tp = (int(v) for v in (tn, fp, fn, tp))
    if min(tn, fp, fn, tp) < 0:
        raise ValueError(f"confusion counts must be >= 0, got tn={tn} fp={fp} fn={fn} tp={tp}")

    def ratio(a: int, b: int) -> float:
        return a / b if b else float("nan")

    denom = (tp + fp) * (tp + fn) * (tn + fp) * (tn + fn)
    mcc = (tp * tn - fp * fn) / float(np.sqrt(float(denom))) if denom else 0.0
    return {
        "recall": ratio(tp, tp + fn),
        "precision": ratio(tp, tp + fp),
        "fpr": ratio(fp, fp + tn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "mcc": mcc,
        "tn": tn,
        "fp": fp,
        "fn": fn,
        "tp": tp,
    }


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact AUROC (Mann-Whitney, ties 1/2) of 1-D scores; ``nan`` + warning with one class."""
    scores, labels = np.asarray(scores), np.asarray(labels, dtype=bool)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        warnings.warn("AUROC undefined: only one class present; returning nan", RuntimeWarning, stacklevel=2)
        return float("nan")
    neg = np.sort(scores[~labels])
    pos = scores[labels]
    lt = np.searchsorted(neg, pos, "left").astype(np.int64)
    le = np.searchsorted(neg, pos, "right").astype(np.int64)
    return float((lt + le).sum()) / (2.0 * n_pos * n_neg)


def f1_optimal_threshold(scores: Any, labels: Any) -> float:
    """Image score that maximises F1 when predicting ``score >= threshold``.

    Candidates are the distinct scores; exact F1 ties go to the highest score. Raises
    ``ValueError`` when ``labels`` has no defective sample (F1 is 0 for every threshold).
    """
    scores = as_scores(scores, "image_scores").ravel()
    labels = as_binary(labels, "image_labels").ravel()
    if scores.size != labels.size:
        raise ValueError(f"image_scores has {scores.size} values but image_labels {labels.size}")
    n_pos = int(labels.sum())
    if n_pos == 0:
        raise ValueError("F1-optimal threshold undefined: no defective (label 1) sample; pass threshold=")
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]  # last index of each group of equal scores (descending)
    tp = np.cumsum(y)[last].astype(np.int64)
    pp = (np.nonzero(last)[0] + 1).astype(np.int64)  # predicted positive = tp + fp
    f1 = 2.0 * tp / (pp + n_pos)
    # F1 = 2tp / (pp + P): confirm near-maxima exactly in integers, keep the first (= highest).
    cand = np.nonzero(f1 >= f1.max() * (1 - 1e-9))[0]
    best = cand[0]
    for c in cand[1:]:
        if tp[c] * (pp[best] + n_pos) > tp[best] * (pp[c] + n_pos):
            best = c
    return float(s[last][best])


def group_breakdown(pred: np.ndarray, labels: np.ndarray, groups: Any) -> dict[str, float]:
    """Per-group counts and recall (defective images) / FPR (good images)."""
    groups = np.asarray([str(g) for g in groups])
    if groups.size != labels.size:
        raise ValueError(f"groups has {groups.size} entries but there are {labels.size} images")
    out: dict[str, float] = {}
    for g in sorted(set(groups.tolist())):
        sel = groups == g
        pos, neg = sel & labels, sel & ~labels
        out[f"n_{g}"] = int(sel.sum())
        if pos.any():
            tp = int(np.count_nonzero(pred[pos]))
            out[f"tp_{g}"], out[f"fn_{g}"] = tp, int(pos.sum()) - tp
            out[f"recall_{g}"] = tp / int(pos.sum())
        if neg.any():
            fp = int(np.count_nonzero(pred[neg]))
            out[f"fp_{g}"], out[f"tn_{g}"] = fp, int(neg.sum()) - fp
            out[f"fpr_{g}"] = fp / int(neg.sum())
    return out


def held_out_split(labels: Any, groups: Any = None, *, fraction: float = 0.5, seed: int = 0):
    """Seeded split of the test images into (fit, report) index arrays, stratified by group.

    The held-out alternative to the paper's oracle threshold: fit the threshold on one part with
    :func:`f1_optimal_threshold`, then ``evaluate(...[report], threshold=t)`` on the other.
    ``fraction`` of each stratum (group, else label) goes to the fit part, at least one image of
    every stratum with two or more images on each side.
    """
    labels = as_binary(labels, "labels").ravel()
    strata = labels.astype(str) if groups is None else np.asarray([str(g) for g in groups])
    if strata.size != labels.size:
        raise ValueError(f"groups has {strata.size} entries but there are {labels.size} labels")
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    rng = np.random.default_rng(seed)
    fit = []
    for name in sorted(set(strata.tolist())):
        idx = rng.permutation(np.nonzero(strata == name)[0])
        k = int(round(fraction * idx.size))
        if idx.size >= 2:
            k = min(max(k, 1), idx.size - 1)
        fit.append(idx[:k])
    fit_idx = np.sort(np.concatenate(fit))
    return fit_idx, np.setdiff1d(np.arange(labels.size), fit_idx)


# --------------------------------------------------------------------------- pixel level
def _count_below(values: np.ndarray, q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted distinct ``q``: (#values < q_j, #values <= q_j). Sorts ``values`` in place."""
    lt = np.zeros(q.size, np.int64)
    le = np.zeros(q.size, np.int64)
    if values.size == 0:
        return lt, le
    below = int(np.count_nonzero(values < q[0]))
    above = int(np.count_nonzero(values > q[-1]))
    if below + above > values.size // 4:  # cheap compaction when many values cannot interleave
        values = values[(values >= q[0]) & (values <= q[-1])]
    else:
        below = 0
    values.sort()
    lt += below + np.searchsorted(values, q, "left")
    le += below + np.searchsorted(values, q, "right")
    return lt, le


def _negative_counts(maps: np.ndarray, masks: np.ndarray, defective: np.ndarray, q: np.ndarray, workers: int):
    """(#defect-free pixels < q_j, <= q_j) over all images, sorted chunk-wise in threads."""
    clean = np.nonzero(~defective)[0]
    per_img = int(np.prod(maps.shape[1:]))
    step = max(1, _CHUNK // max(per_img, 1))

    def clean_task(idx: np.ndarray):
        return _count_below(maps[idx].reshape(-1), q)  # fancy index -> private copy, sorted in place

    def defective_task(idx: np.ndarray):
        return _count_below(maps[idx][~masks[idx]], q)

    tasks = [(clean_task, clean[i : i + step]) for i in range(0, clean.size, step)]
    dirty = np.nonzero(defective)[0]
    tasks += [(defective_task, dirty[i : i + step]) for i in range(0, dirty.size, step)]
    lt = np.zeros(q.size, np.int64)
    le = np.zeros(q.size, np.int64)
    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(workers) as pool:
            results = pool.map(lambda t: t[0](t[1]), tasks)
            for a, b in results:
                lt += a
                le += b
    else:
        for fn, idx in tasks:
            a, b = fn(idx)
            lt += a
            le += b
    return lt, le


def _aupro_from_counts(weights: np.ndarray, lt: np.ndarray, le: np.ndarray, n_neg: int, limit: float) -> float:
    """Area under the PRO curve up to FPR ``limit``, divided by ``limit``.

    Lowering the threshold through a distinct score q moves the curve from FPR a = #neg>q / n
    to b = #neg>=q / n while the regions' overlap rises by the weight W_q of the defect pixels
    scoring q (linearly when a<b: that is the trapezoid segment; a jump when a==b). Summing each
    score's share of the area under that piecewise linear curve on [0, limit] gives exactly the
    trapezoid rule over the full curve, including the interpolation at the limit.
    """
    a = (n_neg - le) / n_neg
    b = (n_neg - lt) / n_neg
    area = np.zeros_like(a)
    full = b <= limit
    area[full] = (limit - b[full]) + (b[full] - a[full]) / 2.0
    part = (a < limit) & ~full  # the segment that crosses the limit
    area[part] = (limit - a[part]) ** 2 / (2.0 * (b[part] - a[part]))
    return float(np.dot(weights, area) / limit)


def pixel_metrics(
    anomaly_maps: Any,
    gt_masks: Any,
    threshold: float | None = None,
    *,
    aupro_limit: float = 0.3,
    workers: int | None = None,
) -> dict[str, float]:
    """Pixel AUROC, AUPRO@``aupro_limit`` and (when ``threshold`` is given) the paper's PRO.

    ``nan`` + ``RuntimeWarning`` where undefined: no defect region (all three), no defect-free
    pixel (pixel AUROC, AUPRO). Also returns ``n_regions``.
    """
    maps = as_maps3d(as_scores(anomaly_maps, "anomaly_maps"), "anomaly_maps")
    masks = as_maps3d(as_binary(gt_masks, "gt_masks"), "gt_masks")
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly_maps shape {tuple(maps.shape)} != gt_masks shape {tuple(masks.shape)}")
    if not 0.0 < aupro_limit <= 1.0:
        raise ValueError(f"aupro_limit must be in (0, 1], got {aupro_limit}")
    if not workers:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        workers = min(8, cores)
    nan = float("nan")
    defective = masks.reshape(masks.shape[0], -1).any(axis=1)
    out = {"pixel_auroc": nan, "aupro": nan, "pro": nan, "n_regions": 0}
    if not defective.any():
        msg = "pixel metrics undefined: gt_masks contain no defect pixel; returning nan"
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
        return out
    dmaps, dmasks = maps[defective], masks[defective]
    regions, n_regions = ndimage.label(dmasks, structure=STRUCT_8)
    region_of = regions[dmasks]  # region id (1..R) of every defect pixel
    pos = dmaps[dmasks]
    sizes = np.bincount(region_of, minlength=n_regions + 1)[1:].astype(np.float64)
    out["n_regions"] = int(n_regions)
    if threshold is not None:
        hit = np.bincount(region_of, weights=pos >= threshold, minlength=n_regions + 1)[1:]
        out["pro"] = float(np.mean(hit / sizes))
    n_neg = masks.size - pos.size
    if n_neg == 0:
        warnings.warn("pixel AUROC/AUPRO undefined: no defect-free pixel; returning nan", RuntimeWarning, stacklevel=2)
        return out
    q, inverse = np.unique(pos, return_inverse=True)
    lt, le = _negative_counts(maps, masks, defective, q, workers)
    count_q = np.bincount(inverse, minlength=q.size).astype(np.int64)
    out["pixel_auroc"] = float(np.dot(count_q, lt + le)) / (2.0 * pos.size * n_neg)
    w_q = np.bincount(inverse, weights=1.0 / (n_regions * sizes[region_of - 1]), minlength=q.size)
    out["aupro"] = _aupro_from_counts(w_q, lt, le, n_neg, aupro_limit)
    return out


# --------------------------------------------------------------------------- all together
def evaluate(
    image_scores: Any,
    image_labels: Any,
    anomaly_maps: Any = None,
    gt_masks: Any = None,
    *,
    aupro_limit: float = 0.3,
    groups: Any = None,
    threshold: float | None = None,
    workers: int | None = None,
) -> dict[str, float]:
    """All metrics of the paper's protocol from raw scores (numpy arrays or torch tensors).

    Args:
        image_scores: (N,) raw image anomaly scores (higher = more anomalous).
        image_labels: (N,) 0/1 (or bool, or 0/255) with 1 = defective.
        anomaly_maps: optional (N, H, W) or (N, 1, H, W) raw anomaly maps.
        gt_masks: (N, H, W) masks, values {0,1}, {0,255} or bool; required with maps.
        aupro_limit: FPR limit of AUPRO (MVTec: 0.3).
        groups: optional (N,) group names (e.g. "good"/"area"/"points") -> per-group
            ``n_<g>``, ``tp_<g>``/``fn_<g>``/``recall_<g>``, ``fp_<g>``/``tn_<g>``/``fpr_<g>``.
        threshold: use this image threshold (e.g. fitted on held-out data) instead of the
            F1-optimal one on these samples (the paper's oracle protocol).

    Returns:
        dict with image_auroc, threshold, f1, mcc, recall, precision, fpr, tn, tp, fn, fp and,
        with maps, pixel_auroc, pro, aupro, n_regions (+ the group keys).
    """
    scores = as_scores(image_scores, "image_scores").ravel()
    labels = as_binary(image_labels, "image_labels").ravel()
    if scores.size != labels.size:
        raise ValueError(f"image_scores has {scores.size} values but image_labels {labels.size}")
    if scores.size == 0:
        raise ValueError("no samples to evaluate")
    if (anomaly_maps is None) != (gt_masks is None):
        raise ValueError("anomaly_maps and gt_masks must be given together (pixel metrics need both)")
    if threshold is None:
        threshold = f1_optimal_threshold(scores, labels)
    elif not np.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    threshold = float(threshold)
    pred = scores >= threshold
    result: dict[str, float] = {"image_auroc": auroc(scores, labels), "threshold": threshold}
    result.update(
        confusion_metrics(
            tn=int(np.count_nonzero(~pred & ~labels)),
            fp=int(np.count_nonzero(pred & ~labels)),
            fn=int(np.count_nonzero(~pred & labels)),
            tp=int(np.count_nonzero(pred & labels)),
        )
    )
    if anomaly_maps is not None:
        masks = as_maps3d(as_binary(gt_masks, "gt_masks"), "gt_masks")
        if masks.shape[0] != labels.size:
            raise ValueError(f"gt_masks has {masks.shape[0]} masks but there are {labels.size} image labels")
        has_defect = masks.reshape(masks.shape[0], -1).any(axis=1)
        if np.any(has_defect & ~labels):
            bad = np.nonzero(has_defect & ~labels)[0][:5].tolist()
            raise ValueError(f"images labelled good have defect pixels in gt_masks (indices {bad} ...)")
        n = int(np.count_nonzero(labels & ~has_defect))  # e.g. the defect lies outside the model's crop
        result["n_unreachable"] = n
        if n:
            msg = f"{n} defective image(s) have an empty mask; they add no PRO region"
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        result.update(pixel_metrics(anomaly_maps, masks, threshold, aupro_limit=aupro_limit, workers=workers))
    if groups is not None:
        result.update(group_breakdown(pred, labels, groups))
    return result
