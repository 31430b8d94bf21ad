"""Training and test speed of the five ISP-AD methods on this machine (issues 4, 5 and 6).

For each method: seconds per training step at the paper's batch size (from ``configs/<method>/lsm2.yaml``)
and test images per second, on random inputs at the paper's input size: 256² (EfficientAD-M, GLASS, DDAD,
mixed-supervised ResNet18) and 448² (U-Flow, CaiT backbones). Weights are random (``pre_trained: false``):
speed does not depend on them, and nothing is downloaded. A step is exactly the optimiser update the
Lightning model runs (GLASS: LAS + GAS + both optimisers; DDAD: one diffusion step and, separately, one
domain-adaptation step; EfficientAD: student + autoencoder on one image and one Imagenette-like image).
Data loading is excluded, except GLASS's LAS, which runs inside its training step.

Usage::

    python benchmarks/method_speed.py                       # all methods, auto device (CUDA if present)
    python benchmarks/method_speed.py --methods glass ddad --steps 5 --json results/speed.json
    python benchmarks/method_speed.py --smoke               # tiny sizes: proves the script runs (CPU, ~1 min)

``--smoke`` shrinks inputs (64 px; U-Flow with a ResNet-18 backbone, DDAD with a ResNet-18 extractor;
EfficientAD stays at 256, its minimum): its numbers are not the paper's setting. A method that fails is
reported with its error and the others still run; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = ("efficient_ad", "uflow", "glass", "ddad", "supervised")


@dataclass
class Bench:
    """What to time for one method: named training steps (one batch each) and one inference call."""

    size: int
    train_batch: int
    steps: dict[str, Callable[[torch.Tensor], None]]
    infer: Callable[[torch.Tensor], None]
    test_batch: int = 8
    notes: list[str] = field(default_factory=list)


def config_batches(method: str) -> tuple[int, int]:
    """(train, eval) batch sizes of the paper config (LSM-2: no crop)."""
    data = yaml.safe_load((CONFIGS / method / "lsm2.yaml").read_text())["data"]["init_args"]
    return int(data["train_batch_size"]), int(data["eval_batch_size"])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[torch.Tensor], None], x: torch.Tensor, warmup: int, repeats: int, device: torch.device) -> float:
    """Mean seconds of ``fn(x)`` over ``repeats`` calls after ``warmup`` untimed ones."""
    for _ in range(warmup):
        fn(x)
    _sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn(x)
    _sync(device)
    return (time.perf_counter() - start) / max(repeats, 1)


# --- one builder per method -------------------------------------------------------------------------------
def build_glass(args: argparse.Namespace, device: torch.device) -> Bench:
    from ispad_bench.models import GlassISPAD

    size = args.size or 256
    module = GlassISPAD(image_size=size, pre_trained=False, seed=0).to(device)
    optimizers = module.configure_optimizers()

    def step(x: torch.Tensor) -> None:  # = GlassISPAD.training_step without logging
        module.model.train()
        for opt in optimizers:
            opt.zero_grad()
        module.model(x)["loss"].backward()
        for opt in reversed(optimizers):
            opt.step()

    def infer(x: torch.Tensor) -> None:
        module.model.eval()
        with torch.no_grad():
            module.model(x)

    train_batch, test_batch = config_batches("glass")
    return Bench(size, train_batch, {"step (LAS+GAS)": step}, infer, test_batch,
                 [f"1 meta-epoch <= {module.limit // train_batch + 1} steps"])


def build_efficient_ad(args: argparse.Namespace, device: torch.device) -> Bench:
    from ispad_bench.models import EfficientAdISPAD

    module = EfficientAdISPAD(pre_trained=False, model_size="medium", imagenet_dir=tempfile.gettempdir()).to(device)
    model = module.model
    opt = torch.optim.Adam([*model.student.parameters(), *model.ae.parameters()], lr=1e-4, weight_decay=1e-5)
    imagenet = torch.rand(1, 3, 256, 256, device=device)

    def step(x: torch.Tensor) -> None:  # = EfficientAd.training_step: student + AE on x and an ImageNet image
        model.train()
        opt.zero_grad()
        sum(model(batch=x, batch_imagenet=imagenet)).backward()
        opt.step()

    def infer(x: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    train_batch, test_batch = config_batches("efficient_ad")
    return Bench(256, train_batch, {"step": step}, infer, test_batch, ["medium PDN; 256 is its minimum input"])


def build_uflow(args: argparse.Namespace, device: torch.device) -> Bench:
    from ispad_bench.models import UflowISPAD

    backbone = "resnet18" if args.smoke else args.uflow_backbone
    size = 448 if backbone == "mcait" else (args.size or 448)
    module = UflowISPAD(backbone=backbone, image_size=size, pre_trained=False).to(device)
    params = [p for p in module.model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=1e-3, weight_decay=1e-5)  # Anomalib Uflow.configure_optimizers

    def step(x: torch.Tensor) -> None:
        module.model.train()
        opt.zero_grad()
        z, ljd = module.model(x)
        module.loss(z, ljd).backward()
        opt.step()

    def infer(x: torch.Tensor) -> None:
        module.model.eval()
        with torch.no_grad():
            module.model(x)

    train_batch, test_batch = config_batches("uflow")
    return Bench(size, train_batch, {"step": step}, infer, test_batch, [f"backbone {backbone}"])


def build_ddad(args: argparse.Namespace, device: torch.device) -> Bench:
    from ispad_bench.models import Ddad

    size = args.size or 256
    kwargs = {"feature_backbone": "resnet18", "unet_attention_resolutions": (16, 8)} if args.smoke else {}
    module = Ddad(image_size=size, pre_trained=False, **kwargs).to(device)
    model = module.model
    opt_unet, opt_fe = model.make_optimizers(module.lr, module.weight_decay, module.da_lr, module.da_weight_decay)

    def diffusion(x: torch.Tensor) -> None:
        model.train()
        model.diffusion_step(x, opt_unet)

    def adaptation(x: torch.Tensor) -> None:
        model.train()
        model.domain_adaptation_step(x, opt_fe)

    def infer(x: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad():
            model(x)

    train_batch, test_batch = config_batches("ddad")
    return Bench(size, train_batch, {"diffusion step": diffusion, "domain-adaptation step": adaptation}, infer,
                 test_batch, [f"test: {model.start // model.skip} denoising steps per image"])


def build_supervised(args: argparse.Namespace, device: torch.device) -> Bench:
    from ispad_bench.models import MixedSupervised

    size = args.size or 256
    module = MixedSupervised(pre_trained=False, image_size=size).to(device)
    model = module.model
    opt = torch.optim.SGD(model.parameters(), lr=module.lr, momentum=module.momentum, weight_decay=module.weight_decay)
    amp = device.type == "cuda"  # §4.2: mixed precision (as MixedSupervised.trainer_arguments on CUDA)
    dtype = torch.bfloat16 if amp and torch.cuda.is_bf16_supported() else torch.float16

    def step(x: torch.Tensor) -> None:
        model.train()
        opt.zero_grad()
        with torch.autocast(device.type, dtype=dtype, enabled=amp):
            logits = model(x)
        labels = torch.arange(len(x), device=x.device).remainder(2).float()
        F.binary_cross_entropy_with_logits(logits.float(), labels).backward()
        opt.step()

    def infer(x: torch.Tensor) -> None:
        model.eval()
        with torch.no_grad(), torch.autocast(device.type, dtype=dtype, enabled=amp):
            model(x)

    train_batch, test_batch = config_batches("supervised")
    return Bench(size, train_batch, {"step": step}, infer, test_batch, ["mixed precision" if amp else "fp32"])


BUILDERS = {
    "efficient_ad": build_efficient_ad,
    "uflow": build_uflow,
    "glass": build_glass,
    "ddad": build_ddad,
    "supervised": build_supervised,
}


def measure(method: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Rows (one per timed training step kind) for ``method``; an ``error`` row when it fails."""
    torch.manual_seed(0)
    try:
        bench = BUILDERS[method](args, device)
        train_batch = args.batch or (min(2, bench.train_batch) if args.smoke else bench.train_batch)
        test_batch = min(args.test_images, bench.test_batch)
        x_train = torch.rand(train_batch, 3, bench.size, bench.size, device=device)
        x_test = torch.rand(test_batch, 3, bench.size, bench.size, device=device)
        rows = []
        test_s = _timed(bench.infer, x_test, args.warmup, max(1, args.test_images // test_batch), device)
        for name, fn in bench.steps.items():
            step_s = _timed(fn, x_train, args.warmup, args.steps, device)
            rows.append({
                "method": method, "what": name, "input": bench.size, "train_batch": train_batch,
                "s_per_step": step_s, "train_img_per_s": train_batch / step_s,
                "test_batch": test_batch, "test_img_per_s": test_batch / test_s, "notes": "; ".join(bench.notes),
            })
        return rows
    except Exception as err:  # report and go on with the other methods
        return [{"method": method, "what": "error", "error": f"{type(err).__name__}: {err}"}]
    finally:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def table(rows: list[dict], device: str) -> str:
    """Markdown table of the rows."""
    lines = [
        f"Method speed on {device} (random weights; data loading excluded)",
        "",
        "| method | step | input | train batch | s / step | train img/s | test batch | test img/s | notes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | FAILED | | | | | | | {r['error'][:200]} |")
            continue
        lines.append(
            f"| {r['method']} | {r['what']} | {r['input']}² | {r['train_batch']} | {r['s_per_step']:.3f} | "
            f"{r['train_img_per_s']:.1f} | {r['test_batch']} | {r['test_img_per_s']:.2f} | {r['notes']} |"
        )
    return "\n".join(lines)


def _write_json(path: Path, payload: dict) -> None:
    """Atomic write: a temporary file in the same folder, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, suffix=".tmp", delete=False) as f:
        json.dump(payload, f, indent=2)
    os.replace(f.name, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps per method")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing")
    parser.add_argument("--test-images", type=int, default=16, help="images timed at test (in test batches)")
    parser.add_argument("--batch", type=int, default=None, help="training batch (default: the paper config's)")
    parser.add_argument("--size", type=int, default=None, help="input side for GLASS/DDAD/supervised (default 256)")
    parser.add_argument("--uflow-backbone", default="mcait", help="mcait (paper, 448 px), resnet18, wide_resnet50_2")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes to check the script (not the paper setting)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size = args.size or 64
        args.steps, args.warmup, args.test_images = 1, 0, min(args.test_images, 2)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    rows: list[dict] = []
    for method in args.methods:
        print(f"timing {method} ...", file=sys.stderr, flush=True)
        rows.extend(measure(method, args, device))
    print(table(rows, name))
    if args.json:
        _write_json(args.json, {"device": name, "smoke": args.smoke, "rows": rows})
    return int(any("error" in r for r in rows))


if __name__ == "__main__":
    raise SystemExit(main())
