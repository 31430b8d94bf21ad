"""The paper's published numbers (Tables 2-6), read from ``ispad_bench/reference/paper_*.csv``."""

from __future__ import annotations

from importlib import resources

import pandas as pd

TABLES = {"supervised": "paper_supervised.csv", "unsupervised": "paper_unsupervised.csv"}


def load_paper_tables(which: str = "supervised") -> pd.DataFrame:
    """``supervised``: Tables 2/3 (16 confusion matrices with MCC, recall %, FPR %);
    ``unsupervised``: Tables 4-6 (per method and modality)."""
    if which not in TABLES:
        raise ValueError(f"which must be one of {sorted(TABLES)}, got {which!r}")
    with resources.files("ispad_bench.reference").joinpath(TABLES[which]).open() as fh:
        return pd.read_csv(fh)


def paper_confusion_matrices() -> pd.DataFrame:
    """Rows of Tables 2 (LSM-1) and 3 (ASM): tn, fp, fn, tp and the printed MCC/recall/FPR."""
    return load_paper_tables("supervised")
