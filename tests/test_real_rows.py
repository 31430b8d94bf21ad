"""The real-only baseline of ref [35] and published real-defect lists (``real_ids_file``)."""

from __future__ import annotations

import json

import pytest
from test_supervised import _dm, _epoch, stream_root  # noqa: F401 (fixture)

from ispad_bench.data.real_ids import load_lists


def test_real_only_replaces_every_synthetic_defect_by_a_real_one(stream_root):
    dm = _dm(stream_root, real_fraction=1, real_group="mixed", real_only=True)  # one pass: 40 batches
    batches = _epoch(dm, 0)
    for b in batches:
        real = [s.startswith("real:") for s in b["source"]]
        # the stream's labels alternate 0/1: every defective patch is a real defect, every normal one stays
        assert [bool(x) for x in b["injected"]] == real and (b["gt_label"] == b["injected"]).all()
    injected = sum(int(b["injected"].sum()) for b in batches)
    assert injected == sum(len(b["source"]) for b in batches) // 2 == 320  # the stream's defect share (1/2)
    used = {s[5:] for b in batches for s in b["source"] if s.startswith("real:")}
    assert used <= set(dm.real_defect_ids) and len(dm.real_defect_ids) == 26  # all real defects, oversampled
    assert dm.real_defect_record()["real_only"] is True
    with pytest.raises(ValueError, match="real_only needs real defects"):
        _dm(stream_root, real_fraction=0, real_only=True)


def test_real_ids_file_replaces_the_seeded_shuffle(stream_root, tmp_path):
    shuffled = _dm(stream_root, real_fraction="1/16", real_group="mixed").real_defect_ids
    listed = ["area/a016", "points/p002"]  # floor(26/16) = 1 by the shuffle; a published list may differ
    path = tmp_path / "fractions.json"
    path.write_text(json.dumps({"LSM-1": {"mixed": {"1/16": listed}, "area": {"1/16": ["a003"]}}}))
    dm = _dm(stream_root, real_fraction="1/16", real_group="mixed", real_ids_file=str(path))
    assert dm.real_defect_ids == listed != shuffled
    record = dm.real_defect_record()
    assert record["selection"] == f"file {path}" and record["count"] == 2
    assert _dm(stream_root, real_fraction="1/16", real_group="area", real_ids_file=str(path)).real_defect_ids == ["area/a003"]
    csv = tmp_path / "fractions.csv"
    csv.write_text("modality,group,fraction,id\nLSM-1,mixed,1/16,points/p002\nASM,mixed,1/16,area/a000\n")
    assert _dm(stream_root, real_fraction="1/16", real_ids_file=str(csv)).real_defect_ids == ["points/p002"]
    assert _dm(stream_root).real_defect_record()["selection"] == "seeded shuffle (real_seed 0)"


@pytest.mark.parametrize(
    ("content", "kw", "match"),
    [
        ({"mixed": {"1/16": ["area/zzz"]}}, {}, r"not among the real defects: \['area/zzz'\]"),
        ({"mixed": {"1/8": ["area/a000"]}}, {}, r"no list for LSM-1 mixed 1/16 \(lists: mixed 1/8\)"),
        ({"area": {"1/16": ["points/p000"]}}, {"real_group": "area"}, "not in the area pool"),
        ({"mixed": {"1/16": ["area/a000", "area/a000"]}}, {}, "duplicate"),
        ({"bad": {"1/16": []}}, {}, "unknown group"),
    ],
)
def test_bad_lists_name_the_file_and_the_problem(stream_root, tmp_path, content, kw, match):
    path = tmp_path / "lists.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=match) as err:
        _dm(stream_root, real_fraction="1/16", real_ids_file=str(path), **kw)
    assert str(path) in str(err.value)


def test_csv_needs_its_columns(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("group,id\nmixed,area/a\n")
    with pytest.raises(ValueError, match="missing \\['fraction'\\]"):
        load_lists(path, "LSM-1")
