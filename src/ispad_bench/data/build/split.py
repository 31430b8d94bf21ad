"""Stage 2 of ``data build``: assign whole acquisitions to train or test, before any extraction.

§3.2: "The acquired images of fault-free and defective samples were assigned to separate training
and test splits. This step avoids any unwanted correlation of fault-free and defective patches
during the subsequent patch extraction process." So the unit of the split is the acquisition,
never the patch: no source image contributes to both splits.

Fault-free acquisitions and each defect class are split separately (stratified), each by one
seeded shuffle of its sorted relative paths: ``round(test_share * n)`` go to test, at least one
to each split when there are two or more; a class with a single acquisition goes to test (the test
split needs defects; the supervised part then has no real defect of that class, and says so).
"""

from __future__ import annotations

import zlib

import numpy as np

from ispad_bench.data.build.sources import Acquisition

TRAIN, TEST = "train", "test"
TEST_SHARE = 0.5  # the project's default; the paper does not give its share of acquisitions


def assign(acquisitions: list[Acquisition] | tuple[Acquisition, ...], seed: int,
           test_share: float = TEST_SHARE) -> dict[str, str]:
    """``rel -> "train" | "test"`` for every acquisition; a function of (relative paths, classes, seed) only."""
    if not 0 < test_share < 1:
        raise ValueError(f"test_share must lie in (0, 1), got {test_share}")
    strata: dict[str, list[str]] = {}
    for a in acquisitions:
        strata.setdefault(a.defect_class or "", []).append(a.rel)
    out: dict[str, str] = {}
    for name, rels in sorted(strata.items()):
        rels = sorted(rels)
        rng = np.random.default_rng([seed, zlib.crc32(f"split/{name}".encode())])
        order = [rels[i] for i in rng.permutation(len(rels))]
        n_test = 1 if len(rels) == 1 and name else min(len(rels) - 1, max(1, round(test_share * len(rels))))
        if len(rels) == 1 and not name:
            n_test = 0  # a single fault-free acquisition trains (a test split of defects alone still has good windows)
        for k, rel in enumerate(order):
            out[rel] = TEST if k < n_test else TRAIN
    return out
