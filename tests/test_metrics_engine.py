"""The paper's protocol inside Anomalib: raw scores reach the evaluator, and the engine reports
exactly what ``evaluate`` computes on the same predictions."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.metrics import Evaluator
from anomalib.post_processing import PostProcessor
from lightning.pytorch import Callback

from ispad_bench.data.layout import defect_group
from ispad_bench.metrics import (
    DISPLAY_NAMES,
    ISPADEvaluator,
    ISPADScalar,
    RawScorePostProcessor,
    auroc,
    cross_fit,
    evaluate,
    pixel_metrics,
    f1_optimal_threshold,
    ispad_evaluator,
)


def batch(scores, labels) -> ImageBatch:
    scores = torch.as_tensor(scores, dtype=torch.float32)
    return ImageBatch(image=torch.zeros(len(scores), 3, 4, 4), gt_label=torch.as_tensor(labels), pred_score=scores)


def run_post_processor(post, val, test) -> ImageBatch:
    """Drive the callbacks like Engine.fit/test: fit on the validation batch, process the test batch."""
    post.on_validation_batch_end(None, None, val)
    post.on_validation_epoch_end(None, None)
    post.on_test_batch_end(None, None, test)
    return test


def run_evaluator(evaluator, test, pl_module=None) -> dict:
    evaluator.on_test_batch_end(None, pl_module, None, test, 0)
    evaluator.on_test_epoch_end(None, pl_module)
    return evaluator.results


# raw test scores outside the validation range: min-max normalisation clamps them to 0 and 1
VAL = ([0.2, 0.3, 0.4, 0.6, 0.7], [0, 0, 0, 1, 1])
TEST = ([0.05, 0.1, 0.15, 0.35, 0.5, 0.8, 0.9, 1.2, 1.5], [0, 1, 0, 0, 1, 0, 1, 1, 0])


def test_default_post_processor_changes_auroc_raw_one_does_not():
    raw_auroc = auroc(np.array(TEST[0]), np.array(TEST[1]))
    normalised = run_post_processor(PostProcessor(), batch(*VAL), batch(*TEST))
    assert auroc(normalised.pred_score.numpy(), np.array(TEST[1])) != pytest.approx(raw_auroc)  # clamping ties
    raw = run_post_processor(RawScorePostProcessor(), batch(*VAL), batch(*TEST))
    assert torch.equal(raw.pred_score, torch.tensor(TEST[0], dtype=torch.float32))  # unchanged
    results = run_evaluator(ispad_evaluator(pixel_metrics=False), raw)
    assert results["image_auroc"] == raw_auroc
    assert {k: results[k] for k in evaluate(*TEST)} == {k: float(v) for k, v in evaluate(*TEST).items()}
    assert results["mcc_crossfit"] == cross_fit(*TEST)["mcc"]  # added beside the oracle values


def test_raw_post_processor_fits_paper_threshold_on_validation():
    post = RawScorePostProcessor()
    test = run_post_processor(post, batch(*VAL), batch(*TEST))
    t = f1_optimal_threshold(*VAL)
    assert float(post.image_threshold) == pytest.approx(t) and float(post.pixel_threshold) == pytest.approx(t)
    assert torch.equal(test.pred_label, torch.tensor(TEST[0]) >= t)
    evaluator = ISPADEvaluator(threshold="validation", pixel_metrics=False)
    results = run_evaluator(evaluator, test, SimpleNamespace(post_processor=post))
    assert results["threshold"] == pytest.approx(t)
    assert results["tp"] + results["fp"] == int(np.sum(np.array(TEST[0]) >= t))
    with pytest.raises(RuntimeError, match="validation"):
        unfitted = SimpleNamespace(post_processor=RawScorePostProcessor())
        run_evaluator(ISPADEvaluator(threshold="validation"), batch(*TEST), unfitted)


def test_evaluator_refuses_normalised_scores():
    trainer = SimpleNamespace(num_devices=1)
    with pytest.raises(ValueError, match="RawScorePostProcessor"):
        ISPADEvaluator().setup(trainer, SimpleNamespace(post_processor=PostProcessor()), "test")
    ISPADEvaluator().setup(trainer, SimpleNamespace(post_processor=RawScorePostProcessor()), "test")
    with pytest.raises(ValueError, match="threshold"):
        ISPADEvaluator(threshold="best")
    with pytest.raises(ValueError, match="finite"):
        ISPADEvaluator(threshold=float("nan"))
    assert ISPADEvaluator(threshold="0.25").threshold_mode == 0.25  # a number from a CLI override


def test_scalar_wrapper_in_stock_evaluator():
    metrics = [ISPADScalar("mcc"), ISPADScalar("image_auroc", prefix="x_")]
    assert [m.name for m in metrics] == ["MCC", "x_image_AUROC"]
    Evaluator(test_metrics=metrics)  # accepted as AnomalibMetrics
    expected = evaluate(*TEST)
    for metric, key in zip(metrics, ("mcc", "image_auroc"), strict=True):
        metric.update(batch(*TEST))
        assert float(metric.compute()) == pytest.approx(expected[key], abs=1e-7)


def test_pixel_only_scalar_needs_no_labels_or_threshold():
    """ISPADScalar("pixel_auroc"/"aupro") as a validation metric: maps + masks only, exact."""
    rng = np.random.default_rng(0)
    maps = torch.from_numpy(rng.random((6, 1, 16, 16), dtype=np.float32))
    masks = torch.zeros(6, 16, 16, dtype=torch.bool)
    masks[0, 2:5, 3:6] = masks[3, 10:12, 1:9] = True
    maps[masks[:, None]] += 0.3
    expected = pixel_metrics(maps.numpy(), masks.numpy())
    for key in ("pixel_auroc", "aupro"):
        metric = ISPADScalar(key)
        assert metric.name == DISPLAY_NAMES[key]
        for sl in (slice(0, 4), slice(4, 6)):  # two batches, no pred_score / gt_label
            metric.update(SimpleNamespace(anomaly_map=maps[sl], gt_mask=masks[sl]))
        assert float(metric.compute()) == pytest.approx(expected[key], abs=1e-7)
    lenient = ISPADScalar("pixel_auroc", strict=False)
    lenient.update(SimpleNamespace(anomaly_map=None, gt_mask=None))  # e.g. classification-only data
    with pytest.warns(RuntimeWarning, match="returning nan"):
        assert np.isnan(float(lenient.compute()))
    with pytest.raises(ValueError, match="anomaly_map/gt_mask"):
        ISPADScalar("aupro").update(SimpleNamespace(anomaly_map=maps, gt_mask=None))
    with pytest.raises(ValueError, match="differ"):
        ISPADScalar("aupro").update(SimpleNamespace(anomaly_map=maps, gt_mask=masks[:, :8]))
    with pytest.raises(ValueError, match="unknown key"):
        ISPADScalar("auroc")


@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_anomalib_aupro_and_torchmetrics_auroc(seed):
    """Same numbers as Anomalib 2.7's (corrected) AUPRO and torchmetrics' exact AUROC (float32)."""
    from anomalib.metrics import AUPRO
    from torchmetrics.classification import BinaryAUROC

    rng = np.random.default_rng(seed)
    masks = np.zeros((10, 24, 24), bool)
    for i in range(5):  # blobs and a thin diagonal line per defective map
        y, x = rng.integers(2, 18, 2)
        masks[i, y : y + rng.integers(1, 5), x : x + rng.integers(1, 5)] = True
        masks[i, np.arange(6) + 2, np.arange(6) + 14] = True
    maps = rng.random(masks.shape) + 0.5 * masks * rng.random(masks.shape)
    maps = (np.round(maps * 8) / 8 if seed else maps).astype(np.float32)  # seed 1: heavy ties
    ours = pixel_metrics(maps, masks)
    for limit in (0.3, 0.05):
        ref = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=limit)
        ref.update(SimpleNamespace(anomaly_map=torch.from_numpy(maps), gt_mask=torch.from_numpy(masks)))
        assert pixel_metrics(maps, masks, aupro_limit=limit)["aupro"] == pytest.approx(float(ref.compute()), abs=1e-6)
    auroc_ref = BinaryAUROC()(torch.from_numpy(maps).reshape(-1), torch.from_numpy(masks).reshape(-1).long())
    assert ours["pixel_auroc"] == pytest.approx(float(auroc_ref), abs=1e-6)


MODEL_YAML = """
model:
  class_path: anomalib.models.Padim      # a built-in model; ispad_bench models take the same keys
  init_args:
    backbone: resnet18
    pre_trained: false
    post_processor:
      class_path: ispad_bench.metrics.RawScorePostProcessor
    evaluator:
      class_path: ispad_bench.metrics.ISPADEvaluator
      init_args:
        threshold: validation
        aupro_limit: 0.05
        val_metrics:
          - class_path: ispad_bench.metrics.ISPADScalar
            init_args: {key: pixel_auroc}
"""


def test_yaml_class_paths_instantiate():
    """The YAML form that ``anomalib train --config`` parses (jsonargparse class_path/init_args)."""
    import yaml
    from anomalib.models import AnomalibModule, Padim
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_argument("--model", type=AnomalibModule)
    init = parser.instantiate_classes(parser.parse_object(yaml.safe_load(MODEL_YAML)))
    model = init.model
    assert isinstance(model, Padim) and isinstance(model.post_processor, RawScorePostProcessor)
    assert not model.post_processor.enable_normalization
    evaluator = model.evaluator
    assert isinstance(evaluator, ISPADEvaluator) and evaluator.threshold_mode == "validation"
    assert evaluator.ispad_metrics.aupro_limit == 0.05
    assert [m.name for m in evaluator.val_metrics] == ["pixel_AUROC"]  # the early-stopping monitor
    # the factory function works as a class_path too (jsonargparse follows its return type)
    factory = yaml.safe_load(MODEL_YAML.replace("metrics.ISPADEvaluator", "metrics.ispad_evaluator"))
    evaluator = parser.instantiate_classes(parser.parse_object(factory)).model.evaluator
    assert isinstance(evaluator, ISPADEvaluator) and evaluator.threshold_mode == "validation"


class Recorder(Callback):
    """Recomputes each test batch's RAW predictions with the bare torch model (no pre-/post-
    processor callbacks involved), so the check does not depend on the order of callbacks."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.scores, self.labels, self.maps, self.masks, self.paths = [], [], [], [], []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        with torch.no_grad():
            raw = pl_module.model(batch.image)  # batch.image is already pre-processed (resized)
        self.scores.append(raw.pred_score.clone())
        self.labels.append(batch.gt_label.clone())
        self.maps.append(raw.anomaly_map.clone())
        self.masks.append(batch.gt_mask.clone())
        self.paths += [str(p) for p in batch.image_path]

    def evaluate(self, **kwargs) -> dict:
        groups = [defect_group(Path(p).parent.name) for p in self.paths]
        cat = torch.cat
        return evaluate(cat(self.scores), cat(self.labels), cat(self.maps), cat(self.masks), groups=groups, **kwargs)


def test_engine_test_reports_evaluate_values(synth_root, tmp_path):
    """Engine.test with ISPADEvaluator + RawScorePostProcessor == evaluate() on the raw outputs,
    with the oracle threshold (F1-optimal on the raw test scores) applied to images and maps."""
    from anomalib.engine import Engine
    from anomalib.models import Padim
    from anomalib.pre_processing import PreProcessor
    from torchvision.transforms.v2 import Resize

    from ispad_bench.data import ISPAD

    torch.manual_seed(0)
    data = ISPAD(root=synth_root, modality="LSM-1", train_batch_size=8, eval_batch_size=8, num_workers=0, seed=0)
    model = Padim(
        backbone="resnet18",
        pre_trained=False,
        layers=["layer1", "layer2"],
        n_features=20,
        pre_processor=PreProcessor(transform=Resize((64, 64))),
        post_processor=RawScorePostProcessor(),
        evaluator=ispad_evaluator(val_metrics=[ISPADScalar("pixel_auroc")]),  # fast exact val metric
        visualizer=False,
    )
    recorder = Recorder()
    engine = Engine(
        max_epochs=1, accelerator="cpu", devices=1, callbacks=[recorder], logger=False, default_root_dir=tmp_path
    )
    engine.fit(model, datamodule=data)
    val_pixel_auroc = float(engine.trainer.callback_metrics["pixel_AUROC"])
    logged = engine.test(model, datamodule=data)[0]

    raw_scores, labels = torch.cat(recorder.scores).numpy(), torch.cat(recorder.labels).numpy()
    expected = recorder.evaluate()
    # oracle protocol: the threshold is the F1-optimal raw image score of the TEST set ...
    assert expected["threshold"] == f1_optimal_threshold(raw_scores, labels)
    assert expected["threshold"] in raw_scores  # a raw score: min-max normalised ones would differ
    assert set(expected) >= {"pixel_auroc", "aupro", "pro", "recall_area", "recall_points", "n_good"}
    # ... and the engine's evaluator computed exactly the same numbers from what it was fed
    assert {k: model.evaluator.results[k] for k in expected} == {k: float(v) for k, v in expected.items()}
    lo, hi = model.evaluator.bootstrap.interval("mcc")  # the bootstrap ran on the same outputs
    assert lo <= expected["mcc"] <= hi and model.evaluator.bootstrap.estimate["mcc"] == expected["mcc"]
    assert {"image_AUROC", "MCC", "FPR", "TP", "pixel_AUROC", "PRO", "AUPRO", "recall_area"} <= set(logged)
    for key, value in expected.items():  # Lightning logs float32
        assert logged[DISPLAY_NAMES.get(key, key)] == pytest.approx(value, rel=1e-6, abs=1e-7), key
    # validation used the same (test) split and the same fitted model: same pixel AUROC
    assert val_pixel_auroc == pytest.approx(expected["pixel_auroc"], rel=1e-6)

    # held-out protocol: the threshold fitted (raw) on the validation split; here the datamodule
    # validates on the test split (same_as_test), so it must coincide with the oracle threshold
    model.evaluator.threshold_mode = "validation"
    engine.test(model, datamodule=data)
    assert model.evaluator.results["threshold"] == float(model.post_processor.image_threshold) == expected["threshold"]
    model.evaluator.threshold_mode = 0.5 * expected["threshold"]  # a fixed raw threshold
    recorder.reset()
    engine.test(model, datamodule=data)
    fixed = recorder.evaluate(threshold=0.5 * expected["threshold"])
    assert {k: model.evaluator.results[k] for k in fixed} == {k: float(v) for k, v in fixed.items()}


def test_cross_fit_threshold_mode_and_bootstrap_in_the_evaluator():
    """threshold: cross_fit reports the cross-fitted confusion; the bootstrap's MCC follows it."""
    groups = ["good" if y == 0 else "area" for y in TEST[1]]
    paths = [f"/d/test/{g}/{i}.png" for i, g in enumerate(groups)]
    test = batch(*TEST)
    test.image_path = paths
    evaluator = ispad_evaluator(threshold="cross_fit", pixel_metrics=False, bootstrap=200, bootstrap_seed=3)
    results = run_evaluator(evaluator, test)
    ref = cross_fit(*TEST, [f"{'area' if y else 'good'}" for y in TEST[1]], seed=0)
    assert results["mcc"] == results["mcc_crossfit"] == ref["mcc"]
    assert (results["tp"], results["fp"]) == (ref["tp"], ref["fp"])
    assert results["image_auroc"] == evaluate(*TEST)["image_auroc"]  # no threshold: unchanged
    boot = evaluator.bootstrap
    assert boot.n == 200 and boot.seed == 3
    assert np.array_equal(boot.replicates["mcc"], boot.replicates["mcc_crossfit"], equal_nan=True)
    with pytest.raises(ValueError, match="cross_fit"):
        ISPADEvaluator(threshold="crossfit")
