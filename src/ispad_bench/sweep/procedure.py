"""Which procedure produced a number: the ``procedure`` entry of every ``record.json``.

The paper's runs used two procedures (§4.3.5): EfficientAD and U-Flow (and the supervised ResNet18)
through Anomalib's engine, GLASS and DDAD through their official implementations. Where the paper's
text and the official code differ, the harness runs both readings and names them here:

* GLASS: ``official`` selection (best image + pixel AUROC evaluation tested) or ``early-stopping``;
* DDAD: ``official-code`` (the configs' default: 3000 epochs, checkpoint 2000 tested, as ``main.py``
  with ``load_chp``, drop_last loaders, 16-image domain-adaptation batches) or ``paper-text``
  (3000 optimiser steps, last weights; profile ``paper-text``);
* EfficientAD: ``anomalib-v1`` (``max_steps`` 70000 of Anomalib's model config, 300 epochs, patience 30).

A record *matches the paper's runs* when its method reading is one the authors ran (above; both DDAD
readings, since the paper's "3000 steps" is ambiguous), training was not cut short (no
``limit_train_batches``, pretrained weights) and the run did what the reading requires, measured
by :class:`EpochTracker` and the model's own ``procedure()`` (a GLASS run whose evaluations did not
run is not the official selection, whatever its config says); ``ispad_bench.paper`` lists each
method's readings.
The report (``report/notes.py``) computes Δ-to-paper only for those rows.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from ispad_bench.paper import readings


class EpochTracker(Callback):
    """Measures what training did: epochs, batches, optimiser steps, images, LR changes, evaluations, tested weights.

    It also notes the run's stopping/checkpoint rules and every value of their metrics. The weights
    are identified by a digest of the trainable parameters after every epoch and when testing starts,
    so the record names the epoch whose weights were tested (``tested_epoch``) from the weights themselves.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float | int]] = []
        self.epochs_trained = 0
        self.monitors: dict[str, str] = {}  # metric -> "max" | "min"
        self.stopping: list[tuple[str, int]] = []  # (monitor, patience) of each EarlyStopping
        self.checkpoint_monitor: str | None = None  # metric of a ModelCheckpoint that keeps the best model
        self.batches: list[int] = []  # training batches per epoch
        self.images_seen = 0
        self.optimizer_steps = 0
        self.evaluations = 0
        self.lr_changes: list[dict[str, Any]] = []  # (epoch, step, learning rates) at epoch starts, when changed
        self.lr_restarts: list[int] = []  # optimiser steps where a falling learning rate rose again (warm restarts)
        self._rates: list[float] = []
        self._falling = False
        self.epoch_digests: dict[int, str] = {}
        self.tested_digest: str | None = None

    def on_train_start(self, trainer, pl_module) -> None:
        from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

        for cb in trainer.callbacks:
            monitor = getattr(cb, "monitor", None)
            if not (isinstance(monitor, str) and monitor):
                continue
            self.monitors.setdefault(monitor, str(getattr(cb, "mode", "min")))
            if isinstance(cb, EarlyStopping):
                self.stopping.append((monitor, int(cb.patience)))
            elif isinstance(cb, ModelCheckpoint):
                self.checkpoint_monitor = monitor

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.batches.append(0)
        self._note_lr(trainer)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        rates = [float(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups]
        if self._rates and len(rates) == len(self._rates):
            if any(r > q for r, q in zip(rates, self._rates)):
                if self._falling:  # a warm-up's rises are one direction, not restarts
                    self.lr_restarts.append(int(trainer.global_step))
                self._falling = False
            elif any(r < q for r, q in zip(rates, self._rates)):
                self._falling = True
        self._rates = rates

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.batches:
            self.batches[-1] += 1
        self.images_seen += _batch_size(batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs_trained = max(self.epochs_trained, trainer.current_epoch + 1)
        self.epoch_digests[int(trainer.current_epoch)] = weights_digest(pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        self.optimizer_steps = int(trainer.global_step)
        self._note_lr(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        self.evaluations += 1
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.monitors}
        if values:
            self.history.append({"epoch": int(trainer.current_epoch), **values})

    def on_test_start(self, trainer, pl_module) -> None:
        self.tested_digest = weights_digest(pl_module)

    def _note_lr(self, trainer) -> None:
        rates = [float(g["lr"]) for opt in trainer.optimizers for g in opt.param_groups]
        if rates and (not self.lr_changes or self.lr_changes[-1]["lr"] != rates):
            self.lr_changes.append({"epoch": int(trainer.current_epoch), "step": int(trainer.global_step), "lr": rates})

    def tested_epoch(self) -> int | None:
        """The last epoch after which the weights equalled the tested ones (``None``: none, or not measured)."""
        matches = [e for e, d in self.epoch_digests.items() if d == self.tested_digest]
        return max(matches) if matches else None

    def measured(self) -> dict[str, Any]:
        """The record's measured counts (``procedure.measured``)."""
        return {
            "epochs": self.epochs_trained, "batches_per_epoch": sorted(set(self.batches)),
            "batches": sum(self.batches), "optimizer_steps": self.optimizer_steps, "images_seen": self.images_seen,
            "evaluations": self.evaluations, "lr_changes": self.lr_changes, "lr_restarts": self.lr_restarts,
            "tested_epoch": self.tested_epoch(),
        }

    def best_epoch(self, metric: str | None = None) -> tuple[str, int] | None:
        """(metric, first epoch of its best value) for ``metric`` or the first monitored one; ``None`` without data."""
        for name, mode in self.monitors.items():
            if metric is not None and name != metric:
                continue
            points = [(h[name], h["epoch"]) for h in self.history if name in h and not math.isnan(h[name])]
            if points:
                best = (max if mode == "max" else min)(v for v, _ in points)
                return name, next(e for v, e in points if v == best)
        return None


def weights_digest(module: Any) -> str:
    """Fingerprint of the trainable parameters (what training changes): SHA-1 of each one's name, sum and sum of
    squares, reduced on its own device, so that a digest after every epoch costs no host copy of the weights
    (DDAD's official length is 3000 epochs of a 33M-parameter UNet plus its extractor)."""
    import torch

    named = [(name, p.detach()) for name, p in module.named_parameters() if p.requires_grad]
    digest = hashlib.sha1("|".join(name for name, _ in named).encode())
    if named:
        stats = torch.stack([torch.stack([p.float().sum(), p.float().square().sum()]) for _, p in named])
        digest.update(stats.cpu().numpy().tobytes())
    return digest.hexdigest()


def _batch_size(batch: Any) -> int:
    image = getattr(batch, "image", None)
    if image is None and isinstance(batch, dict):
        image = batch.get("image")
    if image is None and isinstance(batch, list | tuple) and batch:
        image = batch[0]
    return int(image.shape[0]) if hasattr(image, "shape") else 0


def _get(config: dict, dotted: str, default: Any = None) -> Any:
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _stoppers(config: dict) -> list[dict]:
    callbacks = _get(config, "trainer.callbacks") or []
    callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
    return [c.get("init_args") or {} for c in callbacks
            if isinstance(c, dict) and str(c.get("class_path", "")).endswith("EarlyStopping")]


def method_reading(method: str, config: dict) -> str:
    """The named reading of a method's procedure, from its resolved config (``custom`` when none fits)."""
    args = _get(config, "model.init_args") or {}
    trainer = _get(config, "trainer") or {}
    engine_rule = any(s.get("monitor") == "pixel_AUROC" and s.get("patience") == 30 for s in _stoppers(config))
    if method == "glass":
        if args.get("selection") == "official":
            return "official" if trainer.get("max_epochs") == 160 else "official-custom-length"
        return "early-stopping"
    if method == "ddad":
        length, unit, chp = args.get("diffusion_steps"), args.get("diffusion_unit"), args.get("test_checkpoint")
        if length == 3000 and unit == "steps" and chp in (None, 3000):
            return "paper-text"
        official_batches = args.get("drop_last", True) is True and args.get("da_batch_size", 16) == 16
        if length == 3000 and unit == "epochs" and chp == 2000 and official_batches:
            return "official-code"
        return "custom"
    if method == "efficient_ad":
        full = trainer.get("max_steps") == 70000 and trainer.get("max_epochs") == 300
        return "anomalib-v1" if full and engine_rule else "custom"
    if method == "uflow":
        return "anomalib-engine" if trainer.get("max_epochs") == 300 and engine_rule else "custom"
    if method == "supervised":
        if args.get("early_stopping_patience") != 20:
            return "custom"
        return "real-only" if _get(config, "data.init_args.real_only") else "paper"
    return "custom"


def _full_training(config: dict) -> bool:
    """No shortened training (smoke/test overrides) and pretrained weights."""
    limit = _get(config, "trainer.limit_train_batches")
    pre_trained = _get(config, "model.init_args.pre_trained", True)
    return limit in (None, 1.0) and pre_trained is not False


def mismatches(method: str, reading: str, config: dict, out: dict, measured: dict | None) -> list[str]:
    """Where the run did not do what its reading requires, measured from the run (empty: it did)."""
    if measured is None:
        return []
    found: list[str] = []
    epochs, evaluations = measured["epochs"], measured["evaluations"]
    max_epochs = _get(config, "trainer.max_epochs")
    if method == "glass" and reading.startswith("official"):
        expected = epochs // max(int(out.get("eval_epochs") or 1), 1)
        if evaluations < expected:
            found.append(f"{evaluations} evaluations in {epochs} epochs (official: {expected}); model selection did not run")
        if out.get("selected_epoch") is None:
            found.append("no evaluation selected the tested weights")
        elif measured["tested_epoch"] != out["selected_epoch"]:
            found.append(f"tested weights are epoch {measured['tested_epoch']}'s, selected was {out['selected_epoch']}")
        if isinstance(max_epochs, int) and epochs != max_epochs:
            found.append(f"{epochs} of {max_epochs} meta-epochs trained")
        cap = out.get("epoch_batches")
        if cap is not None and measured["batches_per_epoch"] != [cap]:
            found.append(f"batches per epoch {measured['batches_per_epoch']}, official cap {cap}")
    elif method == "ddad":
        if out.get("diffusion_optimizer_steps") != out.get("diffusion_steps_planned"):
            found.append(f"{out.get('diffusion_optimizer_steps')} of {out.get('diffusion_steps_planned')} diffusion steps")
        if out.get("tested_step") != out.get("tested_step_planned"):
            found.append(f"tested UNet of step {out.get('tested_step')}, planned {out.get('tested_step_planned')}")
        if out.get("da_epochs") and not out.get("da_optimizer_steps"):
            found.append("no domain-adaptation step ran")
    elif any(True for _ in _stoppers(config)) and evaluations == 0:
        found.append("early stopping configured but no evaluation ran")
    return found


def describe(spec: dict, config: dict, model: Any, tracker: EpochTracker | None, ckpt: str | None) -> dict:
    """The ``procedure`` entry of a record: profile, reading, selection rule, tested weights, what ran.

    ``reading`` names the procedure the config asks for; ``measured`` is what the run did (epochs,
    batches, optimiser steps, images, evaluations, LR changes, the tested epoch by weight digest), and
    ``matches_paper_runs`` holds only when the reading is the authors', training was not cut short and
    the run did what the reading requires (``mismatches`` lists why not).
    """
    method = spec.get("method", "")
    reading = method_reading(method, config)
    measured = tracker.measured() if tracker is not None else None
    out: dict[str, Any] = {
        "name": spec.get("profile"),
        "reading": reading,
        "epochs_trained": tracker.epochs_trained if tracker is not None else None,
    }
    ids_file = _get(config, "data.init_args.real_ids_file")
    if method == "supervised":  # which real defects: a published list or the harness's seeded shuffle
        out["real_ids"] = f"file {Path(ids_file).name}" if ids_file else "seeded shuffle"
    own = getattr(model, "procedure", None)
    if callable(own):
        out.update(own())  # GLASS: selection and selected epoch; DDAD: phase-1 length and tested UNet
    out.pop("history", None)  # per-evaluation values stay out of the record: only the summary
    best = tracker.best_epoch() if tracker is not None else None
    if best is not None:
        out["best_metric"], out["best_epoch"] = best
    if tracker is not None and "tested" not in out:
        stops = ", ".join(f"early stopping on {m}, patience {p}" for m, p in tracker.stopping)
        out["selection"] = stops or "fixed length"
        kept = tracker.best_epoch(tracker.checkpoint_monitor) if ckpt and tracker.checkpoint_monitor else None
        if kept is not None:  # a monitored checkpoint (supervised: lowest val_loss) was tested
            out["selected_epoch"] = kept[1]
            out["tested"] = f"best {kept[0]} checkpoint (epoch {kept[1]})"
        else:
            out["tested"] = "last epoch"
    if measured is not None:
        out["measured"] = measured
    out["mismatches"] = mismatches(method, reading, config, out, measured)
    out["matches_paper_runs"] = reading in readings(method) and _full_training(config) and not out["mismatches"]
    return out


__all__ = ["EpochTracker", "describe", "method_reading", "mismatches", "weights_digest"]
