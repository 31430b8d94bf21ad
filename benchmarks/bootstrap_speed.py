"""Speed and exactness of ``ispad_bench.metrics.bootstrap`` beside the naive loop, in one run.

Builds the ASM-sized test set of ``metrics_speed.py`` (1990 maps of 256x256, 74 defective;
image scores = map maxima), then:

* ours: ``bootstrap(..., n=1000)`` of the image metrics alone, then of everything (image +
  pixel AUROC, PRO, AUPRO@0.3, cross-fit);
* naive: ``evaluate`` re-run on ``--naive`` explicit resamples (images repeated by their draw
  counts), timed and extrapolated to n; the same resamples of ours must agree (|diff| <= 1e-9);
* exactness: ``bootstrap`` with one resample of identity weights against ``evaluate``.

Usage: ``python benchmarks/bootstrap_speed.py [--n-images 1990] [--defective 74] [--size 256]
[--resamples 1000] [--naive 3]``. Targets (full size, 2 cores): pixel <= 10 s, image
<= 1 s. Exit status 1 when an agreement check fails (speed is only reported).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from metrics_speed import make_case  # noqa: E402

from ispad_bench.metrics import evaluate  # noqa: E402
from ispad_bench.metrics.bootstrap import bootstrap, resample_weights  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-images", type=int, default=1990)
    ap.add_argument("--defective", type=int, default=74)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--naive", type=int, default=3, help="naive resamples actually run (then extrapolated)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dilate", type=int, default=0, help="grow every defect by this many px (larger defects: more "
                    "distinct defect scores; the ASM/LSM area defects are larger than the default case's)")
    args = ap.parse_args()
    maps, masks = make_case(args.n_images, args.defective, args.size, args.seed)
    if args.dilate:
        from scipy import ndimage

        grown = np.stack([ndimage.binary_dilation(m, iterations=args.dilate) for m in masks.astype(bool)])
        maps[grown & ~masks.astype(bool)] += 0.8  # the grown rim carries signal too
        masks = grown.astype(np.uint8)
    labels = masks.reshape(len(masks), -1).any(1)
    scores = maps.reshape(len(maps), -1).max(1).astype(np.float64)
    distinct = np.unique(maps[masks.astype(bool)]).size
    print(f"case: {args.n_images} maps of {args.size}^2, {int(labels.sum())} defective, {int(masks.sum())} defect "
          f"pixels, {distinct} distinct defect scores; {args.resamples} resamples")
    ok = True

    def timed(fn):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, time.perf_counter() - t0, time.process_time() - c0

    exact, t_eval, c_eval = timed(lambda: evaluate(scores, labels, maps, masks))
    img, t_img, c_img = timed(lambda: bootstrap(scores, labels, n=args.resamples, seed=1))
    full, t_all, c_all = timed(lambda: bootstrap(scores, labels, maps, masks, n=args.resamples, seed=1, estimate=exact))
    print("wall s / CPU s (all threads; CPU/2 ~ wall on 2 idle cores)")
    print(f"evaluate once (full set):            {t_eval:6.2f} / {c_eval:6.2f}")
    print(f"ours  image metrics (+ cross-fit):   {t_img:6.2f} / {c_img:6.2f}   (target <= 1 s)")
    print(f"ours  all metrics incl. pixel:       {t_all:6.2f} / {c_all:6.2f}   (target <= 10 s; "
          "evaluate's full-set result given)")

    weights, _ = resample_weights(labels, n=args.resamples, seed=1)
    t0 = time.perf_counter()
    worst = 0.0
    for b in range(args.naive):
        idx = np.repeat(np.arange(labels.size), weights[b])
        ref = evaluate(scores[idx], labels[idx], maps[idx], masks[idx])
        for key, values in full.replicates.items():
            if key in ref:
                worst = max(worst, abs(float(values[b]) - ref[key]))
    t_naive = (time.perf_counter() - t0) / max(args.naive, 1)
    print(f"naive evaluate per resample:         {t_naive:6.2f} s -> {t_naive * args.resamples:8.0f} s for "
          f"{args.resamples} (extrapolated from {args.naive}); speed-up {t_naive * args.resamples / t_all:.0f}x")
    print(f"ours vs naive on the same resamples: max |diff| = {worst:.2e}")
    ok &= worst <= 1e-9

    one = bootstrap(scores, labels, maps, masks, weights=np.ones((1, labels.size), np.int32))
    diffs = {k: abs(float(v[0]) - exact[k]) for k, v in one.replicates.items() if k in exact}
    same = [k for k, d in diffs.items() if d == 0.0]
    print(f"n=1 identity weights == evaluate: bit-identical {same}; "
          + ", ".join(f"{k} |diff| {d:.1e}" for k, d in diffs.items() if d))
    ok &= max(diffs.values()) <= 1e-12
    for key in ("image_auroc", "mcc", "recall", "fpr", "mcc_crossfit", "pixel_auroc", "pro", "aupro"):
        lo, hi = full.interval(key)
        print(f"  {key:13s} {full.estimate[key]:.4f} [{lo:.4f}, {hi:.4f}]")
    print("agreement: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
