"""Tables of a sweep in the layout of the paper: Tables 4-6 (unsupervised) and 2-3 (supervised).

``summarise`` turns the records below a sweep folder into a tidy frame (one row per table row,
``<metric>_mean/_std/_lower/_upper/_paper/_delta``: ``tables.csv``), rendered as ``tables.md``,
``tables.tex`` and the tables of ``report.html`` (``write.py`` writes them). Per row: mean and sample standard deviation
(ddof 1; none for a single seed) over seeds; Δ = our mean − the paper's number, in the unit shown
(percentage points for %). The best row per table by mean MCC is bold, as in the paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pandas as pd

from ispad_bench.data.modality import Modality
from ispad_bench.paper import (
    BY_ID,
    SUPERVISED,
    SUPERVISED_METHODS,
    TABLE_NUMBERS,
    UNSUPERVISED,
    display_name,
    load_paper_tables,
    method_order,
)
from ispad_bench.report import notes, stats
from ispad_bench.report.load import contamination_of, load_records
from ispad_bench.sweep.profile import Row, row_order


@dataclass(frozen=True)
class Column:
    name: str  # column id in the CSV
    header: str
    source: str  # key in record["metrics"] or "timing.<key>"
    scale: float = 1.0
    digits: int = 1
    paper: str | None = None  # column of the paper CSV


UNSUP_COLUMNS = (
    Column("image_auroc", "AUROC (%)", "image_AUROC", 100, 1, "image_auroc_pct"),
    Column("mcc", "MCC", "MCC", 1, 2, "mcc"),
    Column("recall", "Recall (%)", "recall", 100, 1, "recall_pct"),
    Column("precision", "Precision (%)", "precision", 100, 1, "precision_pct"),
    Column("fpr", "FPR (%)", "FPR", 100, 1, "fpr_pct"),
    Column("pixel_auroc", "Pixel AUROC (%)", "pixel_AUROC", 100, 1, "pixel_auroc_pct"),
    Column("pro", "PRO (%)", "PRO", 100, 1, "pro_pct"),
    Column("aupro", "AUPRO@0.3 (%)", "AUPRO", 100, 1),
    Column("recall_area", "Recall-area (%)", "recall_area", 100, 1),  # §5.1 discusses the groups apart
    Column("recall_points", "Recall-points (%)", "recall_points", 100, 1),
    Column("images_per_s", "images/s", "timing.test_images_per_s", 1, 1),
)
SUP_COLUMNS = (
    Column("mcc", "MCC", "MCC", 1, 2, "mcc"),
    Column("recall", "Recall (%)", "recall", 100, 1, "recall_pct"),
    Column("fpr", "FPR (%)", "FPR", 100, 1, "fpr_pct"),
    Column("tn", "TN", "TN", 1, 0, "tn"),
    Column("tp", "TP", "TP", 1, 0, "tp"),
    Column("fn", "FN", "FN", 1, 0, "fn"),
    Column("fp", "FP", "FP", 1, 0, "fp"),
    Column("fn_area", "FN-area", "fn_area", 1, 0),  # §5.2 counts FNs per group
    Column("fn_points", "FN-points", "fn_points", 1, 0),
    Column("best_epoch", "Best epoch", "procedure.selected_epoch", 1, 0),  # §5.2: epochs to convergence
    Column("epochs", "Epochs", "procedure.epochs_trained", 1, 0),
    Column("images_per_s", "images/s", "timing.test_images_per_s", 1, 1),
)
UNSUP_COLUMNS, SUP_COLUMNS = stats.with_crossfit(UNSUP_COLUMNS), stats.with_crossfit(SUP_COLUMNS)  # oracle | cf


# ------------------------------------------------------------------------------ paper numbers
def paper_unsupervised() -> pd.DataFrame:
    """Tables 4-6 (``ispad_bench/reference/paper_unsupervised.csv``)."""
    return load_paper_tables(UNSUPERVISED)


def paper_supervised() -> pd.DataFrame:
    """Tables 2-3 with a ``fraction`` column: #real / #real of the mixed 1/1 row, to the nearest 2^-k."""
    df = load_paper_tables(SUPERVISED)
    fractions = []
    for _, r in df.iterrows():
        if r.defect_group == "none":
            fractions.append(Fraction(0))
            continue
        full = df[(df.modality == r.modality) & (df.defect_group == "mixed")].n_real_defects.max()
        fractions.append(Fraction(1, 2 ** round(-math.log2(r.n_real_defects / full))))
    df["fraction"] = fractions
    return df


# ------------------------------------------------------------------------------ loading
def _value(record: dict, source: str) -> float | None:
    if source.startswith(("timing.", "procedure.")):
        section, key = source.split(".", 1)
        v = (record.get(section) or {}).get(key)
    else:
        v = (record.get("metrics") or {}).get(source)
    return float(v) if isinstance(v, (int, float)) and v is not None and math.isfinite(v) else None


def _n_real(record: dict) -> float | None:
    real = record.get("real_defects")
    if isinstance(real, dict) and "count" in real:
        return float(real["count"])
    if isinstance(real, (list, tuple)):
        return float(len(real))
    return 0.0 if record.get("row") == "none" else None


def summarise(runs_dir: Path) -> tuple[pd.DataFrame, list[dict]]:
    """Tidy summary: one row per (table, modality, method, row) with mean/std/paper/delta per column."""
    ok, failed = load_records(runs_dir)
    pu, ps = paper_unsupervised(), paper_supervised()
    groups: dict[tuple, list[dict]] = {}
    for r in ok:
        groups.setdefault((r.get("profile"), r["method"], r["modality"], r.get("row"), contamination_of(r)), []).append(r)
    multi_profile = len({k[0] for k in groups}) > 1
    rows = []
    for (profile, method, modality, row_slug, contamination), recs in groups.items():
        supervised = method in SUPERVISED_METHODS or row_slug is not None
        columns = SUP_COLUMNS if supervised else UNSUP_COLUMNS
        name = display_name(method) + (f" [{profile}]" if multi_profile else "")
        name += f" (contamination {contamination:g})" if contamination else ""
        marks = notes.row_marks(recs)  # ‡: not the paper's procedure (no Δ); °: generated textures
        name += marks
        out = {
            "table": SUPERVISED if supervised else UNSUPERVISED,
            "modality": modality,
            "method": name,
            "method_id": method,
            "profile": profile,
            "row": row_slug,
            "contamination": contamination,
            "seeds": len(recs),
            "seed_list": " ".join(str(s) for s in sorted(r["seed"] for r in recs)),
            "procedure": notes.row_procedure(recs),
        }
        paper_row = None
        if supervised and row_slug:
            row = Row.parse(row_slug)
            out["group"], out["fraction"] = ("-" if row.group == "none" else row.group), str(row.fraction)
            reals = [n for n in (_n_real(r) for r in recs) if n is not None]
            out["n_real"] = float(np.mean(reals)) if reals else None
            match = ps[(ps.modality == modality) & (ps.defect_group == row.group) & (ps.fraction == row.fraction)]
            paper_row = match.iloc[0] if len(match) else None
            out["n_real_paper"] = int(paper_row.n_real_defects) if paper_row is not None else None
        elif method in BY_ID:
            match = pu[(pu.modality == modality) & (pu.method == BY_ID[method].name)]
            paper_row = match.iloc[0] if len(match) else None
        out["data"], out["data_root"] = notes.data_kind(recs), ";".join(notes.data_roots(recs))
        unreachable = [v for v in (_value(r, "n_unreachable") for r in recs) if v is not None]
        out["n_unreachable"] = int(max(unreachable)) if unreachable else None
        if not notes.comparable(out["data"]):
            paper_row = None  # Δ to the paper only for runs on ISP-AD (report/notes.py)
            out.pop("n_real_paper", None)
        for col in columns:
            values = [v * col.scale for v in (_value(r, col.source) for r in recs) if v is not None]
            mean = float(np.mean(values)) if values else None
            std = float(np.std(values, ddof=1)) if len(values) > 1 else None
            paper = float(paper_row[col.paper]) if paper_row is not None and col.paper else None
            out[f"{col.name}_mean"], out[f"{col.name}_std"] = mean, std
            out[f"{col.name}_lower"], out[f"{col.name}_upper"] = stats.interval(recs, col.source, col.scale)
            out[f"{col.name}_paper"] = paper
            comparable = notes.MARK_PROCEDURE not in marks
            out[f"{col.name}_delta"] = mean - paper if mean is not None and paper is not None and comparable else None
        rows.append(out)
    df = pd.DataFrame(rows)
    if len(df):
        mod_order = {m.value: i for i, m in enumerate(Modality)}  # the paper's order
        df["_k"] = [
            (t != UNSUPERVISED, mod_order.get(m, 9), method_order(mid), row_order(r))
            for t, m, mid, r in zip(df.table, df.modality, df.method_id, df.row)
        ]
        df["_k"] = [(*k, c) for k, c in zip(df["_k"], df.contamination)]
        df = df.sort_values("_k").drop(columns="_k").reset_index(drop=True)
        df = notes.rank_beyond_paper(df)  # models beyond the paper's: by MCC, after the paper's
        df["best"] = False
        for _, idx in df.groupby(["table", "modality", "profile"], dropna=False).groups.items():
            mcc = df.loc[idx, "mcc_mean"].astype(float)
            if mcc.notna().any():  # ties: every row at the maximum is bold
                df.loc[mcc.index[np.isclose(mcc, mcc.max(), rtol=0, atol=1e-12)], "best"] = True
        df = stats.add_significance(df, lambda row: groups[(row.profile, row.method_id, row.modality,
                                                            row.row if isinstance(row.row, str) else None,
                                                            row.contamination)])
    return df, failed


# ------------------------------------------------------------------------------ formatting
def _num(x: float | None, digits: int, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if digits == 0 and abs(x - round(x)) > 1e-9:
        digits = 1  # a mean of counts over seeds
    return f"{x:+.{digits}f}" if sign else f"{x:.{digits}f}"


def _cell(row: pd.Series, col: Column, pm: str) -> str:
    mean, std = row.get(f"{col.name}_mean"), row.get(f"{col.name}_std")
    text = _num(mean, col.digits)
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" {pm} {_num(std, col.digits if col.digits else 1)}"
    lower, upper = row.get(f"{col.name}_lower"), row.get(f"{col.name}_upper")
    if lower is not None and upper is not None and not (math.isnan(lower) or math.isnan(upper)):
        text += stats.interval_text(lower, upper, col.digits)
    return text + str(row.get(f"{col.name}_mark") or "")


def _table_rows(df: pd.DataFrame, columns, pm: str, delta: str) -> tuple[list[str], list[list[str]], list[bool]]:
    supervised = df.table.iloc[0] == SUPERVISED
    if "data" in df and not any(notes.comparable(k) for k in df["data"]):
        columns = [replace(c, paper=None) for c in columns]  # no Δ columns off ISP-AD
    header = (["Method", "Group", "#Real", "Fraction"] if supervised else ["Method"]) + ["n"]
    for col in columns:
        header.append(col.header)
        if col.paper:
            header.append(f"{delta} {col.header.split(' (')[0]}")
    body, bold = [], []
    for _, row in df.iterrows():
        cells = [row.method]
        if supervised:
            cells += [row.group, _num(row.get("n_real"), 0), row.fraction]
        cells.append(str(row.seeds))
        for col in columns:
            cells.append(_cell(row, col, pm))
            if col.paper:
                cells.append(_num(row.get(f"{col.name}_delta"), col.digits, sign=True))
        body.append(cells)
        bold.append(bool(row.best))
    return header, body, bold


def _tables(df: pd.DataFrame):
    """(title, sub-frame, columns) per table in paper order."""
    if not len(df):  # no successful job: an empty frame has no columns at all
        return
    for table, columns in ((UNSUPERVISED, UNSUP_COLUMNS), (SUPERVISED, SUP_COLUMNS)):
        part = df[df.table == table]
        for modality in dict.fromkeys(part.modality):
            sub = part[part.modality == modality]
            number = TABLE_NUMBERS[table].get(modality)
            ref = f"paper Table {number}" if number else "no table in the paper"
            note = notes.title_note(sub["data"], sub["data_root"]) if "data" in sub else ""
            yield f"{modality}: {table} ({ref}){note}", sub, columns


def to_markdown(df: pd.DataFrame, failed: list[dict], replaced: list[str] | None = None) -> str:
    lines = [
        "# ISP-AD benchmark results",
        "",
        "Mean ± sample std over seeds (n); Δ = ours − paper (percentage points for %); "
        "best row per table by MCC in **bold**. Image threshold: F1-optimal on the test set (§4.3.6).",
        "",
        stats.LEGEND,
        "",
    ]
    for title, sub, columns in _tables(df):
        header, body, bold = _table_rows(sub, columns, "±", "Δ")
        lines += [f"## {title}", ""]
        if "data" in sub and not any(notes.comparable(k) for k in sub["data"]):
            lines += [notes.no_delta_reason(sub["data"]), ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        sep = notes.separator_at(list(sub.method_id), sub.table.iloc[0])
        for i, (cells, b) in enumerate(zip(body, bold)):
            if i == sep:
                lines.append("| " + " | ".join([notes.BEYOND_LABEL] + [""] * (len(header) - 1)) + " |")
            cells = [f"**{c}**" if b and c not in ("", "–") else c for c in cells]
            lines.append("| " + " | ".join(cells) + " |")
        lines += ["", *notes.table_notes(sub), ""]
    if failed:
        lines += ["## Failed jobs", "", "| Method | Modality | Row | Seed | Error | Folder |", "|---|---|---|---|---|---|"]
        for r in failed:
            err = r.get("error") or {}
            msg = f"{err.get('kind')}: {str(err.get('message', '')).splitlines()[0][:120] if err.get('message') else ''}"
            lines.append(
                f"| {r.get('method')} | {r.get('modality')} | {r.get('row') or ''} | {r.get('seed')} | "
                f"{msg.replace('|', '/')} | {r.get('_dir')} |"
            )
        lines.append("")
    if replaced:
        lines += ["## Runs on another data root", "", *(f"- {line}" for line in replaced), ""]
    if not len(df) and not failed:
        lines.append("No records found.")
    return "\n".join(lines)


def _tex_escape(text: str) -> str:
    for a, b in (("\\", r"\textbackslash{}"), ("%", r"\%"), ("&", r"\&"), ("_", r"\_"), ("#", r"\#")):
        text = text.replace(a, b)
    return text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("–", "--").replace("†", r"$^\dagger$").replace("°", r"$^\circ$")


def to_latex(df: pd.DataFrame) -> str:
    out = ["% ISP-AD benchmark tables (ispad-bench report); needs \\usepackage{booktabs,graphicx}", ""]
    for title, sub, columns in _tables(df):
        header, body, bold = _table_rows(sub, columns, "±", "Δ")
        out += [
            r"\begin{table}[t]",
            r"\centering",
            rf"\caption{{{_tex_escape(title)}. Mean $\pm$ std over seeds [95\% bootstrap interval]; $\Delta$ = ours "
            r"$-$ paper; $^\dagger$: not significantly different from the best row.}",
            r"\resizebox{\linewidth}{!}{%",
            r"\begin{tabular}{l" + "r" * (len(header) - 1) + "}",
            r"\toprule",
            " & ".join(_tex_escape(h) for h in header) + r" \\",
            r"\midrule",
        ]
        sep = notes.separator_at(list(sub.method_id), sub.table.iloc[0])
        for i, (cells, b) in enumerate(zip(body, bold)):
            if i == sep:
                out.append(r"\midrule")
            cells = [_tex_escape(c) for c in cells]
            if b:
                cells = [rf"\textbf{{{c}}}" for c in cells]
            out.append(" & ".join(cells) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}}", r"\end{table}", ""]
    return "\n".join(out)


def paper_markdown() -> str:
    """The paper's Tables 2-6 in its layout, from ``ispad_bench/reference/paper_*.csv``
    (``results/paper/tables.md``; best row per table by image-level MCC in bold, as printed)."""
    lines = [
        "# ISP-AD paper: published results (Tables 2-6)",
        "",
        "Krassnig & Gruber, arXiv 2503.04997, §5.2-5.3. Rendered by `ispad-bench report --paper` from the data in "
        "`src/ispad_bench/reference/paper_*.csv` (the numbers `ispad-bench report` computes Δ against). "
        "Best row per table by image-level MCC in **bold**. Threshold: F1-optimal at image level (§4.3.6).",
        "",
    ]

    def table(title: str, header: list[str], body: list[list[str]], mcc: list[float]) -> None:
        best = max(mcc)
        lines.extend([f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        for cells, m in zip(body, mcc):
            lines.append("| " + " | ".join(f"**{c}**" if m == best else c for c in cells) + " |")
        lines.append("")

    pu = paper_unsupervised()
    cols = [c for c in UNSUP_COLUMNS if c.paper]
    for modality, number in TABLE_NUMBERS[UNSUPERVISED].items():
        sub = pu[pu.modality == modality]
        body = [[r.method] + [_num(float(r[c.paper]), c.digits) for c in cols] for _, r in sub.iterrows()]
        table(f"Table {number}: {modality}, unsupervised methods", ["Method"] + [c.header for c in cols], body,
              list(sub.mcc))
    ps = paper_supervised()
    cols = [c for c in SUP_COLUMNS if c.paper]
    for modality, number in TABLE_NUMBERS[SUPERVISED].items():
        sub = ps[ps.modality == modality]
        body = [["-" if r.defect_group == "none" else r.defect_group, str(r.n_real_defects), str(r.fraction)]
                + [_num(float(r[c.paper]), c.digits) for c in cols] for _, r in sub.iterrows()]
        table(f"Table {number}: {modality}, mixed-supervised ResNet18", ["Group", "#Real", "Fraction"]
              + [c.header for c in cols], body, list(sub.mcc))
    return "\n".join(lines)


def rendered(df: pd.DataFrame) -> list[tuple[str, list[str], list[list[str]], list[bool], list[bool]]]:
    """Every table as ``(title, header, body, bold, extra)`` for report.html: the paper's columns first (with
    their Δ), then the others, flagged ``extra`` (the page folds them behind a toggle)."""
    out = []
    for title, sub, columns in _tables(df):
        header, body, bold = _table_rows(sub, columns, "±", "Δ")
        deltas = not ("data" in sub and not any(notes.comparable(k) for k in sub["data"]))
        paper = [True] * (len(header) - sum(1 + bool(c.paper and deltas) for c in columns))  # Method, n, ...
        for col in columns:
            paper += [bool(col.paper)] + ([True] if col.paper and deltas else [])
        order = [i for i, p in enumerate(paper) if p] + [i for i, p in enumerate(paper) if not p]
        out.append((title, [header[i] for i in order], [[cells[i] for i in order] for cells in body], bold,
                    [not paper[i] for i in order]))
    return out
