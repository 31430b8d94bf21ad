"""Figures of a sweep from the stored predictions (no rerun): map overlay grids and ROC curves.

* ``overlay_<modality>.png`` — like the paper's Fig. 4, per modality: the first row shows the
  test images with their ground-truth outline, then one row per method with its anomaly map
  over the image and the outline of ``map >= image threshold`` (the pixels PRO counts, §5.1).
* ``reconstructions_<method>_<modality>.png`` — Fig. 6-style input / reconstruction / map triplets of
  runs that store reconstructions (DDAD; ``figures_recon.py``).
* ``roc_<modality>.png`` — image-level ROC curves, one line per method (unsupervised panel) and
  per supervised row (supervised panel); every seed is drawn, the legend gives mean AUROC.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display needed (CI, servers)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ispad_bench.data.modality import Modality  # noqa: E402
from ispad_bench.sweep import records  # noqa: E402
from ispad_bench.sweep.figures_recon import reconstruction_grid  # noqa: E402
from ispad_bench.sweep.runs import PAPER_NAMES, contamination_of, load_records, method_order, row_order  # noqa: E402

MAX_COLUMNS = 6


def _predictions(record: dict) -> dict | None:
    path = Path(record["_dir"]) / (record.get("artifacts") or {}).get("predictions", records.PREDICTIONS)
    try:
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError):
        return None


def _label(record: dict) -> str:
    name = PAPER_NAMES.get(record["method"], record["method"])
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
    preds = {label: p for label, r in recs_by_method.items() if (p := _predictions(r)) is not None}
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
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(fig, path)
    return path


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


def _save(fig, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    records.atomic_write_bytes(path, buf.getvalue())


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
                p = _predictions(r)
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
    _save(fig, path)
    return path


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
            recon = _predictions(_first_seed(runs))
            name = f"reconstructions_{runs[0]['method']}_{slug}"
            if recon is not None and (path := reconstruction_grid(f"{label}, {modality}", recon, out_dir / f"{name}.png")):
                written[name] = path
    return written
