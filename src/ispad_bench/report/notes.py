"""What the report says about each row beside its numbers: procedure marks, data provenance, order.

* Procedure (``record["procedure"]``, written by ``sweep/procedure.py``): ``‡`` when a run's
  procedure is not the paper's (no Δ), ``°`` for GLASS on generated textures, and one line per
  row naming profile, reading, selection rule and tested weights.
* Data (``record["data"]``, from ``data/fingerprint.py``): a row compares with the paper only when
  its runs used ISP-AD (counts equal Table 7); generated data is named in the table title, a user's
  own data by its folder, with the reason the Δ is absent. Records without a ``data`` entry
  (older sweeps) are ``unknown`` and keep the comparison.
* Order: models beyond the paper's come after the paper's methods in each unsupervised table,
  under a separator, ranked by MCC.
"""

from __future__ import annotations

from pathlib import Path

from ispad_bench.paper import PAPER_METHODS, UNSUPERVISED

MARK_PROCEDURE = "‡"  # row's procedure differs from the paper's runs: no Δ
MARK_TEXTURES = "°"  # GLASS row trained on generated textures instead of DTD
FOOTNOTE = (f"{MARK_PROCEDURE} procedure differs from the paper's runs (no Δ); "
            f"{MARK_TEXTURES} GLASS trained on generated textures, not DTD.")
BEYOND_LABEL = "*beyond the paper (by MCC)*"
DATA_LABELS = {
    "ispad": "ISP-AD",
    "generated": "generated data (ispad-bench data synth), not ISP-AD",
    "other": "not ISP-AD",
    "unknown": "data not recorded",
}


# ------------------------------------------------------------------------------ procedure
def row_marks(records: list[dict]) -> str:
    """``‡`` when any of a row's runs does not match the paper's runs, ``°`` for generated textures.

    Records written before procedures were recorded (no ``procedure`` entry) are not marked.
    """
    marks = ""
    procs = [r["procedure"] for r in records if isinstance(r.get("procedure"), dict)]
    if any(not p.get("matches_paper_runs", False) or procedure_mismatches(p) for p in procs):
        marks += MARK_PROCEDURE
    if any(p.get("texture_source") == "generated" for p in procs):
        marks += MARK_TEXTURES
    return marks


def procedure_mismatches(proc: dict) -> list[str]:
    """Why a run did not do what its reading requires: the record's measured ``mismatches``, or, for records
    written before they were measured (issue 20), a GLASS official selection that logged no evaluation."""
    if "mismatches" in proc:
        return list(proc["mismatches"] or [])
    if proc.get("selection") == "official" and proc.get("evaluations") == 0:
        return ["0 evaluations: model selection did not run (record written before issue 20; rerun the job)"]
    return []


def row_procedure(records: list[dict]) -> str:
    """One line per table row: profile, reading, selection and tested weights (distinct values joined)."""
    parts: dict[str, None] = {}
    for r in records:
        p = r.get("procedure") or {}
        text = f"{p.get('name')}/{p.get('reading')}"
        if p.get("selection"):
            text += f", selection {p['selection']}"
        if p.get("tested"):
            text += f", tested {p['tested']}"
        if p.get("real_ids"):
            text += f", real ids {p['real_ids']}"
        if p.get("texture_source"):
            text += f", textures {p['texture_source']}"
        if mismatches := procedure_mismatches(p):  # measured: the run did not do what its reading requires
            text += ", NOT as the reading requires: " + "; ".join(mismatches)
        parts[text] = None
    return "; ".join(parts) if parts else "unknown (record without procedure)"


def table_notes(frame) -> list[str]:
    """Lines printed under a report table: the procedure of each row, then the marks' meaning."""
    if "procedure" not in getattr(frame, "columns", ()):
        return []
    lines = [f"- {row.method}{f' {row.row}' if isinstance(row.get('row'), str) else ''}: procedure {row.procedure}"
             for _, row in frame.iterrows()]
    if any(MARK_PROCEDURE in str(m) or MARK_TEXTURES in str(m) for m in frame.method):
        lines.append(f"- {FOOTNOTE}")
    if "n_unreachable" in frame.columns:
        for _, row in frame.iterrows():
            n = row.get("n_unreachable")
            if isinstance(n, int | float) and n == n and n > 0:
                lines.append(f"- {row.method}: {int(n)} test defect image(s) keep no defect pixel after its crop/resize "
                             "(unreachable at pixel level: no PRO region; they still count at image level)")
    return ["Procedure:", "", *lines]


# ------------------------------------------------------------------------------ data provenance
def data_kind(recs: list[dict]) -> str:
    """``ispad`` / ``generated`` / ``other`` for a group of records (the least comparable wins), or ``unknown``."""
    kinds = {(r.get("data") or {}).get("kind") for r in recs}
    for kind in ("other", "generated", "ispad"):
        if kind in kinds:
            return kind
    return "unknown"


def data_roots(recs: list[dict]) -> list[str]:
    return sorted({str((r.get("data") or {}).get("root")) for r in recs if (r.get("data") or {}).get("root")})


def comparable(kind: str) -> bool:
    """Whether a Δ to the paper means anything for runs on data of ``kind``."""
    return kind in ("ispad", "unknown")


def title_note(kinds, roots) -> str:
    """Suffix of a table title naming its data when that is not (or not known to be) ISP-AD."""
    kinds = set(kinds)
    if kinds <= {"ispad", "unknown"}:
        return ""
    parts = [DATA_LABELS[k] for k in ("generated", "other") if k in kinds]
    names = {Path(r).name for joined in roots if isinstance(joined, str) for r in joined.split(";") if r}
    where = ", ".join(sorted(names))
    return f" — {'; '.join(parts)}" + (f" ({where})" if where and "other" in kinds else "")


def no_delta_reason(kinds) -> str:
    """One sentence on why a table has no Δ-to-paper columns."""
    kinds = set(kinds)
    if "generated" in kinds and "other" not in kinds:
        return "No Δ to the paper: these runs used generated data, whose numbers are not comparable with ISP-AD's."
    return ("No Δ to the paper: these runs used data whose counts differ from ISP-AD's Table 7 "
            "(`ispad-bench data check` shows the counts); the paper's numbers are for ISP-AD only.")


# ------------------------------------------------------------------------------ methods beyond the paper
def rank_beyond_paper(df):
    """Report frame with each unsupervised table's non-paper methods ranked by mean MCC (best first),
    after the paper's methods (which keep the paper's order)."""
    if not len(df) or "mcc_mean" not in df:
        return df
    beyond = (df.table == UNSUPERVISED) & ~df.method_id.isin(PAPER_METHODS)
    mcc = df["mcc_mean"].astype(float).fillna(float("-inf")).to_numpy()
    order = list(range(len(df)))
    for modality in dict.fromkeys(df.modality[beyond]):
        slots = [i for i in range(len(df)) if beyond.iloc[i] and df.modality.iloc[i] == modality]
        for slot, pos in zip(slots, sorted(slots, key=lambda p: -mcc[p])):
            order[slot] = pos
    return df.iloc[order].reset_index(drop=True)


def separator_at(method_ids: list[str], table: str) -> int | None:
    """Index of the first non-paper row of an unsupervised table that also holds paper methods, else None."""
    if table != UNSUPERVISED:
        return None
    for i, method in enumerate(method_ids):
        if method not in PAPER_METHODS:
            return i if i > 0 else None
    return None
