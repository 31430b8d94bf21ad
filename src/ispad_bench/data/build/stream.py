"""Stage 5 of ``data build``: the supervised HDF5 stream, written chunk by chunk (memory bounded).

§3.2: "The extraction of augmented fault-free training patches (256 x 256 px) at random positions
within the region of interest (ROI) ... following the central cropping ..., synthetic defects ...
are generated in 50 % of the fault-free patches. The utilized algorithm [25] is based on a
stochastic process resembling a random walk with momentum." §3.2.3: Table 8's affine transforms
on 80-95 % of the patches (here ``AFFINE_P`` = 87.5 %), brightness/contrast for LSM-1/LSM-2;
"random translation ... is part of the prior random patch extraction process". §3.2.2: single
channel, 8 bit, HDF5 (``syn_stream`` labels, ``ground_truth`` masks; ``data/hdf5.py``).

Each patch: a training acquisition drawn in proportion to its number of valid positions, a 256
window position in its ROI clear of every labelled defect (an 8-px grid plus a uniform sub-grid
offset, checked exactly), the 512 px context around it, Table 8 augmentation with the centre crop
to 256 in one warp (``data/augment.py``, as for real defects), BT.601 luma, then in exactly half of
every chunk a synthetic defect from the generator's random walk with momentum
(``data/synth/defects.py:synthesize_defect``) with its mask. Chunk ``c`` is a function of
``(seed, c)`` only; chunks are computed on threads in order with a bounded look-ahead and written
as whole HDF5 chunks, so memory is a few chunks whatever ``N`` is, and the bytes do not depend on
the number of threads.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ispad_bench.data.hdf5 import LABELS_NAME, MASKS_NAME
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE, Modality

IMAGES_NAME = "images"
CHUNK = 32  # patches per HDF5 chunk (the streaming loader reads whole chunks)
GRID = 8  # candidate positions lie on this grid; a uniform offset below it is added per patch
PAD = (REAL_DEFECT_SIZE - PATCH_SIZE) // 2  # context around a window for the affine warp (512 -> 256)
COMPRESSION = {"compression": "gzip", "compression_opts": 1}
AUG_FIELDS = ("affine", "angle", "scale", "shear", "hflip", "vflip", "brightness", "contrast")


@dataclass(frozen=True)
class StreamSource:
    """A training acquisition as the stream samples it (arrays may be memory maps)."""

    rel: str
    pixels: np.ndarray  # (H + 2 PAD, W + 2 PAD[, 3]) uint8, reflection-padded by PAD
    valid: np.ndarray  # (H, W) uint8: bit 0 inside the ROI, bit 1 defect
    candidates: np.ndarray  # (K, 2) int32 window starts (y, x) on the GRID that are valid


def candidates(roi: np.ndarray | None, defect_map: np.ndarray, window: int = PATCH_SIZE,
               roi_min: float = 0.5) -> np.ndarray:
    """Window starts on the GRID whose window is ``roi_min`` inside the ROI and free of defect pixels."""
    h, w = defect_map.shape
    ys = np.arange(0, max(1, h - window + 1), GRID)
    xs = np.arange(0, max(1, w - window + 1), GRID)
    hb, wb = -(-h // GRID), -(-w // GRID)

    def block_integral(a: np.ndarray) -> np.ndarray:
        padded = np.zeros((hb * GRID, wb * GRID), np.int32)
        padded[:h, :w] = a
        blocks = padded.reshape(hb, GRID, wb, GRID).sum(axis=(1, 3), dtype=np.int64)
        return np.pad(blocks.cumsum(0).cumsum(1), ((1, 0), (1, 0)))

    k = window // GRID
    by, bx = ys // GRID, xs // GRID

    def window_sums(integral: np.ndarray) -> np.ndarray:
        y1, x1 = np.minimum(by + k, hb), np.minimum(bx + k, wb)
        return (integral[y1][:, x1] - integral[by][:, x1] - integral[y1][:, bx] + integral[by][:, bx])

    ok = window_sums(block_integral(defect_map.astype(np.uint8))) == 0
    if roi is not None:
        ok &= window_sums(block_integral(roi.astype(np.uint8))) >= roi_min * window * window
    iy, ix = np.nonzero(ok)
    return np.stack([ys[iy], xs[ix]], axis=1).astype(np.int32)


def _valid_at(src: StreamSource, y: int, x: int, roi_min: float) -> bool:
    view = src.valid[y:y + PATCH_SIZE, x:x + PATCH_SIZE]
    return not (view & 2).any() and (view & 1).sum() >= roi_min * PATCH_SIZE * PATCH_SIZE


def sample_positions(sources: list[StreamSource], rng: np.random.Generator, n: int,
                     roi_min: float = 0.5) -> list[tuple[int, int, int]]:
    """``n`` (source index, y, x) window starts: a source in proportion to its candidates, a candidate,
    a uniform offset below the grid step (kept when the shifted window is still valid)."""
    weights = np.array([len(s.candidates) for s in sources], np.float64)
    picks = rng.choice(len(sources), size=n, p=weights / weights.sum())
    out = []
    for s in picks:
        src = sources[int(s)]
        y, x = (int(v) for v in src.candidates[rng.integers(len(src.candidates))])
        dy, dx = (int(v) for v in rng.integers(0, GRID, size=2))
        h, w = src.valid.shape
        ty, tx = min(y + dy, max(0, h - PATCH_SIZE)), min(x + dx, max(0, w - PATCH_SIZE))
        out.append((int(s), *((ty, tx) if _valid_at(src, ty, tx, roi_min) else (y, x))))
    return out


def _chunk_rng(seed: int, part: str, c: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(part.encode()), c])


def make_chunk(c: int, count: int, sources: list[StreamSource], modality: Modality, seed: int,
               affine_p: float, roi_min: float = 0.5):
    """Chunk ``c`` of ``count`` patches: (images, masks, labels, manifest rows); a function of (seed, c)."""
    import torch

    from ispad_bench.data.augment import augment, sample_params, to_gray

    rng = _chunk_rng(seed, "stream", c)
    where = sample_positions(sources, rng, count, roi_min)
    labels = np.zeros(count, np.uint8)
    labels[rng.permutation(count)[: count // 2]] = 1  # 50 % synthetic defects in every chunk (§3.2)
    context = np.stack([sources[s].pixels[y:y + REAL_DEFECT_SIZE, x:x + REAL_DEFECT_SIZE] for s, y, x in where])
    x = torch.from_numpy(context).float().div_(255)
    x = x.permute(0, 3, 1, 2) if x.ndim == 4 else x[:, None]
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    params = sample_params(count, modality.augmentation, gen, affine_p=affine_p)
    out = to_gray(augment(x, params, out_size=PATCH_SIZE).clamp_(0, 1))  # the stream is single channel (§3.2.2)
    images = out[:, 0].mul(255).round_().to(torch.uint8).numpy()
    masks = np.zeros_like(images)
    from ispad_bench.data.synth.defects import synthesize_defect

    for i in np.flatnonzero(labels):
        images[i], masks[i] = synthesize_defect(images[i], np.random.default_rng([seed, zlib.crc32(b"defect"), c, int(i)]))
    aug = params.to_dict()
    rows = []
    for i, (s, y, xx) in enumerate(where):
        transform = ";".join(f"{k}={_fmt(aug[k][i])}" for k in AUG_FIELDS if aug.get(k) is not None)
        rows.append((sources[s].rel, y, xx, transform, int(labels[i])))
    return images, masks, labels, rows


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return str(int(v)) if isinstance(v, bool) else f"{v:.6g}"


def deflate_chunk(array: np.ndarray, chunk: int) -> bytes:
    """One HDF5 chunk as the deflate filter stores it (zlib format, level 1), zero-padded to ``chunk`` patches.

    Compressing here, on the chunk's thread (zlib releases the GIL), and handing HDF5 the finished
    chunk (``write_direct_chunk``) keeps compression off the single writing thread.
    """
    if len(array) < chunk:
        array = np.concatenate([array, np.zeros((chunk - len(array), *array.shape[1:]), array.dtype)])
    return zlib.compress(np.ascontiguousarray(array).tobytes(), COMPRESSION["compression_opts"])


def write_stream(path: Path, sources: list[StreamSource], n: int, modality: Modality, seed: int, affine_p: float,
                 run_ordered: Callable, on_chunk: Callable[[list, int], None], roi_min: float = 0.5,
                 chunk: int = CHUNK) -> None:
    """Write ``n`` patches to ``path`` (HDF5; ``images``, ``syn_stream``, ``ground_truth``), chunk by chunk.

    ``run_ordered(jobs)`` yields the results of zero-argument jobs in order (threads, bounded look-ahead);
    ``on_chunk(rows, k)`` receives each chunk's manifest rows and size (progress and provenance).
    """
    import h5py

    chunk = max(1, min(chunk, n))
    shape = (n, PATCH_SIZE, PATCH_SIZE)
    starts = range(0, n, chunk)
    sizes = [min(chunk, n - s) for s in starts]

    def job(c: int, k: int):
        images, masks, labels, rows = make_chunk(c, k, sources, modality, seed, affine_p, roi_min)
        return deflate_chunk(images, chunk), deflate_chunk(masks, chunk), labels, rows

    jobs = [(lambda c=c, k=k: job(c, k)) for c, k in enumerate(sizes)]
    with h5py.File(path, "w", libver="earliest", track_order=False) as f:
        images = f.create_dataset(IMAGES_NAME, shape, np.uint8, chunks=(chunk, PATCH_SIZE, PATCH_SIZE),
                                  track_times=False, **COMPRESSION)
        labels = f.create_dataset(LABELS_NAME, (n,), np.uint8, track_times=False)
        masks = f.create_dataset(MASKS_NAME, shape, np.uint8, chunks=(chunk, PATCH_SIZE, PATCH_SIZE),
                                 track_times=False, **COMPRESSION)
        for start, (img, msk, lab, rows) in zip(starts, run_ordered(jobs)):
            images.id.write_direct_chunk((start, 0, 0), img)
            masks.id.write_direct_chunk((start, 0, 0), msk)
            labels[start:start + len(lab)] = lab
            on_chunk(rows, len(lab))
        f.attrs["builder"] = "ispad-bench data build"
        f.attrs["modality"] = modality.value
        f.attrs["seed"] = int(seed)
        f.attrs["affine_p"] = float(affine_p)


def unaugmented_patch(k: int, sources: list[StreamSource], seed: int, roi_min: float = 0.5):
    """Un-augmented fault-free patch ``k`` (§3.2.4: the stream's "unaugmented counterparts"), in the
    acquisition's channels: (pixels, source rel, y, x); a function of (seed, k)."""
    (s, y, x), = sample_positions(sources, _chunk_rng(seed, "unaugmented", k), 1, roi_min)
    src = sources[s]
    return np.ascontiguousarray(src.pixels[y + PAD:y + PAD + PATCH_SIZE, x + PAD:x + PAD + PATCH_SIZE]), src.rel, y, x
