"""Every runnable Anomalib image model end to end on a generated ISP-AD set, at tiny sizes (issue 15).

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

from rich.console import Console


def run(models: list[str], data_root: Path, out: Path, modality: str, timeout: float | None = None) -> list[dict]:
    """Run ``models`` (Anomalib names) at tiny size; one result dict per model, in order."""
    from ispad_bench.sweep import grid, records
    from ispad_bench.sweep.executors import LocalExecutor
    from ispad_bench.sweep.runner import run_jobs
    from ispad_bench.sweep.tiny import tiny

    configs = grid.default_configs_dir()
    smoke = grid.load_profile("smoke", configs)
    plan = {name: tiny(name) for name in models}
    profile = grid.Profile("tiny", (0,), dict(smoke.overrides), {m: o for m, o in plan.values()})
    results, jobs = [], {}
    for name, (method, _) in plan.items():
        try:
            (job,) = grid.expand(configs, profile, methods=[method], modalities=[modality], data_root=data_root)
            jobs[name] = grid.resolve(job)
        except (Exception, SystemExit) as err:  # noqa: BLE001 (a config that does not parse is a result)
            results.append({"model": name, "method": method, "status": "failed", "phase": "config",
                            "error": f"{type(err).__name__}: {str(err)[-400:]}"})
    run_jobs(list(jobs.values()), out, LocalExecutor(timeout=timeout), profile="tiny", console=Console(stderr=True))
    steps = int(smoke.overrides.get("trainer.limit_train_batches", 1))
    for name, job in jobs.items():
        record = records.read_json(out / job.rel_dir() / records.RECORD) or {}
        row = {"model": name, "method": job.method, "status": record.get("status", "missing"), "dir": str(job.rel_dir())}
        if record.get("status") == "ok":
            timing = record.get("timing", {})
            row["s_per_step"] = timing.get("train_s", 0.0) / steps
            row["test_images_per_s"] = timing.get("test_images_per_s")
            row["image_AUROC"] = record.get("metrics", {}).get("image_AUROC")
        else:
            error = record.get("error", {})
            row.update(phase=error.get("phase"), error=f"{error.get('type')}: {str(error.get('message'))[:400]}")
        results.append(row)
    order = {m: i for i, m in enumerate(models)}
    return sorted(results, key=lambda r: order[r["model"]])


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
    results = run(models, args.data_root, args.out.resolve(), args.modality, args.timeout)
    print("| model | run as | status | s / training step | test images / s |")
    print("|---|---|---|---:|---:|")
    for r in results:
        if r["status"] == "ok":
            print(f"| {r['model']} | `{r['method']}` | ok | {r['s_per_step']:.2f} | {r['test_images_per_s']:.1f} |")
        else:
            print(f"| {r['model']} | `{r['method']}` | {r['status']}: {r.get('error', '')[:120]} | | |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
