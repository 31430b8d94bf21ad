"""Figure of the noisy-training-data study (paper §6.1): metric vs training contamination, per method.

One panel per modality and metric (image AUROC, MCC, pixel AUROC); a line per method through
its contamination levels, with the bootstrap interval of each point as an error bar (the
seed-pooled interval for several seeds). Drawn from the report's summary frame only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

METRICS = (("image_auroc", "image AUROC (%)"), ("mcc", "MCC"), ("pixel_auroc", "pixel AUROC (%)"))


def contamination_figure(df: pd.DataFrame, path: Path) -> Path | None:
    """Write the figure when some method ran at two or more contamination levels; else ``None``."""
    if not len(df) or "contamination" not in df:
        return None
    unsup = df[(df.table == "unsupervised")]
    swept = unsup.groupby(["modality", "method_id", "profile"], dropna=False).contamination.nunique()
    swept = swept[swept >= 2]
    if swept.empty:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ispad_bench.sweep.figures import _save
    from ispad_bench.sweep.runs import PAPER_NAMES

    modalities = list(dict.fromkeys(m for m, _, _ in swept.index))
    metrics = [(m, label) for m, label in METRICS if f"{m}_mean" in unsup and unsup[f"{m}_mean"].notna().any()]
    fig, axes = plt.subplots(len(modalities), len(metrics), figsize=(4.2 * len(metrics), 3.4 * len(modalities)),
                             squeeze=False)
    for i, modality in enumerate(modalities):
        for j, (metric, label) in enumerate(metrics):
            ax = axes[i, j]
            for k, (mod, method, profile) in enumerate(swept.index):
                if mod != modality:
                    continue
                part = unsup[(unsup.modality == mod) & (unsup.method_id == method)
                             & ((unsup.profile == profile) | (unsup.profile.isna() & pd.isna(profile)))]
                part = part.sort_values("contamination")
                x = 100 * part.contamination.astype(float).to_numpy()
                y = part[f"{metric}_mean"].astype(float).to_numpy()
                lo = part.get(f"{metric}_lower", pd.Series(np.nan, index=part.index)).astype(float).to_numpy()
                hi = part.get(f"{metric}_upper", pd.Series(np.nan, index=part.index)).astype(float).to_numpy()
                err = np.vstack([np.where(np.isnan(lo), 0, y - lo), np.where(np.isnan(hi), 0, hi - y)])
                ax.errorbar(x, y, yerr=np.clip(err, 0, None), marker="o", capsize=3, lw=1.2,
                            color=plt.get_cmap("tab10")(k % 10), label=PAPER_NAMES.get(method, method))
            ax.set(xlabel="defective training images (%)", ylabel=label, title=f"{modality}: {label}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Noisy training data (§6.1): metric vs contamination, 95 % bootstrap intervals", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path
