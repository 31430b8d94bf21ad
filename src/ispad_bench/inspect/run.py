"""Scoring one acquisition: its windows in batches through the job's pre-processing and model, blended.

Per batch, exactly what a test patch went through: the datamodule's geometry (crops), its test
augmentations (per window, e.g. the supervised model's grayscale §4.2 pre-processing), the
pre-processor's transform (resize, normalisation; as its ``on_test_batch_start`` applies it), then the
model's own ``test_step`` (DDAD's trajectory, GLASS's discriminator, ...). Scores and maps are raw
(the evaluator requires raw scores), on the scale of the record's threshold.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ispad_bench.inspect.blend import Blender
from ispad_bench.inspect.load import InspectJob
from ispad_bench.inspect.tiles import STRIDE, WINDOW, Footprint, Grid, footprint, pad_to_window, windows


@dataclass
class Scored:
    """One acquisition's full map (original size), window scores (rows x columns of the grid) and timings."""

    amap: np.ndarray
    window_scores: np.ndarray
    grid: Grid
    footprint: Footprint
    padded_from: tuple[int, int] | None  # original (H, W) when the image was padded to a window
    map_source: str
    blend: str
    uncovered_px: int
    seconds: dict = field(default_factory=dict)


def synchronize(device: str) -> None:
    """Wait for the device's queued work (CUDA), so that timings are real."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def forward(job: InspectJob, batch):
    """(scores (n,), maps (n, h, w) or ``None``) of a (n, 3, window, window) batch of native windows."""
    import torch
    from anomalib.data import ImageBatch

    x = batch.to(job.device, non_blocking=True)
    if job.geometry is not None:
        x = job.geometry(x)
    if job.augmentations is not None:
        x = torch.stack([job.augmentations(w) for w in x])
    if job.model_transform is not None:
        x = job.model_transform(x)
    with torch.inference_mode():
        out = job.model.test_step(ImageBatch(image=x), 0)
    amap = out.anomaly_map
    if amap is not None:
        amap = amap.reshape(amap.shape[0], *amap.shape[-2:]).float()
    return out.pred_score.reshape(-1).float(), amap, tuple(x.shape[-2:])


def map_footprint(job: InspectJob, fp: Footprint, model_in: tuple[int, int], map_hw: tuple[int, int]) -> Footprint:
    """The part of a window's footprint the model's map covers: all of it, unless the model centre-crops its
    map (DDAD's ``map_crop``, in model-input pixels)."""
    crop = getattr(getattr(job.model, "model", None), "map_crop", None)
    if map_hw == model_in or not crop or map_hw != (crop, crop):
        return fp
    dy = round((model_in[0] - crop) / 2 * fp.height / model_in[0])
    dx = round((model_in[1] - crop) / 2 * fp.width / model_in[1])
    return Footprint(fp.y + dy, fp.x + dx, fp.height - 2 * dy, fp.width - 2 * dx)


def score_image(job: InspectJob, array: np.ndarray, scale: float, *, window: int = WINDOW, stride: int = STRIDE,
                batch_size: int = 16, blend: str | None = None) -> Scored:
    """Score every window of ``array`` (as :func:`~ispad_bench.inspect.tiles.read_acquisition` returns it) and
    blend the window maps into one map of the image's size."""
    import torch.nn.functional as F

    seconds = {"windows": 0.0, "forward": 0.0, "blend": 0.0}
    array, original = pad_to_window(array, window)
    padded = original if original != array.shape[:2] else None
    grid = Grid.of(array.shape[0], array.shape[1], window, stride)
    corners = grid.corners
    fp = footprint(job.geometry, window)
    blender, scores, source, fp_map = None, [], job.map_source, fp
    for start in range(0, len(corners), batch_size):
        t0 = time.perf_counter()
        chunk = corners[start:start + batch_size]
        batch = windows(array, chunk, window, scale)
        t1 = time.perf_counter()
        score, amap, model_in = forward(job, batch)
        synchronize(job.device)
        t2 = time.perf_counter()
        if amap is None:
            source = "window scores"
        if blender is None:
            if source == "model":
                fp_map = map_footprint(job, fp, model_in, tuple(amap.shape[-2:]))
            blender = Blender(grid, fp_map, blend or ("mean" if source == "model" else "max"))
        if source == "model":
            tiles = F.interpolate(amap[:, None], size=(fp_map.height, fp_map.width), mode="bilinear",
                                  align_corners=False)[:, 0]
            tiles = tiles.cpu().numpy()
        else:
            tiles = np.broadcast_to(score.cpu().numpy()[:, None, None], (len(chunk), fp_map.height, fp_map.width))
        blender.add(chunk, tiles)
        scores.append(score.cpu().numpy())
        seconds["windows"] += t1 - t0
        seconds["forward"] += t2 - t1
        seconds["blend"] += time.perf_counter() - t2
    t0 = time.perf_counter()
    amap = blender.result()
    if padded is not None:
        amap = np.ascontiguousarray(amap[:padded[0], :padded[1]])
    seconds["blend"] += time.perf_counter() - t0
    window_scores = np.concatenate(scores).reshape(len(grid.ys), len(grid.xs))
    return Scored(amap, window_scores, grid, fp_map, padded, source, blender.rule, blender.uncovered, seconds)
