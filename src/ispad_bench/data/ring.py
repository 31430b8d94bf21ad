"""Reusable shared-memory output buffers for DataLoader workers (one ring per worker).

A worker's result crosses to the main process through shared memory. torch's default gives every
batch a fresh segment, and the first write to each of its 4 KiB pages is a page fault: for a
(32, 1, 256, 256) float32 batch 2,048 faults, which on the project machine cost more CPU than reading,
augmenting and preprocessing the 32 patches together (~7 ms against ~2-4 ms per batch). That was the
main reason two workers did not beat zero. A :class:`BatchRing` lets each worker write into one of
``depth`` segments that it allocated once and that the main process has handed back.

Protocol: the ring's flags (``workers x depth`` int32 in shared memory) are created in the main process
before the workers fork. A worker takes a slot whose flag is 0, sets it to 1, writes, and sends the slot
with the batch (``batch["slot"]``). In the main process :func:`hand_back` (called by
``ISPADSupervised.on_after_batch_transfer``) clears the flag once nothing references the slot's memory
any more: at once when the batch was moved to an accelerator (a copy; the CPU tensors are not read
again), otherwise as soon as every tensor on the slot's storage is gone (checked with torch's own
storage weak references at each later call). A consumer that keeps its batches therefore keeps their
slots; a worker that finds no free slot falls back to a fresh segment, so a live batch is never
overwritten, and one that is never handed back only costs the page faults again.
"""

from __future__ import annotations

import math
import uuid
import weakref

import torch
from torch.utils.data import get_worker_info

try:  # a weak reference to a tensor's storage (what torch's shared-memory cache uses)
    from torch.multiprocessing.reductions import StorageWeakRef
except ImportError:  # pragma: no cover - then CPU batches are never handed back (fresh segments)
    StorageWeakRef = None

_RINGS: weakref.WeakValueDictionary[str, BatchRing] = weakref.WeakValueDictionary()  # tokens name their ring


class BatchRing:
    """``depth`` reusable output slots for each of ``workers`` DataLoader workers."""

    def __init__(self, workers: int, depth: int):
        self.workers, self.depth, self.uid = workers, depth, uuid.uuid4().hex
        self.flags = torch.zeros(workers, depth, dtype=torch.int32).share_memory_()
        self._buffers: dict[tuple[int, str], torch.Tensor] = {}  # per process (each worker its own)
        self._cursor = 0
        self._pending: list[tuple[tuple[str, int, int], list]] = []  # main process: slots still referenced
        _RINGS[self.uid] = self

    def __getstate__(self):  # a spawned worker gets the flags (shared) and no buffers
        return {"workers": self.workers, "depth": self.depth, "uid": self.uid, "flags": self.flags,
                "_buffers": {}, "_cursor": 0, "_pending": []}

    def acquire(self) -> tuple[str, int, int] | None:
        """In a worker: a free slot of this worker's ring, marked taken, as a token; else None."""
        info = get_worker_info()
        if info is None or info.id >= self.workers:
            return None
        row = self.flags[info.id]
        for k in range(self.depth):
            s = (self._cursor + k) % self.depth
            if int(row[s]) == 0:
                row[s] = 1
                self._cursor = s + 1
                return (self.uid, info.id, s)
        return None

    def hand_back(self, token: tuple[str, int, int], tensors: list[torch.Tensor]) -> None:
        """In the main process: slot ``token`` of a received batch whose slot-backed tensors are ``tensors``
        (as received, or as moved to the device). Released at once if none is on the CPU any more, else
        once none of their storages is referenced; every earlier pending slot is checked again here."""
        on_cpu = [t for t in tensors if t.device.type == "cpu"]
        if not on_cpu:
            self.flags[token[1], token[2]] = 0
        elif StorageWeakRef is not None:
            self._pending.append((token, [StorageWeakRef(t.untyped_storage()) for t in on_cpu]))
        still = []
        for tok, refs in self._pending:
            if all(r.expired() for r in refs):
                self.flags[tok[1], tok[2]] = 0
            else:
                still.append((tok, refs))
        self._pending = still

    def buffer(self, token: tuple[str, int, int], name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """The slot's shared tensor ``name`` of ``shape``/``dtype`` (allocated on first use, then reused)."""
        key = (token[2], name)
        t = self._buffers.get(key)
        if t is None or tuple(t.shape) != tuple(shape) or t.dtype != dtype:
            t = shared_empty(shape, dtype)
            self._buffers[key] = t
        return t


def shared_empty(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A fresh tensor in shared memory, allocated there directly (no copy, as torch's default collate)."""
    nbytes = math.prod(shape) * torch.empty(0, dtype=dtype).element_size()
    storage = torch.UntypedStorage._new_shared(nbytes)  # noqa: SLF001  (torch's collate uses the same call)
    return torch.empty(0, dtype=dtype).set_(storage, 0, shape)


def hand_back(token: tuple[str, int, int] | None, tensors: list[torch.Tensor]) -> None:
    """In the main process: :meth:`BatchRing.hand_back` on the ring that ``token`` came from."""
    ring = _RINGS.get(token[0]) if token is not None else None
    if ring is not None:
        ring.hand_back(token, tensors)
