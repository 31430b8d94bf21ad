"""The sweep's pre-flights: what is checked before any job starts, each problem one line, once.

Run on the jobs that will run (a finished job needs neither its weights nor its data again), in
this order: arguments (also under ``--dry-run``), data roots, weight files, the output folder.
"""

from __future__ import annotations

from pathlib import Path


def unwritable(out_dir: Path) -> str | None:
    """Why the sweep cannot write into ``out_dir`` (a file, read-only, no permission, full), or ``None``."""
    import tempfile

    if out_dir.exists() and not out_dir.is_dir():
        return "is a file, not a folder"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=".write-check-"):
            pass
    except OSError as err:
        return f"is not writable ({err.strerror or err})"
    return None


def check_data_roots(jobs, console, dry_run: bool = False) -> bool:
    """Every job's data root exists and its test split holds defects (else one line per root or test folder,
    once, not a failure per job ~40 s in, or after training); under --dry-run the lines are warnings."""
    roots: dict[str, set[str]] = {}  # data root -> methods
    modalities: set[tuple[str, str]] = set()  # (existing data root, modality): each test folder looked at once
    for job in jobs:
        root = (((job.config or {}).get("data") or {}).get("init_args") or {}).get("root")
        if root is None:
            continue
        if Path(str(root)).is_dir():
            modalities.add((str(root), job.modality))
        else:
            roots.setdefault(str(root), set()).add(job.method)
    colour = "yellow" if dry_run else "red"
    for root, methods in roots.items():
        console.print(f"[{colour}]sweep: data root {root} ({', '.join(sorted(methods))}) is not a folder: "
                      "pass --data-root, or make one with `ispad-bench data synth|download`[/]", soft_wrap=True)
    no_defects = sorted({str(t) for root, mod in modalities if (t := _test_without_defects(root, mod)) is not None})
    for test in no_defects:  # every job would fit, then stop at its test
        console.print(f"[{colour}]sweep: {test} holds no defect folder with images: every job's test needs them "
                      "(`ispad-bench data check` lists what is there)[/]", soft_wrap=True)
    return dry_run or not (roots or no_defects)


def _test_without_defects(root: str, modality: str) -> Path | None:
    """The modality's test folder when it exists but holds no defect images (``None`` otherwise, or if unknown)."""
    from ispad_bench.data.layout import GOOD_DIR, TEST_DIR, list_images, modality_dir

    try:
        test = modality_dir(root, modality) / TEST_DIR
        if not test.is_dir():
            return None
        return None if any(p.is_dir() and p.name != GOOD_DIR and list_images(p) for p in test.iterdir()) else test
    except (OSError, ValueError):
        return None


def check_arguments(jobs, console) -> bool:
    """The sweep's first pre-flight (also under --dry-run): True when every job's model and data accept their
    init args; else one line per job with the reason ``anomalib train`` would print, before any job starts."""
    from ispad_bench.sweep.catalog import job_argument_errors

    errors = job_argument_errors(jobs)
    for label, reason in errors.items():
        console.print(f"[red]sweep: {label}: {reason}[/]", soft_wrap=True)
    if errors:
        console.print(f"[red]sweep: {len(errors)} job(s) have arguments their model or data refuse; nothing ran[/]")
    return not errors


def check_weights(jobs, console) -> bool:
    """The sweep's pre-flight: True when every job's weight files are present (else says what to fetch)."""
    from ispad_bench.sweep.catalog import missing_job_weights

    missing = missing_job_weights(jobs)
    if not missing:
        return True
    methods = sorted({label.split(" ")[0] for label in missing})
    console.print(f"[red]sweep: {len(missing)} job(s) need weight files that are not present:[/]")
    for f in sorted({f.describe() for files in missing.values() for f in files}):
        console.print(f"  missing: {f}")
    console.print(f"fetch them once with `ispad-bench weights fetch --methods {','.join(methods)}` (online), "
                  "set `pre_trained: false`, or pass --skip-weights-check")
    return False
