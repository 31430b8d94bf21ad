"""The defect group of each test sample, as the datamodule assigned it, for metrics, records and figures.

A sample's group (``good``, ``area``, ``points`` or a user's own) comes from the datamodule's
``defect_groups`` mapping (``samples.defect_group``). Anomalib batches carry ``image_path`` but no
free field, so every ``ISPADDataset`` registers its samples' groups here, keyed by image path, and
the evaluator (``metrics/anomalib.py``), the sweep's prediction store and its figures look each
path up with :func:`group_of`. A path no dataset registered (another datamodule, e.g. Anomalib's
``Folder``) falls back to its parent folder through the default ``DEFECT_GROUPS`` table.

The table lives in the process that builds the datasets and evaluates them (Anomalib does both in
the main process; DataLoader workers only read images). When two datasets in one process map the
same path differently, the last one built wins.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ispad_bench.data.layout import defect_group

_BY_PATH: dict[str, str] = {}


def register(paths: Iterable[str | Path], groups: Iterable[str]) -> None:
    """Record the group of each image path (called by ``ISPADDataset`` for its samples table)."""
    _BY_PATH.update((str(p), str(g)) for p, g in zip(paths, groups))


def register_samples(samples) -> None:
    """:func:`register` from a samples table with ``image_path`` and ``defect_group`` columns."""
    if "defect_group" in samples and "image_path" in samples:
        register(samples["image_path"], samples["defect_group"])


def group_of(path: str | Path) -> str:
    """Group of one test image: the registered one, else from its folder with ``DEFECT_GROUPS``."""
    found = _BY_PATH.get(str(path))
    return found if found is not None else defect_group(Path(path).parent.name)


def folder_of(path: str | Path) -> str:
    """The test folder (defect type) of an image path, e.g. ``blowhole``."""
    return Path(path).parent.name


def clear() -> None:
    """Forget every registered path (tests)."""
    _BY_PATH.clear()
