"""GLASS network with the official training step (cqylunlun/GLASS ``glass.py``), built on Anomalib's ``GlassModel``.

Reused unchanged from Anomalib (identical to the official code): frozen backbone features of layer2+layer3,
3×3 local aggregation, mean-mapping to 1536-d, linear adaptor ("pre-projection"), discriminator
1536→1024→BN→LeakyReLU→1 with sigmoid, image score = max patch score.
Replaced: LAS (:mod:`.las`, official mask/blend/texture statistics instead of Anomalib's
``PerlinAnomalyGenerator``), the training step (GAS with ``manifold``/``hypersphere`` as in the official
code, losses on the official tensors), official weight initialisation of adaptor and discriminator, the
map smoothing border mode (SciPy's ``reflect``), a frozen backbone also when ``pre_trained=False``, and the
official load-time dry run that shifts the backbone's BatchNorm statistics (:func:`official_dry_run`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from anomalib.data import InferenceBatch
from anomalib.models.image.glass.components import RescaleSegmentor
from anomalib.models.image.glass.torch_model import GlassModel
from torch import nn

from .las import LocalAnomalySynthesis

GAS_MODES = {"manifold": 0, "hypersphere": 1}  # official ``svd`` flag (``--distribution 2`` / ``3``)


class SymmetricRescaleSegmentor(RescaleSegmentor):
    """Bilinear upsampling + Gaussian σ 4 with SciPy's default ``reflect`` border (official ``ndimage.gaussian_filter``)."""

    def convert_to_segmentation(self, patch_scores: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        with torch.no_grad():
            scores = patch_scores.to(device) if device is not None else patch_scores
            scores = F.interpolate(scores[:, None], size=self.target_size, mode="bilinear", align_corners=False)
            pad = self.kernel_size // 2
            # SciPy "reflect" repeats the edge sample (d c b a | a b c d); torch's "reflect" does not
            scores = _symmetric_pad(_symmetric_pad(scores, pad, dim=-1), pad, dim=-2)
            # the Gaussian is separable (as in SciPy): one banded matrix product per axis, far cheaper than
            # the 33x33 convolution
            g = self._kernel[0, 0].sum(dim=1).to(dtype=scores.dtype)
            scores = _band(scores.shape[-2] - 2 * pad, g) @ scores @ _band(scores.shape[-1] - 2 * pad, g).T
        return scores[:, 0]


def _band(size: int, kernel: torch.Tensor) -> torch.Tensor:
    """(size, size + len(kernel) − 1) matrix whose rows slide ``kernel``: a valid 1-D correlation as a product."""
    band = kernel.new_zeros(size, size + len(kernel) - 1)
    rows = torch.arange(size, device=kernel.device)[:, None]
    band[rows, rows + torch.arange(len(kernel), device=kernel.device)] = kernel
    return band


def _symmetric_pad(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    size = x.shape[dim]
    if pad > size:
        msg = f"anomaly map side {size} is smaller than the smoothing radius {pad}"
        raise ValueError(msg)
    left = x.narrow(dim, 0, pad).flip(dim)
    right = x.narrow(dim, size - pad, pad).flip(dim)
    return torch.cat((left, x, right), dim=dim)


def truncated_projection(
    points: torch.Tensor, anchor: torch.Tensor, low: float | torch.Tensor, dist: torch.Tensor | None = None
) -> torch.Tensor:
    """GAS truncated projection: rescale ``points − anchor`` so that its norm lies in ``[low, 2·low]``.

    ``dist`` replaces the norm used for the clamp (official hypersphere: distance to the centre).
    """
    h = points - anchor
    h_norm = torch.linalg.vector_norm(h, dim=1) if dist is None else dist
    alpha = torch.clamp(h_norm, low, 2 * low)
    return anchor + (alpha / (h_norm + 1e-10)).view(-1, 1) * h


def official_init(module: nn.Module) -> None:
    """Official ``model.init_weight``: Xavier-normal Linear weights; biases and BatchNorm1d keep PyTorch defaults."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            m.reset_parameters()
            nn.init.xavier_normal_(m.weight)
        elif isinstance(m, nn.BatchNorm1d):
            m.reset_parameters()


def official_dry_run(backbone: nn.Module, input_shape: tuple[int, int]) -> None:
    """What official ``GLASS.load`` does to the backbone: ``feature_dimensions`` runs one all-ones image
    through it while it is still in train mode, so every BatchNorm's running statistics move once
    (momentum 0.1) toward that image's. Reproduced so that the frozen features are the official ones."""
    backbone.train()
    with torch.no_grad():
        backbone(torch.ones(1, 3, *input_shape, device=next(backbone.parameters()).device))
    backbone.eval()


class GlassISPADModel(GlassModel):
    """GLASS torch model: frozen backbone, adaptor, discriminator, official LAS + GAS training step.

    Args:
        las: local anomaly synthesis used in training (``None``: inference only).
        gas: ``"manifold"`` (paper §4.3.5) or ``"hypersphere"``.
        Other arguments: as Anomalib's ``GlassModel`` (official names in brackets): ``step`` [step] = 20
        ascent steps, ``gaussian_noise_std`` [noise] = 0.015, ``radius_quantile`` [radius] = 0.75,
        ``focal_loss_quantile_threshold`` [p] = 0.5.
    """

    def __init__(
        self,
        input_shape: tuple[int, int] = (256, 256),
        backbone: str = "wide_resnet50_2.tv_in1k",
        pre_trained: bool = True,
        layers: list[str] | None = None,
        pretrain_embed_dim: int = 1536,
        target_embed_dim: int = 1536,
        patchsize: int = 3,
        pre_projection: int = 1,
        discriminator_layers: int = 2,
        discriminator_hidden: int = 1024,
        step: int = 20,
        gas: str = "manifold",
        gaussian_noise_std: float = 0.015,
        radius_quantile: float = 0.75,
        focal_loss_quantile_threshold: float = 0.5,
        mining: bool = True,
        normalize_mean: list[float] | None = None,
        normalize_std: list[float] | None = None,
        las: LocalAnomalySynthesis | None = None,
    ) -> None:
        if gas not in GAS_MODES:
            msg = f"gas must be one of {sorted(GAS_MODES)}, got {gas!r}"
            raise ValueError(msg)
        super().__init__(
            input_shape=input_shape,
            anomaly_source_path=None,
            pretrain_embed_dim=pretrain_embed_dim,
            target_embed_dim=target_embed_dim,
            backbone=backbone,
            patchsize=patchsize,
            patchstride=1,
            pre_trained=pre_trained,
            layers=layers,
            pre_projection=pre_projection,
            discriminator_layers=discriminator_layers,
            discriminator_hidden=discriminator_hidden,
            step=step,
            svd=GAS_MODES[gas],
            gaussian_noise_std=gaussian_noise_std,
            radius_quantile=radius_quantile,
            focal_loss_quantile_threshold=focal_loss_quantile_threshold,
            mining=mining,
            normalize_mean=normalize_mean,
            normalize_std=normalize_std,
        )
        del self.augmentor  # Anomalib's LAS differs from the official one (no intersection, β ~ U(0.2, 1))
        self.las = las
        # The official backbone stays frozen (train_backbone=False) whatever its weights; Anomalib trains it
        # (and crashes building its optimiser) when pre_trained=False.
        extractor = self.forward_modules["feature_aggregator"]
        extractor.requires_grad = False
        extractor.requires_grad_(False)
        official_dry_run(extractor.feature_extractor, input_shape)
        official_init(self.discriminator)
        if pre_projection > 0:
            official_init(self.projection)
        self.anomaly_segmentor = SymmetricRescaleSegmentor(target_size=input_shape)
        self.register_buffer("center", torch.zeros(0), persistent=False)

    def generate_embeddings(self, images: torch.Tensor, evaluation: bool = False) -> tuple[torch.Tensor, list]:
        """Patch embeddings from the frozen backbone (always eval mode, no gradient)."""
        del evaluation
        return super().generate_embeddings(images, evaluation=True)

    def forward(self, img: torch.Tensor) -> dict[str, torch.Tensor] | InferenceBatch:
        """Inference: scores and maps. Training: the official discriminator loss for one batch (LAS + GAS)."""
        if not self.training:
            scores, maps = self.calculate_anomaly_scores(img)
            return InferenceBatch(pred_score=scores, anomaly_map=maps)
        if self.las is None:
            msg = "GlassISPADModel needs a LocalAnomalySynthesis (las=...) to train"
            raise RuntimeError(msg)
        aug, mask_l = self.las(img, self._img_mean, self._img_std)
        true_feats, fake_feats, patch_shapes = self.calculate_features(img, aug)
        # patch labels: max-pool of the full-resolution mask onto the patch grid (8x8 cells for layer2 at /8)
        mask_s = F.adaptive_max_pool2d(mask_l, tuple(patch_shapes[0]))
        return self.training_losses(true_feats, fake_feats, mask_s.reshape(-1, 1), img.shape[0])

    def training_losses(
        self, true_feats: torch.Tensor, fake_feats: torch.Tensor, mask_s_gt: torch.Tensor, batch_size: int
    ) -> dict[str, torch.Tensor]:
        """Official ``_train_discriminator`` body for one batch: GAS on normal features, BCE + focal on LAS features."""
        normal = mask_s_gt[:, 0] == 0
        anomalous = ~normal
        gaus_feats = true_feats + torch.randn_like(true_feats) * self.gaussian_noise_std
        hypersphere = self.svd == 1
        if hypersphere:
            if self.center.numel() == 0:
                msg = "gas='hypersphere' needs the feature centre: call calculate_center() before training"
                raise RuntimeError(msg)
            center = self.center.repeat(batch_size, 1, 1).reshape(-1, self.center.shape[-1])
            true_points = torch.cat([fake_feats[normal], true_feats])
            c_t_points = torch.cat([center[normal], center])
            r_t = torch.quantile(torch.linalg.vector_norm(true_points - c_t_points, dim=1), q=self.radius_quantile)

        for step in range(self.step + 1):
            scores = self.discriminator(torch.cat([true_feats, gaus_feats]))
            true_scores, gaus_scores = scores[: len(true_feats)], scores[len(true_feats) :]
            true_loss = self.bce_loss(true_scores, torch.zeros_like(true_scores))
            gaus_loss = self.bce_loss(gaus_scores, torch.ones_like(gaus_scores))
            if step == self.step or not self.mining:
                break
            # gradient ascent: 0.001 along the unit gradient of the Gaussian-feature loss
            grad = torch.autograd.grad(gaus_loss, [gaus_feats])[0]
            with torch.no_grad():
                gaus_feats.add_(0.001 * grad / (torch.linalg.vector_norm(grad, dim=1, keepdim=True) + 1e-10))
            if (step + 1) % 5 == 0:  # truncated projection every 5 steps
                if hypersphere:
                    dist_g = torch.linalg.vector_norm(gaus_feats - center, dim=1)
                    gaus_feats = truncated_projection(gaus_feats, center, r_t, dist=dist_g)
                else:  # manifold: ‖g − t‖ clamped to [0.5, 1.0]
                    gaus_feats = truncated_projection(gaus_feats, true_feats, 0.5)
        bce_loss = true_loss + gaus_loss

        if hypersphere:  # official: push LAS features into the shell [2 r_t, 4 r_t] around the centre
            fake_points, c_f = fake_feats[anomalous], center[anomalous]
            h = fake_points - c_f
            h_norm = torch.linalg.vector_norm(h, dim=1)
            alpha = torch.clamp(h_norm, 2 * r_t, 4 * r_t)
            fake_feats = fake_feats.clone()
            fake_feats[anomalous] = c_f + (alpha / (h_norm + 1e-10)).view(-1, 1) * h

        fake_scores = self.discriminator(fake_feats)
        if self.focal_loss_quantile_threshold > 0:  # focal loss on the hardest (1 − p) share of patches
            fake_dist = (fake_scores - mask_s_gt) ** 2
            hard = fake_dist >= torch.quantile(fake_dist, q=self.focal_loss_quantile_threshold)
            fake_scores_, mask_ = fake_scores[hard].unsqueeze(1), mask_s_gt[hard].unsqueeze(1)
        else:
            fake_scores_, mask_ = fake_scores, mask_s_gt
        focal_loss = self.focal_loss(torch.cat([1 - fake_scores_, fake_scores_], dim=1), mask_)
        return {
            "true_loss": true_loss,
            "gaus_loss": gaus_loss,
            "bce_loss": bce_loss,
            "focal_loss": focal_loss,
            "loss": bce_loss + focal_loss,
            "anomalous_patch_fraction": anomalous.float().mean().detach(),
        }
