"""Tiny, offline settings for any Anomalib model: the smoke profile's stand-in for methods it has no
entry for (``tiny_for_others``), the `slow` every-model test and docs/methods.md timings.

Not a copy of the models' defaults: each rule reads the model's ``__init__`` signature and shrinks
what it finds — random weights (``pre_trained: false``, else the
:mod:`ispad_bench.models.random_init` class), a ResNet-18 for ImageNet CNN backbones, the smallest
variant of a ViT family, 64 px inputs (56 for patch-14 ViTs), batches of 4. Scores then mean nothing.
"""

from __future__ import annotations

import inspect
import re
from dataclasses import replace
from typing import Any

from ispad_bench.paper import PAPER_METHODS

SIZE, VIT14_SIZE = 64, 56
# Where the generic rules do not fit a model's architecture at 64 px (found by running every model):
KEEP_BACKBONE = {"glass", "fre", "uninet"}  # their optimiser setup / input_dim / channels follow the default
FIXES: dict[str, dict[str, Any]] = {
    "cflow": {"model.init_args.fiber_batch_size": 4},  # few feature-map positions at 64 px
    "fre": {"model.init_args.input_dim": 4096},  # ResNet-50 layer3 (1024 ch) pooled to 2 x 2 at 64 px
    "general_ad": {"model.init_args.layers": [12]},  # last block of the small ViT
    "dfkde": {"model.init_args.n_pca_components": 4},  # fewer than the 8 training embeddings
    "super_add": {"model.init_args.patch_size": 64, "model.init_args.patch_overlap": 16},  # tiles fit the image
    "uflow": {"model.init_args.backbone": "resnet18"},  # CaiT ("mcait") takes 448 px only
    "glass": {"model.init_args.input_shape": [SIZE, SIZE]},  # its maps follow input_shape, not the image
}
SIZES = {"csflow": 256, "supersimplenet": 256, "l2bt": VIT14_SIZE}  # CS-Flow: scales halve exactly; Perlin; ViT-14 inside
# Anomalib 2.7's GLASS with `pre_trained: false` fails in configure_optimizers (its backbone is kept as a name):
# random weights through random_init instead
RANDOM_INIT = {"glass"}


def _resize(size: int) -> dict[str, Any]:
    resize = {"class_path": "torchvision.transforms.v2.Resize", "init_args": {"size": [size, size]}}
    return {"class_path": "anomalib.pre_processing.PreProcessor", "init_args": {"transform": resize}}


def _small_vit(name: str) -> str:
    """``vit_large_patch14_dinov2.lvd142m`` -> ``vit_small_patch14_dinov2``; other names unchanged."""
    return re.sub(r"^vit_(base|large|huge_plus|huge|giant)_", "vit_small_", name).split(".")[0]


def blocked(name: str) -> str | None:
    """Why ``name`` cannot run here at all without files (random weights cannot stand in), or ``None``."""
    from ispad_bench.models.fetch import needed_files
    from ispad_bench.sweep import catalog

    cls = catalog.model_class(name)
    params = inspect.signature(cls).parameters
    local = {"dtd-r1.0.1.tar.gz": "dtd_dir", "imagenette2.tgz": "imagenet_dir"}  # pointed at the modality's images
    missing = [f for f in needed_files(cls, {})[0] if not f.present and (
        f.kind == "hf" or (f.kind == "anomalib" and local.get(f.name) not in params))]
    if not missing:
        return None
    return "loads " + ", ".join(f.name for f in missing) + " directly (no random stand-in): `ispad-bench weights fetch`"


def tiny(name: str) -> tuple[str, dict[str, Any]]:
    """(method to run, overrides) for Anomalib model ``name`` at tiny size with random weights."""
    from ispad_bench.models.fetch import needed_files
    from ispad_bench.sweep import catalog

    cls = catalog.model_class(name)
    params = inspect.signature(cls).parameters
    default = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    out: dict[str, Any] = {"data.init_args.train_batch_size": 4, "data.init_args.eval_batch_size": 8}
    method = catalog.class_path(cls) if name in PAPER_METHODS else name  # the paper's own config keeps the name
    weights = [f for f in needed_files(cls, {})[0] if f.kind != "anomalib"]  # anomalib kind: data sets, aux files
    if "pre_trained" in params and name not in RANDOM_INIT:
        out["model.init_args.pre_trained"] = False
    elif (weights or name in RANDOM_INIT) and cls.__module__.startswith("anomalib."):
        method = f"ispad_bench.models.random_init.{cls.__name__}"
    size = SIZE
    for key in ("backbone", "encoder_name", "student_backbone", "teacher_backbone"):
        value = default.get(key)
        if not isinstance(value, str):
            continue
        if name in KEEP_BACKBONE:
            continue
        if re.match(r"(wide_)?resnet\d+", value):
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
        out["model.init_args.pre_processor"] = _resize(SIZES.get(name, size))
    return method, {**out, **FIXES.get(name, {})}


def for_others(profile, methods: tuple[str, ...]):
    """``(profile, methods)`` where every method without an entry in a ``tiny_for_others`` profile gets
    :func:`tiny`'s settings (and its random-weights class where it has no ``pre_trained`` switch)."""
    from ispad_bench.sweep import catalog

    if not profile.tiny_for_others:
        return profile, methods
    entries, names = dict(profile.methods), []
    for name in methods:
        if name in entries or name in PAPER_METHODS or not _is_model(catalog, name) or blocked(name):
            names.append(name)  # blocked: the weights check says what is missing
            continue
        method, overrides = tiny(name)
        entries[method] = overrides
        names.append(method)
    return replace(profile, methods=entries), tuple(names)


def _is_model(catalog, name: str) -> bool:
    try:
        catalog.model_class(name)
    except ValueError:
        return False
    return True
