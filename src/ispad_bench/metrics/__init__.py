"""Exact, fast evaluation at the paper's protocol (§4.3.6, §5.1): image AUROC, F1-optimal
threshold with MCC/recall/precision/FPR/confusion counts, pixel AUROC, PRO and AUPRO@0.3.

Layer: metrics (numpy/scipy; only ``metrics.anomalib``, loaded lazily, imports Anomalib and reads
``data.groups``). Public surface: the names below.

Plain Python::

    from ispad_bench.metrics import evaluate
    r = evaluate(image_scores, image_labels, anomaly_maps, gt_masks, groups=groups)
    r["mcc"], r["pro"], r["aupro"], r["recall_area"]

Inside Anomalib (``anomalib train``/``test``, ``Engine.test``) a model config MUST set BOTH::

    model:
      class_path: anomalib.models.Padim          # or any Anomalib / ispad_bench model
      init_args:
        post_processor:
          class_path: ispad_bench.metrics.RawScorePostProcessor
        evaluator:
          class_path: ispad_bench.metrics.ISPADEvaluator
          init_args:
            threshold: oracle                    # paper protocol (default); or "validation"

In Python: ``Padim(post_processor=RawScorePostProcessor(), evaluator=ispad_evaluator())``.

Why both: Anomalib's default ``PostProcessor`` min-max normalises and clamps scores before the
evaluator sees them (the clamping creates ties that change AUROC, and its threshold comes from
the validation set). ``RawScorePostProcessor`` leaves ``pred_score``/``anomaly_map`` raw;
``ISPADEvaluator`` then computes every metric with :func:`evaluate` from the raw test outputs,
so the engine logs exactly the numbers :func:`evaluate` returns on the same predictions.

Threshold protocol: ``"oracle"`` (paper) picks ONE image-level threshold that maximises F1 on
the TEST set (ISP-AD has no validation split, so this is an oracle threshold) and applies it to
image decisions and to the pixel maps (PRO). ``"validation"`` uses the F1-optimal threshold
fitted on the raw validation outputs instead (meaningful only with a held-out validation split,
e.g. ``val_split_mode: from_train`` plus defects, never ``same_as_test``).

For validation / early stopping on ``pixel_AUROC`` (§4.3.6) use the fast exact
``ISPADScalar(key="pixel_auroc")`` in ``ISPADEvaluator(val_metrics=[...])``.

Logged metric names (test): ``image_AUROC``, ``threshold``, ``F1``, ``MCC``, ``recall``,
``precision``, ``FPR``, ``TN``, ``TP``, ``FN``, ``FP``, ``pixel_AUROC``, ``PRO``, ``AUPRO``,
and per defect group ``recall_area``/``recall_points``/``n_<group>`` (group from the parent
folder of ``image_path``, via :func:`ispad_bench.data.layout.defect_group`).

How sure (docs/metrics.md): :func:`bootstrap` (percentile intervals, images resampled by
label/group), :func:`cross_fit` (a threshold that is not an oracle), :func:`compare` /
:func:`delong` (paired comparisons of two methods on the same images).
"""

from ispad_bench.metrics.functional import (
    auroc,
    confusion_metrics,
    evaluate,
    f1_optimal_threshold,
    group_breakdown,
    held_out_split,
    pixel_metrics,
)
from ispad_bench.metrics.bootstrap import BootstrapResult, bootstrap, percentile_interval, resample_weights
from ispad_bench.metrics.compare import compare, delong, paired_difference
from ispad_bench.metrics.crossfit import cross_fit

from ispad_bench.lazy import lazy_attributes

_LAZY = {  # Anomalib-side classes: importing anomalib is slow, so load on first use
    name: "ispad_bench.metrics.anomalib"
    for name in (
        "DISPLAY_NAMES",
        "F1OptimalThreshold",
        "ISPADEvaluator",
        "ISPADMetrics",
        "ISPADScalar",
        "RawScorePostProcessor",
        "ispad_evaluator",
    )
}
_LAZY["load_paper_tables"] = "ispad_bench.paper"  # the paper's numbers live with its methods
_LAZY["paper_confusion_matrices"] = "ispad_bench.paper"
__getattr__ = lazy_attributes(__name__, _LAZY)


__all__ = [
    "BootstrapResult",
    "auroc",
    "bootstrap",
    "compare",
    "cross_fit",
    "delong",
    "paired_difference",
    "percentile_interval",
    "resample_weights",
    "confusion_metrics",
    "evaluate",
    "f1_optimal_threshold",
    "group_breakdown",
    "held_out_split",
    "pixel_metrics",
    *_LAZY,
]
