"""DDAD: anomaly detection by target-conditioned denoising diffusion (official code: arimousa/DDAD).

``Ddad`` is the Anomalib model (YAML ``class_path: ispad_bench.models.ddad.Ddad``); ``DdadModel``
the plain PyTorch model; ``DdadUNet`` the noise-prediction network. See docs/ddad.md.
"""

from ispad_bench.models.ddad.lightning_model import Ddad
from ispad_bench.models.ddad.torch_model import DdadModel, FeatureExtractor, LinearSchedule, load_official_unet
from ispad_bench.models.ddad.unet import SUPPORTED_SIZES, DdadUNet

__all__ = ["SUPPORTED_SIZES", "Ddad", "DdadModel", "DdadUNet", "FeatureExtractor", "LinearSchedule", "load_official_unet"]
