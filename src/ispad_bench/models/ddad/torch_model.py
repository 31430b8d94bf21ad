"""DDAD (Mousakhan et al., "Anomaly detection with conditioned denoising diffusion models") in PyTorch.

Faithful to the official code (github arimousa/DDAD; file names in the comments below) and the
ISP-AD paper's settings (§4.3.3, §4.3.5-4.3.6):

* DDPM with a linear beta schedule 1e-4 -> 0.02 over T = 1000 steps, eps-prediction loss summed
  over pixels, averaged over the batch (``loss.py``).
* Conditioned DDIM reconstruction (``reconstruction.py``): the input is noised to step
  ``start`` (250) and denoised in ``start / skip`` steps (10); at each step the predicted noise
  is corrected toward the *target* image, ``eps_hat = eps - sqrt(1 - a_t) * w * (y_t - x_t)``
  with ``y_t = sqrt(a_t) * y + sqrt(1 - a_t) * eps``; ``eta`` scales the fresh noise.
* Feature extractor: stem + layer1-3 of an ImageNet ResNet (default ``wide_resnet101_2``),
  fine-tuned by domain adaptation against a frozen copy (``feature_extractor.py``).
* Anomaly map (``anomaly_map.py``): ``D_f + v * max(D_f) / max(D_p) * D_p``, Gaussian sigma 4,
  where ``D_f`` sums ``1 - cos`` of 3x3-averaged layer2/layer3 features (bilinear upsampled)
  and ``D_p`` is the channel-mean absolute pixel difference; image score = map maximum.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from anomalib.data import InferenceBatch
from kornia.filters import gaussian_blur2d
from torch import nn

from ispad_bench.models.ddad.unet import DdadUNet

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("wide_resnet101_2", "wide_resnet50_2", "resnet50", "resnet18")  # official three + a small test one
NORMALIZATIONS = ("batch", "per_image")
SIGMA = 4.0  # anomaly_map.py: Gaussian smoothing, kernel 2 * int(4 * sigma + 0.5) + 1 = 33


class LinearSchedule(nn.Module):
    """DDPM linear beta schedule; ``alpha_bar(t)`` with the official indexing (``alpha_bar(-1) = 1``)."""

    def __init__(self, steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> None:
        super().__init__()
        # as the official loss.py / reconstruction.py: float64 linspace, cast to float32, float32 cumprod
        betas = torch.linspace(beta_start, beta_end, steps, dtype=torch.float64).float()
        self.steps = steps
        self.register_buffer("betas", betas, persistent=False)
        self.register_buffer("alphas_cumprod", torch.cumprod(1 - betas, 0), persistent=False)

    def alpha_bar(self, t: torch.Tensor | int) -> torch.Tensor:
        """Cumulative product of ``1 - beta`` up to and including 0-based step ``t``; 1 for ``t = -1``."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long()
        padded = torch.cat([self.alphas_cumprod.new_ones(1), self.alphas_cumprod])
        return padded[t + 1]


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a (possibly extension-less, possibly DataParallel) official DDAD checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DDAD checkpoint not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_official_unet(unet: nn.Module, path: str | Path) -> None:
    """Load an official DDAD UNet checkpoint (e.g. ``checkpoints/MVTec/screw/2000``) into ``unet``."""
    try:
        unet.load_state_dict(load_state(path))
    except RuntimeError as err:
        raise ValueError(f"{path} does not fit this DDAD UNet (image size / base width?): {err}") from err


class FeatureExtractor(nn.Module):
    """Stem and layer1-3 of a torchvision ResNet on images in [-1, 1]; returns the three layer outputs.

    layer4 and the classifier are dropped: the official extractor never uses them (they get no
    gradient, so dropping them does not change domain adaptation). Keys match torchvision's.
    """

    def __init__(self, backbone: str = "wide_resnet101_2", pre_trained: bool = True,
                 download: bool | None = None) -> None:
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f"DDAD feature_backbone must be one of {BACKBONES}, got {backbone!r}")
        net = getattr(torchvision.models, backbone)(weights=None)
        self.backbone = backbone
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3 = net.layer1, net.layer2, net.layer3
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        if pre_trained:
            from ispad_bench.models.weights import torchvision_state_dict

            weights = torchvision.models.get_model_weights(backbone).IMAGENET1K_V1  # the official files
            self.load_backbone_state(torchvision_state_dict(weights, allow_download=download))

    def load_backbone_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load a full ResNet state dict (torchvision or official DDAD ``feat<N>``), ignoring layer4/fc."""
        state = {k.removeprefix("module."): v for k, v in state.items()}
        self.load_state_dict({k: v for k, v in state.items() if not k.startswith(("layer4.", "fc."))})

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std  # [-1, 1] -> ImageNet normalisation, as the official code
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        f1 = self.layer1(x)
        f2 = self.layer2(f1)
        return [f1, f2, self.layer3(f2)]


def center_crop(tensor: torch.Tensor, size: int | None) -> torch.Tensor:
    """Central ``size`` x ``size`` window of the last two dims (no-op for ``None``)."""
    if size is None:
        return tensor
    height, width = tensor.shape[-2:]
    if size > min(height, width):
        raise ValueError(f"DDAD map_crop {size} is larger than the {height}x{width} map")
    top, left = (height - size) // 2, (width - size) // 2
    return tensor[..., top : top + size, left : left + size]


def _cosine_distance_flat(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the batch mean of ``1 - cos`` between whole flattened feature maps."""
    return sum(
        (1 - F.cosine_similarity(x.flatten(1), y.flatten(1), dim=1)).mean() for x, y in zip(a, b, strict=True)
    )


class DdadModel(nn.Module):
    """Diffusion UNet + schedule + feature extractor (trainable and frozen copy) + anomaly map.

    Args:
        image_size: UNet architecture size (see ``unet.SUPPORTED_SIZES``).
        in_channels, base_channels, heads, dropout: UNet settings (official DDAD: 3, 64, 4, 0.0).
        attention_resolutions: feature-map sizes with self-attention (official 32, 16, 8; the
            32 px level costs as much at any input size, so tiny test runs lower it).
        feature_backbone: torchvision ResNet for the feature distance (official default
            ``wide_resnet101_2``).
        download: fetch missing ImageNet weights (``None``: unless ``ISPAD_OFFLINE``; ``Ddad`` passes False).
        pre_trained: load ImageNet weights for the feature extractor (offline cache; see
            ``ispad_bench.models.weights``).
        trajectory_steps, beta_start, beta_end: DDPM schedule (official: 1000, 1e-4, 0.02).
        w, w_da: conditioning strength at test / during domain adaptation (paper: 3 and 3, §4.3.5).
        start, skip, eta: test trajectory (paper: 250, 25, eta 1; §4.3.6).
        da_lambda: weight of the two drift terms in domain adaptation (official ``DLlambda`` 0.1).
        v: weight of the pixel distance in the map (official config: 1).
        normalization: ``batch`` (official: maxima of D_f and D_p over the whole batch, so scores
            depend on the batch size) or ``per_image`` (maxima per image, batch independent).
        seed: evaluation noise seed. Each image draws its own noise from a generator seeded with
            ``seed``, so its reconstruction does not depend on its batch; ``None`` = global RNG.
        map_crop: centre-crop the anomaly map to this size before scoring (official ``ddad.py``
            crops map and mask to 224 at test time); ``None`` keeps the full map.
    """

    def __init__(self, image_size: int = 256, in_channels: int = 3, base_channels: int = 64, heads: int = 4,
                 dropout: float = 0.0, attention_resolutions: Sequence[int] = (32, 16, 8),
                 feature_backbone: str = "wide_resnet101_2", pre_trained: bool = True, download: bool | None = None,
                 trajectory_steps: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02,
                 w: float = 3.0, w_da: float = 3.0, start: int = 250, skip: int = 25, eta: float = 1.0,
                 da_lambda: float = 0.1, v: float = 1.0, normalization: str = "batch",
                 seed: int | None = 0, map_crop: int | None = None) -> None:
        super().__init__()
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"DDAD normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        if not 0 < skip <= start < trajectory_steps:
            raise ValueError(f"DDAD needs 0 < skip <= start < trajectory_steps, got {skip}, {start}, {trajectory_steps}")
        self.unet = DdadUNet(image_size, in_channels, base_channels, heads=heads, dropout=dropout,
                             attention_resolutions=tuple(attention_resolutions))
        self.schedule = LinearSchedule(trajectory_steps, beta_start, beta_end)
        self.feature_extractor = FeatureExtractor(feature_backbone, pre_trained, download)
        self.frozen_extractor = copy.deepcopy(self.feature_extractor).requires_grad_(False).eval()
        self.w, self.w_da, self.start, self.skip, self.eta = w, w_da, start, skip, eta
        self.da_lambda, self.v, self.normalization, self.seed = da_lambda, v, normalization, seed
        self.map_crop = map_crop

    def train(self, mode: bool = True) -> DdadModel:
        """Switch modes, but the frozen extractor stays in eval mode (BN statistics fixed)."""
        super().train(mode)
        self.frozen_extractor.eval()
        return self

    def _to_model_range(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> [-1, 1] with ``in_channels`` channels (grayscale repeated, as official)."""
        if images.shape[1] == 1 and self.unet.in_channels == 3:
            images = images.expand(-1, 3, -1, -1)
        return images * 2 - 1

    # ---- optimisation units (what the Lightning model runs, and what benchmarks time) -------------
    def make_optimizers(self, lr: float = 1e-4, weight_decay: float = 0.05, da_lr: float = 1e-4,
                        da_weight_decay: float = 0.01) -> tuple[torch.optim.Adam, torch.optim.AdamW]:
        """Adam for the UNet (official ``train.py``), AdamW for the extractor (``feature_extractor.py``)."""
        return (
            torch.optim.Adam(self.unet.parameters(), lr=lr, weight_decay=weight_decay),
            torch.optim.AdamW(self.feature_extractor.parameters(), lr=da_lr, weight_decay=da_weight_decay),
        )

    def diffusion_step(self, images: torch.Tensor, optimizer: torch.optim.Optimizer,
                       backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> torch.Tensor:
        """One phase-1 optimiser step on a batch of [0, 1] images; returns the detached loss."""
        loss = self.diffusion_loss(images)
        optimizer.zero_grad()
        backward(loss)
        optimizer.step()
        return loss.detach()

    def domain_adaptation_step(self, images: torch.Tensor, optimizer: torch.optim.Optimizer,
                               backward: Callable[[torch.Tensor], None] = torch.Tensor.backward) -> torch.Tensor:
        """One phase-2 optimiser step (reconstruction with ``w_da`` + extractor update); detached loss."""
        loss = self.domain_adaptation_loss(images)
        optimizer.zero_grad()
        backward(loss)
        optimizer.step()
        return loss.detach()

    # ---- phase 1: diffusion training ------------------------------------------------------------
    def diffusion_loss(self, images: torch.Tensor) -> torch.Tensor:
        """DDPM eps loss on [0, 1] images: squared error summed per image, averaged over the batch."""
        x0 = self._to_model_range(images)
        t = torch.randint(0, self.schedule.steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        a = self.schedule.alpha_bar(t).view(-1, 1, 1, 1)
        pred = self.unet(a.sqrt() * x0 + (1 - a).sqrt() * noise, t.float())
        return (noise - pred).square().sum(dim=(1, 2, 3)).mean()

    # ---- reconstruction ---------------------------------------------------------------------------
    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, target: torch.Tensor, w: float, *, start: int | None = None,
                    skip: int | None = None, eta: float | None = None,
                    generators: Sequence[torch.Generator] | None = None) -> torch.Tensor:
        """Conditioned DDIM reconstruction of ``x`` toward ``target`` (both in [-1, 1]).

        ``generators``: one per image for its noise; ``None`` draws from the global RNG.
        """
        start = self.start if start is None else start
        skip = self.skip if skip is None else skip
        eta = self.eta if eta is None else eta

        def noise() -> torch.Tensor:
            if generators is None:
                return torch.randn_like(x)
            return torch.stack([torch.randn(x.shape[1:], generator=g) for g in generators]).to(x)

        a = self.schedule.alpha_bar(start)
        xt = a.sqrt() * x + (1 - a).sqrt() * noise()
        steps = list(range(0, start, skip))  # official: start itself is never a denoising step
        for t, t_next in zip(reversed(steps), reversed([-1, *steps[:-1]]), strict=True):
            at, an = self.schedule.alpha_bar(t), self.schedule.alpha_bar(t_next)
            eps = self.unet(xt, torch.full((x.shape[0],), float(t), device=x.device))
            yt = at.sqrt() * target + (1 - at).sqrt() * eps
            eps_hat = eps - (1 - at).sqrt() * w * (yt - xt)  # conditioning: pull toward the target
            x0 = (xt - (1 - at).sqrt() * eps_hat) / at.sqrt()
            c1 = eta * ((1 - at / an) * (1 - an) / (1 - at)).sqrt()
            c2 = ((1 - an) - c1**2).clamp_min(0).sqrt()
            xt = an.sqrt() * x0 + c1 * noise() + c2 * eps_hat
        return xt

    # ---- phase 2: domain adaptation ---------------------------------------------------------------
    def domain_adaptation_loss(self, images: torch.Tensor) -> torch.Tensor:
        """First half of the batch = targets, second half = inputs reconstructed toward them (w_DA).

        ``1 - cos`` between extractor features of reconstruction and target, plus ``da_lambda``
        times the drift of the extractor from its frozen copy on both (all three layers).
        """
        x = self._to_model_range(images)
        half = x.shape[0] // 2
        if half == 0:
            raise ValueError("DDAD domain adaptation needs batches of at least 2 images")
        target, inputs = x[:half], x[half : 2 * half]
        was_training = self.unet.training
        self.unet.eval()
        recon = self.reconstruct(inputs, target, self.w_da)
        self.unet.train(was_training)
        self.feature_extractor.train()  # official: the adapted extractor runs in train mode (BN batch stats)
        rec_f, tgt_f = self.feature_extractor(recon), self.feature_extractor(target)
        with torch.no_grad():
            tgt_frozen, rec_frozen = self.frozen_extractor(target), self.frozen_extractor(recon)
        return (
            _cosine_distance_flat(rec_f, tgt_f)
            + self.da_lambda * _cosine_distance_flat(tgt_f, tgt_frozen)
            + self.da_lambda * _cosine_distance_flat(rec_f, rec_frozen)
        )

    # ---- anomaly map ------------------------------------------------------------------------------
    def feature_distance(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Sum over layer2/layer3 of ``1 - cos`` of 3x3-averaged features, upsampled to the image."""
        size = target.shape[-2:]
        distance = target.new_zeros(target.shape[0], 1, *size)
        for ft, fr in list(zip(self.feature_extractor(target), self.feature_extractor(recon), strict=True))[1:]:
            # 3x3 mean with zero padding (official "patchify": unfold then mean over the 9 cells)
            ft, fr = F.avg_pool2d(ft, 3, 1, 1), F.avg_pool2d(fr, 3, 1, 1)
            d = 1 - F.cosine_similarity(ft, fr, dim=1)
            distance += F.interpolate(d[:, None], size=size, mode="bilinear", align_corners=True)
        return distance

    def anomaly_map(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """(B, 1, H, W) map from reconstruction and target (both in [-1, 1])."""
        d_pix = (recon - target).abs().mean(dim=1, keepdim=True)
        d_feat = self.feature_distance(recon, target)
        if self.normalization == "batch":
            scale = d_feat.max() / d_pix.max().clamp_min(1e-12)
        else:
            scale = d_feat.amax(dim=(1, 2, 3), keepdim=True) / d_pix.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12)
        amap = d_feat + self.v * scale * d_pix
        kernel = 2 * int(4 * SIGMA + 0.5) + 1
        return gaussian_blur2d(amap, (kernel, kernel), (SIGMA, SIGMA))

    def eval_generators(self, count: int) -> list[torch.Generator] | None:
        """One generator per image, all seeded with ``seed`` (scores independent of the batch)."""
        if self.seed is None:
            return None
        return [torch.Generator().manual_seed(int(self.seed)) for _ in range(count)]

    def forward(self, images: torch.Tensor) -> InferenceBatch:
        """Score [0, 1] images: reconstruct each toward itself (``w``), then map and max score."""
        self.feature_extractor.eval()
        x = self._to_model_range(images)
        recon = self.reconstruct(x, x, self.w, generators=self.eval_generators(x.shape[0]))
        with torch.no_grad():
            amap = center_crop(self.anomaly_map(recon, x), self.map_crop)
        # [0, 1] reconstruction of the last batch, cropped like the map (Fig. 6-style figures read it)
        self.last_reconstruction = center_crop((recon.detach() + 1) / 2, self.map_crop).clamp(0, 1)
        return InferenceBatch(pred_score=amap.amax(dim=(1, 2, 3)), anomaly_map=amap)
