"""What `sweep --keep model` keeps per job at the paper's real model sizes, beside a Lightning checkpoint.

Computed from parameter counts (issue 24): each paper config of ``--profile`` (default ``paper``) is
built as its job would build it, with random weights (``pre_trained: false``; the sizes do not depend
on the values). The optimiser the model configures says what training changes: its parameters, plus
every buffer (running statistics, memory banks: an upper bound), are kept; the other tensors are what
the config rebuilds (pretrained or seeded frozen parts: stored as sha256 only). A Lightning checkpoint
(``--keep all``) holds every tensor and the optimiser state (Adam/AdamW: two moments per parameter).

    python benchmarks/kept_size.py                       # every paper method, ASM and LSM-1
    python benchmarks/kept_size.py --profile official --modalities LSM-2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6


def sizes(method: str, modality: str, profile_name: str) -> dict:
    import torch
    from anomalib.utils.config import update_config

    from ispad_bench.sweep import grid, resolve
    from ispad_bench.sweep.profile import load_profile

    profile = load_profile(profile_name, ROOT / "configs")
    rows = ["none"] if method == "supervised" else None
    (job,) = grid.expand(ROOT / "configs", profile, methods=[method], modalities=[modality], seeds=[0], rows=rows)
    cfg = resolve.parse(job.config_file, [*job.args, "--model.init_args.pre_trained=false"])
    model = resolve.train_parser().instantiate_classes(update_config(cfg)).model
    state = model.state_dict()
    by_ptr = {t.data_ptr(): k for k, t in state.items() if isinstance(t, torch.Tensor)}
    try:
        import lightning

        model.trainer = lightning.Trainer(max_steps=1000, max_epochs=100, logger=False, enable_checkpointing=False,
                                          enable_progress_bar=False, enable_model_summary=False)
        optim = model.configure_optimizers()
        optim = optim[0][0] if isinstance(optim, tuple) else optim
        optim = optim.get("optimizer", optim) if isinstance(optim, dict) else optim
        optims = optim if isinstance(optim, list) else [optim]
        trained = {by_ptr.get(p.data_ptr()) for o in optims for g in o.param_groups for p in g["params"] if p.requires_grad}
        how = "optimiser"
    except Exception as err:  # noqa: BLE001 (needs more of a trainer: fall back to the parameters that take gradients)
        # Anomalib's EfficientAD needs a fitted datamodule here; it optimises student and autoencoder only
        trained = {k for k, p in model.named_parameters() if p.requires_grad and ".teacher." not in f".{k}"}
        how = f"requires_grad, teacher frozen ({type(err).__name__} in configure_optimizers)"
    params = dict(model.named_parameters())
    buffers = {k for k, _ in model.named_buffers()}
    nbytes = {k: t.numel() * t.element_size() for k, t in state.items() if isinstance(t, torch.Tensor)}
    kept = sum(b for k, b in nbytes.items() if k in trained or k in buffers)
    total = sum(nbytes.values())
    trained_params = sum(nbytes[k] for k in trained if k in params and k in nbytes)
    return {"method": method, "modality": modality, "how": how, "params_M": sum(p.numel() for p in params.values()) / 1e6,
            "total_MB": total / MB, "keep_all_MB": (total + 2 * trained_params) / MB, "keep_model_MB": kept / MB,
            "rebuilt_MB": (total - kept) / MB}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--methods", default="efficient_ad,uflow,glass,ddad,supervised")
    parser.add_argument("--modalities", default="ASM,LSM-1")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    from ispad_bench.quiet import quiet_known_warnings

    quiet_known_warnings()
    rows = []
    print(f"{'method':14} {'modality':8} {'params M':>9} {'keep all MB':>12} {'keep model MB':>14} {'rebuilt MB':>11}  trained by")
    for method in args.methods.split(","):
        for modality in args.modalities.split(","):
            try:
                r = sizes(method, modality, args.profile)
            except Exception as err:  # noqa: BLE001 (one config that does not build is a row, not the end)
                print(f"{method:14} {modality:8} failed: {type(err).__name__}: {str(err)[:200]}")
                continue
            rows.append(r)
            print(f"{method:14} {modality:8} {r['params_M']:9.1f} {r['keep_all_MB']:12.1f} {r['keep_model_MB']:14.1f}"
                  f" {r['rebuilt_MB']:11.1f}  {r['how']}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
