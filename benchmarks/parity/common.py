"""Shared by the parity fixtures, the parity tests and the side-by-side speed benchmark.

* which official commits the fixtures were made with, and a check that a checkout is that commit
  (git blob hashes of the files we import, so any checkout form works: clone, worktree, archive);
* importing the official modules from a checkout the user points at (never vendored), with stubs for
  what they import but the parity path does not use;
* seeded weights: both sides get the same numbers from a seed, so the fixtures need not store
  backbone/UNet weights;
* the settings of the parity run (small sizes, CPU).

Nothing here imports the official code at import time; tests use only the seeded weights and settings.
"""

from __future__ import annotations

import hashlib
import importlib
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "parity"

# official commits and the git blob hash of every file the parity run imports
OFFICIAL = {
    "glass": {
        "repo": "github.com/cqylunlun/GLASS",
        "commit": "f788d567db552820d744ca2d93e989265aad8c45",
        "files": {
            "glass.py": "93a8999fea86fd44d78e3da9d92c53accc23d512",
            "model.py": "5b31b0df633ce0c25873f89b35635a10f7932fd8",
            "common.py": "61f6c9b218d087d0df806bc619cd3c138f4f455b",
            "loss.py": "4a9dd33368f2c3a44f7bc7da35312471e7774d0b",
            "perlin.py": "0c0f27a328c28a8126b8a38269f86f9d74b62c3c",
            "datasets/mvtec.py": "5437f153ab6c11b704cafcab1d5c77ffaa2d20c5",
        },
    },
    "ddad": {
        "repo": "github.com/arimousa/DDAD",
        "commit": "4323a150dd63a40b7ba8249ae3fb5808304e6308",
        "files": {
            "unet.py": "55002a9b6c5d3b1b6f70bc3dd29ec45b9373d5ea",
            "reconstruction.py": "bcd864e118a061dc3c9881bc344346cf90236e99",
            "loss.py": "6a0e3a2aaa3f198ae687fa7e09d67c5a0efb3dd1",
            "anomaly_map.py": "31a53cf438ddd45fa7322736e0b897a9926a7bc0",
            "feature_extractor.py": "627bbedf230300bb05395f81a6d7edd01895dd35",
            "resnet.py": "24e9928db4c140ea508a249b0f3151341b900ad7",
            "train.py": "a27a8b85b0989642346c5a57578457a6ea35d722",
        },
    },
}

# parity-run settings: small, CPU, float32; the same on both sides
GLASS = {
    "image_size": 64, "batch": 4, "backbone_seed": 1, "head_seed": 2, "data_seed": 3, "noise_seed": 4,
    "embed_dim": 128, "hidden": 64, "lr": 1e-4, "train_steps": 3, "las_seeds": (11, 12, 13, 14), "mask_seed": 100,
}
DDAD = {
    "image_size": 32, "base_channels": 32, "heads": 4, "attention": (16, 8), "batch": 4, "backbone": "resnet18", "lr": 1e-4,
    "unet_seed": 5, "extractor_seed": 6, "data_seed": 7, "noise_seed": 8, "w": 3.0, "w_da": 3.0,
    "start": 250, "skip": 25, "eta": 1.0, "v": 1.0, "diffusion_steps": 3,
}


def git_blob_sha(path: Path) -> str:
    """``git hash-object`` of a file."""
    data = path.read_bytes()
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()  # noqa: S324 (git's own hash)


def check_official(root: str | Path, name: str, force: bool = False) -> list[str]:
    """Files of the checkout that differ from the recorded commit; raises unless ``force``."""
    root = Path(root)
    info = OFFICIAL[name]
    bad = []
    for rel, sha in info["files"].items():
        path = root / rel
        if not path.is_file():
            bad.append(f"{rel} missing")
        elif git_blob_sha(path) != sha:
            bad.append(f"{rel} differs")
    if bad and not force:
        msg = (f"{root} is not {info['repo']} at {info['commit'][:7]} ({', '.join(bad)}); "
               "check out that commit or pass --force (the fixtures then record the difference)")
        raise SystemExit(msg)
    return bad


def _stub(name: str, **attrs: object) -> None:
    module = types.ModuleType(name)
    module.__dict__.update(attrs)
    sys.modules.setdefault(name, module)


def import_official(root: str | Path, name: str, modules: list[str]) -> dict[str, types.ModuleType]:
    """Import official modules from ``root`` (put first on ``sys.path``); returns them by name.

    Stubs (only imported, never used on the parity path): ``torch.utils.tensorboard`` (GLASS's
    TensorBoard logger; the run passes its own recorder). imgaug 0.4 needs ``np.sctypes``, removed in
    NumPy 2: it is restored for the import; GLASS's perlin rotation is the only imgaug call used.
    """
    root = str(Path(root).resolve())
    if name == "glass":
        _stub("torch.utils.tensorboard", SummaryWriter=object)
        if not hasattr(np, "sctypes"):
            np.sctypes = {  # type: ignore[attr-defined]
                "int": [np.int8, np.int16, np.int32, np.int64],
                "uint": [np.uint8, np.uint16, np.uint32, np.uint64],
                "float": [np.float16, np.float32, np.float64],
                "complex": [np.complex64, np.complex128],
                "others": [bool, object, bytes, str, np.void],
            }
    clashes = {"loss", "common", "model", "unet", "metrics", "utils", "resnet", "dataset", "datasets"}
    for mod in clashes:  # both repos have top-level modules with the same (generic) names
        sys.modules.pop(mod, None)
    sys.path.insert(0, root)
    try:
        return {m: importlib.import_module(m) for m in modules}
    finally:
        sys.path.remove(root)


def seeded_(module: nn.Module, seed: int) -> nn.Module:
    """Overwrite every float parameter and buffer from a generator seeded by ``seed`` and its key.

    Matrices/kernels ~ N(0, 1/fan_in) (activations stay O(1) through deep random networks; nothing
    zero-initialised hides a difference), norm weights 1 + N(0, 0.1²), biases N(0, 0.02²), BN running
    means N(0, 0.1²), running variances 1 + U(0, 0.1). A tensor's values depend only on the seed and
    its key, so layouts that share keys (timm/torchvision ResNets with or without layer4, official/port
    UNet) get identical weights.
    """
    state = module.state_dict()
    with torch.no_grad():
        for key, t in state.items():
            if not t.is_floating_point():
                continue
            g = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(key.removeprefix("module.").encode()))
            leaf = key.rsplit(".", 1)[-1]
            if leaf == "running_var":
                values = 1 + 0.1 * torch.rand(t.shape, generator=g)
            elif leaf == "running_mean":
                values = 0.1 * torch.randn(t.shape, generator=g)
            elif t.dim() >= 2:
                values = torch.randn(t.shape, generator=g) / max(t[0].numel(), 1) ** 0.5
            elif leaf == "weight":
                values = 1 + 0.1 * torch.randn(t.shape, generator=g)
            else:
                values = 0.02 * torch.randn(t.shape, generator=g)
            t.copy_(values.to(t.dtype))
    return module


def weights_digest(module: nn.Module, skip: tuple[str, ...] = ("layer4.", "fc.")) -> float:
    """Sum of |w| over float parameters/buffers (keys starting with ``skip`` left out: the parts of a
    ResNet neither side uses): a fixture records it so that a changed weight filler is reported as
    such, not as a parity failure."""
    state = module.state_dict()
    return float(sum(t.double().abs().sum() for k, t in state.items() if t.is_floating_point() and not k.startswith(skip)))


def sample_indices(numel: int, count: int = 256, seed: int = 0) -> torch.Tensor:
    """Fixed subset of flat indices used to store large trained tensors compactly."""
    if numel <= count:
        return torch.arange(numel)
    return torch.randperm(numel, generator=torch.Generator().manual_seed(seed + numel))[:count].sort().values


def compact_state(state: dict[str, torch.Tensor], prefix: str, full_below: int = 1024) -> dict[str, np.ndarray]:
    """Tensors up to ``full_below`` entries in full, larger ones as a fixed sample + sum + L2 norm."""
    out = {}
    for key, t in state.items():
        if not t.is_floating_point():
            continue
        flat = t.detach().double().flatten()
        if flat.numel() <= full_below:
            out[f"{prefix}{key}"] = t.detach().float().clone().numpy()  # a copy: training changes t in place
        else:
            idx = sample_indices(flat.numel())
            out[f"{prefix}{key}#sample"] = flat[idx].float().numpy()
            out[f"{prefix}{key}#sum"] = np.array(float(flat.sum()))
            out[f"{prefix}{key}#norm"] = np.array(float(flat.norm()))
    return out


def glass_batches() -> list[dict[str, torch.Tensor]]:
    """GLASS training inputs: normalised images and the texture noise pasted into them by the masks
    stored in the fixture (``aug = image·(1−m) + noise·m``)."""
    size, batch = GLASS["image_size"], GLASS["batch"]
    g = torch.Generator().manual_seed(GLASS["data_seed"])
    return [{"image": torch.randn(batch, 3, size, size, generator=g),
             "aug": torch.randn(batch, 3, size, size, generator=g)} for _ in range(GLASS["train_steps"])]


def glass_test_images() -> torch.Tensor:
    size, batch = GLASS["image_size"], GLASS["batch"]
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(GLASS["data_seed"] + 1))
