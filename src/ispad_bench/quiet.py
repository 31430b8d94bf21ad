"""Known third-party deprecation warnings, silenced where the project's entry points start.

Anomalib 2.7 and timm print these on every import, i.e. at the start of every job, though nothing
a user of this project does can act on them. :func:`quiet_known_warnings` ignores exactly these
(by message, category and emitting package); every other warning, the project's own included,
still shows. Called by ``ispad-bench`` (``cli.py``) and each sweep job process (``sweep/job.py``).
Under a plain ``anomalib train`` they are printed while Anomalib's CLI imports itself, before any
project code runs; set ``PYTHONWARNINGS`` as docs/data.md shows to hide them there.
"""

from __future__ import annotations

import warnings

# (emitting package, category, start of the message)
KNOWN: tuple[tuple[str, type[Warning], str], ...] = (
    ("timm", FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    ("anomalib", FutureWarning, r"The anomalib\.models\.components\.dinov2 package is deprecated"),
    ("torchvision", UserWarning, r"The transform `ToTensor\(\)` is deprecated"),  # Anomalib's EfficientAD uses it
    ("lightning", Warning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),  # Lightning 2.x on torch >= 2.9
)


def quiet_known_warnings() -> None:
    """Ignore the warnings in :data:`KNOWN` (and only those) for the rest of this process."""
    for package, category, message in KNOWN:
        warnings.filterwarnings("ignore", message=message, category=category, module=rf"{package}(\.|$)")
