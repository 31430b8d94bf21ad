"""ISP-AD methods as Anomalib models (heavy imports load on first attribute access)."""

_LAZY = {
    "GlassISPAD": "ispad_bench.models.glass",
    "EfficientAdISPAD": "ispad_bench.models.efficient_ad",
    "UflowISPAD": "ispad_bench.models.uflow",
    "Ddad": "ispad_bench.models.ddad",
    "MixedSupervised": "ispad_bench.models.mixed_supervised",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ispad_bench.models' has no attribute {name!r}")


__all__ = sorted(_LAZY)
