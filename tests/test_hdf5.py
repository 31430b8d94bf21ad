"""HDF5 stream discovery and real-defect pools: good files are read, every broken file names its problem."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from PIL import Image

from ispad_bench.data.hdf5 import (
    RealDefectPool,
    StreamFormatError,
    describe,
    discover_real_defects,
    discover_stream,
    real_defect_pools,
)

N = 6


def write_h5(path, **datasets):
    with h5py.File(path, "w") as f:
        for key, value in datasets.items():
            f.create_dataset(key.replace("__", "/"), data=value)
    return path


def good(n=N, shape=(256, 256)):
    rng = np.random.default_rng(0)
    return {
        "images": rng.integers(0, 256, (n, *shape), dtype=np.uint8),
        "syn_stream": (np.arange(n) % 2).astype(np.uint8),
        "ground_truth": np.zeros((n, *shape), np.uint8),
    }


def test_discovers_the_documented_layout(tmp_path):
    layout = discover_stream(write_h5(tmp_path / "s.h5", **good()))
    assert (layout.images_key, layout.labels_key, layout.masks_key) == ("images", "syn_stream", "ground_truth")
    assert layout.length == N and layout.image_shape == (256, 256)


def test_accepts_other_image_names_nested_groups_and_trailing_channel(tmp_path):
    d = good(shape=(256, 256, 1))
    layout = discover_stream(
        write_h5(tmp_path / "s.h5", train__x=d["images"], train__syn_stream=d["syn_stream"],
                 train__ground_truth=d["ground_truth"])
    )
    assert layout.images_key == "train/x" and layout.image_shape == (256, 256, 1)
    # the only remaining patch stack is taken as images whatever its name
    d = good()
    layout = discover_stream(write_h5(tmp_path / "t.h5", fault_free_and_synthetic=d.pop("images"), **d))
    assert layout.images_key == "fault_free_and_synthetic"


def _error(tmp_path, **datasets) -> str:
    with pytest.raises(StreamFormatError) as info:
        discover_stream(write_h5(tmp_path / "bad.h5", **datasets))
    message = str(info.value)
    assert "bad.h5" in message and "expected datasets" in message and "found:" in message
    return message


def test_missing_labels_key_lists_actual_keys(tmp_path):
    d = good()
    d["labels_of_stream"] = d.pop("syn_stream")  # fuzzy "label" still matches this one...
    assert discover_stream(write_h5(tmp_path / "ok.h5", **d)).labels_key == "labels_of_stream"
    d = good()
    d["y"] = d.pop("syn_stream")  # ...but not this one
    message = _error(tmp_path, **d)
    assert "no unique labels dataset 'syn_stream'" in message
    # the actual keys with their shapes and dtypes
    assert "y (6,) uint8" in message and "images (6, 256, 256) uint8" in message


def test_missing_masks(tmp_path):
    d = good()
    del d["ground_truth"]
    assert "no unique masks dataset 'ground_truth'" in _error(tmp_path, **d)


def test_mismatched_lengths(tmp_path):
    d = good()
    d["syn_stream"] = np.zeros(N - 1, np.uint8)
    message = _error(tmp_path, **d)
    assert f"lengths differ: images={N}, syn_stream={N - 1}, ground_truth={N}" in message


def test_wrong_dtype(tmp_path):
    d = good()
    d["images"] = d["images"].astype(np.float32)
    assert "images 'images' has dtype float32, expected uint8" in _error(tmp_path, **d)


def test_wrong_shape(tmp_path):
    d = good()
    d["ground_truth"] = np.zeros((N, 128, 128), np.uint8)
    assert "masks 'ground_truth' has shape (6, 128, 128), expected (N,256,256)" in _error(tmp_path, **d)


def test_three_channels(tmp_path):
    d = good(shape=(256, 256, 3))
    assert "has 3 channels (6, 256, 256, 3); supervised patches are single-channel" in _error(tmp_path, **d)


def test_labels_outside_0_1(tmp_path):
    d = good()
    d["syn_stream"] = np.arange(N, dtype=np.uint8)
    assert "hold values [2, 3, 4, 5], expected only 0 and 1" in _error(tmp_path, **d)


def test_ambiguous_images(tmp_path):
    d = good()
    d["a"] = d.pop("images")
    d["b"] = d["a"].copy()
    assert "cannot tell which dataset holds the images (candidates: a, b)" in _error(tmp_path, **d)


def test_not_hdf5(tmp_path):
    path = tmp_path / "junk.h5"
    path.write_bytes(b"not an hdf5 file")
    with pytest.raises(StreamFormatError, match="not a readable HDF5 file"):
        discover_stream(path)


def test_describe_lists_every_dataset(tmp_path):
    text = describe(write_h5(tmp_path / "s.h5", **good()))
    assert text.splitlines()[1:] == [
        "  ground_truth (6, 256, 256) uint8",
        "  images (6, 256, 256) uint8",
        "  syn_stream (6,) uint8",
    ]


def test_real_defects_from_png_folders(tmp_path):
    for group, n in (("area", 3), ("points", 2)):
        folder = tmp_path / "supervised" / "real_defects" / group
        folder.mkdir(parents=True)
        for i in range(n):
            value = 10 * i + (group == "points")
            Image.fromarray(np.full((512, 512), value, np.uint8)).save(folder / f"{group}{i}.png")
    files = discover_real_defects(tmp_path)
    assert {g: [p.name for p in fs] for g, fs in files.items()} == {
        "area": ["area0.png", "area1.png", "area2.png"],
        "points": ["points0.png", "points1.png"],
    }
    pools = real_defect_pools(tmp_path)
    assert pools["area"].ids == ["area0", "area1", "area2"] and len(pools["points"]) == 2
    patch = pools["points"].load(1)
    assert patch.shape == (512, 512) and patch.dtype == np.uint8 and int(patch[0, 0]) == 11


def test_real_defects_from_hdf5(tmp_path):
    (tmp_path / "supervised").mkdir()
    area = np.stack([np.full((512, 512), i, np.uint8) for i in range(4)])
    write_h5(tmp_path / "supervised" / "real.hdf5", real_area=area, real_points=area[:2, ..., None])
    write_h5(tmp_path / "supervised" / "stream.h5", **good())  # a stream file is not a real-defect source
    pools = real_defect_pools(tmp_path)
    assert list(pools) == ["area", "points"]
    assert pools["area"].ids[3] == "real_area[3]" and int(pools["area"].load(3)[5, 5]) == 3
    assert pools["points"].load(1).shape == (512, 512)


def test_real_defects_hdf5_wrong_size(tmp_path):
    (tmp_path / "supervised").mkdir()
    write_h5(tmp_path / "supervised" / "real.h5", area=np.zeros((2, 256, 256), np.uint8))
    with pytest.raises(StreamFormatError, match=r"real defects 'area' are \(2, 256, 256\) uint8, expected"):
        real_defect_pools(tmp_path)


def test_real_defect_png_wrong_size_names_the_patch(tmp_path):
    folder = tmp_path / "supervised" / "real_defects" / "area"
    folder.mkdir(parents=True)
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(folder / "d7.png")
    pool = real_defect_pools(tmp_path)["area"]
    with pytest.raises(StreamFormatError, match=r"real defect d7 .* shape \(256, 256\)"):
        pool.load(0)
    with pytest.raises(ValueError):
        RealDefectPool("area")


def test_no_torch_import():
    import subprocess
    import sys

    code = "import sys, ispad_bench.data.hdf5; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
