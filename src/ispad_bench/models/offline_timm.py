"""Build Anomalib's timm backbones from local files only: no Hugging Face hub call unless asked.

Anomalib's GLASS and U-Flow call ``timm.create_model(name, pretrained=...)`` while they are built, and
timm then asks the Hugging Face hub for the weights (a request even when the file is cached, a ~50 s
retrying failure when it is not and the machine is offline). :func:`timm_backbones` swaps the ``timm``
module those Anomalib modules see for a stand-in that either drops the weights (``pre_trained=False``)
or loads each model's cached file directly (timm's ``pretrained_cfg_overlay={"file": ...}``), so a
model is built with exactly the local weights or fails first with one clear error.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import timm

from ispad_bench.models.weights import MissingWeightsError, timm_hub_file

# Anomalib modules that hold their own reference to ``timm``
_TIMM_USERS = (
    "anomalib.models.components.feature_extractors.timm",
    "anomalib.models.image.uflow.feature_extraction",
)


class _LocalTimm:
    """``timm`` stand-in: ``create_model`` loads ``files[name]`` (or no weights when ``files`` is None)."""

    def __init__(self, files: dict[str, Path] | None) -> None:
        self.files = files

    def __getattr__(self, name: str):
        return getattr(timm, name)

    def create_model(self, model_name: str, *args, **kwargs):
        if self.files is None or not kwargs.get("pretrained"):
            kwargs["pretrained"] = False
        elif model_name in self.files:
            overlay = dict(kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay.update(file=str(self.files[model_name]), source="")
            kwargs["pretrained_cfg_overlay"] = overlay
        else:  # a model the caller did not declare: never fetch it silently
            msg = f"timm model {model_name!r} requested with pretrained weights but not declared for offline loading"
            raise MissingWeightsError(msg)
        return timm.create_model(model_name, *args, **kwargs)


def local_weight_files(names: Iterable[str], what: str) -> dict[str, Path]:
    """Cached weight file of each timm model tag; ONE ``MissingWeightsError`` listing every missing file."""
    from huggingface_hub.constants import HF_HUB_CACHE

    files, missing = {}, []
    for name in names:
        repo, path = timm_hub_file(name)
        if path is None:
            where = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots/<revision>/model.safetensors"
            missing.append(f"timm {name!r}: {where} (from https://huggingface.co/{repo})")
        else:
            files[name] = path
    if missing:
        lines = "\n  - ".join(missing)
        msg = (
            f"{what}: pretrained weights not found locally:\n  - {lines}\n"
            "Put them there (e.g. run once online with `download: true`, or `huggingface-cli download <repo>`), "
            "set `download: true` to fetch them now, or `pre_trained: false` to train from random weights "
            "(tests and speed checks only: scores then mean nothing)."
        )
        raise MissingWeightsError(msg)
    return files


@contextlib.contextmanager
def timm_backbones(files: dict[str, Path] | None) -> Iterator[None]:
    """Within the block, Anomalib builds timm models from ``files`` (``None``: without weights)."""
    modules = [importlib.import_module(name) for name in _TIMM_USERS]
    saved = [module.timm for module in modules]
    for module in modules:
        module.timm = _LocalTimm(files)
    try:
        yield
    finally:
        for module, original in zip(modules, saved, strict=True):
            module.timm = original


def backbone_context(names: Iterable[str], what: str, pre_trained: bool, download: bool):
    """Context for building: random (``pre_trained=False``), timm's own download (``download``), or local files."""
    if not pre_trained:
        return timm_backbones(None)
    if download:
        return contextlib.nullcontext()
    return timm_backbones(local_weight_files(names, what))


def deferred_backbone_context(
    names: Iterable[str], what: str, pre_trained: bool, download: bool
) -> tuple[contextlib.AbstractContextManager, MissingWeightsError | None]:
    """:func:`backbone_context`, but missing files build random weights and return the error instead.

    Models raise that error in ``setup`` (:class:`~ispad_bench.models.weights.RaiseMissingWeightsAtSetup`):
    raised while jsonargparse builds the model from a YAML, it would be buried in a config-parsing error.
    """
    try:
        return backbone_context(names, what, pre_trained, download), None
    except MissingWeightsError as err:
        return timm_backbones(None), err
