"""Lazy, chunk-aware, seeded reading of the supervised HDF5 stream, with real-defect injection.

Order (deterministic for ``seed``): training is an endless sequence of *passes* over the stream.
Pass ``p`` permutes the stream's *blocks* (``block`` contiguous patches, aligned to the HDF5
chunk rows, so every read is whole chunks) and concatenates them; this sequence is cut into
*windows* of ``window`` patches (the shuffle buffer); a window is read as a few contiguous runs,
shuffled, and cut into batches. Batch ``i`` of window ``j`` of pass ``p`` is a pure function of
``(seed, p, j, i)``: its patches, the injection draws, the real defects chosen and their
augmentation parameters.

Shuffle quality trade-off: a batch draws ``batch_size`` patches from ``window / block`` random
blocks spread over the whole file, so on average ``batch_size * block / window`` patches of a
batch share a block (1 for batch 32, block 64, window 2048); neighbours in
the file (often patches of the same source image) therefore land in the same *window* but rarely
in the same batch. A larger window mixes better but costs memory (one uint8 window per worker).

Reading: where the images lie unfiltered in the file (uncompressed, contiguous or in chunks of whole
patches: the generator's streams), each batch reads its own patches straight from a memory map of
the file (:mod:`.slots`), and a window is only a list of indices. Batches are then independent, and
:class:`StreamSampler` yields them in their global order for any ``num_workers``: the same seed gives
the same batches in the same order with 0, 2 or 16 workers. Otherwise (compressed or oddly chunked
data) a window is read with h5py as a few sorted contiguous runs of whole chunks, each worker opens
its own h5py handle lazily (h5py handles must not cross a fork) and caches the windows it is
reading, and the sampler deals whole windows to workers so each window is read once; the *set* of
batches of an epoch then does not depend on ``num_workers``, the order in which they arrive does.

Work per batch, in the worker (``augment_on: worker``): every patch goes through
:class:`~ispad_bench.data.augment.PatchPipeline` on its own (uint8 in, the §4.2-preprocessed float
patch out, written once into shared memory). :func:`init_worker` limits each worker to one thread
in OpenCV, torch and BLAS: with their default pools (one thread per core) in every worker, workers
oversubscribe the cores and two did not beat zero.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, get_worker_info

from ispad_bench.data.augment import AFFINE_P, AugmentParams, PatchPipeline, augment, preprocess, sample_params
from ispad_bench.data.hdf5 import StreamLayout
from ispad_bench.data.modality import PATCH_SIZE, Modality
from ispad_bench.data.ring import BatchRing, shared_empty
from ispad_bench.data.slots import PatchSlots, patch_slots


def _seed(*keys: int) -> int:
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1)[0])


def read_sorted(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    """``ds[idx]`` for sorted unique indices, as one ``read_direct`` per contiguous run (no fancy indexing)."""
    out = np.empty((len(idx), *ds.shape[1:]), dtype=ds.dtype)
    if len(idx) == 0:
        return out
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [len(idx)]])
    for a, b in zip(starts, stops):
        ds.read_direct(out, np.s_[idx[a] : idx[a] + (b - a)], np.s_[a:b])
    return out


def block_length(chunks: tuple[int, ...] | None, minimum: int = 32) -> int:
    """Patches per read block: a whole number of HDF5 chunk rows, at least ``minimum`` (64 if unchunked)."""
    if not chunks:
        return 64
    rows = max(1, chunks[0])
    return rows * -(-minimum // rows)


@dataclass
class StreamConfig:
    """What a worker needs to rebuild batches (picklable; no open handles)."""

    layout: StreamLayout
    modality: Modality
    train_blocks: np.ndarray  # block ids used for training (held-out blocks removed)
    block: int
    window: int
    batch_size: int
    seed: int
    injection_p: float
    stream_augmentation: bool
    affine_p: float
    read_masks: bool
    augment_in_worker: bool
    real_only: bool = False  # every synthetic-defect patch replaced by a real defect (baseline of ref [35])
    direct_read: bool = True  # per-batch reads from the file's bytes where the layout allows (data/slots.py)


class _Handle:
    """A per-process h5py handle, reopened after fork."""

    def __init__(self, layout: StreamLayout):
        self.layout, self._pid, self._file = layout, None, None

    def get(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file, self._pid = h5py.File(self.layout.path, "r"), os.getpid()
        return self._file

    def __getstate__(self):
        return {"layout": self.layout, "_pid": None, "_file": None}


class StreamBatches(Dataset):
    """Map-style dataset whose item ``(p, j, i)`` is one complete training batch (a dict).

    ``real`` is the selected real-defect pool as a uint8 tensor (M, 1, 512, 512), ``real_ids``
    their names; with an empty pool no patch is replaced. ``per_batch`` tells whether batches are
    read on their own (:mod:`.slots`) or from shared shuffle windows. ``ring`` (set by the datamodule
    for a loader with workers) gives each worker reusable shared output buffers (:mod:`.ring`); a
    batch written into one carries its token as ``batch["slot"]``.
    """

    ring: BatchRing | None = None

    def __init__(self, cfg: StreamConfig, labels: np.ndarray, real: torch.Tensor, real_ids: list[str]):
        self.cfg, self.labels, self.real, self.real_ids = cfg, labels, real, real_ids
        self.task = "segmentation" if cfg.read_masks else "classification"
        self.augmentations = None  # set by AnomalibDataModule; the stream has its own pipeline
        self._handle = _Handle(cfg.layout)
        self._cache: dict[tuple[int, int], tuple] = {}
        self.slots, self.mask_slots = self._find_slots() if cfg.direct_read else (None, None)
        self.per_batch = self.slots is not None
        n_items = len(cfg.train_blocks) * cfg.block
        last = cfg.layout.length % cfg.block
        if last and (cfg.layout.length - 1) // cfg.block in set(cfg.train_blocks.tolist()):
            n_items -= cfg.block - last  # the file's last block is short
        self.items_per_pass = n_items
        self.windows_per_pass = -(-n_items // cfg.window)
        full = cfg.window // cfg.batch_size
        tail = (n_items - (self.windows_per_pass - 1) * cfg.window) // cfg.batch_size
        self.window_batches = [full] * (self.windows_per_pass - 1) + [tail]
        self.batches_per_pass = sum(self.window_batches)
        if self.batches_per_pass == 0:
            raise ValueError(
                f"{cfg.layout.path}: {n_items} training patches do not fill one batch of {cfg.batch_size}"
            )

    def _find_slots(self) -> tuple[PatchSlots | None, PatchSlots | None]:
        """Direct per-patch access to images (and masks, if read) where every dataset read allows it."""
        with h5py.File(self.cfg.layout.path, "r") as f:
            images = patch_slots(f[self.cfg.layout.images_key], (PATCH_SIZE, PATCH_SIZE))
            masks = patch_slots(f[self.cfg.layout.masks_key], (PATCH_SIZE, PATCH_SIZE)) if self.cfg.read_masks else None
        if images is None or (self.cfg.read_masks and masks is None):
            return None, None
        return images, masks

    # -- order -------------------------------------------------------------------------------
    def pass_sequence(self, p: int) -> np.ndarray:
        """All training indices of pass ``p`` in block-permuted order."""
        cfg = self.cfg
        blocks = np.random.default_rng(_seed(cfg.seed, p, 0)).permutation(cfg.train_blocks)
        starts = blocks * cfg.block
        seq = (starts[:, None] + np.arange(cfg.block)[None, :]).ravel()
        return seq[seq < cfg.layout.length]

    def locate(self, g: int) -> tuple[int, int, int]:
        """Global batch number -> (pass, window, batch within window)."""
        p, r = divmod(g, self.batches_per_pass)
        full = self.window_batches[0]
        j = min(r // full, self.windows_per_pass - 1) if full else self.windows_per_pass - 1
        return p, j, r - j * full

    def _window(self, p: int, j: int) -> tuple:
        """``(shuffled indices, their rows in the window's arrays, images, masks)``; the last three are
        None when batches are read on their own."""
        key = (p, j)
        if key not in self._cache:
            cfg = self.cfg
            items = self.pass_sequence(p)[j * cfg.window : (j + 1) * cfg.window]
            shuffled = np.random.default_rng(_seed(cfg.seed, p, j, 1)).permutation(items)
            rows = images = masks = None
            if not self.per_batch:
                order = np.sort(items)
                f = self._handle.get()
                images = read_sorted(f[cfg.layout.images_key], order).reshape(len(order), PATCH_SIZE, PATCH_SIZE)
                if cfg.read_masks:
                    masks = read_sorted(f[cfg.layout.masks_key], order).reshape(len(order), PATCH_SIZE, PATCH_SIZE)
                rows = np.searchsorted(order, shuffled)
            if len(self._cache) >= 2:
                self._cache.pop(next(iter(self._cache)))
            self._cache[key] = (shuffled, rows, images, masks)
        return self._cache[key]

    # -- one batch -----------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.batches_per_pass

    def __getitem__(self, key: tuple[int, int, int] | int) -> dict:
        cfg = self.cfg
        p, j, i = self.locate(key) if isinstance(key, (int, np.integer)) else key
        shuffled, rows, images, masks = self._window(p, j)
        sel = slice(i * cfg.batch_size, (i + 1) * cfg.batch_size)
        idx = shuffled[sel]
        gen = torch.Generator().manual_seed(_seed(cfg.seed, p, j, i, 2))
        n = len(idx)
        if cfg.real_only:  # no synthetic defect remains: real defects oversampled to the stream's defect share
            inject = torch.from_numpy(self.labels[idx].astype(np.bool_))
        else:
            inject = torch.rand(n, generator=gen) < cfg.injection_p
        if len(self.real) == 0:
            inject[:] = False
        positions = torch.nonzero(inject).flatten()
        choice = torch.randint(max(len(self.real), 1), (len(positions),), generator=gen)
        aug = cfg.modality.augmentation
        real_params = sample_params(len(positions), aug, gen, cfg.affine_p)
        stream_params = sample_params(n, aug, gen, cfg.affine_p) if cfg.stream_augmentation else None
        sources = [f"stream:{k}" for k in idx.tolist()]
        for pos, c in zip(positions.tolist(), choice.tolist()):
            sources[pos] = f"real:{self.real_ids[c]}"
        if self.per_batch:
            patches = [self.slots.patch(k) for k in idx.tolist()]
            mask_patches = [self.mask_slots.patch(k) for k in idx.tolist()] if cfg.read_masks else None
        else:
            r = rows[sel].tolist()
            patches = [images[q] for q in r]
            mask_patches = [masks[q] for q in r] if masks is not None else None
        label = torch.from_numpy(self.labels[idx].astype(np.bool_))
        real = [self.real[c, 0].numpy() for c in choice.tolist()] if len(positions) else []
        token = self.ring.acquire() if self.ring is not None else None
        alloc = _allocator(self.ring, token)
        if cfg.augment_in_worker:
            done = _finish_cpu(patches, mask_patches, label, positions, real, real_params, stream_params,
                               cfg.modality.brightness_factor, sources, alloc)
            done["slot"] = token
            return done
        return {
            "stream": _stack(patches, alloc),
            "mask": torch.from_numpy(np.stack(mask_patches)) if mask_patches is not None else None,
            "label": label,
            "real": self.real[choice] if len(positions) else torch.zeros(0, 1, 1, 1, dtype=torch.uint8),
            "positions": positions,
            "real_params": real_params,
            "stream_params": stream_params,
            "source": sources,
            "brightness_factor": cfg.modality.brightness_factor,
            "slot": token,
        }


def _allocator(ring: BatchRing | None, token):
    """``alloc(name, shape, dtype)`` for a batch's large outputs: the ring slot's buffers where a slot
    was taken; else in a worker a fresh shared tensor (the batch then crosses to the main process
    without a copy, as with torch's default collate); in the main process ``torch.empty``."""
    if token is not None:
        return lambda name, shape, dtype: ring.buffer(token, name, shape, dtype)
    if get_worker_info() is not None:
        return lambda name, shape, dtype: shared_empty(shape, dtype)
    return lambda name, shape, dtype: torch.empty(shape, dtype=dtype)


def _stack(patches: list[np.ndarray], alloc) -> torch.Tensor:
    out = alloc("stream", (len(patches), 1, PATCH_SIZE, PATCH_SIZE), torch.uint8)
    o = out.numpy()
    for k, x in enumerate(patches):
        o[k, 0] = x
    return out


_local = threading.local()


def _pipeline(brightness_factor: float) -> PatchPipeline:
    """This thread's :class:`PatchPipeline` (scratch buffers are per thread)."""
    cache = _local.__dict__.setdefault("pipelines", {})
    if brightness_factor not in cache:
        cache[brightness_factor] = PatchPipeline(brightness_factor)
    return cache[brightness_factor]


def _finish_cpu(patches: list[np.ndarray], mask_patches: list[np.ndarray] | None, label: torch.Tensor,
                positions: torch.Tensor, real: list[np.ndarray], real_params: AugmentParams,
                stream_params: AugmentParams | None, bf: float, sources: list[str], alloc=None) -> dict:
    """:func:`finish_batch` on the CPU from per-patch uint8 arrays (H, W): the same result, one patch at a
    time through :class:`PatchPipeline`, written once into the output batch (from ``alloc``)."""
    n = len(patches)
    size = patches[0].shape[-1] if n else PATCH_SIZE
    alloc = alloc or _allocator(None, None)
    image = alloc("image", (n, 1, size, size), torch.float32)
    o = image.numpy()
    pipe = _pipeline(bf)
    replaced = dict(zip(positions.tolist(), range(len(positions))))
    if replaced:
        real_maps = PatchPipeline.maps(real_params, real[0].shape[-1], size)
        real_b, real_c = PatchPipeline.factors(real_params)
    if stream_params is not None:
        maps = PatchPipeline.maps(stream_params, size, size)
        bright, contrast = PatchPipeline.factors(stream_params)
    for k in range(n):
        q = replaced.get(k)
        if q is not None:
            pipe.augmented(real[q], real_maps[q], real_b[q], real_c[q], o[k, 0])
        elif stream_params is not None:
            pipe.augmented(patches[k], maps[k], bright[k], contrast[k], o[k, 0])
        else:
            pipe.plain(patches[k], o[k, 0])
    mask = None
    if mask_patches is not None:
        mask = torch.from_numpy(np.stack(mask_patches) > 127)
        mask[positions] = False
        if stream_params is not None:
            mask = _geometric_mask(mask, stream_params)
    label = label.clone()
    label[positions] = True
    injected = torch.zeros_like(label)
    injected[positions] = True
    if get_worker_info() is not None:  # tiny arrays travel inline; as tensors each would cost its own
        label, injected = label.numpy(), injected.numpy()  # shared segment and file-descriptor hand-over
    return {"image": image, "gt_label": label, "gt_mask": mask, "injected": injected, "source": sources}


def finish_batch(raw: dict) -> dict:
    """Augment, inject and preprocess a raw batch from :class:`StreamBatches` (on the tensors' device).

    Returns ``image`` float (n, 1, 256, 256), ``gt_label`` bool (n,), ``gt_mask`` bool (n, 256, 256)
    or None, ``injected`` bool (n,), ``source`` (``stream:<index>`` / ``real:<group>/<id>``).
    Injected real defects carry no pixel annotation (§3.2: weak labels); their mask is all False.
    A batch finished in a worker comes back with ``gt_label``/``injected`` as tensors again.
    uint8 batches on the CPU go through :class:`PatchPipeline` patch by patch (what the workers do);
    other devices and dtypes through the batched tensor functions (same parameters, same patches up
    to float rounding).
    """
    if "image" in raw:  # already finished in the worker (which sends labels as numpy arrays)
        if isinstance(raw["gt_label"], np.ndarray):
            raw = {**raw, "gt_label": torch.from_numpy(raw["gt_label"]), "injected": torch.from_numpy(raw["injected"])}
        return raw
    x = raw["stream"]
    bf = raw["brightness_factor"]
    mask = raw["mask"]
    positions = raw["positions"].to(x.device)
    if x.device.type == "cpu" and x.dtype == torch.uint8 and raw["real"].dtype == torch.uint8:
        masks = list(mask.numpy()) if mask is not None else None
        real = [r[0].numpy() for r in raw["real"]] if len(positions) else []
        return _finish_cpu([p[0].numpy() for p in x], masks, raw["label"], positions, real, raw["real_params"],
                           raw["stream_params"], bf, raw["source"])
    if mask is not None:
        mask = mask > 127
    label = raw["label"].clone()
    real = None
    if len(positions):
        real = augment(raw["real"].to(x.device).float().div_(255), raw["real_params"], out_size=x.shape[-1])
        label[positions] = True
        if mask is not None:
            mask[positions] = False
    injected = torch.zeros_like(label)
    injected[positions] = True
    x = x.float().div_(255)
    if raw["stream_params"] is not None:
        x = augment(x, raw["stream_params"])
        if mask is not None:
            mask = _geometric_mask(mask, raw["stream_params"])
    if real is not None:
        x[positions] = real
    image = preprocess(x, bf)
    return {"image": image, "gt_label": label, "gt_mask": mask, "injected": injected, "source": raw["source"]}


def _geometric_mask(mask: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    from ispad_bench.data.augment import geometric

    return geometric(mask[:, None].float(), params, mode="nearest")[:, 0] > 0.5


def init_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: OpenCV and torch run single-threaded in each worker.

    A forked worker inherits OpenCV's pool size (one thread per core); torch sets its own to 1. With
    ``num_workers`` processes each running per-patch OpenCV calls on a full pool, the threads contend for
    the same cores, so two workers did not beat zero. The workers are the parallelism.
    ``cv2.setNumThreads(0)`` (run sequentially) rather than 1: resizing the pool in a forked child whose
    parent had used it waits forever on the parent's condition variables (OpenCV 4-5, pthreads
    backend); 0 leaves the pool alone. numpy's BLAS is not on this path.
    """
    cv2.setNumThreads(0)
    torch.set_num_threads(1)


class StreamSampler(Sampler):
    """Yields the ``(pass, window, batch)`` keys of one epoch; Lightning calls :meth:`set_epoch`.

    Epoch ``e`` covers global batches ``[e*S, (e+1)*S)`` with ``S = steps_per_epoch`` (default: one
    pass). Batches read on their own (``data.per_batch``) come in global order, whatever ``lanes``.
    Otherwise windows are dealt round-robin to ``lanes`` (= DataLoader workers) and the lanes
    interleaved, so worker ``w`` receives every batch of its windows (each window is read once).
    """

    def __init__(self, data: StreamBatches, steps_per_epoch: int | None, lanes: int):
        self.data = data
        self.lanes = 1 if getattr(data, "per_batch", False) else max(1, lanes)
        self.steps = steps_per_epoch or data.batches_per_pass
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        windows: dict[tuple[int, int], list] = {}
        for g in range(self.epoch * self.steps, (self.epoch + 1) * self.steps):
            p, j, i = self.data.locate(g)
            windows.setdefault((p, j), []).append((p, j, i))
        lanes: list[list] = [[] for _ in range(self.lanes)]
        for k, tasks in enumerate(windows.values()):
            lanes[k % self.lanes].extend(tasks)
        for q in range(max(map(len, lanes))):
            for lane in lanes:
                if q < len(lane):
                    yield lane[q]


class HeldOutStream(Dataset):
    """Validation batches from held-out stream blocks: no augmentation, no injection, preprocessing only."""

    def __init__(self, layout: StreamLayout, modality: Modality, indices: np.ndarray, labels: np.ndarray,
                 batch_size: int, read_masks: bool):
        self.layout, self.modality, self.indices, self.labels = layout, modality, np.sort(indices), labels
        self.batch_size, self.read_masks = batch_size, read_masks
        self.task = "segmentation" if read_masks else "classification"
        self.augmentations = None
        self._handle = _Handle(layout)

    def __len__(self) -> int:
        return -(-len(self.indices) // self.batch_size)

    def __getitem__(self, k: int) -> dict:
        idx = self.indices[k * self.batch_size : (k + 1) * self.batch_size]
        f = self._handle.get()
        x = torch.from_numpy(read_sorted(f[self.layout.images_key], idx)).view(len(idx), 1, PATCH_SIZE, PATCH_SIZE)
        mask = None
        if self.read_masks:
            mask = torch.from_numpy(read_sorted(f[self.layout.masks_key], idx)).view(len(idx), PATCH_SIZE, PATCH_SIZE) > 127
        label = torch.from_numpy(self.labels[idx].astype(np.bool_))
        return {
            "image": preprocess(x.float().div_(255), self.modality.brightness_factor),
            "gt_label": label,
            "gt_mask": mask,
            "injected": torch.zeros_like(label),
            "source": [f"stream:{i}" for i in idx.tolist()],
        }


def keep_batch(batch):
    """DataLoader ``collate_fn`` for datasets whose items are whole batches."""
    return batch


__all__ = ["AFFINE_P", "HeldOutStream", "StreamBatches", "StreamConfig", "StreamSampler", "finish_batch",
           "init_worker", "keep_batch", "read_sorted"]
