"""The line's metrics of an inspection against full-image masks (``--masks DIR``), with bootstrap intervals.

Per acquisition, from its region labels (:func:`~ispad_bench.inspect.regions.find_regions`) and its mask
(any non-zero pixel is a defect; an acquisition without a mask file, or with an empty one, is fault-free):

* *detection*: a defective acquisition is found when a predicted region overlaps its mask;
* *rejection* by the window rule (any window score at the threshold) of defective and fault-free ones;
* *false alarms*: predicted regions on a fault-free acquisition (per acquisition, and per m² with
  ``--pixel-size``); regions that miss the mask of a defective one are counted apart;
* *region recall* per group: ground-truth regions (8-connected components of the masks, grouped by
  area as :func:`~ispad_bench.inspect.regions.group_guess`) touched by a predicted region.

Intervals: percentile bootstrap over acquisitions, stratified by defective / fault-free
(:func:`ispad_bench.metrics.bootstrap.resample_weights`): every metric is a ratio of per-acquisition sums.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ispad_bench.inspect.regions import group_guess, label

MASK_SUFFIXES = ("_mask", "")  # <stem>_mask.<ext> (the dataset's scheme, data/layout.py) or <stem>.<ext>
MASK_EXTS = (".png", ".tif", ".tiff", ".bmp")


def find_mask(masks_dir: Path, image: Path) -> Path | None:
    """The mask of ``image`` in ``masks_dir`` (``<stem>_mask.png`` first, then ``<stem>.png``...), or ``None``."""
    for suffix in MASK_SUFFIXES:
        for ext in MASK_EXTS:
            candidate = Path(masks_dir) / f"{image.stem}{suffix}{ext}"
            if candidate.is_file():
                return candidate
    return None


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """A full-image mask as bool (non-zero = defect); it must have the acquisition's size."""
    from ispad_bench.data.images import ImageReadError, read_gray8

    mask = read_gray8(path) > 0
    if mask.shape != tuple(shape):
        raise ImageReadError(f"{path}: mask is {mask.shape[1]}x{mask.shape[0]}, its acquisition {shape[1]}x{shape[0]}")
    return mask


@dataclass
class Counts:
    """What one acquisition contributes to the line's metrics."""

    defective: bool
    found: bool  # a predicted region overlaps the mask
    flagged: bool  # the window rule: any window score >= threshold
    regions: int
    false_regions: int  # predicted regions that do not overlap the mask
    pixels: int
    gt_area: int = 0
    gt_points: int = 0
    hit_area: int = 0
    hit_points: int = 0


def acquisition_counts(pred_labels: np.ndarray, n_regions: int, mask: np.ndarray | None, flagged: bool) -> Counts:
    """:class:`Counts` of one acquisition from its predicted region labels and its mask (``None``: fault-free)."""
    pixels = int(pred_labels.size)
    if mask is None or not mask.any():
        return Counts(False, False, bool(flagged), n_regions, n_regions, pixels)
    predicted = pred_labels > 0
    touching = np.unique(pred_labels[mask & predicted])
    gt, n_gt = label(mask)
    area = np.bincount(gt.ravel(), minlength=n_gt + 1)[1:]
    hit = np.bincount(gt[predicted].ravel(), minlength=n_gt + 1)[1:] > 0
    groups = group_guess(area) if n_gt else np.array([], str)
    return Counts(True, bool(len(touching)), bool(flagged), n_regions, n_regions - len(touching), pixels,
                  int((groups == "area").sum()), int((groups == "points").sum()),
                  int((hit & (groups == "area")).sum()), int((hit & (groups == "points")).sum()))


def _ratios(counts: list[Counts], pixel_size_mm: float | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """metric -> (per-acquisition numerator, per-acquisition denominator)."""
    c = {k: np.asarray([getattr(x, k) for x in counts], np.float64) for k in asdict(counts[0])}
    bad, good = c["defective"], 1.0 - c["defective"]
    out = {
        "detection_rate": (c["found"] * bad, bad),
        "defective_rejected": (c["flagged"] * bad, bad),
        "good_rejected": (c["flagged"] * good, good),
        "false_alarms_per_good": (c["regions"] * good, good),
        "false_regions_on_defective": (c["false_regions"] * bad, bad),
        "region_recall_area": (c["hit_area"], c["gt_area"]),
        "region_recall_points": (c["hit_points"], c["gt_points"]),
        "region_recall": (c["hit_area"] + c["hit_points"], c["gt_area"] + c["gt_points"]),
    }
    if pixel_size_mm is not None:
        out["false_alarms_per_m2"] = (c["regions"] * good, c["pixels"] * good * (pixel_size_mm ** 2) / 1e6)
    return out


def line_metrics(counts: list[Counts], pixel_size_mm: float | None = None, *, n: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict:
    """Every metric with its bootstrap interval over acquisitions (``None`` where its denominator is 0)."""
    from ispad_bench.metrics.bootstrap import percentile_interval, resample_weights

    if not counts:
        raise ValueError("no acquisition to evaluate")
    labels = np.asarray([x.defective for x in counts], np.int64)
    weights, fingerprint = resample_weights(labels, n=n, seed=seed)
    values = {}
    for name, (num, den) in _ratios(counts, pixel_size_mm).items():
        total = den.sum()
        value = float(num.sum() / total) if total > 0 else None
        with np.errstate(invalid="ignore", divide="ignore"):
            reps = (weights @ num) / (weights @ den)
        interval = list(percentile_interval(reps, level)) if value is not None else None
        values[name] = {"value": value, "interval": interval, "counts": f"{num.sum():g}/{total:g}"}
    return {"n_acquisitions": len(counts), "n_defective": int(labels.sum()), "values": values,
            "bootstrap": {"n": n, "seed": seed, "level": level, "unit": "acquisition", "fingerprint": fingerprint},
            "per_acquisition": [asdict(x) for x in counts]}
