"""Every runnable Anomalib image model end to end on a generated ISP-AD set, at tiny sizes.

Each model runs as a sweep job (own process: fit + test through the harness's evaluator) with the
smoke profile's trainer settings (one epoch, 2 training batches, CPU) and :func:`ispad_bench.sweep.tiny.tiny`
(random weights, 64 px, batches of 4). Reports per model: status (ok / failed with the error),
seconds per training step (fit wall time / steps: includes the setup and, for trained models, one
validation pass, so an upper bound) and test images per second (the model's forward + post-processing).

Usage::

    python benchmarks/anomalib_models.py --data-root datasets/ispad-smoke20 --out results/runs/anomalib-tiny
    python benchmarks/anomalib_models.py --models patchcore,stfpm --modality ASM --json results/tiny.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    from ispad_bench.sweep import catalog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", type=Path, required=True, help="generated set (ispad-bench data synth)")
    parser.add_argument("--out", type=Path, default=Path("results/runs/anomalib-tiny"))
    parser.add_argument("--models", help="comma list (default: every runnable Anomalib image model)")
    parser.add_argument("--modality", default="LSM-1")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per job")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    models = args.models.split(",") if args.models else catalog.runnable_anomalib_models()
    from ispad_bench.testing import run_all

    results = run_all(models, args.data_root, args.out, args.modality, args.timeout)
    print("| model | run as | status | s / training step | test images / s |")
    print("|---|---|---|---:|---:|")
    for r in results:
        if r["status"] == "ok":
            print(f"| {r['model']} | `{r['method']}` | ok | {r['s_per_step']:.2f} | {r['test_images_per_s']:.1f} |")
        else:
            why = r.get("error") or r.get("reason", "")
            print(f"| {r['model']} | `{r.get('method', '')}` | {r['status']}: {why[:160]} | | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    counts = {s: sum(r["status"] == s for r in results) for s in ("ok", "blocked", "failed")}
    print(f"\n{counts['ok']} ran end to end, {counts['blocked']} need files (not run), {counts['failed']} failed")
    return 0 if counts["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
