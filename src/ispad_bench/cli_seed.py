"""Make ``seed_everything`` of a config take effect under plain ``anomalib train --config ...``.

Anomalib 2.7's CLI declares ``--seed_everything`` (default ``True``) but never applies it, so two
identical ``anomalib train`` runs of one of our configs differed (GLASS: image AUROC 0.560 vs 0.495)
while the sweep, which seeds, was bit-identical; docs/sweep.md promises they mean the same. The
CLI imports our classes while it parses the config (``class_path: ispad_bench...``), i.e. before it
builds model and data; at that moment :func:`install` wraps its ``before_instantiate_classes`` hook
to seed first, with Lightning's semantics (int: that seed; ``True``: a random seed, written back
into the config; ``False``: no seeding).
"""

from __future__ import annotations

import sys

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
    """Wrap ``AnomalibCLI.before_instantiate_classes`` once, if the Anomalib CLI is running."""
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
    return True
