"""ISP-AD data: modalities, on-disk layout, datamodules, the HDF5 reader and the generator."""

from ispad_bench.data.layout import DEFECT_GROUPS, defect_group, modality_dir
from ispad_bench.data.modality import Modality

_LAZY = {  # heavy (anomalib/torch) imports, loaded on first use
    "ISPAD": "ispad_bench.data.datamodule",
    "ISPADSupervised": "ispad_bench.data.supervised",
    "synthesize_defect": "ispad_bench.data.defects",
    "generate": "ispad_bench.data.synth",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ispad_bench.data' has no attribute {name!r}")


__all__ = ["DEFECT_GROUPS", "ISPAD", "ISPADSupervised", "Modality", "defect_group", "generate", "modality_dir", "synthesize_defect"]
