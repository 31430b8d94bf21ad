"""Under plain ``anomalib train --config ...``: apply the config's seed, print bad input as one line.

Anomalib 2.7's CLI declares ``--seed_everything`` (default ``True``) but never applies it, so two
identical ``anomalib train`` runs of one of our configs differed (GLASS: image AUROC 0.560 vs 0.495)
while the sweep, which seeds, was bit-identical; docs/sweep.md promises they mean the same. The
CLI imports our classes while it parses the config (``class_path: ispad_bench...``), i.e. before it
builds model and data; at that moment :func:`install` wraps its ``before_instantiate_classes`` hook
to seed first, with Lightning's semantics (int: that seed; ``True``: a random seed, written back
into the config; ``False``: no seeding). It also sets an excepthook that prints an uncaught
:class:`~ispad_bench.errors.InputError` (unreadable image, bad HDF5, out-of-range argument) as
``error: <message>`` instead of a traceback (``ISPAD_TRACEBACK=1`` restores it).
"""

from __future__ import annotations

import os
import sys

from ispad_bench.errors import InputError, config_errors, one_line
from ispad_bench.models import keep

_MARK = "_ispad_applies_seed"


def apply_seed(cli) -> None:
    """Seed like ``LightningCLI._set_seed`` from the parsed config of an ``AnomalibCLI``."""
    from lightning.pytorch import seed_everything

    subcommand = cli.config.get("subcommand")
    config = cli.config.get(str(subcommand), cli.config) if subcommand else cli.config
    seed = config.get("seed_everything", None) if hasattr(config, "get") else None
    if seed is None or seed is False:
        return
    config["seed_everything"] = seed_everything(None if seed is True else int(seed), workers=True)


def install() -> bool:
    """Wrap ``AnomalibCLI.before_instantiate_classes`` and set the excepthook, once, if the Anomalib
    CLI is running."""
    module = sys.modules.get("anomalib.cli.cli")
    cls = getattr(module, "AnomalibCLI", None)
    if cls is None or getattr(cls.before_instantiate_classes, _MARK, False):
        return False
    original = cls.before_instantiate_classes

    def before_instantiate_classes(self) -> None:
        apply_seed(self)
        original(self)

    setattr(before_instantiate_classes, _MARK, True)
    cls.before_instantiate_classes = before_instantiate_classes
    keep.install()  # `anomalib test --ckpt_path <job>/model.ckpt` fills the tensors a kept model leaves to the config
    previous = sys.excepthook

    def excepthook(kind, value, tb) -> None:
        if not os.environ.get("ISPAD_TRACEBACK"):
            if isinstance(value, InputError):
                print(f"error: {one_line(value)}", file=sys.stderr)
                return
            if message := config_errors(value):
                print(f"error: {message} (ISPAD_TRACEBACK=1 shows the traceback)", file=sys.stderr)
                return
        previous(kind, value, tb)

    sys.excepthook = excepthook
    return True
