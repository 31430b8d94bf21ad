"""Which procedure produced a number: the ``procedure`` entry of every ``record.json``.

The paper's runs used two procedures (§4.3.5): EfficientAD and U-Flow (and the supervised ResNet18)
through Anomalib's engine, GLASS and DDAD through their official implementations. Where the paper's
text and the official code differ, the harness runs both readings and names them here:

* GLASS: ``official`` selection (best image + pixel AUROC evaluation tested) or ``early-stopping``;
* DDAD: ``paper-text`` (3000 optimiser steps, last weights) or ``official-code`` (3000 epochs,
  checkpoint 2000 tested, as ``main.py`` with ``load_chp``);
* EfficientAD: ``anomalib-v1`` (``max_steps`` 70000 of Anomalib's model config, 300 epochs, patience 30).

A record *matches the paper's runs* when its method reading is one the authors ran (above; both DDAD
readings, since the paper's "3000 steps" is ambiguous) and training was not cut short (no
``limit_train_batches``, pretrained weights); ``ispad_bench.paper`` lists each method's readings.
The report (``report/notes.py``) computes Δ-to-paper only for those rows.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback

from ispad_bench.paper import readings


class EpochTracker(Callback):
    """Counts training epochs, notes the run's stopping/checkpoint rules and every value of their metrics."""

    def __init__(self) -> None:
        self.history: list[dict[str, float | int]] = []
        self.epochs_trained = 0
        self.monitors: dict[str, str] = {}  # metric -> "max" | "min"
        self.stopping: list[tuple[str, int]] = []  # (monitor, patience) of each EarlyStopping
        self.checkpoint_monitor: str | None = None  # metric of a ModelCheckpoint that keeps the best model

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

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.epochs_trained = max(self.epochs_trained, trainer.current_epoch + 1)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        values = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.monitors}
        if values:
            self.history.append({"epoch": int(trainer.current_epoch), **values})

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
        if length == 3000 and unit == "epochs" and chp == 2000:
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


def describe(spec: dict, config: dict, model: Any, tracker: EpochTracker | None, ckpt: str | None) -> dict:
    """The ``procedure`` entry of a record: profile, reading, selection rule, tested weights, epochs."""
    method = spec.get("method", "")
    reading = method_reading(method, config)
    out: dict[str, Any] = {
        "name": spec.get("profile"),
        "reading": reading,
        "matches_paper_runs": reading in readings(method) and _full_training(config),
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
    return out


__all__ = ["EpochTracker", "describe", "method_reading"]
