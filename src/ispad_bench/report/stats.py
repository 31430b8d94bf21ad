"""How sure the report's numbers are: bootstrap intervals, seed pooling and paired significance marks.

Every job (``sweep/job.py``) saves its bootstrap replicates (``bootstrap.npz``: one value per resample and metric;
the resamples are drawn with a fixed seed over the same test images, so the replicates of two
jobs on one modality are *paired*) and their percentile intervals (``record["uncertainty"]``).
From those alone, without the maps:

* a single-seed row shows its own interval; a multi-seed row the interval of the seed-pooled
  estimate (the mean over seeds, resample by resample);
* per table, rows whose MCC / image AUROC is not significantly different from the best row's
  (paired bootstrap of the difference; for AUROC DeLong's test on a common seed; p >= 0.05) get
  ``†``; supervised rows whose MCC differs from the cold start (``none``) at p < 0.05 get ``*``.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from ispad_bench.metrics import delong, paired_difference, percentile_interval
from ispad_bench.report.load import predictions, replicates

ALPHA = 0.05
NOT_BEST = "†"  # not significantly different from the best row of its table
VS_COLD = "*"  # supervised row significantly different from the cold start


def _meta(record: dict) -> dict:
    return record.get("uncertainty") or {}


def pooled(recs: list[dict], source: str) -> np.ndarray | None:
    """Per-resample mean over the seeds' replicates (all drawn on the same resamples), or None."""
    if not recs or len({_meta(r).get("fingerprint") for r in recs}) != 1 or not _meta(recs[0]):
        return None
    arrays = [(replicates(r) or {}).get(source) for r in recs]
    if any(a is None for a in arrays) or len({a.shape for a in arrays}) != 1:
        return None
    return np.mean(arrays, axis=0)


def interval(recs: list[dict], source: str, scale: float = 1.0) -> tuple[float | None, float | None]:
    """Interval of a row's value: the job's own (one seed) or of the seed-pooled mean."""
    if source.startswith("timing.") or not recs:
        return None, None
    if len(recs) == 1:
        bounds = (_meta(recs[0]).get("intervals") or {}).get(source)
        if not bounds or any(b is None for b in bounds):
            return None, None
        return bounds[0] * scale, bounds[1] * scale
    values = pooled(recs, source)
    if values is None:
        return None, None
    lo, hi = percentile_interval(values * scale, _meta(recs[0]).get("level", 0.95))
    return (None, None) if math.isnan(lo) else (lo, hi)


def with_crossfit(columns: tuple, after: tuple[str, ...] = ("mcc", "recall", "fpr")) -> tuple:
    """The columns with a cross-fit twin (``<name>_cf``, source ``<source>_crossfit``) after each
    thresholded one, so oracle and cross-fit values stand side by side."""
    out = []
    for col in columns:
        out.append(col)
        if col.name in after:
            header = col.header.replace(" (", " cf (") if " (" in col.header else f"{col.header} cf"
            out.append(replace(col, name=f"{col.name}_cf", header=header, source=f"{col.source}_crossfit", paper=None))
    return tuple(out)


def interval_text(lo, hi, digits: int) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    return f" [{lo:.{digits}f}, {hi:.{digits}f}]"


def _p_paired(a: list[dict], b: list[dict], source: str) -> float | None:
    ra, rb = pooled(a, source), pooled(b, source)
    if ra is None or rb is None or _meta(a[0]).get("fingerprint") != _meta(b[0]).get("fingerprint"):
        return None
    p = paired_difference(ra, rb)["p"]
    return None if math.isnan(p) else p


def _scores(record: dict) -> dict[str, tuple[float, int]] | None:
    p = predictions(record)
    if p is None or "paths" not in p:
        return None
    return {str(k): (float(s), int(y)) for k, s, y in zip(p["paths"], p["scores"], p["labels"])}


def _p_delong(a: list[dict], b: list[dict]) -> float | None:
    """DeLong p on the lowest seed both rows ran, over the images both scored."""
    common = sorted({r["seed"] for r in a} & {r["seed"] for r in b})
    if not common:
        return None
    ra = next(r for r in a if r["seed"] == common[0])
    rb = next(r for r in b if r["seed"] == common[0])
    sa, sb = _scores(ra), _scores(rb)
    if not sa or not sb or set(sa) != set(sb):
        return None
    keys = sorted(sa)
    try:
        return delong([sa[k][0] for k in keys], [sb[k][0] for k in keys], [sa[k][1] for k in keys])["p"]
    except ValueError:
        return None


def add_significance(df: pd.DataFrame, recs_of) -> pd.DataFrame:
    """Add ``<metric>_p_best`` / ``image_auroc_p_delong`` / ``mcc_p_none`` and ``<metric>_mark``.

    ``recs_of(row)`` returns the records of a summary row.
    """
    if not len(df):
        return df
    for col in ("mcc_mark", "image_auroc_mark"):
        df[col] = ""
    for _, idx in df.groupby(["table", "modality", "profile"], dropna=False).groups.items():
        part = df.loc[idx]
        for metric, source in (("mcc", "MCC"), ("image_auroc", "image_AUROC")):
            means = part.get(f"{metric}_mean")
            if means is None or not means.astype(float).notna().any():
                continue
            best = means.astype(float).idxmax()
            for i in idx:
                if i == best:
                    continue
                p = _p_paired(recs_of(df.loc[i]), recs_of(df.loc[best]), source)
                df.loc[i, f"{metric}_p_best"] = p
                if metric == "image_auroc":
                    pd_ = _p_delong(recs_of(df.loc[i]), recs_of(df.loc[best]))
                    df.loc[i, "image_auroc_p_delong"] = pd_
                    p = pd_ if pd_ is not None else p
                if p is not None and p >= ALPHA:
                    df.loc[i, f"{metric}_mark"] += NOT_BEST
        if part.table.iloc[0] == "supervised":
            cold = [i for i in idx if df.loc[i, "row"] == "none"]
            for i in idx:
                if cold and i != cold[0]:
                    p = _p_paired(recs_of(df.loc[i]), recs_of(df.loc[cold[0]]), "MCC")
                    df.loc[i, "mcc_p_none"] = p
                    if p is not None and p < ALPHA:
                        df.loc[i, "mcc_mark"] += VS_COLD
    return df


LEGEND = (
    "Each value: mean over seeds (± sample std when n > 1) and, in brackets, the 95 % bootstrap interval "
    "(test images resampled by label and defect group; for several seeds, the interval of the seed-pooled mean). "
    f"Best row by MCC in **bold**; {NOT_BEST} = not significantly different from the best row of its table "
    "(paired bootstrap of the MCC difference; for image AUROC DeLong's test; p ≥ 0.05); "
    f"{VS_COLD} = supervised row whose MCC differs from the cold start (none) at p < 0.05. "
    "'cf' columns: cross-fitted threshold (F1-optimal on one half of the test set, applied to the other); "
    "the gap to the oracle columns is the optimism of choosing the threshold on the test set."
)
