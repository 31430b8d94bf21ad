"""ispad_bench.metrics.functional against scikit-learn, a slow reference written from the
definitions, and the paper's confusion matrices (Tables 2 and 3)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import f1_score, matthews_corrcoef, precision_score, recall_score, roc_auc_score

from ispad_bench.metrics import (
    confusion_metrics,
    evaluate,
    f1_optimal_threshold,
    held_out_split,
    paper_confusion_matrices,
    pixel_metrics,
)
from ispad_bench.metrics import functional as F


# ----------------------------------------------------------------- slow references (definitions)
def slow_regions(masks: np.ndarray) -> list[np.ndarray]:
    """Boolean (N,H,W) array per 8-connected region of each mask."""
    out = []
    for i, m in enumerate(masks.astype(bool)):
        lab, n = ndimage.label(m, structure=np.ones((3, 3)))
        for r in range(1, n + 1):
            full = np.zeros(masks.shape, bool)
            full[i] = lab == r
            out.append(full)
    return out


def slow_pro_curve(maps: np.ndarray, masks: np.ndarray) -> tuple[list[float], list[float]]:
    """(FPR, mean region overlap) at every distinct score as threshold, from (0, 0) downwards."""
    regions, neg = slow_regions(masks), ~masks.astype(bool)
    xs, ys = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        pred = maps >= t
        xs.append((pred & neg).sum() / neg.sum())
        ys.append(np.mean([(pred & r).sum() / r.sum() for r in regions]))
    return xs, ys


def slow_aupro(curve: tuple[list[float], list[float]], limit: float) -> float:
    """Trapezoid integral of the curve up to ``limit`` (interpolated there), divided by ``limit``."""
    xs, ys = curve
    area = 0.0
    for k in range(1, len(xs)):
        x0, x1, y0, y1 = xs[k - 1], xs[k], ys[k - 1], ys[k]
        if x0 >= limit:
            break
        if x1 > limit:  # interpolate at the limit
            y1, x1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0), limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def slow_pro(maps: np.ndarray, masks: np.ndarray, threshold: float) -> float:
    return float(np.mean([(maps[r] >= threshold).mean() for r in slow_regions(masks)]))


def random_case(seed: int, n: int = 8, size: int = 14, levels: int | None = 6):
    """Maps with heavy ties (``levels`` distinct values) and small masks incl. diagonal/1-px regions."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), np.uint8)
    labels = np.zeros(n, np.uint8)
    for i in range(n // 2):
        y, x = rng.integers(0, size - 4, 2)
        masks[i, y : y + rng.integers(1, 4), x : x + rng.integers(1, 4)] = 255
        masks[i, rng.integers(0, size), rng.integers(0, size)] = 255  # possibly a separate 1-px region
        masks[i, size - 1, size - 1] = masks[i, size - 2, size - 2] = 255  # diagonal pair: one region
        labels[i] = 1
    maps = rng.random((n, size, size)) + 0.6 * (masks > 0) * rng.random()
    if levels:
        maps = np.round(maps * levels) / levels
    maps = maps.astype(np.float32)
    scores = np.quantile(maps.reshape(n, -1), 0.9, axis=1).astype(np.float32)  # varied, often a map value
    return scores, labels, maps, masks


# ----------------------------------------------------------------- image level vs sklearn
@pytest.mark.parametrize("seed", range(5))
def test_image_metrics_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.random(60) < 0.3
    scores = np.round(rng.random(60) + 0.4 * labels, 1)  # few distinct values: many ties
    r = evaluate(scores, labels)
    assert r["image_auroc"] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    pred = scores >= r["threshold"]
    assert r["mcc"] == pytest.approx(matthews_corrcoef(labels, pred), abs=1e-12)
    assert r["precision"] == pytest.approx(precision_score(labels, pred), abs=1e-12)
    assert r["recall"] == pytest.approx(recall_score(labels, pred), abs=1e-12)
    assert r["f1"] == pytest.approx(f1_score(labels, pred), abs=1e-12)
    assert (r["tp"], r["fp"]) == (int((pred & labels).sum()), int((pred & ~labels).sum()))
    # the threshold is the highest score reaching the best F1 over all candidate thresholds
    f1s = {t: f1_score(labels, scores >= t) for t in np.unique(scores)}
    best = max(f1s.values())
    assert r["f1"] == pytest.approx(best, abs=1e-12)
    assert r["threshold"] == max(t for t, v in f1s.items() if abs(v - best) < 1e-12)


def test_f1_tie_goes_to_highest_threshold():
    # thresholds 0.9 (tp 1, fp 0) and 0.5 (tp 2, fp 2) both give F1 = 2/3 with P = 2: pick 0.9
    scores, labels = [0.9, 0.8, 0.7, 0.5, 0.1], [1, 0, 0, 1, 0]
    assert f1_score(labels, np.array(scores) >= 0.9) == pytest.approx(f1_score(labels, np.array(scores) >= 0.5))
    assert f1_optimal_threshold(scores, labels) == pytest.approx(0.9)


def test_given_threshold_is_used_and_inclusive():
    r = evaluate([0.1, 0.5, 0.7, 0.9], [0, 0, 1, 1], threshold=0.5)
    assert r["threshold"] == 0.5 and (r["tp"], r["fp"], r["tn"], r["fn"]) == (2, 1, 1, 0)


def test_paper_confusion_matrices_reproduce_printed_values():
    """Tables 2/3: MCC (2 decimals), recall and FPR (% with 1 decimal) from TN/TP/FN/FP."""
    table = paper_confusion_matrices()
    assert len(table) == 16
    mcc_mismatch = []
    for row in table.itertuples():
        m = confusion_metrics(row.tn, row.fp, row.fn, row.tp)
        assert round(100 * m["recall"], 1) == pytest.approx(row.recall_pct), row
        assert round(100 * m["fpr"], 1) == pytest.approx(row.fpr_pct), row
        if round(m["mcc"], 2) != pytest.approx(row.mcc):
            mcc_mismatch.append((row.modality, row.defect_group, row.n_real_defects, round(m["mcc"], 4), row.mcc))
    # Erratum in the paper: Table 3 "mixed 36" prints MCC 0.97, but its own confusion matrix
    # (TN 1914, TP 71, FN 3, FP 2) gives 0.9647. Every other row matches to printed precision.
    assert mcc_mismatch == [("ASM", "mixed", 36, 0.9647, 0.97)]
    ex = confusion_metrics(tn=1459, fp=11, fn=22, tp=73)  # Table 2, LSM-1 cold start (MCC 0.81, recall 76.8 %, FPR 0.7 %)
    assert (round(ex["mcc"], 2), round(100 * ex["recall"], 1), round(100 * ex["fpr"], 2)) == (0.81, 76.8, 0.75)


def test_confusion_metrics_degenerate():
    m = confusion_metrics(tn=5, fp=0, fn=3, tp=0)
    assert np.isnan(m["precision"]) and m["mcc"] == 0.0 and m["recall"] == 0.0
    with pytest.raises(ValueError, match=">= 0"):
        confusion_metrics(-1, 0, 0, 0)


# ----------------------------------------------------------------- pixel level vs slow reference
@pytest.mark.parametrize("seed", range(4))
def test_aupro_pro_pixel_auroc_match_reference(seed):
    """Odd seeds: heavy ties between defect and defect-free pixels; even seeds: all distinct."""
    scores, labels, maps, masks = random_case(seed, n=6, size=12, levels=6 if seed % 2 else None)
    curve = slow_pro_curve(maps, masks)
    for limit in (0.3, 0.05, 1.0):
        r = evaluate(scores, labels, maps, masks, aupro_limit=limit)
        assert r["aupro"] == pytest.approx(slow_aupro(curve, limit), abs=1e-6)
    assert r["pro"] == pytest.approx(slow_pro(maps, masks, r["threshold"]), abs=1e-12)
    assert r["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel() > 0, maps.ravel()), abs=1e-12)
    assert r["n_regions"] == len(slow_regions(masks))


def test_chunking_and_threads_do_not_change_results(monkeypatch):
    scores, labels, maps, masks = random_case(7, n=12, size=16, levels=5)
    ref = pixel_metrics(maps, masks, 0.5, workers=1)
    monkeypatch.setattr(F, "_CHUNK", 300)  # ~1 image per task, many tasks, both code paths
    for workers in (1, 3):
        assert pixel_metrics(maps, masks, 0.5, workers=workers) == ref


def test_regions_are_8_connected_and_per_image():
    masks = np.zeros((3, 6, 6), np.uint8)
    masks[0, 1, 1] = masks[0, 2, 2] = 1  # diagonal neighbours: one region (two with 4-connectivity)
    masks[1, 1, 1] = 1  # same position in the next image: a separate region
    maps = np.zeros((3, 6, 6), np.float32)
    maps[0, 1, 1] = 1.0  # half of region 1 detected, region 2 fully detected
    maps[1, 1, 1] = 1.0
    r = pixel_metrics(maps, masks, threshold=0.5)
    assert r["n_regions"] == 2 and r["pro"] == pytest.approx((0.5 + 1.0) / 2)


def test_input_types_and_mask_encodings_agree():
    scores, labels, maps, masks = random_case(3)
    ref = evaluate(scores, labels, maps, masks)
    variants = [
        (scores, labels, maps, masks // 255),
        (scores, labels.astype(bool), maps, masks > 0),
        (torch.from_numpy(scores), torch.from_numpy(labels), torch.from_numpy(maps), torch.from_numpy(masks > 0)),
        (scores, labels, maps[:, None], masks[:, None]),  # (N,1,H,W)
        (scores.astype(np.float64), labels.astype(np.float32), maps, (masks > 0).astype(np.float32)),  # {0., 1.}
    ]
    for args in variants:
        assert evaluate(*args) == ref
    half = torch.from_numpy(maps).half()  # float16 maps are widened exactly to float32
    assert evaluate(scores, labels, half, masks) == evaluate(scores, labels, half.float().numpy(), masks)


def test_groups_breakdown():
    scores = np.array([0.1, 0.2, 0.9, 0.8, 0.3, 0.95])
    labels = np.array([0, 0, 1, 1, 1, 0])
    groups = ["good", "good", "area", "points", "points", "good"]
    r = evaluate(scores, labels, groups=groups, threshold=0.5)
    assert (r["n_area"], r["recall_area"], r["n_points"], r["recall_points"]) == (1, 1.0, 2, 0.5)
    assert (r["tp_points"], r["fn_points"], r["fp_good"], r["fpr_good"]) == (1, 1, 1, pytest.approx(1 / 3))
    with pytest.raises(ValueError, match="groups"):
        evaluate(scores, labels, groups=groups[:-1])


def test_held_out_split_is_seeded_stratified_and_disjoint():
    labels = np.r_[np.zeros(40, int), np.ones(12, int)]
    groups = ["good"] * 40 + ["area"] * 9 + ["points"] * 3
    fit, rep = held_out_split(labels, groups, fraction=0.5, seed=1)
    assert np.array_equal(np.sort(np.r_[fit, rep]), np.arange(52)) and not set(fit) & set(rep)
    assert [int(np.isin(np.nonzero(np.asarray(groups) == g)[0], fit).sum()) for g in ("good", "area", "points")] == [
        20, 4, 2  # round(4.5) = 4 (banker's), round(1.5) = 2
    ]
    assert all(np.array_equal(a, b) for a, b in zip(held_out_split(labels, groups, seed=1), (fit, rep), strict=True))
    assert not np.array_equal(held_out_split(labels, groups, seed=2)[0], fit)
    # the alternative protocol: threshold from one part, metrics on the other
    scores = np.random.default_rng(0).random(52) + 0.5 * labels
    t = f1_optimal_threshold(scores[fit], labels[fit])
    r = evaluate(scores[rep], labels[rep], threshold=t)
    assert r["threshold"] == t and r["tp"] + r["fp"] == int((scores[rep] >= t).sum())
    with pytest.raises(ValueError, match="fraction"):
        held_out_split(labels, fraction=1.0)


# ----------------------------------------------------------------- bad input
@pytest.mark.filterwarnings("ignore:AUROC undefined")
def test_bad_inputs_raise_clear_errors():
    scores, labels, maps, masks = random_case(0)
    with pytest.raises(ValueError, match="shape"):
        evaluate(scores, labels, maps, masks[:, :-1])
    with pytest.raises(ValueError, match="NaN"):
        evaluate(np.r_[scores[:-1], np.nan], labels)
    bad = maps.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="anomaly_maps.*NaN/inf"):
        evaluate(scores, labels, bad, masks)
    with pytest.raises(ValueError, match="not binary"):
        evaluate(scores, labels, maps, masks // 255 * 3)  # {0, 3}
    mixed = masks // 255
    mixed[0][mixed[0] > 0] = 255  # {0, 1, 255}
    with pytest.raises(ValueError, match="not binary"):
        evaluate(scores, labels, maps, mixed)
    with pytest.raises(ValueError, match="not binary"):
        evaluate(scores, np.r_[labels[:-1], 2])
    with pytest.raises(ValueError, match="no defective"):
        evaluate(scores, np.zeros_like(labels))  # oracle threshold undefined
    with pytest.raises(ValueError, match="together"):
        evaluate(scores, labels, maps)
    with pytest.raises(ValueError, match="labelled good"):
        evaluate(scores, np.zeros_like(labels), maps, masks, threshold=0.5)
    with pytest.raises(ValueError, match="values but"):
        evaluate(scores[:-1], labels)


def test_undefined_values_are_nan_with_warning():
    scores, labels, maps, masks = random_case(1)
    with pytest.warns(RuntimeWarning, match="one class"):
        r = evaluate(scores, np.zeros_like(labels), threshold=0.5)
    assert np.isnan(r["image_auroc"]) and r["tp"] == 0
    all_bad = slice(0, len(labels) // 2)  # only defective images: a threshold exists, AUROC does not
    with pytest.warns(RuntimeWarning, match="one class"):
        r = evaluate(scores[all_bad], labels[all_bad], maps[all_bad], masks[all_bad])
    assert np.isnan(r["image_auroc"]) and r["threshold"] == scores[all_bad].min() and r["recall"] == 1.0
    assert np.isnan(r["fpr"]) and 0.0 <= r["aupro"] <= 1.0  # defect-free pixels of defective images
    with pytest.warns(RuntimeWarning, match="no defect pixel"):
        r = pixel_metrics(maps, np.zeros_like(masks), 0.5)
    assert np.isnan(r["aupro"]) and np.isnan(r["pro"]) and np.isnan(r["pixel_auroc"])
    with pytest.warns(RuntimeWarning, match="no defect-free pixel"):
        r = pixel_metrics(maps[:1], np.ones_like(masks[:1]), 0.5)
    assert np.isnan(r["aupro"]) and r["pro"] == pytest.approx((maps[0] >= 0.5).mean())
    with pytest.warns(RuntimeWarning, match="empty mask"):
        evaluate(scores, labels, maps, np.where(np.arange(len(masks))[:, None, None] == 0, 0, masks))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a well-formed case warns about nothing
        evaluate(scores, labels, maps, masks)
