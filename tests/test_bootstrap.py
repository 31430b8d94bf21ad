"""Bootstrap intervals, cross-fit threshold and paired comparisons on small real computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_metrics import random_case

from ispad_bench.metrics import bootstrap, compare, cross_fit, delong, evaluate, paired_difference, resample_weights

KEYS = ("image_auroc", "mcc", "recall", "precision", "fpr", "pixel_auroc", "pro", "aupro")


def separable(n: int = 24, size: int = 12, seed: int = 0):
    """Scores and maps that separate perfectly (defects score above every defect-free pixel)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3 == 0
    masks = np.zeros((n, size, size), bool)
    maps = rng.random((n, size, size)).astype(np.float32) * 0.4
    for i in np.nonzero(labels)[0]:
        y, x = rng.integers(0, size - 3, 2)
        masks[i, y : y + 3, x : x + 3] = True
    maps[masks] = 0.6 + 0.4 * rng.random(int(masks.sum()))
    scores = maps.reshape(n, -1).max(1)
    return scores, labels, maps, masks


@pytest.mark.parametrize("seed", range(3))
def test_identity_weights_reproduce_evaluate(seed):
    scores, labels, maps, masks = random_case(seed, n=10)
    one = bootstrap(scores, labels, maps, masks, weights=np.ones((1, 10), int))
    ref = evaluate(scores, labels, maps, masks)
    for key in KEYS:
        value = float(one.replicates[key][0])
        assert value == pytest.approx(ref[key], abs=1e-12) if key == "aupro" else value == ref[key], key


@pytest.mark.parametrize("seed", range(3))
def test_each_resample_equals_evaluate_on_the_repeated_images(seed):
    scores, labels, maps, masks = random_case(seed, n=10, levels=None if seed else 6)
    weights, _ = resample_weights(labels, n=4, seed=seed)
    res = bootstrap(scores, labels, maps, masks, weights=weights)
    for b in range(4):
        idx = np.repeat(np.arange(10), weights[b])
        ref = evaluate(scores[idx], labels[idx], maps[idx], masks[idx])
        for key in (*KEYS, "threshold", "f1"):
            got = float(res.replicates[key][b])
            assert (math.isnan(got) and math.isnan(ref[key])) or got == pytest.approx(ref[key], abs=1e-12), key


@pytest.mark.parametrize("limit", [0.3, 0.05, 1.0])
def test_pixel_pass_in_small_chunks_equals_evaluate(monkeypatch, limit):
    """The defect scores are processed in chunks; with one or a few scores per chunk every
    resample still equals evaluate on its repeated images (crossings at chunk edges, ties)."""
    from ispad_bench.metrics import bootstrap_pixel as module

    for seed, levels in ((0, 3), (1, None)):
        scores, labels, maps, masks = random_case(seed, n=10, levels=levels)
        weights, _ = resample_weights(labels, n=5, seed=seed)
        for per_chunk in (1, 4):
            monkeypatch.setattr(module, "_CELLS", per_chunk * 10)
            res = bootstrap(scores, labels, maps, masks, weights=weights, aupro_limit=limit, cross_fit_seed=None)
            for b in range(5):
                idx = np.repeat(np.arange(10), weights[b])
                ref = evaluate(scores[idx], labels[idx], maps[idx], masks[idx], aupro_limit=limit)
                for key in ("aupro", "pixel_auroc"):
                    assert float(res.replicates[key][b]) == pytest.approx(ref[key], abs=1e-12), (key, b)


def test_interval_contains_full_set_value_and_seed_is_reproducible():
    scores, labels, maps, masks = random_case(3, n=16, levels=None)
    a = bootstrap(scores, labels, maps, masks, n=300, seed=5)
    b = bootstrap(scores, labels, maps, masks, n=300, seed=5)
    c = bootstrap(scores, labels, maps, masks, n=300, seed=6)
    for key in ("image_auroc", "mcc", "pixel_auroc", "aupro", "pro"):
        lo, hi = a.interval(key)
        assert lo <= a.estimate[key] <= hi, key
        assert a.interval(key) == b.interval(key)
        assert lo < hi, key
    assert a.fingerprint == b.fingerprint != c.fingerprint
    assert any(a.interval(k) != c.interval(k) for k in KEYS)


def test_perfect_separator_has_degenerate_interval():
    scores, labels, maps, masks = separable()
    res = bootstrap(scores, labels, maps, masks, n=200, seed=0)
    for key in ("image_auroc", "mcc", "recall", "pixel_auroc", "aupro"):
        assert res.interval(key) == (1.0, 1.0), key
    assert res.interval("fpr") == (0.0, 0.0)


@pytest.mark.filterwarnings("ignore:AUROC undefined")
def test_resampling_unit_is_the_image():
    """Two images carry every defect pixel: PRO at a fixed threshold takes only the values of
    the image multisets {A,A}, {A,B}, {B,B}; resampling pixels would give a continuum."""
    rng = np.random.default_rng(0)
    maps = rng.random((8, 10, 10)).astype(np.float32) * 0.5
    masks = np.zeros((8, 10, 10), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 4:9, 1:4] = True
    maps[0][masks[0]] = np.linspace(0.2, 0.9, 16)  # 10 of 16 pixels >= 0.5
    maps[1][masks[1]] = np.linspace(0.0, 0.7, 15)  # 4 of 15 pixels >= 0.5 (plus ties)
    labels = masks.reshape(8, -1).any(1)
    scores = maps.reshape(8, -1).max(1)
    res = bootstrap(scores, labels, maps, masks, threshold=0.5, n=200, seed=1)
    possible = {round(evaluate(scores[i], labels[i], maps[i], masks[i], threshold=0.5)["pro"], 12)
                for i in ([0, 0], [0, 1], [1, 1])}
    seen = {round(float(v), 12) for v in res.replicates["pro"]}
    assert seen <= possible and len(seen) == 3


def test_stratified_weights_keep_the_composition_and_follow_ids():
    labels = np.array([1, 0, 0, 1, 0, 0, 0, 1])
    groups = ["area", "good", "good", "points", "good", "good", "good", "area"]
    w, digest = resample_weights(labels, groups, n=50, seed=3)
    assert (w[:, [0, 7]].sum(1) == 2).all() and (w[:, 3] == 1).all() and (w[:, labels == 0].sum(1) == 5).all()
    perm = np.array([7, 6, 5, 4, 3, 2, 1, 0])
    ids = [f"img{i}" for i in range(8)]
    w2, digest2 = resample_weights(labels[perm], [groups[i] for i in perm], n=50, seed=3, ids=[ids[i] for i in perm])
    w1, digest1 = resample_weights(labels, groups, n=50, seed=3, ids=ids)
    assert digest1 == digest2 and (w2 == w1[:, perm]).all()


# ------------------------------------------------------------------------------ cross-fit
def test_cross_fit_equals_the_oracle_on_separated_scores():
    rng = np.random.default_rng(1)
    labels = np.r_[np.ones(12, bool), np.zeros(40, bool)]
    scores = np.where(labels, 0.6 + 0.4 * rng.random(52), 0.4 * rng.random(52))
    cf, oracle = cross_fit(scores, labels, seed=2), evaluate(scores, labels)
    for key in ("mcc", "recall", "fpr", "tp", "fp"):
        assert cf[key] == oracle[key]
    assert cf["mcc"] == 1.0


def test_cross_fit_is_worse_than_the_oracle_on_a_constructed_case():
    # overlapping scores: each half's F1 threshold is tuned to that half's own noise
    labels = np.r_[np.ones(8, bool), np.zeros(24, bool)]
    scores = np.r_[np.linspace(0.3, 1.0, 8), np.linspace(0.0, 0.75, 24)]
    cf, oracle = cross_fit(scores, labels, seed=0), evaluate(scores, labels)
    assert cf["mcc"] < oracle["mcc"]
    assert cf["tp"] + cf["fn"] == 8 and cf["tn"] + cf["fp"] == 24  # every image judged once


def test_bootstrap_cross_fit_replicates_match_cross_fit():
    scores, labels, _, _ = random_case(4, n=20, levels=None)
    groups = np.where(labels, np.where(np.arange(20) % 2, "area", "points"), "good")
    one = bootstrap(scores, labels, groups=groups, weights=np.ones((1, 20), int), cross_fit_seed=7)
    ref = cross_fit(scores, labels, groups, seed=7)
    for key in ("mcc", "recall", "precision", "fpr"):
        assert float(one.replicates[f"{key}_crossfit"][0]) == ref[key] == one.estimate[f"{key}_crossfit"]


# ------------------------------------------------------------------------------ paired comparisons
def slow_delong(sa, sb, y):
    """DeLong variance from the O(n^2) definition of the placement values."""
    def psi(x, z):
        return 1.0 if x > z else 0.5 if x == z else 0.0

    out = []
    for s in (sa, sb):
        pos, neg = s[y], s[~y]
        v10 = [np.mean([psi(p, q) for q in neg]) for p in pos]
        v01 = [np.mean([psi(p, q) for p in pos]) for q in neg]
        out.append((np.array(v10), np.array(v01)))
    (a10, a01), (b10, b01) = out
    m, n = len(a10), len(a01)
    var = np.var(a10 - b10, ddof=1) / m + np.var(a01 - b01, ddof=1) / n
    diff = a10.mean() - b10.mean()
    return a10.mean(), b10.mean(), diff, math.sqrt(var)


@pytest.mark.parametrize("seed", range(4))
def test_delong_matches_slow_reference(seed):
    rng = np.random.default_rng(seed)
    y = rng.random(40) < 0.35
    sa = np.round(rng.random(40) + 0.5 * y, 1)  # ties
    sb = np.round(sa * 0.5 + rng.random(40) * 0.5, 1)
    got = delong(sa, sb, y)
    auc_a, auc_b, diff, se = slow_delong(sa, sb, y)
    assert got["auroc_a"] == pytest.approx(auc_a, abs=1e-12)
    assert got["auroc_b"] == pytest.approx(auc_b, abs=1e-12)
    assert got["se"] == pytest.approx(se, rel=1e-9)
    assert got["p"] == pytest.approx(math.erfc(abs(diff / se) / math.sqrt(2)), rel=1e-9)


def test_paired_bootstrap_detects_a_clear_difference_and_not_a_null_one():
    scores, labels, maps, masks = random_case(2, n=20, levels=None)
    noisy = scores + np.random.default_rng(0).normal(0, 0.5, 20).astype(np.float32)
    good = bootstrap(labels * 1.0 + 0.01 * scores, labels, n=300, seed=0)
    bad = bootstrap(noisy, labels, n=300, seed=0)
    same = bootstrap(labels * 1.0 + 0.01 * scores, labels, n=300, seed=0)
    d = compare(good, bad, "image_auroc")
    assert d["lower"] > 0 and d["p"] < 0.05
    assert compare(good, same, "mcc")["p"] == 1.0
    with pytest.raises(ValueError, match="not paired"):
        compare(good, bootstrap(noisy, labels, n=300, seed=1), "mcc")
    assert paired_difference([1, 2, 3], [1, 2, 3])["diff"] == 0.0


def test_negative_counts_by_search_or_histogram_agree_with_searchsorted():
    from ispad_bench.metrics.bootstrap_pixel import _count_sorted as count_sorted

    rng = np.random.default_rng(0)
    for _ in range(200):  # both branches: few values inside the q range, and many
        seg = np.sort(np.round(rng.normal(size=rng.integers(1, 200)) * 3) / 3).astype(np.float32)
        q = np.unique(np.round(rng.normal(size=rng.integers(1, 400)) * 3) / 3 + rng.normal()).astype(np.float32)
        lt, le = count_sorted(seg, q)
        assert (lt == np.searchsorted(seg, q, "left")).all() and (le == np.searchsorted(seg, q, "right")).all()
