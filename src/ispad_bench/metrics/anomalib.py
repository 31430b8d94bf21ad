"""The paper's metrics inside the Anomalib engine: metric wrappers, evaluator, raw-score post-processor.

``ISPADMetrics`` accumulates the raw test outputs (``pred_score``, ``gt_label``, ``anomaly_map``,
``gt_mask``, ``image_path``) and computes everything with :func:`~ispad_bench.metrics.evaluate`,
so the engine reports exactly what the function returns on the same predictions.
``ISPADEvaluator`` logs those values under readable names; ``RawScorePostProcessor`` keeps
the scores raw (Anomalib's default min-max normalisation clamps, creating ties that change AUROC).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib.data import InferenceBatch
from anomalib.metrics import AnomalibMetric, Evaluator
from anomalib.post_processing import PostProcessor
from torchmetrics import Metric

from ispad_bench.data.groups import group_of
from ispad_bench.metrics.functional import evaluate, f1_optimal_threshold, pixel_metrics
from ispad_bench.metrics.uncertainty import UncertaintyOptions, finish

logger = logging.getLogger(__name__)

# evaluate() key -> name logged by the engine
DISPLAY_NAMES = {
    "image_auroc": "image_AUROC",
    "threshold": "threshold",
    "f1": "F1",
    "mcc": "MCC",
    "recall": "recall",
    "precision": "precision",
    "fpr": "FPR",
    "tn": "TN",
    "tp": "TP",
    "fn": "FN",
    "fp": "FP",
    "pixel_auroc": "pixel_AUROC",
    "pro": "PRO",
    "aupro": "AUPRO",
    "n_regions": "n_regions",
    "n_unreachable": "n_unreachable",  # defective test images whose mask is empty after the model's geometry
    **{f"{k}_crossfit": f"{v}_crossfit" for k, v in (("mcc", "MCC"), ("recall", "recall"), ("precision", "precision"),
                                                       ("fpr", "FPR"), ("f1", "F1"))},
}
PIXEL_KEYS = ("pixel_auroc", "pro", "aupro", "n_regions")
PIXEL_ONLY_KEYS = ("pixel_auroc", "aupro", "n_regions")  # independent of the image threshold


def _cat_release(parts: list[torch.Tensor], what: str) -> torch.Tensor:
    """Concatenate along dim 0 while dropping each part, so peak memory is one copy plus a batch."""
    if not parts:
        raise ValueError(f"no {what} accumulated")
    shapes = {tuple(p.shape[1:]) for p in parts}
    if len(shapes) > 1:
        raise ValueError(f"{what} of different sizes across batches: {sorted(shapes)}")
    if len(parts) == 1:
        return parts[0]
    out = torch.empty((sum(p.shape[0] for p in parts), *shapes.pop()), dtype=parts[0].dtype)
    start = 0
    for i, part in enumerate(parts):
        out[start : start + part.shape[0]] = part
        start += part.shape[0]
        parts[i] = None  # type: ignore[call-overload]
    parts[:] = [out]
    return out


class ISPADMetrics(AnomalibMetric, Metric):
    """All of :func:`evaluate` from raw test outputs; ``compute()`` returns the evaluate dict.

    Args:
        aupro_limit: FPR limit of AUPRO.
        pixel: also accumulate maps/masks for pixel AUROC, PRO and AUPRO (skipped silently for
            batches without ``anomaly_map`` or ``gt_mask``, e.g. classification-only data).
        threshold: fixed image threshold; ``None`` = F1-optimal on the accumulated set (oracle).
        groups: per-group recall, with each ``image_path``'s group as the datamodule assigned it
            (``data/groups.py``; a path of another datamodule: its folder via ``DEFECT_GROUPS``).
    """

    default_fields = ("pred_score", "gt_label", "anomaly_map", "gt_mask", "image_path")
    full_state_update = False
    is_differentiable = False
    higher_is_better = None

    def __init__(
        self,
        aupro_limit: float = 0.3,
        pixel: bool = True,
        threshold: float | None = None,
        groups: bool = True,
        fields: Sequence[str] | None = None,
        prefix: str = "",
        strict: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(fields=fields, prefix=prefix, strict=strict, **kwargs)
        self.aupro_limit, self.pixel, self.threshold, self.groups = aupro_limit, pixel, threshold, groups
        self.prefix = prefix
        for state in ("scores", "labels", "maps", "masks"):
            self.add_state(state, default=[], dist_reduce_fx="cat")
        self.paths: list[str] = []
        self.uncertainty = UncertaintyOptions(n=0)  # the evaluator sets its own (bootstrap, cross-fit)
        self.bootstrap_result = None

    def update(self, batch: Any, *args, **kwargs) -> None:  # Anomalib passes the batch only
        """Store the batch's raw outputs (float32 maps, bool masks; no copies on CPU)."""
        score, label = batch.pred_score, getattr(batch, "gt_label", None)
        amap = getattr(batch, "anomaly_map", None)
        if score is None and amap is not None:
            score = torch.amax(amap, dim=(-2, -1))
        if score is None or label is None:
            missing = "pred_score/anomaly_map" if score is None else "gt_label"
            raise ValueError(f"{type(self).__name__}: batch has no {missing}; cannot evaluate")
        self.scores.append(score.detach().reshape(-1).to("cpu", torch.float32))
        self.labels.append(label.detach().reshape(-1).to("cpu", torch.bool))
        mask = getattr(batch, "gt_mask", None)
        if self.pixel and amap is not None and mask is not None:
            self._store_pixels(amap, mask)
        paths = getattr(batch, "image_path", None)
        if paths is not None:
            self.paths.extend(str(p) for p in ([paths] if isinstance(paths, (str, Path)) else paths))

    def _store_pixels(self, amap: torch.Tensor, mask: torch.Tensor) -> None:
        """Keep a batch's raw maps (float32) and masks (bool) on the CPU as (B, H, W)."""
        amap = amap.detach().to("cpu", torch.float32)
        mask = mask.detach().to("cpu", torch.bool)
        if amap.dim() == 4:
            amap = amap[:, 0]
        if mask.dim() == 4:
            mask = mask[:, 0]
        if amap.shape != mask.shape:
            raise ValueError(f"{self.name}: anomaly_map {tuple(amap.shape)} and gt_mask {tuple(mask.shape)} differ")
        self.maps.append(amap)
        self.masks.append(mask)

    def reset(self) -> None:
        super().reset()
        self.paths = []

    def compute(self) -> dict[str, float]:
        if not self.scores:
            raise ValueError(f"{type(self).__name__}: no test batch was seen; nothing to evaluate")
        scores = torch.cat(self.scores).numpy()
        labels = torch.cat(self.labels).numpy()
        maps = masks = None
        if self.pixel and self.maps:
            if sum(m.shape[0] for m in self.maps) != scores.size:
                raise ValueError("anomaly maps/masks were missing for some test batches; pixel metrics need all")
            maps = _cat_release(self.maps, "anomaly maps").numpy()
            masks = _cat_release(self.masks, "ground-truth masks").numpy()
        groups = None
        if self.groups and len(self.paths) == scores.size:
            groups = [group_of(p) for p in self.paths]  # the datamodule's defect_groups mapping
        result = evaluate(
            scores, labels, maps, masks, aupro_limit=self.aupro_limit, groups=groups, threshold=self.threshold
        )
        if type(self) is not ISPADMetrics:  # scalar views: no cross-fit, no bootstrap
            return result
        ids = self.paths if len(self.paths) == scores.size else None
        result, self.bootstrap_result = finish(result, scores, labels, maps, masks, groups, ids, self.uncertainty,
                                               threshold=self.threshold, aupro_limit=self.aupro_limit)
        return result


class ISPADScalar(ISPADMetrics):
    """One value of :func:`evaluate` as a scalar metric, for a stock Anomalib ``Evaluator``.

    ``ISPADScalar("mcc")`` logs ``MCC``. Pixel keys accumulate maps; image keys do not.
    ``pixel_auroc``, ``aupro`` and ``n_regions`` need no image threshold: they read only
    ``anomaly_map``/``gt_mask`` (no labels needed), so ``ISPADScalar("pixel_auroc")`` is an
    exact and fast validation metric for early stopping on ``pixel_AUROC`` (§4.3.6); a
    validation set without defect pixels gives ``nan`` with a warning instead of crashing.
    """

    def __init__(self, key: str = "image_auroc", **kwargs) -> None:
        known = set(DISPLAY_NAMES) | {"n_regions"}
        if key not in known and not key.startswith(("n_", "tp_", "fn_", "fp_", "tn_", "recall_", "fpr_")):
            raise ValueError(f"unknown key {key!r}; one of {sorted(known)} or a per-group key like 'recall_area'")
        self.pixel_only = key in PIXEL_ONLY_KEYS
        kwargs.setdefault("pixel", key in PIXEL_KEYS)
        if self.pixel_only:
            kwargs.setdefault("fields", ("anomaly_map", "gt_mask"))
            kwargs["pixel"] = True
        super().__init__(**kwargs)
        self.key = key
        self.name = self.prefix + DISPLAY_NAMES.get(key, key)

    def update(self, batch: Any, *args, **kwargs) -> None:
        if not self.pixel_only:
            super().update(batch, *args, **kwargs)
            return
        amap, mask = getattr(batch, "anomaly_map", None), getattr(batch, "gt_mask", None)
        if amap is None or mask is None:
            if self.strict:
                raise ValueError(f"{self.name}: batch has no anomaly_map/gt_mask; cannot compute {self.key}")
            return
        self._store_pixels(amap, mask)

    def compute(self) -> torch.Tensor:  # type: ignore[override]
        if self.pixel_only:
            if not self.maps:
                msg = f"{self.name}: no batch with anomaly_map and gt_mask was seen"
                if self.strict:
                    raise ValueError(msg)
                warnings.warn(msg + "; returning nan", RuntimeWarning, stacklevel=2)
                return torch.tensor(float("nan"))
            maps = _cat_release(self.maps, "anomaly maps").numpy()
            masks = _cat_release(self.masks, "ground-truth masks").numpy()
            values = pixel_metrics(maps, masks, None, aupro_limit=self.aupro_limit)
        else:
            values = super().compute()
        if self.key not in values:
            raise KeyError(f"{self.key!r} is not computed; available: {sorted(values)}")
        return torch.tensor(float(values[self.key]))


class _F1OptimalThreshold(Metric):
    """Image threshold maximising F1 (``score >= t``, ties to the highest score).

    ``nan`` (with a warning) when the set has no defective sample, so fitting never crashes.
    """

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("scores", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")

    def update(self, scores: torch.Tensor, labels: torch.Tensor) -> None:
        self.scores.append(scores.detach().reshape(-1).to("cpu", torch.float32))
        self.labels.append(labels.detach().reshape(-1).to("cpu", torch.bool))

    def compute(self) -> torch.Tensor:
        labels = torch.cat(self.labels)
        if not bool(labels.any()):
            msg = "validation set has no defective sample: no F1-optimal threshold (nan)"
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
            return torch.tensor(float("nan"))
        return torch.tensor(f1_optimal_threshold(torch.cat(self.scores), labels))


class F1OptimalThreshold(AnomalibMetric, _F1OptimalThreshold):  # type: ignore[misc]
    """Batch-aware :class:`_F1OptimalThreshold` (fields ``pred_score``, ``gt_label``)."""

    default_fields = ("pred_score", "gt_label")


class RawScorePostProcessor(PostProcessor):
    """Post-processor that leaves ``pred_score`` and ``anomaly_map`` raw (no min-max, no clamp).

    It still fits an image threshold on the raw validation outputs (F1-optimal, the same rule as
    :func:`f1_optimal_threshold`) and sets ``pred_label = pred_score >= t`` and
    ``pred_mask = anomaly_map >= t`` with that ONE threshold (the paper applies the image
    threshold to the maps). Without a fitted threshold, labels/masks are left unset.
    """

    def __init__(self, enable_thresholding: bool = True) -> None:
        super().__init__(
            enable_normalization=False, enable_thresholding=enable_thresholding, enable_threshold_matching=True
        )
        self._image_threshold_metric = F1OptimalThreshold(fields=["pred_score", "gt_label"], strict=False)

    def on_validation_batch_end(self, trainer, pl_module, outputs, *args, **kwargs) -> None:
        del trainer, pl_module, args, kwargs
        if self.enable_thresholding:  # image threshold only: the pixel threshold falls back to it
            self._image_threshold_metric.update(outputs)

    @staticmethod
    def _apply_threshold(preds: torch.Tensor | None, threshold: torch.Tensor) -> torch.Tensor | None:
        if preds is None or torch.isnan(threshold).item():
            return None
        return preds >= threshold

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        return self.image_threshold

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        return self.pixel_threshold

    def forward(self, predictions: InferenceBatch) -> InferenceBatch:
        if predictions.pred_score is None and predictions.anomaly_map is None:
            raise ValueError("At least one of pred_score or anomaly_map must be provided.")
        score = predictions.pred_score
        if score is None:
            score = torch.amax(predictions.anomaly_map, dim=(-2, -1))
        label = mask = None
        if self.enable_thresholding:
            label = self._apply_threshold(score, self.image_threshold)
            mask = self._apply_threshold(predictions.anomaly_map, self.pixel_threshold)
        return InferenceBatch(pred_label=label, pred_score=score, pred_mask=mask, anomaly_map=predictions.anomaly_map)


class ISPADEvaluator(Evaluator):
    """Anomalib ``Evaluator`` whose test metrics are the paper's (:class:`ISPADMetrics`).

    Args:
        threshold: ``"oracle"`` (paper: F1-optimal on the test set), ``"validation"`` (the
            post-processor's raw F1-optimal threshold fitted on the validation set), ``"cross_fit"``
            (each test half judged at the other half's F1-optimal threshold; :func:`cross_fit`)
            or a number. Cross-fitted MCC/recall/precision/FPR/F1 are always added (``*_crossfit``).
        bootstrap: resamples of the test images for percentile intervals of every metric (0: none);
            ``bootstrap_seed`` is fixed across methods so that their resamples are paired;
            ``level`` is the interval coverage. After a test epoch ``bootstrap`` holds the
            :class:`~ispad_bench.metrics.BootstrapResult`.
        aupro_limit: FPR limit of AUPRO.
        pixel_metrics: compute pixel AUROC / PRO / AUPRO when maps and masks are present.
        require_raw_scores: refuse a post-processor that normalises scores (the default
            Anomalib ``PostProcessor``); use :class:`RawScorePostProcessor`.
        val_metrics, test_metrics: extra Anomalib metrics, logged as usual.

    After a test epoch, ``results`` holds the evaluate dict (plain floats).
    """

    def __init__(
        self,
        threshold: str | float = "oracle",
        aupro_limit: float = 0.3,
        pixel_metrics: bool = True,
        require_raw_scores: bool = True,
        val_metrics: AnomalibMetric | Sequence[AnomalibMetric] | None = None,
        test_metrics: AnomalibMetric | Sequence[AnomalibMetric] | None = None,
        compute_on_cpu: bool = True,
        bootstrap: int = 1000,
        bootstrap_seed: int = 0,
        level: float = 0.95,
        cross_fit_seed: int = 0,
    ) -> None:
        if isinstance(threshold, str) and threshold not in ("oracle", "validation", "cross_fit"):
            try:  # a number given as text, e.g. from a command-line override
                threshold = float(threshold)
            except ValueError:
                raise ValueError(
                    f"threshold must be 'oracle', 'validation', 'cross_fit' or a number, got {threshold!r}"
                ) from None
        if not isinstance(threshold, str) and not np.isfinite(float(threshold)):
            raise ValueError(f"threshold must be finite, got {threshold!r}")
        fixed = None if isinstance(threshold, str) else float(threshold)
        main = ISPADMetrics(aupro_limit=aupro_limit, pixel=pixel_metrics, threshold=fixed)
        cross_fit_mode = threshold == "cross_fit"
        main.uncertainty = UncertaintyOptions(bootstrap, bootstrap_seed, level, cross_fit_seed, cross_fit_mode)
        extra = list(self.validate_metrics(test_metrics))
        super().__init__(val_metrics=val_metrics, test_metrics=[main, *extra], compute_on_cpu=compute_on_cpu)
        self.threshold_mode = threshold
        self.require_raw_scores = require_raw_scores
        self.results: dict[str, float] = {}
        self.bootstrap = None  # BootstrapResult of the last test epoch

    @property
    def ispad_metrics(self) -> ISPADMetrics:
        return self.test_metrics[0]

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        post = getattr(pl_module, "post_processor", None)
        if self.require_raw_scores and getattr(post, "enable_normalization", False):
            raise ValueError(
                f"ISPADEvaluator needs raw scores, but the model's post-processor {type(post).__name__} normalises "
                "(and clamps) them. Set post_processor: {class_path: ispad_bench.metrics.RawScorePostProcessor} "
                "in the model's init_args (Python: post_processor=RawScorePostProcessor())."
            )

    def _validation_threshold(self, pl_module) -> float:
        post = getattr(pl_module, "post_processor", None)
        value = getattr(post, "image_threshold", None)
        value = float(value) if value is not None else float("nan")
        if not np.isfinite(value):
            raise RuntimeError(
                "threshold='validation' but no image threshold was fitted on a validation set (run validation, "
                "e.g. Engine.fit, with RawScorePostProcessor and a validation split containing defects), "
                "or use threshold='oracle'."
            )
        return value

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        metric = self.ispad_metrics
        mode = self.threshold_mode  # re-read each epoch, so the mode may be switched between tests
        if mode == "validation":
            metric.threshold = self._validation_threshold(pl_module)
        else:
            metric.threshold = None if mode in ("oracle", "cross_fit") else float(mode)
        self.results = {k: float(v) for k, v in metric.compute().items()}
        self.bootstrap = metric.bootstrap_result
        metric.reset()  # frees the accumulated maps now
        log = getattr(self, "log", None)  # Lightning attaches the module's log to model callbacks
        for key, value in self.results.items():
            name = DISPLAY_NAMES.get(key, key)
            if log is not None:
                log(name, value)
            if trainer is not None and getattr(trainer, "barebones", False):
                trainer.callback_metrics[name] = torch.tensor(value)
                trainer.logged_metrics[name] = torch.tensor(value)
        for extra in self.test_metrics[1:]:
            if log is not None:
                log(extra.name, extra)


def ispad_evaluator(threshold: str | float = "oracle", aupro_limit: float = 0.3, **kwargs) -> ISPADEvaluator:
    """The project evaluator (see :class:`ISPADEvaluator`); pair it with :class:`RawScorePostProcessor`."""
    return ISPADEvaluator(threshold=threshold, aupro_limit=aupro_limit, **kwargs)
