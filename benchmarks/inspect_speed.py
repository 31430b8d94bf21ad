"""Full-acquisition throughput of ``ispad-bench inspect`` beside the model's forward pass alone on the same windows.

One run: a generated single-channel acquisition (ASM-like, planted bright defects) is inspected with a kept sweep
job's model, then the same windows go through :func:`ispad_bench.inspect.run.forward` alone (window extraction
untimed). Printed: megapixels/s of both, and the cost of tiling + blending + region extraction on top of the
forward pass (goal: <= 10 % at ASM-like sizes, 8k x 8k single channel). CPU seconds (all threads of this process) are printed too:
on a shared machine they depend less on the other processes than wall time. Reading the file and writing
outputs are not timed (they depend on the disk, not on this code).

Usage: ``python benchmarks/inspect_speed.py [--job JOB_DIR] [--size 2048] [--threads 2] [--batch-size 16]
[--device cpu]``. Without ``--job`` a smoke PaDiM job (random ResNet18 at 64 px: a cheap forward, so the
overhead share is pessimistic) is trained first on a generated tiny dataset (~30 s, untimed).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def smoke_job(workdir: Path) -> Path:
    """A smoke PaDiM job on ASM, trained on a generated dataset (``ispad_bench.data.synth``)."""
    from ispad_bench.cli import main
    from ispad_bench.data.synth import generate

    generate(workdir / "data", patches=20, seed=0)
    rc = main(["sweep", "--methods", "padim", "--modalities", "ASM", "--profile", "smoke", "--data-root",
               str(workdir / "data"), "--out", str(workdir / "runs"), "--no-report"])
    if rc != 0:
        sys.exit(f"the smoke sweep failed (exit {rc})")
    return next((workdir / "runs").glob("padim/asm/*/record.json")).parent


def acquisition(size: int, seed: int = 0) -> np.ndarray:
    """size x size uint8 plate: noise around 115 with 40 bright squares of 4-60 px (seeded)."""
    rng = np.random.default_rng(seed)
    plate = rng.integers(90, 140, (size, size), dtype=np.uint8)
    for _ in range(40):
        s = int(rng.integers(4, 60))
        y, x = rng.integers(0, size - s, 2)
        plate[y:y + s, x:x + s] = 250
    return plate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--job", type=Path, help="a sweep job folder with model.ckpt (default: train a smoke PaDiM)")
    parser.add_argument("--size", type=int, default=2048, help="acquisition side in px (ASM-like: 8192)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch

    from ispad_bench.inspect import regions, run, tiles
    from ispad_bench.inspect.load import load_job
    from ispad_bench.quiet import quiet_known_warnings

    quiet_known_warnings()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        job = load_job(args.job or smoke_job(Path(tmp)), args.device)
    plate = acquisition(args.size)
    grid = tiles.Grid.of(*plate.shape)
    corners, mp = grid.corners, plate.size / 1e6
    run.forward(job, tiles.windows(plate, corners[:args.batch_size], tiles.WINDOW, 255.0))  # warm-up (first-call costs)

    def forward_alone() -> tuple[float, float]:
        """Wall and CPU seconds of the model's forward pass alone over every window (extraction untimed)."""
        wall = cpu = 0.0
        for start in range(0, len(corners), args.batch_size):
            batch = tiles.windows(plate, corners[start:start + args.batch_size], tiles.WINDOW, 255.0)
            t0, c0 = time.perf_counter(), time.process_time()
            run.forward(job, batch)
            run.synchronize(job.device)
            wall, cpu = wall + time.perf_counter() - t0, cpu + time.process_time() - c0
        return wall, cpu

    before = forward_alone()  # the baseline runs before and after the inspection: drift of a shared machine shows
    t0, c0 = time.perf_counter(), time.process_time()
    scored = run.score_image(job, plate, 255.0, batch_size=args.batch_size)
    t1 = time.perf_counter()
    found, _ = regions.find_regions(scored.amap, job.threshold.value)
    t2, total_cpu = time.perf_counter(), time.process_time() - c0
    total_s = t2 - t0
    stages = {**scored.seconds, "regions": t2 - t1}
    after = forward_alone()
    forward_s, forward_cpu = min(before[0], after[0]), min(before[1], after[1])
    overhead = total_s - forward_s
    print(f"{job.record['method']} {job.modality.value} ({job.key}), {args.size}x{args.size} single channel = "
          f"{mp:.1f} MP, {len(grid)} windows of {tiles.WINDOW} px at stride {tiles.STRIDE}, batch {args.batch_size}, "
          f"{args.threads} torch threads, {job.device}; {len(found)} regions")
    print(f"  forward pass alone : {forward_s:8.2f} s  {mp / forward_s:7.3f} MP/s  ({forward_cpu:.2f} CPU s; the faster of "
          f"{before[0]:.2f} s before and {after[0]:.2f} s after the inspection)")
    print(f"  inspect (full)     : {total_s:8.2f} s  {mp / total_s:7.3f} MP/s  ({total_cpu:.2f} CPU s, "
          f"{(total_cpu - forward_cpu) / forward_cpu:+.1%} on top of the forward pass's CPU seconds)")
    print("  stages of inspect  : " + ", ".join(f"{k} {v:.2f} s" for k, v in stages.items()))
    share = overhead / forward_s
    direct = stages["windows"] + stages["blend"] + stages["regions"]  # timed one by one inside the run
    print(f"  tiling + blending + regions, timed directly: {direct:.2f} s = {direct / forward_s:+.1%} of the forward "
          f"pass alone, {direct / stages['forward']:+.1%} of the run's own forward time "
          f"(goal <= +10 %: {'met' if direct / forward_s <= 0.10 else 'NOT met'})")
    print(f"  by difference (inspect - forward alone): {overhead:.2f} s = {share:+.1%} "
          "(noisy on a shared machine: the two passes see different loads)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
