"""The paper's methods as one typed table: every fact about them lives here (like ``data/modality.py``).

Krassnig & Gruber, arXiv 2503.04997. §4.3.5: EfficientAD-M and U-Flow (and the mixed-supervised
ResNet18) ran through Anomalib's engine with its documented defaults; GLASS and DDAD through their
official implementations with their configuration files. Where the paper's text and the official
code differ, both readings are runnable and named (``readings``: the ones the authors ran; the
sweep's ``procedure`` names which one a record used). Tables 4-6 hold the unsupervised results
per modality, Tables 2-3 the supervised ones (no supervised LSM-2 table, §5.2.1 text only); their
numbers are CSV in ``ispad_bench/reference/``.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

UNSUPERVISED, SUPERVISED = "unsupervised", "supervised"
# Table numbers per modality (§5.2-5.3) and the CSV holding each kind.
TABLE_NUMBERS = {UNSUPERVISED: {"LSM-1": 4, "LSM-2": 5, "ASM": 6}, SUPERVISED: {"LSM-1": 2, "ASM": 3}}
REFERENCE_CSV = {SUPERVISED: "paper_supervised.csv", UNSUPERVISED: "paper_unsupervised.csv"}


@dataclass(frozen=True)
class PaperMethod:
    id: str  # the configs/ folder and the sweep's method name
    name: str  # as printed in the paper's tables
    table: str  # UNSUPERVISED (Tables 4-6) or SUPERVISED (Tables 2-3)
    engine: str  # "anomalib" (Anomalib's engine) or "official" (the official implementation), §4.3.5
    readings: frozenset[str]  # procedure readings that are the authors' runs (sweep/procedure.py names them)

    @property
    def supervised(self) -> bool:
        return self.table == SUPERVISED

    def table_number(self, modality: str) -> int | None:
        return TABLE_NUMBERS[self.table].get(modality)


# In the paper's order (Tables 4-6, then Tables 2-3).
METHODS = (
    PaperMethod("efficient_ad", "EfficientAD", UNSUPERVISED, "anomalib", frozenset({"anomalib-v1"})),
    PaperMethod("uflow", "U-Flow", UNSUPERVISED, "anomalib", frozenset({"anomalib-engine"})),
    PaperMethod("glass", "GLASS", UNSUPERVISED, "official", frozenset({"official"})),
    # the paper's "3000 steps" is ambiguous: both readings count as the authors' (docs/ddad.md)
    PaperMethod("ddad", "DDAD", UNSUPERVISED, "official", frozenset({"paper-text", "official-code"})),
    PaperMethod("supervised", "ResNet18", SUPERVISED, "anomalib", frozenset({"paper", "real-only"})),
)
BY_ID = {m.id: m for m in METHODS}
PAPER_METHODS = tuple(m.id for m in METHODS)
SUPERVISED_METHODS = frozenset(m.id for m in METHODS if m.supervised)


def display_name(method: str) -> str:
    """The paper's name of a method id (``glass`` -> ``GLASS``); other methods keep their id."""
    return BY_ID[method].name if method in BY_ID else method


def method_order(method: str) -> tuple[int, str]:
    """Sort key: the paper's methods in the paper's order, then every other method by name."""
    return (PAPER_METHODS.index(method) if method in BY_ID else len(PAPER_METHODS), method)


def readings(method: str) -> frozenset[str]:
    """The procedure readings of ``method`` that are the authors' runs (none for other methods)."""
    return BY_ID[method].readings if method in BY_ID else frozenset()


def load_paper_tables(which: str = SUPERVISED):
    """``supervised``: Tables 2/3 (16 confusion matrices with MCC, recall %, FPR %);
    ``unsupervised``: Tables 4-6 (per method and modality)."""
    import pandas as pd

    if which not in REFERENCE_CSV:
        raise ValueError(f"which must be one of {sorted(REFERENCE_CSV)}, got {which!r}")
    with resources.files("ispad_bench.reference").joinpath(REFERENCE_CSV[which]).open() as fh:
        return pd.read_csv(fh)


def paper_confusion_matrices():
    """Rows of Tables 2 (LSM-1) and 3 (ASM): tn, fp, fn, tp and the printed MCC/recall/FPR."""
    return load_paper_tables(SUPERVISED)
