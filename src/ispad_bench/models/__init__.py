"""The paper's methods as Anomalib models (layer: models; uses data/metrics only through configs).

Public surface: ``GlassISPAD``, ``EfficientAdISPAD``, ``UflowISPAD``, ``Ddad``, ``MixedSupervised``
(each a folder or module with ``torch_model``/``lightning_model``), offline weight lookup
(``weights``, ``fetch``) and the ``weights fetch|check`` command (``cli``). Heavy imports load on
first attribute access.
"""

from ispad_bench.lazy import lazy_attributes

_LAZY = {
    "GlassISPAD": "ispad_bench.models.glass",
    "EfficientAdISPAD": "ispad_bench.models.efficient_ad",
    "UflowISPAD": "ispad_bench.models.uflow",
    "Ddad": "ispad_bench.models.ddad",
    "MixedSupervised": "ispad_bench.models.mixed_supervised",
}
__getattr__ = lazy_attributes(__name__, _LAZY)
__all__ = sorted(_LAZY)
