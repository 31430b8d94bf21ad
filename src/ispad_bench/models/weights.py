"""Pretrained weights, offline-first: one clear error before training instead of a failed download.

Every method loads ImageNet backbones through the libraries' normal caches (torchvision:
``$TORCH_HOME/hub/checkpoints``; timm: the Hugging Face hub cache). When a file is absent and
cannot be fetched, ``MissingWeightsError`` says which file, where it goes, and that
``pre_trained: false`` runs without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

import torch


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights are neither cached nor downloadable."""


class RaiseMissingWeightsAtSetup:
    """Mixin for an ``AnomalibModule`` built with random weights because its files were missing.

    ``anomalib train --config`` builds the model while parsing the YAML, and jsonargparse would bury an
    error raised there in a long "does not validate" message. So the model is built (no download,
    random weights), keeps the error in ``missing_weights``, and raises it when the engine calls
    ``setup`` — before any training or testing step.
    """

    missing_weights: MissingWeightsError | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.missing_weights is not None:
            raise self.missing_weights
        super().setup(stage)  # type: ignore[misc]


def _hint(what: str, where: Path | str, source: str) -> str:
    return (
        f"pretrained weights for {what} are not available offline: expected {where} "
        f"(download {source} and put it there), or set `pre_trained: false` in the model's "
        "init_args to train from random initialisation"
    )


def downloads_allowed() -> bool:
    """Downloads happen unless the user went offline (``HF_HUB_OFFLINE`` / ``ISPAD_OFFLINE``)."""
    return not any(os.environ.get(k, "") in ("1", "true", "yes") for k in ("ISPAD_OFFLINE", "HF_HUB_OFFLINE"))


def torchvision_checkpoint(weights) -> Path:
    """Cache path torchvision uses for a ``WeightsEnum`` member, e.g. ``ResNet18_Weights.IMAGENET1K_V1``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(weights.url).path).name


def torchvision_state_dict(weights, *, allow_download: bool | None = None) -> dict[str, torch.Tensor]:
    """State dict of torchvision ImageNet ``weights`` from the torch hub cache, downloading if allowed."""
    path = torchvision_checkpoint(weights)
    if path.is_file():
        return torch.load(path, map_location="cpu", weights_only=True)
    message = _hint(str(weights), path, weights.url)
    if allow_download if allow_download is not None else downloads_allowed():
        try:
            return weights.get_state_dict(progress=True, check_hash=False)
        except Exception as err:  # no network, proxy, HTTP error: all end the same way
            raise MissingWeightsError(f"{message}; the download failed: {err}") from err
    raise MissingWeightsError(message)


def timm_hub_file(model_name: str) -> tuple[str, Path | None]:
    """(HF repo id, cached safetensors path or None) for a timm model tag such as ``wide_resnet50_2.tv_in1k``."""
    import timm
    from huggingface_hub import try_to_load_from_cache

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) or f"timm/{model_name}"
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(repo, filename)
        if isinstance(found, str):
            return repo, Path(found)
    return repo, None


def require_timm_weights(model_name: str) -> None:
    """Raise ``MissingWeightsError`` unless timm can load ``model_name`` without a download (or may download)."""
    from huggingface_hub.constants import HF_HUB_CACHE

    repo, path = timm_hub_file(model_name)
    if path is None and not downloads_allowed():
        where = Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots/<revision>/model.safetensors"
        raise MissingWeightsError(_hint(f"timm model {model_name!r}", where, f"https://huggingface.co/{repo}"))
