"""One lazy-import helper for the package ``__init__`` files: heavy modules load on first use.

``__getattr__ = lazy_attributes(__name__, {"ISPAD": "ispad_bench.data.datamodule"})`` makes
``ispad_bench.data.ISPAD`` import its module only when it is first read, so ``import
ispad_bench.data`` stays cheap (no torch/anomalib) for the commands that do not need them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving each name in ``names`` from its module, on first access."""

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
