"""Lightning callbacks a sweep job adds to the Engine: loss guard, fit and test timing, prediction capture."""

from __future__ import annotations

import time

import numpy as np
import torch
from lightning.pytorch import Callback

from ispad_bench.data.groups import folder_of, group_of


class FiniteLossGuard(Callback):
    """Stop a run whose training loss became NaN/inf instead of training on garbage."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor) and not torch.isfinite(loss.detach()).all():
            msg = f"non-finite training loss ({loss.detach().float().mean().item()}) at epoch {trainer.current_epoch}, "
            raise FloatingPointError(msg + f"step {trainer.global_step}")


def synchronize(pl_module) -> None:
    """Wait for the module's GPU work, so that a wall-clock reading includes it."""
    if pl_module.device.type == "cuda":
        torch.cuda.synchronize(pl_module.device)


class FitTimer(Callback):
    """Training steps as they ran: their count, their time (GPU synchronised) and the time spent between
    steps waiting for the next batch (the loader's share; validation is not counted), and peak GPU memory."""

    def __init__(self) -> None:
        self.steps, self.step_seconds, self.wait_seconds = 0, 0.0, 0.0
        self._t_ready: float | None = None
        self._t_step = 0.0

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._t_ready = time.perf_counter()  # the first batch's wait includes the loader's start

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        now = time.perf_counter()
        if self._t_ready is not None:
            self.wait_seconds += now - self._t_ready
        self._t_step = now

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        synchronize(pl_module)
        now = time.perf_counter()
        self.steps += 1
        self.step_seconds += now - self._t_step
        self._t_ready = now

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._t_ready = None  # what follows (validation, checkpointing) is not waiting for data

    def summary(self) -> dict[str, float | int | None]:
        busy = self.step_seconds + self.wait_seconds
        peak = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and torch.cuda.is_initialized() else None
        return {"fit_batches": self.steps, "fit_step_s": self.step_seconds / self.steps if self.steps else None,
                "fit_data_wait_s": self.wait_seconds, "fit_data_wait_share": self.wait_seconds / busy if busy else None,
                "peak_gpu_bytes": peak}


class TestTimer(Callback):
    """Test throughput: per-batch model time (start->end of each batch, GPU synchronised) and loop time."""

    def __init__(self) -> None:
        self.images = 0
        self.batch_seconds = 0.0
        self.loop_seconds = 0.0
        self._t_batch = self._t_loop = 0.0

    def on_test_start(self, trainer, pl_module) -> None:
        self.images, self.batch_seconds = 0, 0.0
        self._t_loop = time.perf_counter()

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        synchronize(pl_module)
        self._t_batch = time.perf_counter()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        synchronize(pl_module)
        self.batch_seconds += time.perf_counter() - self._t_batch
        self.images += len(batch.image)

    def on_test_end(self, trainer, pl_module) -> None:
        self.loop_seconds = time.perf_counter() - self._t_loop

    def summary(self) -> dict[str, float | int]:
        return {
            "test_images": self.images,
            "test_model_s": self.batch_seconds,
            "test_loop_s": self.loop_seconds,
            "test_images_per_s": self.images / self.batch_seconds if self.batch_seconds else None,
            "test_loop_images_per_s": self.images / self.loop_seconds if self.loop_seconds else None,
        }


def _np(x) -> np.ndarray | None:
    if x is None:
        return None
    return x.detach().float().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def _display_image(image: torch.Tensor) -> np.ndarray:
    """(C,H,W) model input -> (H,W[,3]) uint8, min-max per channel (undoes any normalisation's look)."""
    img = image.detach().float().cpu()
    lo = img.amin(dim=(1, 2), keepdim=True)
    hi = img.amax(dim=(1, 2), keepdim=True)
    img = ((img - lo) / (hi - lo).clamp_min(1e-8) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return img[..., 0] if img.shape[-1] == 1 else img


def pick_per_group(paths, per_group: int) -> list[str]:
    """``per_group`` paths of each defect group (``good`` included), round-robin over the group's
    test folders (sorted), so a group of several defect types shows several of them."""
    folders: dict[str, dict[str, list[str]]] = {}
    for path in sorted(paths):
        folders.setdefault(group_of(path), {}).setdefault(folder_of(path), []).append(path)
    picked = []
    for by_folder in folders.values():
        queues = [list(v) for _, v in sorted(by_folder.items())]
        mine: list[str] = []
        while len(mine) < per_group and any(queues):
            for queue in queues:
                if queue and len(mine) < per_group:
                    mine.append(queue.pop(0))
        picked += mine
    return picked


class PredictionCollector(Callback):
    """Keeps per-image scores/labels and the maps of a few fixed test images for figures and ROC curves.

    Reads each batch at the *next* hook, i.e. after every ``on_test_batch_end`` hook (the model's
    post-processor and evaluator included) has run, so it stores exactly what the evaluator saw.
    A model that keeps ``model.last_reconstruction`` (DDAD) also gets its reconstruction stored
    (``reconstruction_<i>``, Fig. 6-style triplets). Map images are chosen from the test set itself:
    ``maps_per_group`` paths of each defect group and of ``good`` (:func:`pick_per_group`), so every
    method of a sweep shows the same images.
    """

    def __init__(self, maps_per_group: int = 2) -> None:
        self.maps_per_group = maps_per_group
        self._pending = None
        self._pending_recon = None
        self.paths: list[str] = []
        self.scores: list[float] = []
        self.labels: list[int] = []
        self.maps: dict[str, dict[str, np.ndarray]] = {}
        self._wanted: set[str] | None = None
        self._seen: dict[str, int] = {}

    def on_test_start(self, trainer, pl_module) -> None:
        self._wanted = None
        loaders = trainer.test_dataloaders
        loader = loaders[0] if isinstance(loaders, (list, tuple)) else loaders
        samples = getattr(getattr(loader, "dataset", None), "samples", None)
        if samples is not None and "image_path" in samples:
            self._wanted = set(pick_per_group(map(str, samples["image_path"]), self.maps_per_group))

    def _want(self, path: str) -> bool:
        if self._wanted is not None:
            return path in self._wanted
        group = group_of(path)  # fallback: first seen per group
        self._seen[group] = self._seen.get(group, 0) + 1
        return self._seen[group] <= self.maps_per_group

    def _flush(self) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        scores = _np(batch.pred_score).reshape(-1)
        labels = _np(batch.gt_label).reshape(-1).astype(int)
        paths = [str(p) for p in batch.image_path]
        self.paths += paths
        self.scores += scores.tolist()
        self.labels += labels.tolist()
        amap = getattr(batch, "anomaly_map", None)
        for i, path in enumerate(paths):
            if amap is None or not self._want(path):
                continue
            entry = {"map": _np(amap[i]).squeeze().astype(np.float16), "image": _display_image(batch.image[i])}
            if self._pending_recon is not None and i < len(self._pending_recon):
                entry["reconstruction"] = _display_image(self._pending_recon[i])
            mask = getattr(batch, "gt_mask", None)
            if mask is not None:
                entry["mask"] = (_np(mask[i]).squeeze() > 0.5).astype(np.uint8)
            self.maps[path] = entry

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._flush()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self._pending = outputs if outputs is not None else batch
        recon = getattr(getattr(pl_module, "model", None), "last_reconstruction", None)
        self._pending_recon = recon if isinstance(recon, torch.Tensor) else None

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._flush()

    def arrays(self) -> dict[str, np.ndarray]:
        """Flat arrays for ``np.savez``: per image ``paths/scores/labels/groups``; maps as ``map_<i>``."""
        out = {
            "paths": np.array(self.paths, dtype=str),
            "scores": np.array(self.scores, dtype=np.float64),
            "labels": np.array(self.labels, dtype=np.int8),
            "groups": np.array([group_of(p) for p in self.paths], dtype=str),  # the datamodule's mapping
            "map_paths": np.array(sorted(self.maps), dtype=str),
        }
        for i, path in enumerate(sorted(self.maps)):
            for name, arr in self.maps[path].items():
                out[f"{name}_{i}"] = arr
        return out
