"""Which weight files a model needs, whether they are cached, and fetching them once for offline nodes.

What a model needs is *observed*, not listed by hand: :func:`needed_files` builds the model on the
``meta`` device (no memory, no compute) while every download entry point the models use is replaced by
a recorder — ``timm.create_model(pretrained=True)`` (timm / Hugging Face hub),
``torch.hub.load_state_dict_from_url`` (torchvision), ``hf_hub_download``, ``urlretrieve`` and Anomalib's
``download_and_extract`` — and the model's module is scanned for Anomalib's ``DownloadInfo`` constants
(files it fetches only when training starts, such as the EfficientAD teacher, Imagenette, DTD).
Each need becomes a :class:`WeightFile` with the place the library's own cache looks for it.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

# Where Anomalib's code puts each of its own downloads (``DownloadInfo.name`` -> folder, the file or
# folder whose presence means "done"), relative to its pre-trained cache or the working directory.
_PRETRAINED = "{pretrained}"
AUXILIARY = {
    "efficientad_pretrained_weights.zip": (_PRETRAINED, "efficientad_pretrained_weights"),
    "vq_model_pretrained_128_4096.pckl": (f"{_PRETRAINED}/dsr", "vq_model_pretrained_128_4096.pckl"),
    "pointmae_pretrain.pth": (f"{_PRETRAINED}/pointmae", "pointmae_pretrain.pth"),
    "imagenette2.tgz": ("{imagenet_dir}", ""),  # Anomalib downloads only when the folder is absent
    "dtd-r1.0.1.tar.gz": ("{dtd_dir}", ""),
}
ARCHIVE_SUFFIXES = (".zip", ".tgz", ".tar.gz", ".tar")


@dataclass(frozen=True)
class WeightFile:
    """One file (or archive) a model loads: ``kind`` is ``torchvision``, ``timm``, ``hf`` or ``anomalib``."""

    kind: str
    name: str  # timm tag, HF repo/file, or the file name
    url: str
    path: Path  # where the library looks for it (for timm/hf: the HF cache folder of the repo)
    sha256: str | None = None  # full digest, or the prefix torchvision puts in its file names
    marker: Path | None = None  # anomalib archives: what exists once extracted

    @property
    def present(self) -> bool:
        if self.kind in ("timm", "hf"):
            return _hf_cached(*self.hf_parts()) is not None
        return (self.marker or self.path).exists()

    def hf_parts(self) -> tuple[str, str]:
        repo, _, filename = self.name.partition(":")
        return repo, filename or "model.safetensors"

    def describe(self) -> str:
        return f"{self.kind} {self.name} -> {self.path}"


def _hf_cached(repo: str, filename: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for name in (filename, "pytorch_model.bin") if filename == "model.safetensors" else (filename,):
        found = try_to_load_from_cache(repo, name)
        if isinstance(found, str):
            return Path(found)
    return None


def _hf_folder(repo: str) -> Path:
    from huggingface_hub.constants import HF_HUB_CACHE

    return Path(HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}"


def timm_file(model_name: str) -> WeightFile:
    """The file timm loads for ``model_name`` (its Hugging Face repo, else its URL into the torch hub cache)."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model_name)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if repo or cfg is None:
        repo = repo or f"timm/{model_name}"
        return WeightFile("timm", f"{repo}:model.safetensors", f"hf://{repo}", _hf_folder(repo))
    return url_file("torchvision", cfg.url)


def url_file(kind: str, url: str) -> WeightFile:
    """A file torch.hub keeps in ``$TORCH_HOME/hub/checkpoints`` (sha256 prefix from its name, as torch checks)."""
    name = Path(urlparse(url).path).name
    match = re.search(r"-([a-f0-9]{6,})\.", name)
    return WeightFile(kind, name, url, Path(torch.hub.get_dir()) / "checkpoints" / name, match.group(1) if match else None)


def anomalib_file(info, init_args: dict[str, Any] | None = None) -> WeightFile:
    """An Anomalib ``DownloadInfo`` with the folder Anomalib extracts it into."""
    from anomalib.utils.path import get_pretrained_weights_dir

    init_args = init_args or {}
    folder, marker = AUXILIARY.get(info.name, (_PRETRAINED, info.name))
    folder = folder.format(
        pretrained=get_pretrained_weights_dir(),
        imagenet_dir=init_args.get("imagenet_dir") or "./datasets/imagenette",
        dtd_dir=init_args.get("dtd_dir") or init_args.get("anomaly_source_path") or "./datasets/dtd",
    )
    folder = Path(folder).expanduser().resolve()
    return WeightFile("anomalib", info.name, info.url, folder, info.hashsum, folder / marker)


class _Recorded(RuntimeError):
    """Raised by a recorder where returning a stand-in cannot work (the build stops there)."""


class _NoWeights(dict):
    """Empty state dict that ``load_state_dict`` accepts (the weights were only recorded)."""


@contextlib.contextmanager
def recording(found: list[WeightFile], init_args: dict[str, Any] | None = None) -> Iterator[None]:
    """Within the block, downloads are recorded into ``found`` instead of made; models get random weights."""
    import huggingface_hub
    import timm
    import urllib.request

    real_create, real_load = timm.create_model, torch.nn.Module.load_state_dict

    def create_model(model_name, *args, **kwargs):
        if kwargs.get("pretrained"):
            found.append(timm_file(model_name))
        kwargs["pretrained"] = False
        kwargs.pop("pretrained_cfg_overlay", None)
        return real_create(model_name, *args, **kwargs)

    def load_url(url, *args, **kwargs):
        found.append(url_file("torchvision", url))
        return _NoWeights()

    def load_state_dict(self, state_dict, *args, **kwargs):
        if isinstance(state_dict, _NoWeights):
            return torch.nn.modules.module._IncompatibleKeys([], [])  # noqa: SLF001 (what load_state_dict returns)
        return real_load(self, state_dict, *args, **kwargs)

    def hf_download(repo_id, filename, *args, **kwargs):
        found.append(WeightFile("hf", f"{repo_id}:{filename}", f"hf://{repo_id}", _hf_folder(repo_id)))
        raise _Recorded(f"{repo_id}/{filename}")

    def download_and_extract(root, info):
        found.append(anomalib_file(info, init_args))

    def urlretrieve(url, *args, **kwargs):
        found.append(url_file("url", url))
        raise _Recorded(url)

    patches = [(timm, "create_model", create_model), (torch.hub, "load_state_dict_from_url", load_url),
               (torch.nn.Module, "load_state_dict", load_state_dict), (huggingface_hub, "hf_hub_download", hf_download),
               (urllib.request, "urlretrieve", urlretrieve)]
    for name, module in list(sys.modules.items()):  # names bound by ``from x import y`` in Anomalib's modules
        if name.startswith(("anomalib.", "torchvision.")) and module is not None:
            for attr, fake in (("download_and_extract", download_and_extract), ("urlretrieve", urlretrieve),
                               ("hf_hub_download", hf_download), ("load_state_dict_from_url", load_url)):
                if attr in vars(module):
                    patches.append((module, attr, fake))
    saved = [(obj, attr, getattr(obj, attr)) for obj, attr, _ in patches]
    try:
        for obj, attr, fake in patches:
            setattr(obj, attr, fake)
        yield
    finally:
        for obj, attr, value in reversed(saved):
            setattr(obj, attr, value)


def declared_downloads(cls: type) -> list:
    """Anomalib ``DownloadInfo`` constants in the modules of ``cls`` and its package (fetched at train time)."""
    from anomalib.data.utils import DownloadInfo

    infos, seen = [], set()
    # an Anomalib model folder (``anomalib.models.image.<name>.*``), else only the class's own module
    package = cls.__module__.rsplit(".", 1)[0] if cls.__module__.startswith("anomalib.models.") else cls.__module__
    for name, module in list(sys.modules.items()):
        if module is None or not (name == cls.__module__ or name.startswith(package + ".")):
            continue
        for value in vars(module).values():
            if isinstance(value, DownloadInfo) and value.name not in seen:
                seen.add(value.name)
                infos.append(value)
    return infos


def needed_files(cls: type, init_args: dict[str, Any] | None = None) -> tuple[list[WeightFile], str | None]:
    """(files ``cls(**init_args)`` loads, error text if it could not be built to find out)."""
    init_args = dict(init_args or {})
    if "download" in inspect.signature(cls).parameters:  # the project's models: ask for the real files
        init_args.setdefault("download", True)
    found: list[WeightFile] = []
    error = None
    for device in ("meta", "cpu"):  # meta: no memory, no compute; some models need real tensors to build
        found, err = _build(cls, init_args, device)
        error = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}" if err else None
        if error is None or found:  # a build that failed after its downloads were recorded still told us
            error = None
            break
    params = inspect.signature(cls).parameters
    defaults = {k: p.default for k, p in params.items() if p.default is not inspect.Parameter.empty}
    for info in declared_downloads(cls):
        if not _switched_off(info.name, {**defaults, **init_args}):
            found.append(anomalib_file(info, {**defaults, **init_args}))
    by_url: dict[str, WeightFile] = {}
    for f in found:  # one entry per URL, Anomalib's own description first
        if f.url not in by_url or f.kind == "anomalib":
            by_url[f.url] = f
    return list(by_url.values()), error


def _build(cls: type, init_args: dict[str, Any], device: str) -> tuple[list[WeightFile], Exception | None]:
    import warnings

    found: list[WeightFile] = []
    with warnings.catch_warnings(), recording(found, init_args), torch.device(device):
        warnings.simplefilter("ignore")
        try:
            cls(**init_args)
        except _Recorded:
            pass
        except Exception as err:  # noqa: BLE001 (report, do not fail the listing)
            return found, err
    return found, None


def argument_error(cls: type, init_args: dict[str, Any]) -> str | None:
    """The one-line reason ``cls(**init_args)`` refuses its arguments (a ``BadArgument``: a value out of its range
    or set), found by building it on the meta device with downloads recorded, not made; ``None`` otherwise."""
    from ispad_bench.errors import BadArgument, one_line

    _, err = _build(cls, dict(init_args), "meta")
    return one_line(err) if isinstance(err, BadArgument) else None


def _switched_off(name: str, init_args: dict[str, Any]) -> bool:
    """A train-time download the configured model will not make (GLASS textures only with a source path)."""
    if name.startswith("efficientad") and init_args.get("pre_trained") is False:  # the project's random teacher
        return True
    return name.startswith("dtd") and "anomaly_source_path" in init_args and not init_args["anomaly_source_path"]


# ------------------------------------------------------------------------------------------ fetch
def _verify(path: Path, expected: str | None) -> None:
    from ispad_bench.data.download import DownloadError, file_digest

    if expected and not (got := file_digest(path, "sha256")).startswith(expected):
        path.unlink()
        raise DownloadError(f"{path.name}: sha256 mismatch (expected {expected}..., got {got}); the file was deleted")


def fetch(file: WeightFile, progress) -> Path:
    """Download ``file`` into its cache (resumed; checksum where the source publishes one)."""
    from ispad_bench.data.download import RemoteFile, download_file

    if file.kind in ("timm", "hf"):
        from huggingface_hub import hf_hub_download

        repo, filename = file.hf_parts()
        return Path(hf_hub_download(repo, filename, endpoint=os.environ.get("HF_ENDPOINT") or None))
    if file.kind == "anomalib":
        from anomalib.data.utils.download import extract

        archive = file.path / Path(urlparse(file.url).path).name
        is_archive = archive.name.endswith(ARCHIVE_SUFFIXES)
        target = archive if is_archive else (file.marker or file.path / file.name)
        file.path.mkdir(parents=True, exist_ok=True)
        got = download_file(RemoteFile(target.name, None, None, file.url), target.parent, progress)
        _verify(got, file.sha256)
        if is_archive:
            extract(got, file.path)
        return file.marker or got
    file.path.parent.mkdir(parents=True, exist_ok=True)
    got = download_file(RemoteFile(file.path.name, None, None, file.url), file.path.parent, progress)
    _verify(got, file.sha256)
    return got
