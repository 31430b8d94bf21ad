"""What data a table's runs used, for the report: the Δ-to-paper columns only for ISP-AD runs.

Each record's ``data`` entry comes from :func:`ispad_bench.data.fingerprint.describe`. A table row
compares with the paper only when its runs ran on ISP-AD (counts equal Table 7); generated data is
named as such in the title, and a user's own data by its folder, with the reason the Δ is absent.
Records written before the ``data`` entry existed are ``unknown`` and keep the comparison.
"""

from __future__ import annotations

from pathlib import Path

LABELS = {
    "ispad": "ISP-AD",
    "generated": "generated data (ispad-bench data synth), not ISP-AD",
    "other": "not ISP-AD",
    "unknown": "data not recorded",
}


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
    parts = [LABELS[k] for k in ("generated", "other") if k in kinds]
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
