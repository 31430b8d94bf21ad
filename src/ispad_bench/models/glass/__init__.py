"""GLASS with the official local/global anomaly synthesis, as the ISP-AD paper ran it (§4.3.4–4.3.6)."""

from .las import LocalAnomalySynthesis, MaskMode, draw_mask, sample_beta
from .lightning_model import GlassISPAD
from .textures import FolderTextures, ProceduralTextures, texture_source
from .torch_model import GlassISPADModel

__all__ = [
    "FolderTextures",
    "GlassISPAD",
    "GlassISPADModel",
    "LocalAnomalySynthesis",
    "MaskMode",
    "ProceduralTextures",
    "draw_mask",
    "sample_beta",
    "texture_source",
]
