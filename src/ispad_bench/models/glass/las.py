"""GLASS local anomaly synthesis (LAS) as the official code does it (cqylunlun/GLASS ``perlin.py``, ``datasets/mvtec.py``).

Per training image:

1. mask: two thresholded Perlin fields (scales ``2**randint(0, 6)`` per axis, rotated uniformly in ±90°,
   bilinear, zero fill, threshold 0.5) combined as union, intersection or the first alone, each with
   probability 1/3; redrawn until the 8×-max-pooled patch mask is non-empty (no foreground mask: §4.3.5);
2. texture: one source texture, shorter side resized to the image resize, 3 of the 9 official texture
   augmentations (distinct, in random order), centre crop to the image size;
3. blend: ``x' = x·(1−m) + (1−β)·t·m + β·x·m`` with ``β ~ N(0.5, 0.1)`` clipped to ``[0.2, 0.8]``.

Every draw comes from one seeded ``torch.Generator`` (CPU), so a seed fixes the synthetic anomalies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from .textures import FolderTextures, ProceduralTextures


class MaskMode(str, Enum):
    """How the two Perlin fields are combined (official ``perlin_mask``)."""

    UNION = "union"
    INTERSECTION = "intersection"
    SINGLE = "single"


def _uniform(g: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(1, generator=g))


def perlin_noise(height: int, width: int, res_y: int, res_x: int, generator: torch.Generator) -> torch.Tensor:
    """Gradient (Perlin) noise on a ``res_y × res_x`` lattice, quintic fade, scaled by √2 like the official code."""
    angles = 2 * math.pi * torch.rand(res_y + 1, res_x + 1, generator=generator)
    grad_y, grad_x = angles.cos(), angles.sin()
    ys = torch.arange(height, dtype=torch.float32) * res_y / height
    xs = torch.arange(width, dtype=torch.float32) * res_x / width
    y0, x0 = ys.floor().long(), xs.floor().long()
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]

    def corner(dy: int, dx: int) -> torch.Tensor:
        rows, cols = y0 + dy, x0 + dx  # contiguous (H, W) gathers: much faster than fancy indexing
        gy = grad_y.index_select(0, rows).index_select(1, cols)
        gx = grad_x.index_select(0, rows).index_select(1, cols)
        return gy * (fy - dy) + gx * (fx - dx)

    def fade(t: torch.Tensor) -> torch.Tensor:
        return 6 * t**5 - 15 * t**4 + 10 * t**3

    ty, tx = fade(fy), fade(fx)
    n00, n10, n01, n11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
    top = n00 + ty * (n10 - n00)  # interpolate along y first, as the official code
    bottom = n01 + ty * (n11 - n01)
    return math.sqrt(2) * (top + tx * (bottom - top))


def perlin_threshold(
    height: int, width: int, generator: torch.Generator, min_scale: int = 0, max_scale: int = 6, threshold: float = 0.5
) -> torch.Tensor:
    """One binary Perlin field: random lattice scale per axis, random rotation in ±90°, threshold (official ``generate_thr``)."""
    res_y = 2 ** int(torch.randint(min_scale, max_scale, (1,), generator=generator))
    res_x = 2 ** int(torch.randint(min_scale, max_scale, (1,), generator=generator))
    noise = perlin_noise(height, width, res_y, res_x, generator)
    angle = _uniform(generator, -90.0, 90.0)
    # imgaug's Affine(rotate=a) turns clockwise, torchvision's rotate(a) counter-clockwise: negate
    noise = TF.rotate(noise[None], -angle, interpolation=InterpolationMode.BILINEAR, fill=0.0)[0]
    return (noise > threshold).float()


@dataclass
class LasMask:
    """A drawn LAS mask: full-resolution ``mask_l`` (H, W), patch mask ``mask_s`` (H/d, W/d), and the modes
    drawn on the way (``modes[-1]`` made the accepted mask; earlier ones gave empty masks and were redrawn)."""

    mask_l: torch.Tensor
    mask_s: torch.Tensor
    modes: tuple[MaskMode, ...]

    @property
    def mode(self) -> MaskMode:
        return self.modes[-1]


def draw_mask(
    height: int, width: int, generator: torch.Generator, downsampling: int = 8, min_scale: int = 0, max_scale: int = 6
) -> LasMask:
    """Official ``perlin_mask`` without foreground: union / intersection / single (1/3 each), redrawn until non-empty."""
    if min(height, width) < downsampling:
        msg = f"LAS needs images of at least {downsampling} px, got {height}x{width}"
        raise ValueError(msg)
    modes: list[MaskMode] = []
    while True:
        first = perlin_threshold(height, width, generator, min_scale, max_scale)
        second = perlin_threshold(height, width, generator, min_scale, max_scale)
        u = float(torch.rand(1, generator=generator))
        if u > 2 / 3:
            mode, mask = MaskMode.UNION, torch.maximum(first, second)
        elif u > 1 / 3:
            mode, mask = MaskMode.INTERSECTION, first * second
        else:
            mode, mask = MaskMode.SINGLE, first
        modes.append(mode)
        # patch labels: max-pool by the feature stride (official: imgsize // downsampling cells)
        mask_s = F.max_pool2d(mask[None, None], (height // (height // downsampling), width // (width // downsampling)))
        if mask_s.max() > 0:
            return LasMask(mask_l=mask, mask_s=mask_s[0, 0], modes=tuple(modes))


def sample_beta(generator: torch.Generator, mean: float = 0.5, std: float = 0.1, low: float = 0.2, high: float = 0.8) -> float:
    """Blend weight of the normal image inside the mask: ``clip(N(mean, std), low, high)`` (official dataset code)."""
    return min(max(mean + std * float(torch.randn(1, generator=generator)), low), high)


def blend(image: torch.Tensor, texture: torch.Tensor, mask: torch.Tensor, beta: float | torch.Tensor) -> torch.Tensor:
    """Official blend ``x·(1−m) + (1−β)·t·m + β·x·m``; weights sum to 1, so it commutes with per-channel normalisation."""
    return image * (1 - mask) + (1 - beta) * texture * mask + beta * image * mask


# --- the 9 official texture augmentations (datasets/mvtec.py ``rand_augmenter``) on uint8 RGB tensors ---------
def _contrast(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return TF.adjust_contrast(t, _uniform(g, 0.8, 1.2))


def _brightness(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    return TF.adjust_brightness(t, _uniform(g, 0.8, 1.2))


def _saturation_hue(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    saturation, hue = _uniform(g, 0.8, 1.2), _uniform(g, -0.2, 0.2)
    if float(torch.rand(1, generator=g)) < 0.5:  # ColorJitter applies its factors in random order
        return TF.adjust_hue(TF.adjust_saturation(t, saturation), hue)
    return TF.adjust_saturation(TF.adjust_hue(t, hue), saturation)


def _rotate45(t: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    # RandomAffine(degrees=(-45, 45)): nearest interpolation, zero fill
    return TF.affine(t, angle=_uniform(g, -45.0, 45.0), translate=[0, 0], scale=1.0, shear=[0.0, 0.0])


TEXTURE_AUGMENTATIONS = {
    "contrast": _contrast,
    "brightness": _brightness,
    "saturation_hue": _saturation_hue,
    "hflip": lambda t, g: TF.horizontal_flip(t),
    "vflip": lambda t, g: TF.vertical_flip(t),
    "grayscale": lambda t, g: TF.rgb_to_grayscale(t, num_output_channels=3),
    "autocontrast": lambda t, g: TF.autocontrast(t),
    "equalize": lambda t, g: TF.equalize(t),
    "rotate": _rotate45,
}


def augment_texture(texture: torch.Tensor, generator: torch.Generator, count: int = 3) -> tuple[torch.Tensor, list[str]]:
    """Apply ``count`` distinct official augmentations in random order to a uint8 ``(3, H, W)`` texture."""
    names = list(TEXTURE_AUGMENTATIONS)
    chosen = [names[i] for i in torch.randperm(len(names), generator=generator)[:count].tolist()]
    for name in chosen:
        texture = TEXTURE_AUGMENTATIONS[name](texture, generator)
    return texture, chosen


class LocalAnomalySynthesis:
    """Batch LAS on ImageNet-normalised images; returns the synthetic images and the full-resolution masks.

    Args:
        textures: texture source (:mod:`.textures`).
        resize: shorter side the texture is resized to before augmentation (the image resize); ``None`` → image height.
        downsampling: feature stride of the patch labels (official ``downsampling=8`` for layer2).
        beta_mean, beta_std: blend distribution (official 0.5, 0.1; clipped to [0.2, 0.8]).
        augmentations: how many of the 9 texture augmentations to chain (official 3).
        seed: seed of the generator behind every draw.
    """

    def __init__(
        self,
        textures: FolderTextures | ProceduralTextures,
        resize: int | None = None,
        downsampling: int = 8,
        beta_mean: float = 0.5,
        beta_std: float = 0.1,
        augmentations: int = 3,
        seed: int = 0,
    ) -> None:
        if not 0 <= augmentations <= len(TEXTURE_AUGMENTATIONS):
            msg = f"augmentations must be in [0, {len(TEXTURE_AUGMENTATIONS)}], got {augmentations}"
            raise ValueError(msg)
        self.textures, self.resize, self.downsampling = textures, resize, downsampling
        self.beta_mean, self.beta_std, self.augmentations = beta_mean, beta_std, augmentations
        self.generator = torch.Generator().manual_seed(seed)

    def texture(self, height: int, width: int) -> torch.Tensor:
        """One augmented texture as float ``(3, H, W)`` in [0, 1]."""
        g = self.generator
        texture = self.textures[int(torch.randint(len(self.textures), (1,), generator=g))]
        texture = TF.resize(texture, self.resize or height, antialias=True)  # shorter side, like transforms.Resize(int)
        texture, _ = augment_texture(texture, g, self.augmentations)
        texture = TF.center_crop(texture, [height, width])
        return texture.float() / 255

    def __call__(self, images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``images`` (B, 3, H, W) normalised with ``mean``/``std`` (1, 3, 1, 1) → (synthetic images, masks (B, 1, H, W))."""
        batch, _, height, width = images.shape
        textures, masks, betas = [], [], []
        for _ in range(batch):
            masks.append(draw_mask(height, width, self.generator, self.downsampling).mask_l)
            textures.append(self.texture(height, width))
            betas.append(sample_beta(self.generator, self.beta_mean, self.beta_std))
        device, dtype = images.device, images.dtype
        texture = (torch.stack(textures).to(device, dtype) - mean) / std
        mask = torch.stack(masks)[:, None].to(device, dtype)
        beta = torch.tensor(betas, device=device, dtype=dtype).view(-1, 1, 1, 1)
        return blend(images, texture, mask, beta), mask
