"""``ispad-bench configs compare DIR``: the authors' configuration files beside the harness's configs.

The paper says its configuration files are published with the dataset (§4.3.5). They come in the
formats the methods use: Anomalib YAML (``model``/``data``/``trainer`` with ``init_args``), the
official DDAD ``config.yaml`` (``data``/``model`` with ``epochs``, ``load_chp``, ``DA_batch_size`` …),
GLASS command-line arguments in a shell script (``python main.py --lr … net -b … dataset --batch_size …``)
and JSON (either of the first two shapes). Each file is read into the harness's dotted keys
(``model.init_args.lr``) and every key whose value differs from ``configs/<method>/<modality>.yaml`` is
listed with both values. Method and modality come from the options or from the file's path.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from ispad_bench.data.modality import Modality
from ispad_bench.paper import PAPER_METHODS

M, D, T = "model.init_args.", "data.init_args.", "trainer."
# official DDAD config.yaml (data.* / model.*) -> harness key
DDAD_KEYS = {
    "data.image_size": M + "image_size", "data.batch_size": D + "train_batch_size",
    "data.test_batch_size": D + "eval_batch_size", "data.DA_batch_size": M + "da_batch_size",
    "model.feature_extractor": M + "feature_backbone", "model.learning_rate": M + "lr",
    "model.weight_decay": M + "weight_decay", "model.epochs": M + "diffusion_steps", "model.load_chp": M + "test_checkpoint",
    "model.DA_epochs": M + "da_epochs", "model.v": M + "v", "model.w": M + "w", "model.w_DA": M + "w_da",
    "model.DLlambda": M + "da_lambda", "model.trajectory_steps": M + "trajectory_steps",
    "model.test_trajectoy_steps": M + "test_start", "model.skip": M + "skip", "model.eta": M + "eta",
    "model.beta_start": M + "beta_start", "model.beta_end": M + "beta_end",
}
# official GLASS main.py options -> harness key
GLASS_KEYS = {
    "lr": M + "lr", "meta_epochs": T + "max_epochs", "eval_epochs": M + "eval_epochs", "limit": M + "limit",
    "step": M + "step", "noise": M + "gaussian_noise_std", "radius": M + "radius_quantile", "p": M + "focal_quantile",
    "mining": M + "mining", "dsc_hidden": M + "discriminator_hidden", "dsc_layers": M + "discriminator_layers",
    "pre_proj": M + "pre_projection", "pretrain_embed_dimension": M + "pretrain_embed_dim",
    "target_embed_dimension": M + "target_embed_dim", "patchsize": M + "patchsize", "b": M + "backbone",
    "backbone_names": M + "backbone", "le": M + "layers", "layers_to_extract_from": M + "layers",
    "batch_size": D + "train_batch_size", "resize": M + "image_size", "imagesize": M + "image_size",
}


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (lists and scalars are values)."""
    if not isinstance(node, dict):
        return {prefix.rstrip("."): node}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(flatten(value, f"{prefix}{key}."))
    return out


def _number(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _coerce(value: Any) -> Any:
    """``"3e-4"`` (YAML 1.1 reads exponents without a dot as text) -> 0.0003; other values unchanged."""
    if isinstance(value, str) and re.fullmatch(r"[-+]?\d+(\.\d*)?[eE][-+]?\d+", value):
        return float(value)
    return value


def read_glass_script(text: str) -> dict[str, Any]:
    """``--name value`` (and ``-b value``) pairs of the official run script, in harness keys; the last wins."""
    tokens = shlex.split(re.sub(r"\\\n", " ", text), comments=True)
    out: dict[str, Any] = {}
    for i, token in enumerate(tokens):
        name = token.lstrip("-")
        if token.startswith("-") and name in GLASS_KEYS:
            values = []
            for value in tokens[i + 1 :]:
                if value.startswith("-") and not re.fullmatch(r"-?[\d.e-]+", value):
                    break
                values.append(_number(value))
                if name not in ("le", "layers_to_extract_from"):
                    break
            key = GLASS_KEYS[name]
            if key == M + "layers":  # repeated (-le layer2 -le layer3) or listed: every value counts
                out[key] = [*out.get(key, []), *values]
            else:
                out[key] = values[0] if values else True
    return out


def read_file(path: Path) -> dict[str, Any]:
    """A foreign config file as harness dotted keys."""
    text = path.read_text()
    if path.suffix == ".sh":
        return read_glass_script(text)
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        raise ValueError(f"{path}: not valid {path.suffix[1:].upper()}: {str(err).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, found {type(data).__name__}")
    flat = {k: _coerce(v) for k, v in flatten(data).items()}
    if any(k.startswith(("model.load_chp", "data.DA_batch_size", "model.epochs")) for k in flat):  # official DDAD
        out = {DDAD_KEYS[k]: v for k, v in flat.items() if k in DDAD_KEYS}
        if M + "diffusion_steps" in out:
            out[M + "diffusion_unit"] = "epochs"  # the official loop counts epochs
        return out
    return {k: v for k, v in flat.items() if not k.endswith("class_path")}


def guess(path: Path) -> tuple[str | None, str | None]:
    """(method, modality) named by the file's path, e.g. ``ddad/lsm1.yaml`` or ``glass_ASM.sh``."""
    text = path.as_posix().lower().replace("-", "").replace("_", "")
    method = next((m for m in PAPER_METHODS if m.replace("_", "") in text), None)
    modality = next((m.value for m in Modality if m.value.lower().replace("-", "") in text), None)
    return method, modality


def compare(path: Path, configs: Path, method: str | None = None, modality: str | None = None) -> list[tuple[str, Any, Any]]:
    """(key, theirs, ours) for every key of ``path`` whose value differs from the harness's config."""
    found_method, found_modality = guess(path)
    method, modality = method or found_method, modality or found_modality
    if method is None or modality is None:
        raise ValueError(f"{path}: cannot tell the method and modality from the path; pass --method and --modality")
    ours_file = configs / method / f"{Modality.parse(modality).slug}.yaml"
    if not ours_file.is_file():
        raise ValueError(f"{path}: no harness config {ours_file} to compare with")
    ours = flatten(yaml.safe_load(ours_file.read_text()))
    theirs = read_file(path)
    return [(k, v, ours.get(k, "(not set: class default)")) for k, v in sorted(theirs.items()) if ours.get(k) != v]


def run(args) -> int:
    from ispad_bench.data.download import CONFIG_SUFFIXES, config_files
    from ispad_bench.sweep.profile import default_configs_dir

    folder = Path(args.dir)
    if not folder.exists():
        print(f"configs compare: {folder} does not exist")
        return 2
    files = [folder] if folder.is_file() else config_files(folder)
    if not files:
        print(f"configs compare: no {', '.join(CONFIG_SUFFIXES)} files under {folder}")
        return 2
    configs, status = Path(args.configs) if args.configs else default_configs_dir(), 0
    for path in files:
        try:
            rows = compare(path, configs, args.method, args.modality)
        except (ValueError, OSError) as err:
            print(f"{path}: skipped: {err}")
            status = 2
            continue
        print(f"{path}: {len(rows)} key(s) differ" + (":" if rows else " (same as the harness)"))
        for key, theirs, ours in rows:
            print(f"  {key}: theirs {theirs!r}, ours {ours!r}")
    return status


__all__ = ["compare", "flatten", "read_file", "read_glass_script", "run"]
