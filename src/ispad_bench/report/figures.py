"""Figures of a sweep from the stored predictions (no rerun): map overlay grids and ROC curves.

* ``overlay_<modality>.png`` — like the paper's Fig. 4, per modality: the first row shows the
  test images with their ground-truth outline, then one row per method with its anomaly map
  over the image and the outline of ``map >= image threshold`` (the pixels PRO counts, §5.1).
* ``reconstructions_<method>_<modality>.png`` — Fig. 6-style input / reconstruction / map triplets
  (one row per stored test image of the first seed) of runs that store reconstructions (DDAD).
* ``roc_<modality>.png`` — image-level ROC curves, one line per method (unsupervised panel) and
  per supervised row (supervised panel); every seed is drawn, the legend gives mean AUROC.
* ``contamination.png`` — the noisy-training-data study (§6.1): metric vs training contamination,
  per modality and method, with the bootstrap interval of each point (from the summary frame).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (CI, servers)
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ispad_bench.data.modality import Modality
from ispad_bench.files import save_figure
from ispad_bench.paper import display_name, method_order
from ispad_bench.report.load import contamination_of, load_records, predictions
from ispad_bench.sweep.profile import row_order

MAX_COLUMNS = 6
MAX_RECONSTRUCTION_ROWS = 6
CONTAMINATION_METRICS = (("image_auroc", "image AUROC (%)"), ("mcc", "MCC"), ("pixel_auroc", "pixel AUROC (%)"))


def _label(record: dict) -> str:
    name = display_name(record["method"])
    name += f" (contamination {contamination_of(record):g})" if contamination_of(record) else ""
    return f"{name} {record['row']}" if record.get("row") else name


def roc_points(scores: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact ROC (FPR, TPR), one point per distinct score, from (0,0) to (1,1)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(bool)
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp, fp = np.cumsum(y)[last], np.cumsum(~y)[last]
    n_pos, n_neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    return np.r_[0.0, fp / n_neg], np.r_[0.0, tp / n_pos]


def _first_seed(recs: list[dict]) -> dict:
    return min(recs, key=lambda r: r["seed"])


def overlay_grid(recs_by_method: dict[str, dict], modality: str, path: Path) -> Path | None:
    """One modality's grid; ``recs_by_method``: label -> record (one seed each)."""
    preds = {label: p for label, r in recs_by_method.items() if (p := predictions(r)) is not None}
    preds = {k: v for k, v in preds.items() if len(v.get("map_paths", []))}
    if not preds:
        return None
    common = set.intersection(*(set(map(str, p["map_paths"])) for p in preds.values()))
    group = _groups(preds.values())
    columns = overlay_columns(common or set(map(str, next(iter(preds.values()))["map_paths"])), group, MAX_COLUMNS)
    fig, axes = plt.subplots(len(preds) + 1, len(columns), figsize=(2.2 * len(columns), 2.2 * (len(preds) + 1)),
                             squeeze=False)
    first = next(iter(preds.values()))
    for j, image_path in enumerate(columns):
        ax = axes[0, j]
        idx = list(map(str, first["map_paths"])).index(image_path) if image_path in map(str, first["map_paths"]) else None
        if idx is not None:
            _show(ax, first[f"image_{idx}"])
            if f"mask_{idx}" in first and first[f"mask_{idx}"].any():
                ax.contour(first[f"mask_{idx}"], levels=[0.5], colors="lime", linewidths=0.8)
        folder = Path(image_path).parent.name
        where = folder if group.get(image_path, folder) == folder else f"{group[image_path]}: {folder}"
        ax.set_title(f"{where}/{Path(image_path).stem}", fontsize=7)
    axes[0, 0].set_ylabel("image + GT", fontsize=8)
    for i, (label, p) in enumerate(preds.items(), start=1):
        names = list(map(str, p["map_paths"]))
        maps = [p[f"map_{names.index(c)}"].astype(np.float32) for c in columns if c in names]
        lo = min(float(m.min()) for m in maps) if maps else 0.0
        hi = max(float(m.max()) for m in maps) if maps else 1.0
        threshold = (recs_by_method[label].get("metrics") or {}).get("threshold")
        for j, c in enumerate(columns):
            ax = axes[i, j]
            if c not in names:
                ax.set_axis_off()
                continue
            k = names.index(c)
            amap = p[f"map_{k}"].astype(np.float32)
            h, w = p[f"image_{k}"].shape[:2]
            _show(ax, p[f"image_{k}"])
            ax.imshow(amap, cmap="jet", alpha=0.45, vmin=lo, vmax=max(hi, lo + 1e-12), extent=(0, w, h, 0))
            if threshold is not None and amap.min() < threshold <= amap.max():
                xs, ys = np.linspace(0, w, amap.shape[1]), np.linspace(0, h, amap.shape[0])
                ax.contour(xs, ys, amap, levels=[threshold], colors="white", linewidths=0.7)
        axes[i, 0].set_ylabel(label, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{modality}: anomaly maps (white: map ≥ image threshold; green: ground truth)", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def _groups(preds) -> dict[str, str]:
    """Image path -> defect group as the job's datamodule assigned it (``predictions.npz``)."""
    out: dict[str, str] = {}
    for p in preds:
        if "groups" in p and len(p["groups"]) == len(p["paths"]):
            out.update(zip(map(str, p["paths"]), map(str, p["groups"])))
    return out


def overlay_columns(paths, group: dict[str, str], cap: int) -> list[str]:
    """Up to ``cap`` images: round-robin over the groups (fault-free ``good`` first, so at least one
    is shown), and within a group round-robin over its test folders."""
    by_group: dict[str, dict[str, list[str]]] = {}
    for path in sorted(paths):
        folder = Path(path).parent.name
        by_group.setdefault(group.get(path, folder), {}).setdefault(folder, []).append(path)
    queues = {}
    for g in sorted(by_group, key=lambda g: (g != "good", g)):
        folders, order = [list(v) for _, v in sorted(by_group[g].items())], []
        while any(folders):
            order += [f.pop(0) for f in folders if f]
        queues[g] = order
    columns: list[str] = []
    while len(columns) < cap and any(queues.values()):
        columns += [q.pop(0) for q in queues.values() if q][: cap - len(columns)]
    return columns


def _show(ax, image: np.ndarray) -> None:
    h, w = image.shape[:2]
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, extent=(0, w, h, 0))


def roc_figure(panels: dict[str, dict[str, list[dict]]], modality: str, path: Path) -> Path | None:
    """``panels``: title -> {label: records (seeds)}."""
    panels = {t: c for t, c in panels.items() if c}
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items()):
        for i, (label, recs) in enumerate(curves.items()):
            color = plt.get_cmap("tab10")(i % 10)
            aurocs = []
            for r in sorted(recs, key=lambda r: r["seed"]):
                p = predictions(r)
                if p is None or not len(p["scores"]) or len(set(p["labels"].tolist())) < 2:
                    continue
                fpr, tpr = roc_points(p["scores"].astype(np.float64), p["labels"])
                aurocs.append(float(np.trapezoid(tpr, fpr)) if hasattr(np, "trapezoid") else float(np.trapz(tpr, fpr)))
                ax.plot(fpr, tpr, color=color, lw=1.2, alpha=0.9 if len(recs) == 1 else 0.6,
                        label=f"{label} (AUROC {np.mean(aurocs):.3f})" if len(aurocs) == 1 else None)
            if len(aurocs) > 1:  # relabel with the mean over seeds
                ax.lines[-len(aurocs)].set_label(f"{label} (AUROC {np.mean(aurocs):.3f}, {len(aurocs)} seeds)")
        ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
        ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"{modality}: {title}",
               xlim=(0, 1), ylim=(0, 1.01))
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save_figure(fig, path)


def reconstruction_grid(label: str, preds: dict, path: Path) -> Path | None:
    """Triplet grid of one run's stored images; ``None`` when the run stored no reconstruction."""
    names = [str(p) for p in preds.get("map_paths", [])]
    rows = [i for i in range(len(names)) if f"reconstruction_{i}" in preds][:MAX_RECONSTRUCTION_ROWS]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.2 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        for c, image in ((0, preds[f"image_{i}"]), (1, preds[f"reconstruction_{i}"])):  # pixel centres at 0, 1, ...
            axes[r, c].imshow(image, cmap="gray" if image.ndim == 2 else None)
        mask = preds.get(f"mask_{i}")
        if mask is not None and mask.any():
            axes[r, 0].contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
        axes[r, 2].imshow(preds[f"map_{i}"].astype(np.float32), cmap="jet")
        axes[r, 0].set_ylabel(f"{Path(names[i]).parent.name}/{Path(names[i]).stem}", fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    for c, title in enumerate(("input + GT", "reconstruction", "anomaly map")):
        axes[0, c].set_title(title, fontsize=8)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def contamination_figure(df: pd.DataFrame, path: Path) -> Path | None:
    """Write the figure when some method ran at two or more contamination levels; else ``None``."""
    if not len(df) or "contamination" not in df:
        return None
    unsup = df[(df.table == "unsupervised")]
    swept = unsup.groupby(["modality", "method_id", "profile"], dropna=False).contamination.nunique()
    swept = swept[swept >= 2]
    if swept.empty:
        return None
    modalities = list(dict.fromkeys(m for m, _, _ in swept.index))
    metrics = [(m, label) for m, label in CONTAMINATION_METRICS
               if f"{m}_mean" in unsup and unsup[f"{m}_mean"].notna().any()]
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
                            color=plt.get_cmap("tab10")(k % 10), label=display_name(method))
            ax.set(xlabel="defective training images (%)", ylabel=label, title=f"{modality}: {label}")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle("Noisy training data (§6.1): metric vs contamination, 95 % bootstrap intervals", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def write_figures(runs_dir: Path, out_dir: Path) -> dict[str, Path]:
    ok, _ = load_records(runs_dir)
    written: dict[str, Path] = {}
    for modality in dict.fromkeys(Modality.parse(r["modality"]).value for r in ok):
        recs = [r for r in ok if r["modality"] == modality]
        by_label: dict[str, list[dict]] = {}
        for r in sorted(recs, key=lambda r: (method_order(r["method"]), row_order(r.get("row")))):
            by_label.setdefault(_label(r), []).append(r)
        slug = Modality.parse(modality).slug
        unsup = {k: v for k, v in by_label.items() if not v[0].get("row")}
        sup = {k: v for k, v in by_label.items() if v[0].get("row")}
        overlay = overlay_grid({k: _first_seed(v) for k, v in by_label.items()}, modality, out_dir / f"overlay_{slug}.png")
        if overlay:
            written[f"overlay_{slug}"] = overlay
        roc = roc_figure({"unsupervised": unsup, "supervised": sup}, modality, out_dir / f"roc_{slug}.png")
        if roc:
            written[f"roc_{slug}"] = roc
        for label, runs in unsup.items():  # Fig. 6-style triplets of runs that store reconstructions (DDAD)
            recon = predictions(_first_seed(runs))
            name = f"reconstructions_{runs[0]['method']}_{slug}"
            if recon is not None and (path := reconstruction_grid(f"{label}, {modality}", recon, out_dir / f"{name}.png")):
                written[name] = path
    return written
