"""ResNet18 binary defect classifier with a class-activation anomaly map (§4.2).

The one-logit head sits on global average pooling, so the image logit is the mean of the
per-location logits ``w . f(x, y) + b`` of the layer4 feature map (CAM, Zhou et al. 2016). The
anomaly map is the sigmoid of those per-location logits, upsampled bilinearly from the stride-32
grid (8x8 at 256 px) to the input size: a coarse "local defect probability". The paper reports
image-level results only; the map is this project's addition so pixel metrics and figures exist.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from ispad_bench.models.weights import torchvision_state_dict


class MixedSupervisedModel(nn.Module):
    """ResNet18 (ImageNet weights when ``pre_trained``) with a single-logit head.

    Training mode returns the logits (n,); eval mode an ``InferenceBatch`` with ``pred_score`` =
    defect probability and ``anomaly_map`` (n, H, W).
    """

    def __init__(self, pre_trained: bool = True) -> None:
        super().__init__()
        net = resnet18(weights=None)
        if pre_trained:
            # Raises MissingWeightsError (file, location, `pre_trained: false`) when offline and absent.
            net.load_state_dict(torchvision_state_dict(ResNet18_Weights.IMAGENET1K_V1))
        net.fc = nn.Linear(net.fc.in_features, 1)
        self.net = net

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
        return n.layer4(n.layer3(n.layer2(n.layer1(x))))

    def logits_and_cam(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Image logits (n,) and per-location logits (n, h, w) of the layer4 grid."""
        f = self.features(x)
        local = torch.einsum("nchw,c->nhw", f, self.net.fc.weight[0]) + self.net.fc.bias[0]
        return local.mean(dim=(1, 2)), local

    def forward(self, x: torch.Tensor) -> torch.Tensor | InferenceBatch:
        logits, local = self.logits_and_cam(x)
        if self.training:
            return logits
        return self.inference(logits, local, x.shape[-2:])

    @staticmethod
    def inference(logits: torch.Tensor, local: torch.Tensor, size) -> InferenceBatch:
        amap = F.interpolate(local[:, None].float(), size=tuple(size), mode="bilinear", align_corners=False)
        return InferenceBatch(pred_score=torch.sigmoid(logits.float()), anomaly_map=torch.sigmoid(amap[:, 0]))
