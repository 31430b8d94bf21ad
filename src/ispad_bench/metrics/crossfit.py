"""A threshold that is not an oracle: two-fold cross-fitting of the F1-optimal image threshold.

The paper picks the image threshold that maximises F1 on the test set itself (§4.3.6), which
flatters every thresholded metric (MCC, recall, FPR). Cross-fitting keeps every test image in
the evaluation but never scores an image with a threshold fitted on it: the test set is split
into two halves stratified by label and defect group (seeded), the F1-optimal threshold of each
half is applied to the other half, and the two confusion matrices are pooled. Every threshold
between the fitting half's F1-optimal score and its next lower score gives that half the same
predictions; the one applied to the other half is the midpoint of that gap (the paper's rule,
the highest score, would put it on the edge of the fitting half's positives). AUROC and AUPRO
need no threshold and do not change.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ispad_bench.metrics.functional import (
    as_binary,
    as_scores,
    confusion_metrics,
    f1_optimal_threshold,
)

CROSSFIT_KEYS = ("mcc", "recall", "precision", "fpr", "f1")


def strata(labels: np.ndarray, groups: Any = None) -> np.ndarray:
    """Stratum name of every image: its label, and its defect group when given."""
    labels = np.asarray(labels, dtype=bool)
    if groups is None:
        return np.where(labels, "1", "0")
    groups = np.asarray([str(g) for g in groups])
    if groups.size != labels.size:
        raise ValueError(f"groups has {groups.size} entries but there are {labels.size} images")
    return np.char.add(np.where(labels, "1:", "0:"), groups)


def cross_fit_halves(labels: Any, groups: Any = None, seed: int = 0) -> np.ndarray:
    """Boolean mask of half A (half B is the rest), stratified by label and group, seeded.

    Within each label, the images are laid out stratum after stratum (shuffled inside each) and
    dealt alternately to A and B from a seeded start, so every stratum and every label is split
    evenly to within one image, and the odd images of small strata (a group with one defect)
    alternate between the halves instead of all landing on one side.
    """
    labels = as_binary(labels, "image_labels").ravel()
    names = strata(labels, groups)
    rng = np.random.default_rng(seed)
    mask = np.zeros(labels.size, bool)
    for label in (False, True):
        order = [i for name in sorted(set(names[labels == label].tolist()))
                 for i in rng.permutation(np.nonzero(names == name)[0])]
        mask[np.asarray(order[int(rng.integers(2))::2], dtype=np.int64)] = True
    return mask


def cross_fit(image_scores: Any, image_labels: Any, groups: Any = None, *, seed: int = 0) -> dict[str, float]:
    """Cross-fitted image metrics: F1-optimal threshold of each half applied to the other, pooled.

    Returns recall, precision, fpr, f1, mcc, tn/fp/fn/tp (pooled) and ``threshold_a``/
    ``threshold_b`` (fitted on half A / B: the midpoint of the F1-optimal gap). Needs at least
    one defective image in each half (two in the set); otherwise ``ValueError``.
    """
    scores = as_scores(image_scores, "image_scores").ravel().astype(np.float64)
    labels = as_binary(image_labels, "image_labels").ravel()
    if scores.size != labels.size:
        raise ValueError(f"image_scores has {scores.size} values but image_labels {labels.size}")
    in_a = cross_fit_halves(labels, groups, seed)
    counts = np.zeros(4, np.int64)
    thresholds = []
    for fit, apply in ((in_a, ~in_a), (~in_a, in_a)):
        if not labels[fit].any():
            raise ValueError("cross-fit threshold undefined: a half has no defective image (need >= 2 in the set)")
        t = f1_optimal_threshold(scores[fit], labels[fit])
        below = scores[fit][scores[fit] < t]
        if below.size:
            t = (t + float(below.max())) / 2
        thresholds.append(t)
        pred, y = scores[apply] >= t, labels[apply]
        counts += [np.count_nonzero(~pred & ~y), np.count_nonzero(pred & ~y),
                   np.count_nonzero(~pred & y), np.count_nonzero(pred & y)]
    out = confusion_metrics(*counts)
    out["threshold_a"], out["threshold_b"] = thresholds
    return out


def per_image_thresholds(image_scores: Any, image_labels: Any, groups: Any = None, *, seed: int = 0) -> np.ndarray:
    """The cross-fitted threshold each image is judged with (that of the other half), e.g. for PRO."""
    result = cross_fit(image_scores, image_labels, groups, seed=seed)
    in_a = cross_fit_halves(image_labels, groups, seed)
    return np.where(in_a, result["threshold_b"], result["threshold_a"])
