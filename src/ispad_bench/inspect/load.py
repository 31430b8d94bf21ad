"""A sweep job folder -> the model that was tested, its per-window pre-processing and its threshold.

The model is rebuilt exactly as the job built it (``resolve.parse`` + the ``anomalib train`` parser's
``instantiate_classes``, after ``seed_everything`` with the config's seed, so random or pretrained
tensors that ``model.ckpt`` stores as digests come back identical), then ``model.ckpt`` is loaded the
way Lightning loads it (``on_load_checkpoint`` with :func:`ispad_bench.models.keep.install`'s hook,
then a strict ``load_state_dict``). ``model.ckpt`` holds the weights the job *tested* (the selected
checkpoint where selection ran: ``sweep/job.py`` keeps them after ``Engine.test``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ispad_bench.data.modality import Modality
from ispad_bench.errors import InputError
from ispad_bench.sweep import records


class JobError(InputError):
    """A job folder that cannot be inspected (no record, failed job, no kept model); names the folder."""


@dataclass
class Threshold:
    """The image threshold the decisions use, and where it comes from (``origin`` is written out)."""

    value: float
    origin: str  # oracle | validation | cross_fit | fixed | --threshold
    note: str = ""


@dataclass
class InspectJob:
    """Everything inspection needs of one job; ``model`` is in eval mode on ``device``."""

    job_dir: Path
    record: dict
    model: Any
    geometry: Any  # the datamodule's per-patch eval geometry (torchvision transform) or None
    augmentations: Any  # the datamodule's test augmentations (run per window) or None
    model_transform: Any  # the pre-processor's transform (run per batch, as on_test_batch_start does)
    modality: Modality
    threshold: Threshold
    device: str
    map_source: str  # "model" (the model's anomaly maps) or "window scores" (the model gives none)
    extra: dict = field(default_factory=dict)

    @property
    def key(self) -> str:
        return str(self.record.get("key"))


def job_folder(path: Path) -> Path:
    """A job folder or its ``record.json`` -> the folder."""
    path = Path(path)
    return path.parent if path.name == records.RECORD else path


def read_job_record(job_dir: Path) -> dict:
    """The job's successful record, or :class:`JobError` saying why it cannot be inspected."""
    path = job_dir / records.RECORD
    record, why = records.read_record(path)
    if record is None:
        raise JobError(f"{path}: {why} (pass a sweep job folder or its record.json)")
    if record.get("status") != "ok":
        raise JobError(f"{path}: the job has status {record.get('status')!r}; only a finished job can be inspected")
    return record


def evaluator_mode(record: dict) -> Any:
    """The threshold protocol of the job's evaluator (``oracle``, ``validation``, ``cross_fit`` or a number)."""
    evaluator = ((record.get("config") or {}).get("model") or {}).get("init_args", {}).get("evaluator") or {}
    if isinstance(evaluator, dict):
        return (evaluator.get("init_args") or {}).get("threshold", "oracle")
    return "oracle"


def record_threshold(record: dict, override: float | None = None, where: str = "record.json") -> Threshold:
    """The threshold of the record's image metrics (the one its MCC, recall and PRO used), or ``override``.

    Cross-fitting judged each test half at the other half's F1-optimal threshold; a line needs one:
    the mean of the two (said in the note)."""
    if override is not None:
        return Threshold(float(override), "--threshold")
    mode = evaluator_mode(record)
    metrics = record.get("metrics") or {}
    value = metrics.get("threshold")
    if isinstance(mode, str) and mode == "cross_fit":
        a, b = metrics.get("threshold_a"), metrics.get("threshold_b")
        if a is None or b is None:
            raise JobError(f"{where}: threshold cross_fit but no threshold_a/threshold_b in its metrics: pass --threshold")
        return Threshold((float(a) + float(b)) / 2, "cross_fit",
                         f"mean of the two cross-fitted thresholds {float(a):.6g} and {float(b):.6g}")
    if value is None or not math.isfinite(float(value)):
        raise JobError(f"{where}: no finite image threshold in its metrics: pass --threshold")
    origin = mode if mode in ("oracle", "validation") else "fixed"  # a number (or a number as text)
    notes = {"oracle": "F1-optimal on the job's test set (the paper's protocol, §4.3.6)",
             "validation": "F1-optimal on the job's validation set"}
    return Threshold(float(value), origin, notes.get(origin, "the evaluator's fixed threshold"))


def _modality(record: dict, datamodule) -> Modality:
    value = getattr(datamodule, "modality", None) or record.get("modality")
    return Modality.parse(value)


def window_transforms(datamodule) -> tuple[Any, Any]:
    """(geometry, test augmentations) of the job's datamodule: what each test patch went through before the
    model's own transform (``ISPAD.eval_geometry``; the supervised datamodule crops ``border_crop`` columns)."""
    from ispad_bench.data.datamodule import geometry

    geo = getattr(datamodule, "eval_geometry", None)
    if geo is None and hasattr(datamodule, "border_crop"):
        geo = geometry(int(datamodule.border_crop or 0))
    return geo, getattr(datamodule, "test_augmentations", None)


def gives_maps(model) -> bool:
    """``False`` for an image classifier whose map is no segmentation (the supervised ResNet18's class
    activations); models that return no map at all (GANomaly) are found on the first batch (:mod:`.run`)."""
    from ispad_bench.models.mixed_supervised import MixedSupervised

    return not isinstance(model, MixedSupervised)


def load_job(path: Path, device: str = "cpu", threshold: float | None = None) -> InspectJob:
    """Rebuild the job's tested model on ``device`` (offline: weights come from the local caches)."""
    job_dir = job_folder(path)
    if not job_dir.is_dir():
        raise JobError(f"{job_dir}: no such job folder")
    record = read_job_record(job_dir)
    thr = record_threshold(record, threshold, str(job_dir / records.RECORD))
    ckpt_path, config = job_dir / records.MODEL, job_dir / records.CONFIG
    if not config.is_file():
        raise JobError(f"{config}: missing (a sweep job folder holds the resolved config.yaml)")
    if not ckpt_path.is_file():
        kept = (record.get("kept") or {}).get("keep", "none")
        raise JobError(f"{job_dir}: no {records.MODEL} (the sweep ran with --keep {kept}); rerun the job with "
                       "`ispad-bench sweep ... --keep model` (the default) to keep the tested model")
    import lightning
    import torch
    from anomalib.utils.config import update_config

    from ispad_bench.models import keep
    from ispad_bench.sweep import resolve

    cfg = resolve.parse(config, [])
    lightning.seed_everything(int(cfg.get("seed_everything") or record.get("seed") or 0), verbose=False)
    init = resolve.train_parser().instantiate_classes(update_config(cfg))
    model, datamodule = init.model, init.data
    keep.install()
    try:
        checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    except Exception as err:
        raise JobError(f"{ckpt_path}: unreadable checkpoint ({type(err).__name__}: {err})") from err
    model.on_load_checkpoint(checkpoint)  # Lightning's order: the hook (restores rebuilt tensors), then the state
    model.load_state_dict(checkpoint["state_dict"], strict=True)
    if hasattr(model, "visualizer"):
        model.visualizer = None
    model.to(device).eval()
    geo, aug = window_transforms(datamodule)
    pre = getattr(model, "pre_processor", None)
    return InspectJob(job_dir=job_dir, record=record, model=model, geometry=geo, augmentations=aug,
                      model_transform=getattr(pre, "transform", None), modality=_modality(record, datamodule),
                      threshold=thr, device=device, map_source="model" if gives_maps(model) else "window scores")
