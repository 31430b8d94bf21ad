"""One prepared GPU check (issue 24): the paper's configs on one GPU, packing, and the paper grid's projected cost.

Offline, random weights, on a generated dataset it writes itself. Stages (each a table, all in one JSON):

1. **steps**: each paper method's training step at its real input size and batch (``method_speed.py``'s
   steps) — s/step, images/s, peak GPU memory, test images/s.
2. **fit**: the supervised model and GLASS through the real sweep (paper profile, ``pre_trained: false``,
   ``trainer.max_steps``): mean step, the share of step time spent waiting for data, peak memory (the
   record's ``timing``); the supervised model with mixed precision (the config's ``auto``) and with
   ``32-true``: step time and memory, and image AUROC / MCC of the two short runs from the same seed
   (tolerance below; a short run from random weights, so this catches a broken AMP path, not 0.01 drifts).
3. **packing**: four supervised jobs with ``--devices 0 --jobs-per-device 1, 2, 4``: wall time and the
   aggregate images/s; OOM retries counted from the records.
4. **projection**: every job of ``--profile paper`` and ``official`` (grid sizes from the configs) —
   training steps at the configs' caps (Table 7 split sizes) × stage 1's s/step + test passes — on one
   such GPU, one job at a time and with the best packing of stage 3 for the methods it applies to.

    bash benchmarks/gpu_check.sh                  # <= 10 min on one H200-class GPU
    python benchmarks/gpu_check.py --smoke        # CPU, tiny sizes: checks the script (~3 min), numbers mean nothing
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
AMP_TOLERANCE = 0.05  # |Δ image AUROC|, |Δ MCC| between the AMP and fp32 runs (same seed, same data)
GiB = 2**30


def cli() -> list[str]:
    return [str(Path(sys.executable).with_name("ispad-bench"))]


def stage_steps(args) -> list[dict]:
    import method_speed
    import torch

    ns = argparse.Namespace(size=64 if args.smoke else None, batch=None, steps=1 if args.smoke else args.steps,
                            warmup=0 if args.smoke else 2, test_images=2 if args.smoke else 32,
                            uflow_backbone="resnet18" if args.smoke else "mcait", smoke=args.smoke)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    rows = []
    for method in method_speed.METHODS:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t0 = time.perf_counter()
        for row in method_speed.measure(method, ns, device):
            row["peak_gpu_GiB"] = torch.cuda.max_memory_allocated(device) / GiB if device.type == "cuda" else None
            row["wall_s"] = time.perf_counter() - t0
            rows.append(row)
    return rows


def sweep(args, out: Path, data: Path, method: str, extra: list[str], seeds: str = "0", per_device: int = 0) -> float:
    """Wall seconds of one sweep of ``method`` (LSM-1) at the paper profile, shortened; ``per_device``: through
    ``--devices 0 --jobs-per-device per_device`` (0: the local executor, unless ``--devices``)."""
    profile = "smoke" if args.smoke else "paper"
    steps = 2 if args.smoke else args.fit_steps
    over = [f"--override={method}:trainer.max_steps={steps}", f"--override={method}:model.init_args.pre_trained=false",
            f"--override={method}:trainer.limit_val_batches=2", f"--override={method}:trainer.logger=false",
            f"--override={method}:trainer.enable_progress_bar=false"]
    if method == "supervised":
        over += [f"--override=supervised:data.init_args.steps_per_epoch={steps}", "--rows", "none"]
    cmd = [*cli(), "sweep", "--methods", method, "--modalities", "LSM-1", "--profile", profile, "--seeds", seeds,
           "--data-root", str(data), "--out", str(out), "--no-report", "--skip-weights-check", *over, *extra]
    if per_device or args.devices:
        cmd += ["--devices", "0", "--jobs-per-device", str(max(1, per_device))]
    shutil.rmtree(out, ignore_errors=True)  # every job really runs: a finished one would be skipped and time nothing
    t0 = time.perf_counter()
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL, stderr=sys.stderr if args.verbose else subprocess.DEVNULL)
    return time.perf_counter() - t0


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("record.json"))]


def fit_row(name: str, record: dict) -> dict:
    t, m = record.get("timing") or {}, record.get("metrics") or {}
    batch = (record.get("config") or {}).get("data", {}).get("init_args", {}).get("train_batch_size")
    step, wait, n = t.get("fit_step_s"), t.get("fit_data_wait_s") or 0.0, t.get("fit_batches") or 0
    per_batch = (step + wait / n) if step and n else None
    return {"run": name, "status": record.get("status"), "batches": n, "images": n * (batch or 0), "s_per_step": step,
            "data_wait_share": t.get("fit_data_wait_share"),
            "images_per_s": batch / per_batch if batch and per_batch else None,
            "peak_gpu_GiB": t["peak_gpu_bytes"] / GiB if t.get("peak_gpu_bytes") else None,
            "image_AUROC": m.get("image_AUROC"), "MCC": m.get("MCC"), "error": (record.get("error") or {}).get("message")}


def stage_fit(args, data: Path, work: Path) -> list[dict]:
    rows = []
    for name, method, extra in (("supervised AMP (auto)", "supervised", []),
                                ("supervised fp32", "supervised", ["--override=supervised:model.init_args.precision=32-true"]),
                                ("glass", "glass", [])):
        out = work / name.replace(" ", "_").replace("(", "").replace(")", "")
        sweep(args, out, data, method, extra)
        rows += [fit_row(name, r) for r in records(out)] or [{"run": name, "status": "no record"}]
    amp, fp32 = rows[0], rows[1]
    if amp.get("image_AUROC") is not None and fp32.get("image_AUROC") is not None:
        for metric in ("image_AUROC", "MCC"):
            amp[f"{metric}_vs_fp32"] = abs(amp[metric] - fp32[metric])
        amp["amp_within_tolerance"] = all(amp[f"{k}_vs_fp32"] <= AMP_TOLERANCE for k in ("image_AUROC", "MCC"))
    return rows


def stage_packing(args, data: Path, work: Path) -> list[dict]:
    rows = []
    for per_device in (1, 2, 4):
        out = work / f"packed{per_device}"
        wall = sweep(args, out, data, "supervised", [], seeds="0,1,2,3", per_device=per_device)
        recs = records(out)
        images = sum(fit_row("", x)["images"] for x in recs)
        rows.append({"jobs_per_device": per_device, "jobs": len(recs), "ok": sum(r.get("status") == "ok" for r in recs),
                     "oom_retries": sum(bool(r.get("retry_of")) for r in recs), "wall_s": wall,
                     "train_images_per_s": images / wall if wall else None})
    base = rows[0]["train_images_per_s"] or 0
    for r in rows:
        r["speedup"] = r["train_images_per_s"] / base if base and r["train_images_per_s"] else None
    return rows


def train_steps(method: str, config: dict, modality: str, supervised_epochs: int | None = None) -> tuple[int, int]:
    """(optimiser steps at the config's caps, test passes) of one job at Table 7's split sizes; the supervised
    model's cap (1000 epochs) is never reached (early stopping, §4.2): ``supervised_epochs`` stands in."""
    from paper_scale import stream_batches, split_sizes

    sizes, trainer = split_sizes(modality), config.get("trainer", {})
    model, data = config["model"].get("init_args", {}), config["data"].get("init_args", {})
    n, batch = sizes["train"], int(data.get("train_batch_size") or 1)
    epochs, max_steps = int(trainer.get("max_epochs") or 1), trainer.get("max_steps") or -1
    if method == "glass":  # official _train_discriminator: <= 392 samples per meta-epoch; one test pass each
        return epochs * min(math.ceil(n / batch), 392 // batch + 1), epochs
    if method == "ddad":  # drop_last; official: 'epochs' of the diffusion loop, else steps; + domain adaptation
        per_epoch = n // batch
        diffusion = int(model.get("diffusion_steps") or 3000)
        steps = diffusion * per_epoch if model.get("diffusion_unit", "epochs") == "epochs" else diffusion
        return steps + 4 * (n // 16), 1
    if method == "supervised":  # the epoch cap; early stopping (val_loss, 20) usually ends far earlier
        per_epoch = int(data.get("steps_per_epoch") or stream_batches(sizes["stream"]))
        epochs = min(epochs, supervised_epochs or epochs)
        return epochs * per_epoch, epochs
    steps = epochs * math.ceil(n / batch)
    return (min(steps, int(max_steps)) if int(max_steps) > 0 else steps), epochs


def stage_projection(args, steps: list[dict], packing: list[dict]) -> list[dict]:
    from ispad_bench.sweep import grid, resolve
    from ispad_bench.sweep.profile import load_profile
    from paper_scale import split_sizes

    speed = {}
    for r in steps:
        if "s_per_step" in r:
            speed.setdefault(r["method"], r)  # DDAD: its diffusion step (the domain-adaptation steps are few)
    best = max(packing, key=lambda r: r.get("speedup") or 0) if packing else {"speedup": 1, "jobs_per_device": 1}
    rows = []
    for profile_name in ("paper", "official"):
        profile = load_profile(profile_name, ROOT / "configs")
        jobs = grid.expand(ROOT / "configs", profile)
        per: dict[tuple[str, str], dict] = {}
        for job in jobs:
            key = (job.method, job.modality)
            if key not in per:
                config = resolve.resolve(job).config
                per[key] = {"steps": train_steps(job.method, config, job.modality, args.supervised_epochs), "jobs": 0}
            per[key]["jobs"] += 1
        for method in dict.fromkeys(m for m, _ in per):
            s = speed.get(method)
            if s is None:
                continue
            hours, count, steps_total = 0.0, 0, 0
            for (m, modality), v in per.items():
                if m != method:
                    continue
                (n_steps, passes), test = v["steps"], split_sizes(modality)
                test_images = test["good"] + test["area"] + test["points"]
                hours += v["jobs"] * (n_steps * s["s_per_step"] + passes * test_images / s["test_img_per_s"]) / 3600
                count, steps_total = count + v["jobs"], steps_total + v["jobs"] * n_steps
            packed = hours / best["speedup"] if method in ("supervised", "glass") and best.get("speedup") else hours
            rows.append({"profile": profile_name, "method": method, "jobs": count, "steps_per_job": steps_total // max(count, 1),
                         "gpu_hours_alone": hours, "gpu_hours_packed": packed,
                         "packing": best["jobs_per_device"] if packed != hours else 1})
        mine = [r for r in rows if r["profile"] == profile_name]
        rows.append({"profile": profile_name, "method": "total", "jobs": sum(r["jobs"] for r in mine),
                     "gpu_hours_alone": sum(r["gpu_hours_alone"] for r in mine),
                     "gpu_hours_packed": sum(r["gpu_hours_packed"] for r in mine)})
    return rows


def show(title: str, rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    keys = list(dict.fromkeys(k for r in rows for k in r if k not in ("notes", "error")))
    for k in keys:
        table.add_column(k)
    for r in rows:
        table.add_row(*[f"{r[k]:.4g}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys])
    Console(width=220).print(table)
    for r in rows:
        if r.get("error"):
            print(f"  {r.get('method') or r.get('run')}: {r['error'][:300]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "results/gpu_check")))
    parser.add_argument("--steps", type=int, default=10, help="timed steps per method in stage 1")
    parser.add_argument("--fit-steps", type=int, default=200, help="trainer.max_steps of the stage 2/3 jobs")
    parser.add_argument("--patches", type=int, default=200, help="generated patches per split (stream: 4x)")
    parser.add_argument("--stages", default="steps,fit,packing,projection")
    parser.add_argument("--supervised-epochs", type=int, default=40,
                        help="projection: epochs a supervised job trains before early stopping ends it (assumed)")
    parser.add_argument("--devices", action="store_true", help="stage 2 through --devices 0 as well")
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny sizes, smoke profile: checks the script")
    parser.add_argument("--verbose", action="store_true", help="show the sweeps' output")
    args = parser.parse_args(argv)
    from ispad_bench.quiet import quiet_known_warnings

    quiet_known_warnings()
    args.out.mkdir(parents=True, exist_ok=True)
    data = args.out / "data"
    if not data.is_dir():
        patches = 20 if args.smoke else args.patches
        subprocess.run([*cli(), "data", "synth", "--root", str(data), "--patches", str(patches), "--seed", "0"],
                       check=True, stdout=subprocess.DEVNULL)
    stages, result = args.stages.split(","), {"smoke": args.smoke}
    import torch

    result["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    t0 = time.perf_counter()
    if "steps" in stages:
        result["steps"] = stage_steps(args)
        show("1. training steps at the paper's sizes", result["steps"])
    if "fit" in stages:
        result["fit"] = stage_fit(args, data, args.out / "fit")
        show(f"2. real fits (AMP vs fp32 tolerance {AMP_TOLERANCE})", result["fit"])
    if "packing" in stages:
        result["packing"] = stage_packing(args, data, args.out / "packing")
        show("3. four supervised jobs packed on one GPU", result["packing"])
    if "projection" in stages:
        result["projection"] = stage_projection(args, result.get("steps", []), result.get("packing", []))
        result["assumptions"] = {"supervised_epochs": args.supervised_epochs, "others": "the configs' epoch/step caps"}
        show(f"4. the paper grid on one such GPU (the configs' caps; supervised: {args.supervised_epochs} epochs)",
             result["projection"])
    result["wall_s"] = time.perf_counter() - t0
    (args.out / "gpu_check.json").write_text(json.dumps(result, indent=1, default=str))
    print(f"gpu_check: {result['wall_s']:.0f} s, {args.out / 'gpu_check.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
