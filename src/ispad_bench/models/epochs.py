"""Official epoch lengths (GLASS's 392-sample cap, DDAD's ``drop_last``) as Lightning batch limits.

The failure this prevents: ending an epoch early by returning −1 from ``on_train_batch_start``
makes Lightning 2.6 leave the epoch *before* its validation, so GLASS's official model selection
(an evaluation after every meta-epoch) never ran at the paper's counts (issue 20). Here the
official length is turned into a number of batches before fit builds its loader and set as the
trainer's ``limit_train_batches``: the epoch then really has that many batches and Lightning
validates at its end, as with any other epoch.

* GLASS (``glass.py`` ``_train_discriminator``): a batch is trained, its samples are counted, and
  the loop breaks once the count *exceeds* ``limit``; with full batches of ``b`` that is
  ``limit // b + 1`` batches (392 at batch 8: 50 batches, 400 samples), or the whole loader when
  it is shorter.
* DDAD (``train.py``, ``feature_extractor.py``): ``DataLoader(..., shuffle=True, drop_last=True)``
  drops the last, partial batch of each shuffled epoch; the same as keeping the first
  ``len(dataset) // b`` batches of it.
"""

from __future__ import annotations

from typing import Any


def loader_shape(trainer: Any) -> tuple[int, int, int] | None:
    """(dataset length, batch size, batches) of the training loader fit will use; ``None`` when unknown.

    Read from the trainer's datamodule (``train_dataloader()`` builds a loader object, it does not
    iterate), which is how Anomalib's engine always trains.
    """
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None:
        return None
    loader = datamodule.train_dataloader()
    size, batch = len(loader.dataset), loader.batch_size
    if not batch or getattr(loader, "batch_sampler", None) is None:
        return None
    return size, int(batch), len(loader)


def configured_batches(trainer: Any, batches: int) -> int:
    """The batches per epoch Lightning runs for a loader of ``batches`` under ``limit_train_batches``."""
    limit = trainer.limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(batches, limit)
    return int(batches * float(limit)) if float(limit) != 1.0 else batches


def glass_cap(limit: int, batch_size: int, batches: int) -> int:
    """Batches of the official GLASS epoch: train until more than ``limit`` samples were seen."""
    return min(batches, limit // batch_size + 1)


def drop_last_cap(size: int, batch_size: int) -> int:
    """Batches of a ``drop_last`` epoch (the last, partial batch is left out)."""
    return size // batch_size


def apply_cap(trainer: Any, batches: int, loader_batches: int) -> int:
    """Limit the trainer's epoch to ``batches`` (a shorter ``limit_train_batches`` already set stays); returns it."""
    limit = int(min(configured_batches(trainer, loader_batches), batches))
    trainer.limit_train_batches = limit
    return limit


__all__ = ["apply_cap", "configured_batches", "drop_last_cap", "glass_cap", "loader_shape"]
