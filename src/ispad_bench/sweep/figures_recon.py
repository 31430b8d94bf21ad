"""Fig. 6-style reconstruction figures: input / reconstruction / anomaly map triplets (DDAD).

``reconstructions_<modality>.png``: one row per stored test image of a reconstruction-based run
(its first seed), columns input (with the ground-truth outline), the model's reconstruction and the
anomaly map. Reads only ``predictions.npz`` (``image_<i>``, ``reconstruction_<i>``, ``map_<i>``,
``mask_<i>``); runs without reconstructions are skipped.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

MAX_ROWS = 6


def _show(ax, image: np.ndarray, **kw) -> None:
    ax.imshow(image, cmap=kw.pop("cmap", "gray" if image.ndim == 2 else None), **kw)
    ax.set_xticks([])
    ax.set_yticks([])


def reconstruction_grid(label: str, predictions: dict, path: Path) -> Path | None:
    """Triplet grid of one run's stored images; ``None`` when the run stored no reconstruction."""
    names = [str(p) for p in predictions.get("map_paths", [])]
    rows = [i for i in range(len(names)) if f"reconstruction_{i}" in predictions][:MAX_ROWS]
    if not rows:
        return None
    fig, axes = plt.subplots(len(rows), 3, figsize=(6.6, 2.2 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        image, recon = predictions[f"image_{i}"], predictions[f"reconstruction_{i}"]
        amap = predictions[f"map_{i}"].astype(np.float32)
        _show(axes[r, 0], image)
        mask = predictions.get(f"mask_{i}")
        if mask is not None and mask.any():
            axes[r, 0].contour(mask, levels=[0.5], colors="lime", linewidths=0.8)
        _show(axes[r, 1], recon)
        _show(axes[r, 2], amap, cmap="jet")
        axes[r, 0].set_ylabel(f"{Path(names[i]).parent.name}/{Path(names[i]).stem}", fontsize=7)
    for c, title in enumerate(("input + GT", "reconstruction", "anomaly map")):
        axes[0, c].set_title(title, fontsize=8)
    fig.suptitle(label, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["reconstruction_grid"]
