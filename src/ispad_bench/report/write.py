"""Everything ``ispad-bench report`` writes for a sweep folder, from its records alone.

``tables.md``, ``tables.csv`` and ``tables.tex`` (``tables.py``), ``figures/*.png``
(``figures.py``) and ``report.html`` (``html.py``: one self-contained page), each written atomically.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ispad_bench.files import atomic_write_bytes, read_json, write_json
from ispad_bench.report.load import load_records, other_root_runs
from ispad_bench.sweep.records import BOOTSTRAP, INSPECTION, LOG, PREDICTIONS, RECORD, SPEC

# What the report writes into a sweep folder (figures go to ``figures/``).
FILES = {"md": "tables.md", "csv": "tables.csv", "tex": "tables.tex", "html": "report.html"}
FIGURES = "figures"
STAMP = ".report.json"  # what the last report was made from (:func:`inputs_digest`): a sweep with nothing new skips it
READ = (RECORD, SPEC, PREDICTIONS, BOOTSTRAP, INSPECTION)  # the files below a sweep folder the report reads


def inputs_digest(runs_dir: Path) -> str:
    """Hash of what a report of ``runs_dir`` is made from: the name, size and mtime of every file it reads,
    and the report's own code and reference tables."""
    h = hashlib.sha256()
    runs_dir = Path(runs_dir)
    for path in sorted(p for p in runs_dir.rglob("*") if p.name in READ):  # one walk of the sweep folder
        st = path.stat()
        h.update(f"{path.relative_to(runs_dir)}|{st.st_size}|{st.st_mtime_ns};".encode())
    package = Path(__file__).resolve().parents[1]
    for path in sorted([*(package / "report").glob("*.py"), *(package / "reference").glob("*"), package / "paper.py"]):
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def report_is_current(runs_dir: Path) -> bool:
    """Whether the report in ``runs_dir`` was written from exactly its present records (and still exists)."""
    stamp = read_json(Path(runs_dir) / STAMP) or {}
    if not all((Path(runs_dir) / name).is_file() for name in FILES.values()):
        return False
    return stamp.get("inputs") == inputs_digest(runs_dir)


def no_success_message(runs_dir: Path) -> str | None:
    """``None`` when ``runs_dir`` holds a successful job; else one line, then each failed job and its log."""
    ok, failed = load_records(Path(runs_dir))
    if ok:
        return None
    lines = [f"no successful job in {runs_dir}" + (f" ({len(failed)} failed)" if failed else " (no job records)")]
    for r in failed:
        err = r.get("error") or {}
        first = str(err.get("message") or "").strip().splitlines()
        lines.append(f"  {r.get('method')} {r.get('modality')} seed {r.get('seed')}: {err.get('kind')}: "
                     f"{first[0][:160] if first else ''}; log {Path(r['_dir']) / LOG}")
    return "\n".join(lines)


def unreadable_message(runs_dir: Path) -> str | None:
    """``None``, or one line per ``record.json`` the report could not use (listed under "Failed jobs" too)."""
    _, failed = load_records(Path(runs_dir))
    bad = [r["error"]["message"] for r in failed if r.get("status") == "unreadable"]
    if not bad:
        return None
    return f"{len(bad)} record(s) could not be used; their rows are missing from the tables:\n" + "\n".join(
        f"  {line}" for line in bad)


def write_report(runs_dir: Path, out_dir: Path | None = None, figures: bool = True) -> dict[str, Path]:
    """Write tables (md/csv/tex), figures and report.html for the records under ``runs_dir``; returns the paths."""
    from ispad_bench.report import html, inspections, tables

    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir else runs_dir
    inputs = inputs_digest(runs_dir)  # before reading: a record that lands meanwhile makes the next sweep rewrite
    df, failed = tables.summarise(runs_dir)
    replaced = other_root_runs(runs_dir)
    paths = {kind: out_dir / FILES[kind] for kind in ("md", "csv", "tex")}
    section = inspections.to_markdown(runs_dir)  # `ispad-bench inspect` folders inside the sweep
    atomic_write_bytes(paths["md"], "\n".join([tables.to_markdown(df, failed, replaced).rstrip("\n"), "", *section]).encode())
    atomic_write_bytes(paths["csv"], df.to_csv(index=False).encode())
    atomic_write_bytes(paths["tex"], tables.to_latex(df).encode())
    if figures and len(df):
        from ispad_bench.report.figures import contamination_figure, write_figures

        from ispad_bench.report.forest import forest_figures

        paths.update(forest_figures(df, out_dir / FIGURES))
        paths.update(write_figures(runs_dir, out_dir / FIGURES))
        if (path := contamination_figure(df, out_dir / FIGURES / "contamination.png")) is not None:
            paths["contamination"] = path
    paths["html"] = out_dir / FILES["html"]
    atomic_write_bytes(paths["html"], html.to_html(tables.rendered(df), failed, paths, replaced).encode())
    if out_dir == runs_dir and figures:
        write_json(out_dir / STAMP, {"inputs": inputs, "files": sorted(str(p.relative_to(out_dir)) for p in paths.values())})
    return paths
