"""Batch-level reading of single stream patches straight from the HDF5 file's bytes.

An image dataset stored without filters (no compression, shuffle or checksum), either contiguous or
chunked in chunks that hold whole patches, keeps each patch as ``256 * 256`` contiguous bytes at a
fixed file offset. :class:`PatchSlots` finds those offsets once (HDF5's own chunk index, checked
against h5py reads of a few patches) and then serves any patch as a read-only view of a memory map
of the file: no HDF5 call, no copy, no shuffle window per worker. Reading is then per batch, so a
DataLoader worker needs nothing but the batch's indices, and any number of workers can deliver the
stream's batches in their global order.

:func:`patch_slots` returns ``None`` for every other layout (filtered/compressed chunks, chunks that
cut patches, unallocated chunks, virtual or external storage, a dtype other than uint8): the caller
then reads whole chunk runs with h5py (``data/stream.py``'s shuffle windows).

This module imports numpy and h5py only.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import h5py
import numpy as np

_CHECKED = 8  # patches compared with h5py reads before the offsets are trusted


class PatchSlots:
    """File offsets of every patch of one uint8 image dataset; :meth:`patch` views one patch.

    Picklable (the map is dropped and reopened lazily in each process, e.g. after a DataLoader fork).
    """

    def __init__(self, path: str | Path, offsets: np.ndarray, shape: tuple[int, int]):
        self.path, self.offsets, self.shape = Path(path), np.asarray(offsets, dtype=np.int64), tuple(shape)
        self.patch_bytes = int(np.prod(self.shape))
        self._map: np.ndarray | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.offsets)

    def _bytes(self) -> np.ndarray:
        if self._map is None or self._pid != os.getpid():
            with open(self.path, "rb") as f:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self._map, self._pid = np.frombuffer(mm, dtype=np.uint8), os.getpid()
        return self._map

    def patch(self, i: int) -> np.ndarray:
        """Patch ``i`` as a read-only (H, W) uint8 view of the file (valid while this object lives)."""
        o = int(self.offsets[i])
        return self._bytes()[o : o + self.patch_bytes].reshape(self.shape)

    def read(self, idx: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Patches ``idx`` (any order) copied into ``out`` (len(idx), H, W)."""
        out = np.empty((len(idx), *self.shape), np.uint8) if out is None else out
        for k, i in enumerate(np.asarray(idx).tolist()):
            out[k] = self.patch(i)
        return out

    def __getstate__(self):
        return {"path": self.path, "offsets": self.offsets, "shape": self.shape, "patch_bytes": self.patch_bytes,
                "_map": None, "_pid": None}


def patch_slots(ds: h5py.Dataset, patch_shape: tuple[int, int]) -> PatchSlots | None:
    """:class:`PatchSlots` for ``ds`` (N, H, W[, 1]) uint8 if its patches lie unfiltered in the file, else None."""
    if ds.dtype != np.uint8 or ds.ndim < 3 or tuple(ds.shape[1:3]) != tuple(patch_shape) or int(np.prod(ds.shape[3:])) != 1:
        return None
    if ds.is_virtual or ds.external or ds.id.get_create_plist().get_nfilters() != 0:
        return None
    n, patch_bytes = ds.shape[0], int(np.prod(ds.shape[1:]))
    layout = ds.id.get_create_plist().get_layout()
    try:
        if layout == h5py.h5d.CONTIGUOUS:
            base = ds.id.get_offset()
            if base is None:  # never written: HDF5 returns fill values, the file holds nothing
                return None
            offsets = base + np.arange(n, dtype=np.int64) * patch_bytes
        elif layout == h5py.h5d.CHUNKED:
            offsets = _chunked_offsets(ds, patch_bytes)
        else:
            return None
    except (RuntimeError, ValueError, OSError, TypeError):  # an HDF5 build without the chunk query API
        return None
    if offsets is None or len(offsets) != n:
        return None
    slots = PatchSlots(Path(ds.file.filename), offsets, patch_shape)
    try:
        if os.path.getsize(slots.path) < int(offsets.max()) + patch_bytes:
            return None
        check = np.unique(np.linspace(0, n - 1, min(n, _CHECKED)).astype(np.int64))
        for i in check.tolist():
            if not np.array_equal(slots.patch(i), np.asarray(ds[i]).reshape(patch_shape)):
                return None  # offsets relative to something else (e.g. a user block): do not guess
    except (OSError, ValueError):
        return None
    return slots


def _chunked_offsets(ds: h5py.Dataset, patch_bytes: int) -> np.ndarray | None:
    rows = ds.chunks[0]
    if tuple(ds.chunks[1:]) != tuple(ds.shape[1:]):
        return None  # a chunk cuts patches into tiles: a patch is not contiguous in the file
    n = ds.shape[0]
    n_chunks = -(-n // rows)
    starts = np.full(n_chunks, -1, dtype=np.int64)

    def visit(info) -> None:
        if info.filter_mask == 0 and info.byte_offset is not None and info.size == rows * patch_bytes:
            starts[info.chunk_offset[0] // rows] = info.byte_offset

    if hasattr(ds.id, "chunk_iter"):
        ds.id.chunk_iter(visit)
    else:
        for k in range(ds.id.get_num_chunks()):
            visit(ds.id.get_chunk_info(k))
    if (starts < 0).any():  # an unallocated (never written) chunk or an unexpected one
        return None
    i = np.arange(n, dtype=np.int64)
    return starts[i // rows] + (i % rows) * patch_bytes
