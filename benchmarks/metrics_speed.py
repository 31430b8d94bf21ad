"""Speed and agreement of ispad_bench.metrics against Anomalib 2.7 AUPRO + torchmetrics BinaryAUROC.

Builds the ASM-sized test set of the paper (Table 7: 1990 maps of 256x256, 74 defective) with
seeded small weak blobs and thin lines as defects, then times, each in a fresh subprocess so
that peak memory (max RSS, which also sees torch) is per run:

* ours: ``pixel_metrics`` (pixel AUROC + AUPRO@0.3 + PRO at a fixed threshold);
* reference: ``anomalib.metrics.AUPRO`` + ``torchmetrics.classification.BinaryAUROC`` (exact).

Usage: ``python benchmarks/metrics_speed.py [--n 1990] [--defective 74] [--size 256] [--seed 0]``
(``--n`` images; ``--defective`` defaults to the ASM ratio 74/1990 of ``--n``; ``--skip-reference``
times ours only). Timings exclude imports and loading the maps. The last lines compare against the
targets (full size: ours <= 5 s, >= 20x faster, |diff| <= 1e-6, peak <= 3 GB); the exit
status is 1 when an agreement check fails (speed depends on the machine and is only reported).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np


def make_case(n_images: int, n_defective: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise maps (float32) with weak blobs / thin lines on ``n_defective`` masks (uint8 0/1)."""
    rng = np.random.default_rng(seed)
    maps = rng.standard_normal((n_images, size, size), dtype=np.float32)
    masks = np.zeros((n_images, size, size), np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in rng.choice(n_images, n_defective, replace=False):
        for _ in range(int(rng.integers(1, 4))):
            if rng.random() < 0.5:  # small blob, radius 2-6 px
                cy, cx, r = *rng.integers(8, size - 8, 2), rng.uniform(2, 6)
                region = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            else:  # thin line, 1-2 px wide, 20-80 px long
                cy, cx = rng.integers(0, size, 2)
                ang, length, width = rng.uniform(0, np.pi), rng.uniform(20, 80), rng.uniform(0.5, 1.0)
                dy, dx = np.sin(ang), np.cos(ang)
                along = (yy - cy) * dy + (xx - cx) * dx
                across = -(yy - cy) * dx + (xx - cx) * dy
                region = (np.abs(across) <= width) & (along >= 0) & (along <= length)
            masks[i][region] = 1
            maps[i][region] += rng.uniform(0.3, 1.5)  # weak signal: heavy overlap with the noise
    return maps, masks


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB -> GB (Linux)


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all threads): less sensitive to a shared machine."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _run_child(kind: str, data: Path) -> dict:
    if kind == "ours":  # imports first: timings cover the computation only
        from ispad_bench.metrics import pixel_metrics
    else:
        import torch
        from anomalib.metrics import AUPRO
        from torchmetrics.classification import BinaryAUROC
    maps = np.load(data / "maps.npy")
    masks = np.load(data / "masks.npy")
    threshold = float(np.load(data / "threshold.npy"))
    base = _peak_rss_gb()
    t0, c0 = time.perf_counter(), _cpu_s()
    if kind == "ours":
        out = pixel_metrics(maps, masks, threshold, aupro_limit=0.3)
        values = {"pixel_auroc": out["pixel_auroc"], "aupro": out["aupro"], "pro": out["pro"]}
    else:
        tmaps, tmasks = torch.from_numpy(maps), torch.from_numpy(masks)
        aupro = AUPRO(fields=["anomaly_map", "gt_mask"], fpr_limit=0.3)
        aupro.update(SimpleNamespace(anomaly_map=tmaps, gt_mask=tmasks))  # as the Evaluator feeds it
        t_a = time.perf_counter()
        v_aupro = float(aupro.compute())
        t_a = time.perf_counter() - t_a
        auroc = BinaryAUROC()
        auroc.update(tmaps.reshape(-1), tmasks.reshape(-1).long())
        t_r = time.perf_counter()
        v_auroc = float(auroc.compute())
        t_r = time.perf_counter() - t_r
        values = {"pixel_auroc": v_auroc, "aupro": v_aupro, "aupro_s": t_a, "pixel_auroc_s": t_r}
    return {"seconds": time.perf_counter() - t0, "cpu_s": _cpu_s() - c0, "peak_rss_gb": _peak_rss_gb(), "data_rss_gb": base, **values}


def _spawn(kind: str, data: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--data", str(data)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"{kind} run failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", "--images", dest="images", type=int, default=1990, help="number of maps (ASM: 1990)")
    ap.add_argument("--defective", type=int, default=None, help="defective maps (default: 74/1990 of --n)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=1, help="runs of ours (the machine may be shared)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)
    ap.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(_run_child(args.child, args.data)))
        return 0
    if args.defective is None:
        args.defective = max(1, round(args.images * 74 / 1990))
    if not 0 < args.defective < args.images:
        ap.error(f"--defective must be in 1..{args.images - 1}, got {args.defective}")

    with tempfile.TemporaryDirectory(prefix="ispad-metrics-speed-") as tmp:
        data = Path(tmp)
        maps, masks = make_case(args.images, args.defective, args.size, args.seed)
        np.save(data / "maps.npy", maps)
        np.save(data / "masks.npy", masks)
        np.save(data / "threshold.npy", np.float64(np.quantile(maps[:50], 0.99)))
        print(f"case: {args.images} maps {args.size}x{args.size} float32 ({maps.nbytes / 2**30:.2f} GB), "
              f"{args.defective} defective, {int(masks.sum())} defect pixels, seed {args.seed}")
        del maps, masks
        ours = [_spawn("ours", data) for _ in range(args.repeats)]
        for r in ours:
            print(f"ours      pixel_auroc+aupro+pro: {r['seconds']:7.2f} s (CPU {r['cpu_s']:.2f} s)  peak RSS {r['peak_rss_gb']:.2f} GB "
                  f"(+{r['peak_rss_gb'] - r['data_rss_gb']:.2f} GB over the loaded maps)")
        best = min(ours, key=lambda r: r["seconds"])
        if args.skip_reference:
            return 0
        ref = _spawn("reference", data)
        print(f"reference anomalib AUPRO: {ref['aupro_s']:7.2f} s, torchmetrics BinaryAUROC: {ref['pixel_auroc_s']:7.2f} s, "
              f"total {ref['seconds']:.2f} s (CPU {ref['cpu_s']:.2f} s)  peak RSS {ref['peak_rss_gb']:.2f} GB "
              f"(+{ref['peak_rss_gb'] - ref['data_rss_gb']:.2f} GB)")
        speedup = ref["seconds"] / best["seconds"]
        print(f"speed-up (best of ours): {speedup:.1f}x wall, {ref['cpu_s'] / best['cpu_s']:.1f}x CPU")
        diffs = {key: abs(best[key] - ref[key]) for key in ("pixel_auroc", "aupro")}
        for key, diff in diffs.items():
            print(f"{key:12s} ours {best[key]:.9f}  reference {ref[key]:.9f}  |diff| {diff:.2e}")
        full = (args.images, args.defective, args.size) == (1990, 74, 256)
        size = "full ASM size" if full else f"REDUCED size ({args.images} maps): speed targets apply at full size"
        print(f"targets ({size}): ours {best['seconds']:.2f} s (<= 5), speed-up {speedup:.1f}x (>= 20), "
              f"peak {best['peak_rss_gb']:.2f} GB (<= 3), max |diff| {max(diffs.values()):.1e} (<= 1e-6)")
        if max(diffs.values()) > 1e-6:
            print("FAIL: ours and the reference disagree by more than 1e-6")
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
