"""Model selection by validation metrics, as the official GLASS trainer does it (cqylunlun/GLASS).

The official trainer evaluates every ``eval_epochs`` meta-epochs on its evaluation split (for ISP-AD
the test split: there is no other), keeps the weights of the evaluation with the highest
``image AUROC + pixel AUROC`` (the first evaluation always; later ones only when strictly higher, so
ties keep the earlier epoch) and tests those weights. :class:`BestSumSelection` is that rule as a
Lightning callback: it reads the metrics the evaluator logged, keeps an in-memory copy of the selected
weights and loads them back when training ends, so ``Engine.test`` tests the selected epoch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback

OFFICIAL_KEYS = ("image_AUROC", "pixel_AUROC")


class BestSumSelection(Callback):
    """Keep the weights of the validation with the highest sum of ``keys``; load them at the end of training.

    Args:
        keys: logged validation metrics whose sum is maximised (official GLASS: image + pixel AUROC).
        modules: names of the ``pl_module`` attributes holding the trained weights (``None``: the whole
            module's state dict). Only these are copied, so frozen backbones cost no memory.

    A NaN sum never wins (the official code would keep a NaN first evaluation forever). After fit,
    :meth:`summary` gives the rule, the selected epoch (0-based, as Lightning's ``current_epoch``), its
    metrics and every evaluation.
    """

    def __init__(self, keys: Sequence[str] = OFFICIAL_KEYS, modules: Sequence[str] | None = None) -> None:
        self.keys = tuple(keys)
        self.modules = tuple(modules) if modules is not None else None
        self.best_value: float | None = None
        self.best_epoch: int | None = None
        self.best_state: dict[str, Any] | None = None
        self.history: list[dict[str, float | int]] = []
        self.restored = False

    def _state(self, pl_module) -> dict[str, Any]:
        if self.modules is None:
            return {"": {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}}
        return {
            name: {k: v.detach().cpu().clone() for k, v in _attr(pl_module, name).state_dict().items()}
            for name in self.modules
        }

    def update(self, epoch: int, metrics: dict[str, float], pl_module) -> bool:
        """Record one evaluation; True when it becomes the selected one (first, or strictly higher sum)."""
        missing = [k for k in self.keys if k not in metrics]
        if missing:
            msg = (
                f"model selection needs the validation metrics {list(self.keys)}, but {missing} were not logged "
                f"(logged: {sorted(metrics)}); add them to the evaluator's val_metrics"
            )
            raise KeyError(msg)
        values = {k: float(metrics[k]) for k in self.keys}
        total = sum(values.values())
        self.history.append({"epoch": int(epoch), **values, "sum": total})
        better = not math.isnan(total) and (self.best_value is None or total > self.best_value)
        if better:
            self.best_value, self.best_epoch = total, int(epoch)
            self.best_state = self._state(pl_module)
        return better

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in self.keys}
        self.update(trainer.current_epoch, metrics, pl_module)

    def restore(self, pl_module) -> None:
        """Load the selected weights into ``pl_module`` (no-op when nothing was evaluated)."""
        if self.best_state is None:
            return
        for name, state in self.best_state.items():
            target = pl_module if name == "" else _attr(pl_module, name)
            target.load_state_dict(copy.deepcopy(state))
        self.restored = True

    def on_train_end(self, trainer, pl_module) -> None:
        self.restore(pl_module)

    def summary(self) -> dict[str, Any]:
        """What was selected: rule, selected epoch and its metrics, number of evaluations, history."""
        best = next((h for h in self.history if h["epoch"] == self.best_epoch), None)
        return {
            "rule": "max(" + " + ".join(self.keys) + "), first on ties",
            "selected_epoch": self.best_epoch,
            "selected_metrics": best,
            "evaluations": len(self.history),
            "restored": self.restored,
            "history": list(self.history),
        }

    def state_dict(self) -> dict[str, Any]:  # Lightning checkpoints: resume keeps the selection
        return {"best_value": self.best_value, "best_epoch": self.best_epoch, "history": self.history,
                "best_state": self.best_state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.best_value = state_dict.get("best_value")
        self.best_epoch = state_dict.get("best_epoch")
        self.history = list(state_dict.get("history") or [])
        self.best_state = state_dict.get("best_state")


def _attr(obj: Any, dotted: str) -> torch.nn.Module:
    for part in dotted.split("."):
        obj = getattr(obj, part)
    return obj


__all__ = ["OFFICIAL_KEYS", "BestSumSelection"]
