"""Forest plots: every row of a modality's tables, MCC and image AUROC with their 95 % intervals, at a glance.

One figure per modality (``figures/forest_<modality>.png``): rows sorted by the metric, the best row of each
table (unsupervised methods, supervised rows) red, rows not significantly different from it (``†``, paired
bootstrap / DeLong, report/stats.py) orange, the others blue; a black ``×`` marks the paper's value where
the data is ISP-AD's (``*_paper``).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ispad_bench.files import save_figure
from ispad_bench.report.stats import NOT_BEST

METRICS = (("mcc", "MCC"), ("image_auroc", "image AUROC (%)"))
COLOURS = {"best": "tab:red", "tie": "tab:orange", "other": "tab:blue"}


def _label(row: pd.Series) -> str:
    label = str(row["method"])
    return f"{label} {row['row']}" if isinstance(row.get("row"), str) and row.get("row") else label


def forest_figure(df: pd.DataFrame, modality: str, path: Path) -> Path | None:
    """The forest plot of ``modality`` (``None`` when no row has an MCC or image AUROC)."""
    part = df[df.modality == modality]
    panels = [(m, t) for m, t in METRICS if f"{m}_mean" in part and part[f"{m}_mean"].notna().any()]
    if part.empty or not panels:
        return None
    height = 0.9 + 0.28 * len(part)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), height), squeeze=False)
    for ax, (metric, title) in zip(axes[0], panels):
        rows = part[part[f"{metric}_mean"].notna()].sort_values(f"{metric}_mean")
        means = rows[f"{metric}_mean"].astype(float).to_numpy()
        lower = rows.get(f"{metric}_lower", pd.Series(np.nan, index=rows.index)).astype(float).to_numpy()
        upper = rows.get(f"{metric}_upper", pd.Series(np.nan, index=rows.index)).astype(float).to_numpy()
        marks = rows.get(f"{metric}_mark", pd.Series("", index=rows.index)).fillna("").astype(str).to_numpy()
        paper = rows.get(f"{metric}_paper", pd.Series(np.nan, index=rows.index)).astype(float).to_numpy()
        y = np.arange(len(rows))
        tables = rows["table"].to_numpy()
        best = {t: means[tables == t].max() for t in set(tables)}  # significance is tested within a table
        for k in range(len(rows)):
            kind = "best" if means[k] == best[tables[k]] else ("tie" if NOT_BEST in marks[k] else "other")
            lo, hi = lower[k], upper[k]
            err = None if np.isnan(lo) or np.isnan(hi) else [[max(0.0, means[k] - lo)], [max(0.0, hi - means[k])]]
            ax.errorbar(means[k], y[k], xerr=err, fmt="o", color=COLOURS[kind], capsize=3, lw=1.4)
            if not np.isnan(paper[k]):
                ax.plot(paper[k], y[k], "x", color="black", ms=7)
        ax.set_yticks(y, [_label(r) for _, r in rows.iterrows()], fontsize=7)
        ax.set_title(f"{modality}: {title}", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("95 % bootstrap intervals; red = best of its table (unsupervised / supervised rows), orange = not "
                 "significantly different from it (p ≥ 0.05), × = paper", fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path)


def forest_figures(df: pd.DataFrame, out_dir: Path) -> dict[str, Path]:
    """``forest_<modality>`` -> path, for every modality of the summary."""
    from ispad_bench.data.modality import Modality

    written = {}
    for modality in dict.fromkeys(df.modality) if len(df) else ():
        slug = Modality.parse(modality).slug
        if (path := forest_figure(df, modality, Path(out_dir) / f"forest_{slug}.png")) is not None:
            written[f"forest_{slug}"] = path
    return written
