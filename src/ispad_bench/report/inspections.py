"""The report's section for ``ispad-bench inspect`` folders inside a sweep: the line's metrics per inspection.

Reads only each folder's ``inspection.json`` (written by :mod:`ispad_bench.inspect`): which job, at which
threshold, how many acquisitions, and — where ``--masks`` gave the truth — per-acquisition detection,
false alarms and region recall with their bootstrap intervals over acquisitions (docs/inspect.md).
"""

from __future__ import annotations

from pathlib import Path

from ispad_bench.files import read_json
from ispad_bench.sweep.records import INSPECTION


def find(runs_dir: Path) -> list[tuple[Path, dict]]:
    """Every readable ``inspection.json`` below ``runs_dir`` (sorted by folder)."""
    found = []
    for path in sorted(Path(runs_dir).rglob(INSPECTION)):
        data = read_json(path)
        if isinstance(data, dict) and "job" in data:
            found.append((path.parent, data))
    return found


def _fmt(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def to_markdown(runs_dir: Path) -> list[str]:
    """Markdown lines of the section (empty without inspections)."""
    items = find(runs_dir)
    if not items:
        return []
    lines = ["## Full acquisitions (`ispad-bench inspect`)", "",
             "Each inspection: a sweep job's model on full acquisitions at the job's own threshold (docs/inspect.md); "
             "intervals: bootstrap over acquisitions.", ""]
    for folder, data in items:
        job, thr = data["job"], data.get("threshold", {})
        row = f" {job['row']}" if job.get("row") else ""
        images = data.get("images", [])
        lines += [f"### {job.get('method')} {job.get('modality')}{row} seed {job.get('seed')} — "
                  f"`{Path(folder).relative_to(runs_dir)}`", "",
                  f"{len(images)} acquisitions; threshold {_fmt(thr.get('value'))} ({thr.get('origin')}); "
                  f"map: {data.get('map_source')}, blend {data.get('blend')}.", ""]
        metrics = data.get("metrics")
        if not metrics:
            lines += ["No masks given (`--masks`): no line metrics.", ""]
            continue
        lines += ["| metric | value | 95% CI | count |", "|---|---|---|---|"]
        for name, m in metrics.get("values", {}).items():
            ci = m.get("interval")
            interval = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else "–"
            lines.append(f"| {name} | {_fmt(m.get('value'))} | {interval} | {m.get('counts', '')} |")
        lines.append("")
    return lines
