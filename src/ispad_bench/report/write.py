"""Everything ``ispad-bench report`` writes for a sweep folder, from its records alone.

``tables.md``, ``tables.csv`` and ``tables.tex`` (``tables.py``), ``figures/*.png``
(``figures.py``) and ``report.html`` (``html.py``: one self-contained page), each written atomically.
"""

from __future__ import annotations

from pathlib import Path

from ispad_bench.files import atomic_write_bytes
from ispad_bench.report.load import load_records, other_root_runs
from ispad_bench.sweep.records import LOG

# What the report writes into a sweep folder (figures go to ``figures/``).
FILES = {"md": "tables.md", "csv": "tables.csv", "tex": "tables.tex", "html": "report.html"}
FIGURES = "figures"


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
    from ispad_bench.report import html, tables

    runs_dir = Path(runs_dir)
    out_dir = Path(out_dir) if out_dir else runs_dir
    df, failed = tables.summarise(runs_dir)
    replaced = other_root_runs(runs_dir)
    paths = {kind: out_dir / FILES[kind] for kind in ("md", "csv", "tex")}
    atomic_write_bytes(paths["md"], tables.to_markdown(df, failed, replaced).encode())
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
    return paths
