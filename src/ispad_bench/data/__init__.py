"""ISP-AD data (layer: data; imports nothing of the package above it, only the base modules ``errors``/``lazy``).

Readers: ``Modality`` (every per-modality fact), the on-disk layout, ``ISPAD`` (MVTec folder
scheme) and ``ISPADSupervised`` (HDF5 stream + injected real defects), ``data check`` and
``download``. The generator of ISP-AD-like data is its own package, :mod:`ispad_bench.data.synth`
(numpy/scipy/PIL/h5py only). Heavy (anomalib/torch) imports load on first use.
"""

from ispad_bench.data.layout import DEFECT_GROUPS, defect_group, modality_dir
from ispad_bench.data.modality import Modality
from ispad_bench.lazy import lazy_attributes

_LAZY = {
    "ISPAD": "ispad_bench.data.datamodule",
    "ISPADSupervised": "ispad_bench.data.supervised",
    "synthesize_defect": "ispad_bench.data.synth",
    "generate": "ispad_bench.data.synth",
}
__getattr__ = lazy_attributes(__name__, _LAZY)
__all__ = ["DEFECT_GROUPS", "ISPAD", "ISPADSupervised", "Modality", "defect_group", "generate", "modality_dir",
           "synthesize_defect"]
