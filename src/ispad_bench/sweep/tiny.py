"""Tiny, offline settings for any Anomalib model (the `slow` every-model test, docs/methods.md timings).

Not a copy of the models' defaults: each rule reads the model's ``__init__`` signature and shrinks
what it finds — random weights (``pre_trained: false``, else the
:mod:`ispad_bench.models.random_init` class), a ResNet-18 for ImageNet CNN backbones, the smallest
variant of a ViT family, 64 px inputs (56 for patch-14 ViTs), batches of 4. Scores then mean nothing.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

SIZE, VIT14_SIZE = 64, 56


def _resize(size: int) -> dict[str, Any]:
    resize = {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": [size, size]}}
    return {"class_path": "anomalib.pre_processing.PreProcessor", "init_args": {"transform": resize}}


def _small_vit(name: str) -> str:
    """``vit_large_patch14_dinov2.lvd142m`` -> ``vit_small_patch14_dinov2``; other names unchanged."""
    return re.sub(r"^vit_(base|large|huge_plus|huge|giant)_", "vit_small_", name).split(".")[0]


def tiny(name: str) -> tuple[str, dict[str, Any]]:
    """(method to run, overrides) for Anomalib model ``name`` at tiny size with random weights."""
    from ispad_bench.models.fetch import needed_files
    from ispad_bench.sweep import catalog

    cls = catalog.model_class(name)
    params = inspect.signature(cls).parameters
    default = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out: dict[str, Any] = {"data.init_args.train_batch_size": 4, "data.init_args.eval_batch_size": 8}
    from ispad_bench.sweep.grid import PAPER_METHODS

    method = catalog.class_path(cls) if name in PAPER_METHODS else name  # the paper's own config keeps the name
    weights = [f for f in needed_files(cls, {})[0] if f.kind != "anomalib"]  # anomalib kind: data sets, aux files
    if "pre_trained" in params:
        out["model.init_args.pre_trained"] = False
    elif weights and cls.__module__.startswith("anomalib."):
        method = f"ispad_bench.models.random_init.{cls.__name__}"
    size = SIZE
    for key in ("backbone", "encoder_name", "student_backbone", "teacher_backbone"):
        value = default.get(key)
        if not isinstance(value, str):
            continue
        if re.match(r"(wide_)?resnet\d+", value) and "input_dim" not in params:
            out[f"model.init_args.{key}"] = "resnet18"
        elif value.startswith("vit_") or "dino" in value:
            small = _small_vit(value)
            if small != value and not value.startswith("dinov2_"):
                out[f"model.init_args.{key}"] = small
            if "14" in value:
                size = VIT14_SIZE
    if "dtd_dir" in params:
        out["model.init_args.dtd_dir"] = "{modality_dir}/train"  # the modality's images stand in for textures
    if "imagenet_dir" in params:
        out["model.init_args.imagenet_dir"] = "{modality_dir}/train"
    if "pre_processor" in params:
        out["model.init_args.pre_processor"] = _resize(size)
    return method, out
