"""Run any Anomalib model at tiny size as sweep jobs (the `slow` every-model test, docs/methods.md timings).

Lives at the top of the package: it uses the sweep (catalog, grid, runner) to run models, and
nothing below imports it. The tiny settings themselves are :mod:`ispad_bench.sweep.tiny`'s.
"""

from __future__ import annotations

from ispad_bench.sweep.tiny import blocked, tiny

def run_all(models: list[str], data_root, out, modality: str = "LSM-1", timeout: float | None = None) -> list[dict]:
    """Run ``models`` at tiny size as sweep jobs (smoke profile's trainer settings); one result per model:
    ``status`` ok / failed (with ``error``) / blocked (with ``reason``), timings of the ok ones."""
    from pathlib import Path

    from rich.console import Console

    from ispad_bench.files import read_json
    from ispad_bench.sweep import grid, records
    from ispad_bench.sweep.executors import LocalExecutor
    from ispad_bench.sweep.profile import Profile, default_configs_dir, load_profile
    from ispad_bench.sweep.resolve import resolve
    from ispad_bench.sweep.runner import run_jobs

    configs = default_configs_dir()
    smoke = load_profile("smoke", configs)
    results: dict[str, dict] = {}
    plan = {}
    for name in models:
        reason = blocked(name)
        if reason:
            results[name] = {"model": name, "status": "blocked", "reason": reason}
        else:
            plan[name] = tiny(name)
    profile = Profile("tiny", (0,), dict(smoke.overrides), {m: o for m, o in plan.values()})
    jobs = {}
    for name, (method, _) in plan.items():
        try:
            (job,) = grid.expand(configs, profile, methods=[method], modalities=[modality], data_root=data_root)
            jobs[name] = resolve(job)
        except (Exception, SystemExit) as err:  # noqa: BLE001 (a config that does not parse is a result)
            results[name] = {"model": name, "method": method, "status": "failed", "error": f"config: {err}"[:500]}
    out = Path(out).resolve()
    run_jobs(list(jobs.values()), out, LocalExecutor(timeout=timeout), profile="tiny", console=Console(stderr=True))
    steps = int(smoke.overrides.get("trainer.limit_train_batches", 1))
    for name, job in jobs.items():
        record = read_json(out / job.rel_dir() / records.RECORD) or {}
        row = {"model": name, "method": job.method, "status": record.get("status", "missing")}
        if row["status"] == "ok":
            timing = record.get("timing", {})
            row.update(s_per_step=timing.get("train_s", 0.0) / steps, test_images_per_s=timing.get("test_images_per_s"))
        else:
            error = record.get("error", {})
            row["error"] = f"{error.get('phase')}: {error.get('type')}: {str(error.get('message'))[:300]}"
        results[name] = row
    return [results[n] for n in models]
