"""Any Anomalib image model with random weights and no download: ``ispad_bench.models.random_init.<Class>``.

Many Anomalib models have no ``pre_trained`` switch (STFPM's teacher, CFA, CS-Flow, the DINOv2
models, ...): built offline they die on a download. ``random_init.Stfpm`` is ``anomalib.models.Stfpm``
built while :func:`ispad_bench.models.fetch.recording` stands in for every download (backbones keep
their random initialisation), with the same arguments. For speed checks and tests on machines without
the weights only: scores then mean nothing. Downloads Anomalib makes later (when training starts,
e.g. DSR's codebook, EfficientAD's teacher) still need their files.
"""

from __future__ import annotations

import functools
import inspect


def _resolved_signature(base: type) -> inspect.Signature:
    """``base.__init__``'s signature with string annotations evaluated in ``base``'s module (plus the
    processor/evaluator types modules often import only for type checking): the stand-in ``__init__``
    lives in this module, where jsonargparse could not resolve them."""
    import sys
    from collections.abc import Sequence

    from anomalib.metrics import Evaluator
    from anomalib.post_processing import PostProcessor
    from anomalib.pre_processing import PreProcessor
    from anomalib.visualization import Visualizer

    namespace = {"Evaluator": Evaluator, "PostProcessor": PostProcessor, "PreProcessor": PreProcessor,
                 "Visualizer": Visualizer, "Sequence": Sequence, **vars(sys.modules[base.__module__])}
    signature = inspect.signature(base.__init__)
    params = []
    for param in signature.parameters.values():
        if isinstance(param.annotation, str):
            try:
                param = param.replace(annotation=eval(param.annotation, namespace))  # noqa: S307 (library annotations)
            except Exception:  # noqa: BLE001 (leave what cannot be resolved as text)
                pass
        params.append(param)
    return signature.replace(parameters=params)


@functools.lru_cache(maxsize=None)
def _subclass(name: str) -> type:
    import anomalib.models

    from ispad_bench.models.fetch import recording

    base = getattr(anomalib.models, name, None)
    if not (inspect.isclass(base) and issubclass(base, anomalib.models.AnomalibModule)):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r} (not an anomalib model class)")

    def __init__(self, *args, **kwargs):
        with recording([]):
            base.__init__(self, *args, **kwargs)

    __init__.__signature__ = _resolved_signature(base)  # jsonargparse reads the base's arguments
    doc = f"``anomalib.models.{name}`` built with random weights and no download (see module docstring)."
    return type(name, (base,), {"__init__": __init__, "__module__": __name__, "__doc__": doc,
                                "__qualname__": name})


def __getattr__(name: str) -> type:
    if name.startswith("__"):
        raise AttributeError(name)
    return _subclass(name)
