"""Every method the sweep can run: the paper's configs, each Anomalib image model, a user's class path.

A method without a ``configs/<name>/`` folder gets its job config built here, per modality, from
  * Anomalib's own defaults for the model — nothing is copied: the config names the class and
    jsonargparse fills in its ``__init__`` defaults (backbone, layers, ...), the model's default
    pre-processor sets the image size, the datamodule's defaults the batch sizes, and the Engine
    applies the model's ``trainer_arguments`` (e.g. PatchCore's one epoch) at run time;
  * the ISP-AD protocol of the paper's Anomalib runs (§4.3.5-4.3.6): ``ISPAD`` datamodule on the
    reduced split, raw-score post-processor, the project evaluator with the oracle threshold; trained
    models stop early on pixel AUROC (patience 30, at most 300 epochs); one-epoch models (Anomalib
    sets ``max_epochs: 1``: PatchCore, PaDiM, DFKDE, DFM, ...) and zero-shot models run one epoch;
  * the modality's fixed geometry (``Modality.center_crop``: ASM centre-crop 224, §4.3.5).
The generated YAML is an ordinary ``anomalib train --config`` file (:func:`write_generated`).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from ispad_bench.data.modality import Modality
from ispad_bench.files import atomic_write_bytes
from ispad_bench.paper import PAPER_METHODS
from ispad_bench.sweep.resolve import import_path, yaml_section

MAX_EPOCHS, PATIENCE = 300, 30  # §4.3.6
ANOMALIB_GROUP = "anomalib"  # in a profile's ``include``: every runnable Anomalib image model

# Models that cannot be measured under the protocol, and why (checked before any job starts).
REFUSED = {
    "vlm_ad": "needs a vision-language model behind a remote API (Ollama/OpenAI/Hugging Face) and text prompts",
    "winclip": "zero-/few-shot CLIP model driven by text prompts (a class name); needs open_clip",
    "cfm": "RGB + 3D point-cloud model (needs depth maps, e.g. MVTec 3D-AD); ISP-AD has no depth data",
}
VIDEO_REASON = "video model: needs clips of consecutive frames; ISP-AD holds still images"


def model_folder(cls: type) -> str:
    """``anomalib.models.image.reverse_distillation.lightning_model`` -> ``reverse_distillation``."""
    return cls.__module__.split(".")[3]


@lru_cache(maxsize=1)
def anomalib_image_models() -> dict[str, type]:
    """Anomalib's image models by their folder name (Anomalib's registry: ``anomalib.models.image``)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import anomalib.models.image as image

    return {model_folder(getattr(image, n)): getattr(image, n) for n in image.__all__}


@lru_cache(maxsize=1)
def anomalib_video_models() -> dict[str, type]:
    import anomalib.models.video as video

    return {model_folder(getattr(video, n)): getattr(video, n) for n in video.__all__}


def is_class_path(name: str) -> bool:
    return "." in name


def refusal(name: str) -> str | None:
    """Why ``name`` cannot run on ISP-AD, or ``None``."""
    if name in REFUSED:
        return REFUSED[name]
    if name in anomalib_video_models():
        return VIDEO_REASON
    return None


def model_class(name: str) -> type:
    """The ``AnomalibModule`` for an Anomalib model name or a dotted class path (clear errors otherwise)."""
    from anomalib.models import AnomalibModule

    if is_class_path(name):
        try:
            cls = import_path(name)
        except Exception as err:  # any import failure of a user's class path: one clear error
            raise ValueError(f"method {name!r}: cannot import this class path ({err})") from err
        if not (inspect.isclass(cls) and issubclass(cls, AnomalibModule)):
            raise ValueError(f"method {name!r} is not an anomalib AnomalibModule subclass")
        return cls
    models = anomalib_image_models()
    key = name.lower()
    for folder, cls in models.items():
        if key in (folder, cls.__name__.lower()):
            return cls
    raise ValueError(f"unknown method {name!r}: not a configs/ folder, an Anomalib image model "
                     f"({', '.join(sorted(models))}) or a dotted class path")


def class_path(cls: type) -> str:
    """Public import path: ``anomalib.models.Patchcore`` for Anomalib's models, else module.Class."""
    import anomalib.models

    if getattr(anomalib.models, cls.__name__, None) is cls:
        return f"anomalib.models.{cls.__name__}"
    return f"{cls.__module__}.{cls.__name__}"


def _on_meta(cls: type):
    """An instance built on the meta device with downloads recorded, not made (for instance-only properties)."""
    import torch

    from ispad_bench.models.fetch import recording

    kwargs = {"pre_trained": False} if "pre_trained" in inspect.signature(cls).parameters else {}
    with recording([]), torch.device("meta"):
        return cls(**kwargs)


def _instance_property(cls: type, name: str, default):
    prop = getattr(cls, name, None)
    try:
        return prop.fget(None) if isinstance(prop, property) else default
    except Exception:  # noqa: BLE001 (the property reads the instance: build one)
        try:
            return getattr(_on_meta(cls), name)
        except Exception:  # noqa: BLE001 (a model that cannot be built on meta has no such property)
            return default


def trainer_arguments(cls: type) -> dict[str, Any]:
    """The model's own ``trainer_arguments`` (the Engine applies them over the config)."""
    return dict(_instance_property(cls, "trainer_arguments", {}) or {})


def learning_type(cls: type) -> str:
    value = _instance_property(cls, "learning_type", None)
    return getattr(value, "value", str(value) if value is not None else "unknown")


def one_epoch(cls: type) -> bool:
    """Memory-bank style (Anomalib sets one epoch) or zero-shot: no training loop to stop early."""
    return trainer_arguments(cls).get("max_epochs") == 1 or learning_type(cls) in ("zero_shot", "few_shot")


def protocol_notes(cls: type) -> list[str]:
    """Where the model's own defaults meet the protocol (shown by ``ispad-bench methods``)."""
    notes = []
    args = trainer_arguments(cls)
    if args.get("max_epochs") not in (None, 1):
        notes.append(f"Anomalib forces max_epochs={args['max_epochs']} (Engine trainer_arguments) instead of "
                     f"early stopping within {MAX_EPOCHS}")
    if learning_type(cls) in ("zero_shot", "few_shot"):
        notes.append(f"{learning_type(cls)}: one pass, the reduced train split is not learned from")
    return notes


def build_config(name: str, modality: str) -> dict[str, Any]:
    """The job config (``anomalib train --config`` layout) for an Anomalib model name or class path."""
    reason = refusal(name)
    if reason:
        raise ValueError(f"method {name!r} cannot run on ISP-AD: {reason}")
    cls = model_class(name)
    mod = Modality.parse(modality)
    single = one_epoch(cls)
    scalar = {"class_path": "ispad_bench.metrics.ISPADScalar", "init_args": {"key": "pixel_auroc", "strict": False}}
    evaluator: dict[str, Any] = {"class_path": "ispad_bench.metrics.ISPADEvaluator", "init_args": {"threshold": "oracle"}}
    trainer: dict[str, Any] = {"accelerator": "auto", "devices": 1, "max_epochs": 1 if single else MAX_EPOCHS}
    if single:
        trainer["limit_val_batches"] = 0  # nothing to select: validation would only repeat the test pass
    else:
        evaluator["init_args"]["val_metrics"] = [scalar]  # logged as pixel_AUROC
        trainer["check_val_every_n_epoch"] = 1
        trainer["callbacks"] = [{
            "class_path": "lightning.pytorch.callbacks.EarlyStopping",
            "init_args": {"monitor": "pixel_AUROC", "mode": "max", "patience": PATIENCE,
                          "check_on_train_epoch_end": False},
        }]
    model_args: dict[str, Any] = {
        "post_processor": {"class_path": "ispad_bench.metrics.RawScorePostProcessor"},
        "evaluator": evaluator,
    }
    if "visualizer" in inspect.signature(cls).parameters:
        model_args["visualizer"] = False  # the sweep keeps its own maps (predictions.npz)
    geometry = {"center_crop": mod.center_crop} if mod.center_crop else {}
    data_args = {"root": "datasets/ispad", "modality": mod.value, "train_split": "reduced", **geometry}
    return {
        "seed_everything": 0,
        "trainer": trainer,
        "model": {"class_path": class_path(cls), "init_args": model_args},
        "data": {"class_path": "ispad_bench.data.ISPAD", "init_args": data_args},
    }


def generated_dir() -> Path:
    """Where generated configs are written (``ISPAD_GENERATED_DIR``, else ``~/.cache/ispad-bench/generated``)."""
    env = os.environ.get("ISPAD_GENERATED_DIR")
    return Path(env) if env else Path.home() / ".cache" / "ispad-bench" / "generated"


def write_generated(name: str, modality: str) -> Path:
    """Write the generated config of ``name`` for ``modality`` (content-addressed: never stale) and return it."""
    config = build_config(name, modality)
    text = (f"# Generated by ispad-bench for {name} on {Modality.parse(modality).value}: Anomalib's defaults for the\n"
            "# model + the ISP-AD protocol (§4.3.5-4.3.6). Run: anomalib train --config <this file>\n"
            + yaml.safe_dump(config, sort_keys=False))
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    path = generated_dir() / name.replace("/", "_") / f"{Modality.parse(modality).slug}-{digest}.yaml"
    if not path.is_file():
        atomic_write_bytes(path, text.encode())
    return path


def runnable_anomalib_models() -> list[str]:
    """Every Anomalib image model that is not refused (sorted by name)."""
    return sorted(n for n in anomalib_image_models() if refusal(n) is None)


def expand_names(names: list[str] | tuple[str, ...], configured: dict[str, Any]) -> list[str]:
    """``anomalib`` -> every runnable Anomalib image model not already covered by a configs/ folder."""
    out: list[str] = []
    for name in names:
        group = [n for n in runnable_anomalib_models() if n not in configured and n not in PAPER_METHODS] \
            if name == ANOMALIB_GROUP else [name]
        out.extend(n for n in group if n not in out)
    return out


def with_generated(available: dict[str, dict], methods: list[str] | None) -> dict[str, dict]:
    """``available`` (``{method: {modality|None: yaml}}`` from configs/) plus a generated config per
    modality for each requested method that has no configs/ folder; refused methods raise ``ValueError``."""
    out = dict(available)
    for name in methods or []:
        if name in out or name in PAPER_METHODS:  # a paper method means its configs/ folder, never Anomalib's
            continue
        if refusal(name):
            raise ValueError(f"method {name!r} cannot run on ISP-AD: {refusal(name)}")
        try:
            model_class(name)
        except ValueError:
            continue  # select_methods reports it with the list of what is available
        out[name] = {m: write_generated(name, m) for m in (mod.value for mod in Modality)}
    return out


# ------------------------------------------------------------------------------ model of a method
def _simple(init_args: dict[str, Any]) -> dict[str, Any]:
    """Init args that build the model alone (nested processors/evaluators are left to their defaults)."""
    skip = {"pre_processor", "post_processor", "evaluator", "visualizer"}
    return {k: v for k, v in (init_args or {}).items()
            if k not in skip and not (isinstance(v, dict) and "class_path" in v)}


def section_model(model: dict) -> tuple[type, dict[str, Any]]:
    """(model class, init args that build it alone) of a config's ``model`` section."""
    return model_class(model.get("class_path", "")), _simple(model.get("init_args") or {})


def method_model(name: str, configured: dict[str, dict]) -> tuple[type, dict[str, Any]]:
    """(model class, init args) a method runs with by default: its config, else Anomalib's defaults."""
    if name in configured:
        return section_model(yaml_section(next(iter(configured[name].values())), "model"))
    return model_class(name), {}


def weight_files(names: list[str], configured: dict[str, dict]) -> dict[str, tuple[list, str | None]]:
    """``{method: (files, error)}`` of the weight files each method loads; refused or unknown
    methods raise ``ValueError``."""
    from ispad_bench.models.fetch import needed_files

    out = {}
    for name in expand_names(names, configured):
        if refusal(name):
            raise ValueError(f"method {name!r} cannot run on ISP-AD: {refusal(name)}")
        out[name] = needed_files(*method_model(name, configured))
    return out


def missing_job_weights(jobs) -> dict[str, list]:
    """Missing weight files of resolved sweep jobs, by job label (one discovery per distinct model config)."""
    from ispad_bench.models.fetch import needed_files

    cache: dict[str, list] = {}
    missing: dict[str, list] = {}
    for job in jobs:
        model = (job.config or {}).get("model") or {}
        key = json.dumps(model, sort_keys=True, default=str)
        if key not in cache:
            try:
                cache[key] = [f for f in needed_files(*section_model(model))[0] if not f.present]
            except ValueError:
                cache[key] = []
        if cache[key]:
            missing[job.label()] = cache[key]
    return missing


def job_argument_errors(jobs) -> dict[str, str]:
    """``{job label: reason}`` for jobs whose model or data init args their class refuses (one line, as
    ``anomalib train`` prints it); each distinct section is built once (the model on the meta device)."""
    from ispad_bench.models.fetch import argument_error
    from ispad_bench.sweep.resolve import import_path

    cache: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for job in jobs:
        for section in ("model", "data"):
            part = (job.config or {}).get(section) or {}
            key = json.dumps([section, part], sort_keys=True, default=str)
            if key not in cache:
                try:
                    cls = import_path(part.get("class_path", ""))
                except (ImportError, AttributeError, ValueError):
                    cache[key] = None  # resolving the config already said so
                else:
                    cache[key] = argument_error(cls, _simple(part.get("init_args") or {}))
            if cache[key]:
                errors[job.label()] = cache[key]
                break
    return errors
