"""What a sweep job keeps of its trained model: one Lightning checkpoint without what its config rebuilds.

A job's Lightning checkpoints held optimizer state and every frozen tensor (pretrained or random
backbones): the CI smoke sweep of 36 tiny jobs left 3.1 GB (issue 24). :func:`slim` turns the
tested model's checkpoint into one that holds

* every state-dict tensor that training changed, and the checkpoint's model entries
  (hyper-parameters, Anomalib's component configs, a method's own entries such as ``ddad``);
* not the optimizer, scheduler, loop or callback state (a re-test, ``inspect`` and a warm start need
  none of it);
* not the tensors whose value equals the one the model had when it was built from the job's config
  and seed (a frozen pretrained backbone read from its weights file, a random one drawn from the
  seed): their sha256 is stored under :data:`REBUILT` instead.

Loading (:func:`restore`, run by Lightning's ``on_load_checkpoint`` once :func:`install` has hooked it)
takes those tensors from the model the config just built and checks every digest first, so a weights
file that changed, or a model built without the job's seed, is an error naming the tensor, never a
silently different model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

MODEL_FILE = "model.ckpt"  # a sweep job's kept model (= sweep/records.MODEL: models cannot import the sweep; a test ties them)
RECORD_FILE = "record.json"  # beside it: the job's record (= sweep/records.RECORD), whose key a warm start records
REBUILT = "ispad_bench_rebuilt"  # checkpoint entry: {state-dict key: sha256 of the tensor the config rebuilds}
KEEP_CHOICES = ("model", "all", "none")  # sweep --keep: the slim checkpoint / Anomalib's checkpoints too / nothing
DROPPED = ("optimizer_states", "lr_schedulers", "loops", "callbacks", "MixedPrecision", "native_amp_scaling_state")
_MARK = "_ispad_restores_kept"


class KeptModelError(RuntimeError):
    """A kept checkpoint does not fit the model it is loaded into."""


def digest(tensor) -> str:
    """sha256 of a tensor's dtype, shape and bytes (read through an integer view of the same width, so
    bfloat16 and bool hash exactly too)."""
    import torch

    t = tensor.detach().cpu().contiguous().reshape(-1)
    h = hashlib.sha256(f"{t.dtype}|{tuple(tensor.shape)}|".encode())
    width = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}.get(t.element_size())
    if t.numel():
        h.update((t.view(width) if width is not None else t).numpy().tobytes())
    return h.hexdigest()


def digests(state: Mapping[str, Any]) -> dict[str, str]:
    """:func:`digest` of every tensor of a state dict."""
    import torch

    return {k: digest(v) for k, v in state.items() if isinstance(v, torch.Tensor)}


def slim(checkpoint: dict, initial: Mapping[str, str]) -> tuple[dict, dict]:
    """The checkpoint without training state and without tensors still equal to ``initial`` (their digests at
    build time); returns it and what was left out (counts and bytes)."""
    out = {k: v for k, v in checkpoint.items() if k not in DROPPED}
    state, rebuilt, kept_bytes, rebuilt_bytes = {}, {}, 0, 0
    for key, value in checkpoint.get("state_dict", {}).items():
        size = value.numel() * value.element_size()
        if key in initial and digest(value) == initial[key]:
            rebuilt[key] = initial[key]
            rebuilt_bytes += size
        else:
            state[key] = value
            kept_bytes += size
    out["state_dict"], out[REBUILT] = state, rebuilt
    stats = {"tensors_kept": len(state), "tensors_rebuilt": len(rebuilt), "kept_tensor_bytes": kept_bytes,
             "rebuilt_tensor_bytes": rebuilt_bytes, "dropped": sorted(k for k in checkpoint if k in DROPPED)}
    return out, stats


def restore(module, checkpoint: dict) -> None:
    """Fill the tensors a kept checkpoint left out from ``module`` (just built from the job's config), after
    checking each against its stored digest; a checkpoint without :data:`REBUILT` is left as it is."""
    rebuilt = checkpoint.get(REBUILT)
    if not rebuilt:
        return
    state = checkpoint.setdefault("state_dict", {})
    own = module.state_dict()
    for key, expected in rebuilt.items():
        if key not in own:
            raise KeptModelError(f"the kept model leaves {key!r} to the config, but the model built here has no such "
                                 "tensor: load it into the model of the job's config.yaml")
        if digest(own[key]) != expected:
            raise KeptModelError(
                f"the kept model leaves {key!r} to the config, but the one built here differs (sha256 "
                f"{digest(own[key])[:12]} vs the job's {expected[:12]}): build the model from the job's config.yaml "
                "with its seed_everything (anomalib's CLI and `ispad-bench inspect` do), with the same weight files; "
                "a job run with `sweep --keep all` keeps every tensor")
        state[key] = own[key]
    del checkpoint[REBUILT]


def install() -> bool:
    """Hook :func:`restore` into ``AnomalibModule.on_load_checkpoint`` (once), so Lightning's own loading paths
    (``anomalib test --ckpt_path``, ``Engine.test``, ``load_from_checkpoint``) read a kept checkpoint."""
    from anomalib.models.components.base import AnomalibModule

    original = AnomalibModule.on_load_checkpoint
    if getattr(original, _MARK, False):
        return False

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        restore(self, checkpoint)
        original(self, checkpoint)

    setattr(on_load_checkpoint, _MARK, True)
    AnomalibModule.on_load_checkpoint = on_load_checkpoint
    return True


def warm_start(module, source) -> dict[str, Any]:
    """Load the trained weights of ``source`` (a checkpoint, or a sweep job folder holding :data:`MODEL_FILE`)
    into ``module`` before training; strict: a missing, extra or differently shaped tensor is an error naming
    the first one. Returns what the record keeps: the file, its sha256 and the parent job's key."""
    import io
    import json
    from pathlib import Path

    import torch

    path = Path(source)
    path = path / MODEL_FILE if path.is_dir() else path
    if not path.is_file():
        raise KeptModelError(f"warm_start {source}: no checkpoint there (a sweep job run with `--keep none` keeps none)")
    raw = path.read_bytes()  # read once: the bytes hashed are the bytes loaded
    checkpoint = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=False)
    restore(module, checkpoint)
    state, own = checkpoint.get("state_dict", {}), module.state_dict()
    for key in sorted(set(state) | set(own)):
        if key not in own or key not in state:
            where = "the model built here" if key not in own else path.name
            raise KeptModelError(f"warm_start {path}: {key!r} is missing in {where} (another architecture?)")
        if tuple(state[key].shape) != tuple(own[key].shape):
            raise KeptModelError(f"warm_start {path}: {key!r} has shape {tuple(state[key].shape)} there and "
                                 f"{tuple(own[key].shape)} in the model built here")
    module.load_state_dict(state, strict=True)
    record = path.parent / RECORD_FILE
    parent = json.loads(record.read_text()).get("key") if record.is_file() else None
    return {"checkpoint": str(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest(), "parent_key": parent}
