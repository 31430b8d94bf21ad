"""``report.html``: one self-contained page (no network, no external files) with every table of
``tables.md``, the figures embedded as PNG data URIs, and a short "how to read this" header."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from ispad_bench.files import utc_now
from ispad_bench.report import stats

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1400px;color:#222}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em}
.wrap{overflow-x:auto}table{border-collapse:collapse;font-size:.82em;margin:.5em 0 1em}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr.best td{font-weight:bold;background:#f5fbf2}
.howto{background:#f7f7fb;border-left:4px solid #88a;padding:.6em 1em;font-size:.9em}
figure{display:inline-block;margin:.5em}figure img{max-width:680px;border:1px solid #ddd}
figcaption{font-size:.8em;color:#555}
.x{display:none}body:has(#all-columns:checked) .x{display:table-cell}
.toggle{font-size:.85em;margin:.6em 0}
"""


def _table(header: list[str], body: list[list[str]], bold: list[bool], extra: list[bool] | None = None) -> str:
    """A table; columns flagged ``extra`` carry class ``x`` (shown with the "all columns" toggle, no script)."""
    cls = [' class="x"' if x else "" for x in (extra or [False] * len(header))]
    head = "".join(f"<th{c}>{html.escape(h)}</th>" for h, c in zip(header, cls))
    rows = []
    for cells, b in zip(body, bold):
        tds = "".join(f"<td{c}>{html.escape(v)}</td>" for v, c in zip(cells, cls))
        rows.append(f'<tr class="best">{tds}</tr>' if b else f"<tr>{tds}</tr>")
    return f'<div class="wrap"><table><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _figure(name: str, path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode()
    return (f'<figure id="{html.escape(name)}"><img alt="{html.escape(name)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{html.escape(name)}</figcaption></figure>")


def to_html(tables: list[tuple[str, list[str], list[list[str]], list[bool], list[bool]]], failed: list[dict],
            paths: dict[str, Path], replaced: list[str] | None = None) -> str:
    """The page from the report's rendered tables ``(title, header, body, bold)``; ``paths``: what
    ``write_report`` wrote so far (PNG figures are embedded)."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>ISP-AD benchmark results</title>',
        f"<style>{STYLE}</style></head><body>",
        "<h1>ISP-AD benchmark results</h1>",
        '<div class="howto"><b>How to read this.</b> '
        "Δ = ours − paper (percentage points for %). The image threshold of the plain columns is the paper's: "
        "F1-optimal on the test set itself (§4.3.6), an oracle. "
        + html.escape(stats.LEGEND.replace("**bold**", "bold")) + "</div>",
    ]
    if tables:
        parts.append('<div class="toggle"><label><input type="checkbox" id="all-columns"> show every column '
                     "(the paper's columns come first; cross-fit, per-group, speed and other columns are folded)"
                     "</label></div>")
    for title, header, body, bold, extra in tables:
        parts += [f"<h2>{html.escape(title)}</h2>", _table(header, body, bold, extra)]
    if failed:
        header = ["Method", "Modality", "Row", "Seed", "Error", "Folder"]
        body = [[str(r.get("method")), str(r.get("modality")), str(r.get("row") or ""), str(r.get("seed")),
                 f"{(r.get('error') or {}).get('kind')}: {str((r.get('error') or {}).get('message', ''))[:160]}",
                 str(r.get("_dir"))] for r in failed]
        parts += ["<h2>Failed jobs</h2>", _table(header, body, [False] * len(body))]
    if replaced:
        parts += ["<h2>Runs on another data root</h2>", "<ul>",
                  *(f"<li>{html.escape(line)}</li>" for line in replaced), "</ul>"]
    if not tables and not failed:
        parts.append("<p>No records found.</p>")
    figures = [(n, p) for n, p in paths.items() if str(p).endswith(".png") and Path(p).is_file()]
    if figures:
        parts.append("<h2>Figures</h2>")
        parts += [_figure(n, p) for n, p in figures]
    stamp = utc_now()
    parts.append(f'<p style="color:#888;font-size:.75em">written by ispad-bench report, {stamp}</p></body></html>')
    return "\n".join(parts)
