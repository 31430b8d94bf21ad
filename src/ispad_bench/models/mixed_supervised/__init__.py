"""Mixed-supervised ResNet18 of the ISP-AD paper (§4.1-4.2): ``MixedSupervised`` + its torch model."""

from ispad_bench.models.mixed_supervised.lightning_model import MixedSupervised
from ispad_bench.models.mixed_supervised.torch_model import MixedSupervisedModel

__all__ = ["MixedSupervised", "MixedSupervisedModel"]
