"""The supervised stream loader's fast paths: direct per-batch reads, the per-patch CPU pipeline, worker
threads, reusable shared buffers, and the Table 8 augmentation as the loader applies it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch
from PIL import Image
from test_supervised import _write_real
from torch.utils.data import DataLoader, Dataset

from ispad_bench.data.augment import PatchPipeline, augment, preprocess, sample_params
from ispad_bench.data.modality import Modality
from ispad_bench.data.slots import patch_slots
from ispad_bench.data.stream import StreamBatches, StreamSampler, finish_batch, init_worker
from ispad_bench.data.supervised import ISPADSupervised

N = 320


def _patches(n: int, seed: int = 0, constant: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if constant:  # one grey value per patch, low enough that no brightness factor clips it
        return np.broadcast_to(rng.integers(30, 90, (n, 1, 1), dtype=np.uint8), (n, 256, 256)).copy()
    return rng.integers(0, 256, (n, 256, 256), dtype=np.uint8)


def _root(tmp_path: Path, modality: str = "LSM-1", *, images: np.ndarray | None = None, real: bool = True,
          compression: str | None = None) -> Path:
    """A dataset root with one stream (random masks; images as given), real defects and a tiny test split."""
    mod = tmp_path / modality
    (mod / "supervised").mkdir(parents=True)
    images = _patches(N) if images is None else images
    n = len(images)
    with h5py.File(mod / "supervised" / "stream.h5", "w") as f:
        f.create_dataset("images", data=images, chunks=(32, 256, 256), compression=compression)
        f.create_dataset("syn_stream", data=(np.arange(n) % 2).astype(np.uint8))
        masks = (np.random.default_rng(9).random((n, 256, 256)) > 0.99).astype(np.uint8) * 255
        f.create_dataset("ground_truth", data=masks, chunks=(32, 256, 256), compression=compression)
    if real:
        _write_real(mod, {"area": 5, "points": 3})
    for sub in ("test/good", "test/dot", "ground_truth/dot"):
        (mod / sub).mkdir(parents=True)
    Image.fromarray(np.full((256, 256, 3), 60, np.uint8)).save(mod / "test/good/0.png")
    Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(mod / "test/dot/0.png")
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(mod / "ground_truth/dot/0_mask.png")
    return tmp_path


def _dm(root, **kw) -> ISPADSupervised:
    args = dict(root=root, modality="LSM-1", train_batch_size=16, num_workers=0, shuffle_buffer=64, seed=5,
                real_fraction=1, injection_p=0.25)
    dm = ISPADSupervised(**(args | kw))
    dm.setup()
    return dm


def _keys(data, limit=None):
    return list(StreamSampler(data, None, 1))[:limit]


def _same(a: dict, b: dict) -> bool:
    masks = (a["gt_mask"] is None and b["gt_mask"] is None) or torch.equal(a["gt_mask"], b["gt_mask"])
    return (a["source"] == b["source"] and torch.equal(a["image"], b["image"]) and masks
            and torch.equal(a["gt_label"], b["gt_label"]) and torch.equal(a["injected"], b["injected"]))


# -- direct reads ------------------------------------------------------------------------------
def test_patch_slots_find_every_patch_or_decline(tmp_path):
    data = _patches(70, seed=1)
    layouts = {
        "chunked": dict(chunks=(32, 256, 256)),
        "contiguous": {},
        "chunked-4d": dict(chunks=(8, 256, 256, 1)),
    }
    for name, kw in layouts.items():
        for userblock in (0, 512):
            path = tmp_path / f"{name}-{userblock}.h5"
            with h5py.File(path, "w", userblock_size=userblock) as f:
                f.create_dataset("x", data=data[..., None] if name == "chunked-4d" else data, **kw)
            with h5py.File(path, "r") as f:
                slots = patch_slots(f["x"], (256, 256))
            assert slots is not None, (name, userblock)
            assert all(np.array_equal(slots.patch(i), data[i]) for i in range(len(data))), (name, userblock)
            assert np.array_equal(slots.read(np.array([5, 2, 69])), data[[5, 2, 69]])
    declined = {
        "gzip": dict(chunks=(32, 256, 256), compression="gzip"),
        "shuffle": dict(chunks=(32, 256, 256), shuffle=True),
        "tiles": dict(chunks=(4, 64, 64)),
    }
    for name, kw in declined.items():
        path = tmp_path / f"{name}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset("x", data=data, **kw)
        with h5py.File(path, "r") as f:
            assert patch_slots(f["x"], (256, 256)) is None, name
    with h5py.File(tmp_path / "partial.h5", "w") as f:  # a chunk never written holds no bytes in the file
        f.create_dataset("x", (70, 256, 256), np.uint8, chunks=(32, 256, 256))[:32] = data[:32]
    with h5py.File(tmp_path / "partial.h5", "r") as f:
        assert patch_slots(f["x"], (256, 256)) is None


@pytest.mark.parametrize("modality", ["LSM-1", "LSM-2", "ASM"])
def test_direct_and_window_reads_give_identical_batches(tmp_path, modality):
    root = _root(tmp_path, modality)
    for aug in (False, True):
        dm = _dm(root, modality=modality, stream_augmentation=aug, read_masks=True)
        direct = dm.train_data
        assert direct.per_batch
        window = StreamBatches(dataclasses.replace(direct.cfg, direct_read=False), direct.labels, direct.real,
                               direct.real_ids)
        assert not window.per_batch
        for key in _keys(direct, 8):
            a, b = direct[key], window[key]
            assert _same(a, b), (modality, aug, key)
        # the device path (raw uint8 batches finished after the transfer) gives the same patches
        raw = StreamBatches(dataclasses.replace(direct.cfg, augment_in_worker=False), direct.labels, direct.real,
                            direct.real_ids)
        for key in _keys(direct, 3):
            assert _same(finish_batch(raw[key]), direct[key])


def test_compressed_stream_falls_back_to_windows(tmp_path):
    dm = _dm(_root(tmp_path, compression="gzip"), num_workers=2, steps_per_epoch=10)
    assert not dm.train_data.per_batch
    ref = [finish_batch(dm.train_data[k]) for k in list(StreamSampler(dm.train_data, 10, 1))]
    got = [dm.on_after_batch_transfer(b) for b in dm.train_dataloader()]
    # windows are dealt to workers: the same batches, in another order
    assert sorted(tuple(b.image_path) for b in got) == sorted(tuple(b["source"]) for b in ref)


# -- the per-patch CPU pipeline ----------------------------------------------------------------
@pytest.mark.parametrize("modality", ["LSM-1", "LSM-2", "ASM"])
def test_patch_pipeline_is_bit_identical_to_the_batched_functions(modality):
    mod = Modality.parse(modality)
    bf = mod.brightness_factor
    pipe = PatchPipeline(bf)
    gen = torch.Generator().manual_seed(3)
    for size, n in ((256, 12), (512, 4)):  # stream patches, and real defects cropped 512 -> 256
        u8 = torch.randint(0, 256, (n, 1, size, size), generator=gen, dtype=torch.uint8)
        p = sample_params(n, mod.augmentation, gen, affine_p=0.7)
        ref = preprocess(augment(u8.float().div_(255), p, out_size=256), bf)
        maps, (bright, contrast) = PatchPipeline.maps(p, size, 256), PatchPipeline.factors(p)
        out = np.empty((n, 256, 256), np.float32)
        for k in range(n):
            pipe.augmented(u8[k, 0].numpy(), maps[k], bright[k], contrast[k], out[k])
        assert torch.equal(torch.from_numpy(out), ref[:, 0]), (modality, size)
        # and the tensor (grid_sample) path of the accelerators agrees up to interpolation rounding
        gpu_like = preprocess(augment(u8.double().div_(255), p, out_size=256), bf).float()
        assert (gpu_like[:, 0] - torch.from_numpy(out)).abs().mean() < 2e-3
    plain = torch.randint(0, 256, (4, 1, 256, 256), generator=gen, dtype=torch.uint8)
    out = np.empty((4, 256, 256), np.float32)
    for k in range(4):
        pipe.plain(plain[k, 0].numpy(), out[k])
    assert (torch.from_numpy(out) - preprocess(plain.float().div_(255), bf)[:, 0]).abs().max() < 1e-6


# -- workers -----------------------------------------------------------------------------------
def test_the_same_batches_in_the_same_order_with_0_and_2_workers(tmp_path):
    root = _root(tmp_path)
    for aug in (False, True):
        runs = []
        for workers in (0, 2):
            dm = _dm(root, num_workers=workers, steps_per_epoch=12, stream_augmentation=aug)
            loader = dm.train_dataloader()
            loader.sampler.set_epoch(1)
            runs.append([dm.on_after_batch_transfer(b) for b in loader])
        assert len(runs[0]) == len(runs[1]) == 12
        for a, b in zip(*runs):
            assert a.image_path == b.image_path and torch.equal(a.image, b.image) and torch.equal(a.gt_label, b.gt_label)


class _Threads(Dataset):
    def __len__(self):
        return 2

    def __getitem__(self, i):
        x = np.random.default_rng(i).random((600, 600), dtype=np.float32)
        cv2.GaussianBlur(x, (5, 5), 1.0)  # an OpenCV call that would use the pool
        return torch.tensor([cv2.getNumThreads(), torch.get_num_threads()])


@pytest.mark.timeout(120)
def test_workers_run_single_threaded_and_do_not_hang_after_the_parent_used_opencv():
    before = cv2.getNumThreads()
    cv2.setNumThreads(2)
    try:
        big = np.random.default_rng(0).random((1500, 1500), dtype=np.float32)
        for _ in range(3):
            cv2.GaussianBlur(big, (5, 5), 1.0)  # the parent's pool is now in use when the workers fork
        loader = DataLoader(_Threads(), batch_size=None, num_workers=2, worker_init_fn=init_worker)
        assert [b.tolist() for b in loader] == [[1, 1], [1, 1]]
    finally:
        cv2.setNumThreads(before)


def test_shared_buffers_are_reused_only_when_nothing_holds_them(tmp_path):
    root = _root(tmp_path)
    ref_dm = _dm(root, steps_per_epoch=40)
    ref = [finish_batch(ref_dm.train_data[k]) for k in StreamSampler(ref_dm.train_data, 40, 1)]

    dm = _dm(root, num_workers=2, steps_per_epoch=40)
    kept, slots = [], []
    for raw in dm.train_dataloader():  # a consumer that keeps every batch
        slots.append(raw["slot"])
        kept.append(dm.on_after_batch_transfer(raw))
    depth = dm.train_data.ring.depth
    assert sum(s is not None for s in slots) <= 2 * depth < 40  # rings exhausted: fresh buffers after that
    for a, b in zip(kept, ref):  # and no kept batch was overwritten
        assert a.image_path == b["source"] and torch.equal(a.image[:, 0], b["image"][:, 0])

    dm = _dm(root, num_workers=2, steps_per_epoch=40)
    tokens = []
    for raw in dm.train_dataloader():  # a consumer that drops each batch after its step
        tokens.append(raw["slot"])
        batch = dm.on_after_batch_transfer(raw)
        assert batch.image_path == ref[len(tokens) - 1]["source"]
        assert torch.equal(batch.image[:, 0], ref[len(tokens) - 1]["image"][:, 0])
        del raw, batch
    used = [t for t in tokens if t is not None]
    assert len(used) >= 30  # (nearly) every batch written into a slot, reused: at most 2 x depth of them
    assert len({t[1:] for t in used}) <= 2 * depth


# -- Table 8 as the loader applies it ------------------------------------------------------------
def test_loader_applies_table8_affine_share_and_asm_has_no_illumination(tmp_path):
    images = _patches(640, seed=2)
    dm = _dm(_root(tmp_path, "ASM", images=images, real=False), modality="ASM", real_fraction=0,
             stream_augmentation=True, train_batch_size=32, shuffle_buffer=128)
    bf = Modality.ASM.brightness_factor
    flips_only = total = 0
    for key in _keys(dm.train_data):
        b = dm.train_data[key]
        for k, src in enumerate(b["source"]):
            x = torch.from_numpy(images[int(src.split(":")[1])]).float().div(255)[None, None]
            candidates = [x, x.flip(-1), x.flip(-2), x.flip(-1).flip(-2)]
            # a patch without the affine part is an exact flip of its source: no brightness or contrast (ASM)
            flips_only += any(torch.equal(b["image"][k], preprocess(c, bf)[0]) for c in candidates)
            total += 1
    assert total == 640
    assert 0.80 <= 1 - flips_only / total <= 0.95  # §3.2.3: affine transforms on 80-95 % of the patches


@pytest.mark.parametrize("modality", ["LSM-1", "LSM-2"])
def test_loader_applies_table8_brightness_on_lsm(tmp_path, modality):
    images = _patches(640, seed=4, constant=True)  # geometry and contrast leave a constant patch as it is
    dm = _dm(_root(tmp_path, modality, images=images, real=False), modality=modality, real_fraction=0,
             stream_augmentation=True, train_batch_size=32, shuffle_buffer=128)
    mod = Modality.parse(modality)
    lo, hi = mod.augmentation.brightness
    factors = []
    for key in _keys(dm.train_data):
        b = dm.train_data[key]
        for k, src in enumerate(b["source"]):
            v = images[int(src.split(":")[1]), 0, 0] / 255
            out = b["image"][k, 0]
            assert (out.max() - out.min()) < 1e-5  # still constant: no stray pixels from the warp's border
            factors.append(float(out.mean()) / (v * mod.brightness_factor))
    f = np.array(factors)
    assert len(f) == 640
    assert lo - 1e-4 <= f.min() and f.max() <= hi + 1e-4  # Table 8: brightness 0.75-1.25
    assert f.min() < lo + 0.03 and f.max() > hi - 0.03  # and the whole range is used
