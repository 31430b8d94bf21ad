"""Bad data met by training (docs/reliability.md): corrupt HDF5 streams, a stream without labels,
truncated and 16-bit PNGs. Each must end in one line naming the file, or be read correctly."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from PIL import Image

from ispad_bench.data.datamodule import ISPADDataset
from ispad_bench.data.hdf5 import RealDefectPool, StreamFormatError, open_hdf5
from ispad_bench.data.images import ImageReadError, read_binary_mask, read_gray8, read_patch
from ispad_bench.data.supervised import ISPADSupervised


@pytest.fixture
def tree(tiny_root, tmp_path):
    """A private copy of the tiny LSM-1 / ASM tree (the session one is shared read-only)."""
    for mod in ("LSM-1", "ASM"):
        shutil.copytree(tiny_root / mod, tmp_path / mod)
    return tmp_path


def _stream_error(root, modality="ASM") -> str:
    dm = ISPADSupervised(root=root, modality=modality, num_workers=0)
    with pytest.raises((StreamFormatError, FileNotFoundError)) as info:
        dm.setup()
    message = str(info.value)
    assert "pass `stream_file`" not in message  # was the misleading hint for every one of these
    return message


def test_truncated_or_junk_stream_is_named(tree):
    stream = tree / "ASM" / "supervised" / "stream.h5"
    stream.write_bytes(stream.read_bytes()[: stream.stat().st_size // 2])
    message = _stream_error(tree)
    assert message.startswith(f"{stream}: not a readable HDF5 file (truncated: ") and "\n" not in message

    stream.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    message = _stream_error(tree)
    assert message.startswith(f"{stream}: not a readable HDF5 file (") and "\n" not in message
    with pytest.raises(StreamFormatError, match="not a readable HDF5 file"):
        open_hdf5(stream)


def test_stream_without_labels_says_which_dataset(tree):
    stream = tree / "ASM" / "supervised" / "stream.h5"
    with h5py.File(stream, "a") as f:
        del f["syn_stream"]
    assert _stream_error(tree).startswith(f"{stream}: no unique labels dataset 'syn_stream'")


@pytest.mark.parametrize("folder", ["train_reduced/good", "test/pinhole", "ground_truth/pinhole"])
def test_truncated_png_is_named(tree, folder):
    path = sorted((tree / "LSM-1" / folder).glob("*.png"))[0]
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    split = "train" if folder.startswith("train") else "test"
    data = ISPADDataset(tree, "LSM-1", split)
    index = [i for i, row in data.samples.iterrows() if path.name.split("_")[0] in row.image_path
             and folder.split("/")[-1] in row.image_path][0]
    with pytest.raises(ImageReadError) as info:
        data[index]  # was: OSError: image file is truncated (no file named)
    assert str(info.value).startswith(f"{path}: unreadable image (") and "\n" not in str(info.value)


def test_16_bit_png_is_scaled_not_saturated(tmp_path):
    values = (np.arange(256 * 256).reshape(256, 256) % 40000).astype(np.uint16)
    path = tmp_path / "patch16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode == "I;16"
    image = read_patch(path)
    assert image.shape == (3, 256, 256)
    np.testing.assert_allclose(image[0].numpy(), values / 65535.0, atol=1e-6)  # Anomalib's read: 99 % at 1.0
    assert float((image >= 1).float().mean()) == 0.0
    np.testing.assert_array_equal(read_gray8(path), np.rint(values / 257.0).astype(np.uint8))

    eight = tmp_path / "patch8.png"
    Image.fromarray((values // 257).astype(np.uint8)).save(eight)
    from anomalib.data.utils import read_image

    assert torch_equal(read_patch(eight), read_image(eight, as_tensor=True))  # 8-bit: exactly as before

    mask = np.zeros((256, 256), np.uint16)
    mask[10:20, 10:20] = 1000
    Image.fromarray(mask).save(tmp_path / "mask16.png")
    assert int(read_binary_mask(tmp_path / "mask16.png").sum()) == 100


def test_16_bit_real_defect_png_is_rescaled(tmp_path):
    values = (np.arange(512 * 512).reshape(512, 512) % 65536).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "a0.png")
    pool = RealDefectPool("area", files=[tmp_path / "a0.png"])
    np.testing.assert_array_equal(pool.load(0), np.rint(values / 257.0).astype(np.uint8))  # was: values % 256


def test_unsupported_image_mode_is_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.zeros((8, 8), np.float32)).save(path)
    with pytest.raises(ImageReadError, match=r"float.tif: unsupported image mode 'F'"):
        read_patch(path)


def torch_equal(a, b) -> bool:
    import torch

    return bool(torch.equal(a.as_subclass(torch.Tensor), b.as_subclass(torch.Tensor)))


def test_a_mask_of_another_size_is_resized_to_its_image_with_a_warning(tmp_path, caplog):
    """Was: trained on without a word. Now: nearest-neighbour resize to the image, one warning naming the file."""
    import logging

    import numpy as np
    from anomalib.data.utils import Split
    from PIL import Image

    from ispad_bench.data.datamodule import ISPADDataset

    base = tmp_path / "LSM-2"
    for i in range(2):
        (base / "train_reduced" / "good").mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(base / "train_reduced" / "good" / f"{i}.png")
    (base / "test" / "good").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(base / "test" / "good" / "0.png")
    (base / "test" / "pinhole").mkdir(parents=True)
    (base / "ground_truth" / "pinhole").mkdir(parents=True)
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(base / "test" / "pinhole" / "0.png")
    small = np.zeros((32, 32), np.uint8)
    small[8:16, 8:16] = 255
    Image.fromarray(small).save(base / "ground_truth" / "pinhole" / "0_mask.png")
    data = ISPADDataset(base, "LSM-2", Split.TEST)
    with caplog.at_level(logging.WARNING, logger="ispad_bench.data.datamodule"):
        item = next(data[i] for i in range(len(data)) if int(data[i].gt_label) == 1)
    assert item.gt_mask.shape[-2:] == item.image.shape[-2:] == (64, 64)
    assert int(item.gt_mask.sum()) == 16 * 16 and set(item.gt_mask.unique().tolist()) == {0, 1}
    assert item.gt_mask[16:32, 16:32].all()
    assert "0_mask.png is 32x32, its image 64x64: the mask is resized" in caplog.text
