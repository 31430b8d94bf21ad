"""train_contamination (paper §6.1): defective test images moved into the training set."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import write_tiny_tree

from ispad_bench.data import ISPAD
from ispad_bench.data.contamination import _allocate, contaminate


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_tiny_tree(tmp_path_factory.mktemp("ispad-contam"), modalities=("LSM-1",), train=40, reduced=40,
                           good=4, defects={"pinhole": 5, "squeegee_stroke": 5})


def setup(root, **kwargs) -> ISPAD:
    dm = ISPAD(root, modality="LSM-1", train_split="full", num_workers=0, **kwargs)
    dm.setup()
    return dm


def test_moved_images_leave_test_join_train_and_are_listed(root):
    clean = setup(root, seed=3)
    dm = setup(root, seed=3, train_contamination=0.05)
    rec = dm.contamination_record
    assert rec["count"] == 2 == len(rec["images"]) == len(rec["replaced"])  # round(0.05 * 40)
    assert rec["groups"] == {"area": 1, "points": 1}  # 5 + 5 defects: one per group
    train, test = dm.train_data.samples, dm.test_data.samples
    assert len(train) == 40 and len(test) == len(clean.test_data.samples) - 2
    assert set(rec["images"]) <= set(train.image_path) and not set(rec["images"]) & set(test.image_path)
    assert not set(rec["replaced"]) & set(train.image_path)
    assert (train.label_index == 0).all() and (train.mask_path == "").all()
    moved = next(i for i in dm.train_data if i.image_path in rec["images"])
    assert int(moved.gt_label) == 0 and moved.gt_mask.sum() == 0  # trained on as if it were good
    assert dm.val_data.samples.image_path.tolist() == test.image_path.tolist()  # evaluation without them


def test_same_seed_same_images_other_seed_other_images(root):
    a = setup(root, seed=1, train_contamination=0.05).contamination_record
    b = setup(root, seed=1, train_contamination=0.05).contamination_record
    others = [setup(root, seed=s, train_contamination=0.05).contamination_record["images"] for s in (2, 3, 4)]
    assert a["images"] == b["images"] and a["replaced"] == b["replaced"]
    assert any(o != a["images"] for o in others)
    assert setup(root, seed=1).contamination_record is None


def test_bad_levels_are_refused():
    with pytest.raises(ValueError, match="train_contamination"):
        ISPAD("x", train_contamination=1.0)
    train = pd.DataFrame({"image_path": [f"t{i}" for i in range(100)], "label_index": 0, "split": "train",
                          "mask_path": "", "defect_group": "good"})
    test = pd.DataFrame({"image_path": ["d0", "d1", "d2"], "label_index": 1, "split": "test", "mask_path": "m",
                         "defect_group": "area"})
    with pytest.raises(ValueError, match="needs 5 defective images but the test split has 3"):
        contaminate(train, test, 0.05, 0)
    assert _allocate({"area": 30, "points": 70}, 5) == {"area": 2, "points": 3}
