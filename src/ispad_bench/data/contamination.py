"""Noisy training data (paper §6.1, future work): defective images hidden among the "good" ones.

Real fault-free training sets are never perfectly clean (the paper estimates 2-5 % overlooked
defects in its supervised stream, §6.1). ``contaminate`` replaces a fraction of the training
images by defective test images, which then count as normal for training and are removed
from the evaluation, so no image is both trained on and tested. The defective images are drawn
per defect group in proportion to the group sizes (seeded); the record lists them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

LEVELS = (0.0, 0.01, 0.02, 0.05)  # the sweep profile ``contamination``


def _allocate(sizes: dict[str, int], k: int) -> dict[str, int]:
    """Split ``k`` over groups in proportion to their sizes (largest remainder, ties by name)."""
    total = sum(sizes.values())
    exact = {g: k * n / total for g, n in sizes.items()}
    out = {g: int(np.floor(v)) for g, v in exact.items()}
    for g in sorted(sizes, key=lambda g: (-(exact[g] - out[g]), g))[: k - sum(out.values())]:
        out[g] += 1
    return out


def contaminate(train: pd.DataFrame, test: pd.DataFrame, fraction: float, seed: int | None = 0):
    """(train, test, record) with ``round(fraction * len(train))`` training images replaced.

    ``train``/``test``: samples tables of :func:`~ispad_bench.data.datamodule.make_ispad_samples`.
    The moved images keep their paths, get ``label_index`` 0 and no mask in the training table,
    and leave the test table. At least two defective images of the test split must stay.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"train_contamination must be in [0, 1), got {fraction}")
    k = int(round(fraction * len(train)))
    record = {"fraction": fraction, "count": k, "seed": seed, "images": [], "groups": {}, "replaced": []}
    if k == 0:
        return train, test, record
    defects = test[test.label_index == 1]
    if k > len(defects) - 2:
        raise ValueError(
            f"train_contamination={fraction} needs {k} defective images but the test split has {len(defects)} "
            f"(at least 2 must stay for evaluation)"
        )
    rng = np.random.default_rng(0 if seed is None else seed)
    sizes = defects.groupby("defect_group").size().to_dict()
    chosen = []
    for group, n in sorted(_allocate(sizes, k).items()):
        pool = defects[defects.defect_group == group].sort_values("image_path")
        chosen += pool.image_path.iloc[np.sort(rng.choice(len(pool), n, replace=False))].tolist()
    moved = defects[defects.image_path.isin(chosen)].copy()
    keep = np.sort(rng.choice(len(train), len(train) - k, replace=False))
    replaced = train.iloc[np.setdiff1d(np.arange(len(train)), keep)].image_path.tolist()
    moved["label_index"], moved["label"], moved["mask_path"] = 0, "normal", ""
    moved["split"] = train["split"].iloc[0] if "split" in train and len(train) else "train"
    new_train = pd.concat([train.iloc[keep], moved[train.columns]], ignore_index=True)
    new_test = test[~test.image_path.isin(chosen)].reset_index(drop=True)
    for frame, old in ((new_train, train), (new_test, test)):
        frame.attrs.update(old.attrs)
    record.update(images=sorted(chosen), replaced=sorted(replaced),
                  groups={g: int(n) for g, n in moved.groupby("defect_group").size().items()})
    return new_train, new_test, record
