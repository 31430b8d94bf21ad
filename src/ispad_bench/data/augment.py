"""Batched augmentation and preprocessing of supervised ISP-AD patches (pure torch, any device).

Random parameters are *sampled* (seeded, on CPU) separately from their *application*, so the
same parameters give the same patches in a dataloader worker or on the GPU, and tests can check
the sampled values against Table 8.

* Table 8 / §3.2.3: rotation ±r°, scale (lo, hi), x-shear ±s°, vertical and horizontal flips;
  brightness and contrast factors in (0.75, 1.25) for LSM-1/LSM-2 only. The affine part is
  applied to a fraction ``affine_p`` of the patches (the paper: "80-95 %"); flips are drawn
  independently with probability 1/2 each.
* §3.2: real defects are 512x512 patches centred on the defect that are "cropped to a final
  size of 256 x 256 px during training" after augmentation. Here the affine transform and the
  centre crop are one ``grid_sample`` from the 512 input to a 256 output, so rotating never
  pulls in padding (the 256 crop's corners stay inside the 512 patch for every Table 8 range).
* §4.2 preprocessing, also applied to test patches: brightness x ``Modality.brightness_factor``
  (1.5 for LSM-1), clipped to [0, 1], then Gaussian smoothing (kernel 3, sigma 1, reflect padding,
  as torchvision's ``gaussian_blur``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ispad_bench.data.modality import Augmentation

AFFINE_P = 0.875  # §3.2.3: affine transforms on "80 - 95 %" of the patches; the midpoint
BLUR_KERNEL, BLUR_SIGMA = 3, 1.0  # §4.2
# ITU-R BT.601 luma as PIL's convert("L") and OpenCV's cvtColor (weights sum to 1; torchvision's
# rgb_to_grayscale uses 0.2989, which darkens every patch by 1e-4). The generator's gray stream uses
# the same weights (data/synth/patterns.py:to_gray).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)
_GRAY_FIXED = (19595, 38470, 7471)


@dataclass
class AugmentParams:
    """Per-patch random parameters of one batch (all CPU tensors of length n)."""

    angle: torch.Tensor  # degrees, 0 where no affine
    scale: torch.Tensor
    shear: torch.Tensor  # degrees (x-shear, as torchvision's RandomAffine with one shear value)
    hflip: torch.Tensor  # bool
    vflip: torch.Tensor  # bool
    affine: torch.Tensor  # bool: whether rotation/scale/shear were applied
    brightness: torch.Tensor | None  # multiplicative factors, None where Table 8 has none (ASM)
    contrast: torch.Tensor | None

    def __len__(self) -> int:
        return len(self.angle)

    def to_dict(self) -> dict[str, torch.Tensor | None]:
        return dict(self.__dict__)


def sample_params(n: int, aug: Augmentation, generator: torch.Generator, affine_p: float = AFFINE_P) -> AugmentParams:
    """Draw Table 8 parameters for ``n`` patches from ``generator`` (deterministic for its seed)."""

    def uniform(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    affine = torch.rand(n, generator=generator) < affine_p
    angle = uniform(-aug.rotation_deg, aug.rotation_deg)
    scale = uniform(*aug.scale)
    shear = uniform(-aug.shear_deg, aug.shear_deg)
    hflip = (torch.rand(n, generator=generator) < 0.5) & aug.hflip
    vflip = (torch.rand(n, generator=generator) < 0.5) & aug.vflip
    brightness = uniform(*aug.brightness) if aug.brightness else None
    contrast = uniform(*aug.contrast) if aug.contrast else None
    return AugmentParams(
        angle=torch.where(affine, angle, 0.0),
        scale=torch.where(affine, scale, 1.0),
        shear=torch.where(affine, shear, 0.0),
        hflip=hflip,
        vflip=vflip,
        affine=affine,
        brightness=brightness,
        contrast=contrast,
    )


def _theta(p: AugmentParams, in_size: int, out_size: int) -> torch.Tensor:
    """``affine_grid`` matrices: output (centre-cropped) coordinates -> input coordinates.

    Forward map (input -> output, centred pixel coordinates) is ``R(angle) @ Shear @ S(scale) @ Flip``;
    grid sampling needs its inverse, scaled by out/in for the centre crop.
    """
    a, sh = torch.deg2rad(p.angle.cpu().double()), torch.deg2rad(p.shear.cpu().double())
    hflip, vflip, scale = p.hflip.cpu(), p.vflip.cpu(), p.scale.cpu().double()
    n = len(p)
    rot = torch.stack([torch.cos(a), -torch.sin(a), torch.sin(a), torch.cos(a)], 1).view(n, 2, 2)
    shear = torch.zeros(n, 2, 2, dtype=torch.float64)
    shear[:, 0, 0] = 1
    shear[:, 0, 1] = torch.tan(sh)
    shear[:, 1, 1] = 1
    flip = torch.zeros(n, 2, 2, dtype=torch.float64)
    flip[:, 0, 0] = torch.where(hflip, -1.0, 1.0)
    flip[:, 1, 1] = torch.where(vflip, -1.0, 1.0)
    forward = rot @ shear @ (scale.view(n, 1, 1) * flip)
    inverse = torch.linalg.inv(forward) * (out_size / in_size)
    return torch.cat([inverse, torch.zeros(n, 2, 1, dtype=torch.float64)], 2).float()


def geometric(x: torch.Tensor, p: AugmentParams, out_size: int | None = None, mode: str = "bilinear") -> torch.Tensor:
    """Rotate/scale/shear/flip float patches ``x`` (n, c, H, H) and centre-crop to ``out_size``.

    Reflection padding fills what a transform pulls in from outside the input (only possible when
    ``out_size`` equals the input size, i.e. for re-augmented stream patches). On CPU this runs
    OpenCV's ``warpAffine`` per patch (several times faster than ``grid_sample``; it rounds
    sub-pixel positions to 1/32 px); elsewhere ``affine_grid``/``grid_sample`` with the same map.
    """
    size = x.shape[-1]
    out_size = out_size or size
    theta = _theta(p, size, out_size)
    if x.device.type == "cpu" and x.dtype == torch.float32:
        return _warp_cv2(x, theta, size, out_size, mode)
    grid = F.affine_grid(theta.to(x.device), [x.shape[0], x.shape[1], out_size, out_size], align_corners=False)
    return F.grid_sample(x, grid.to(x.dtype), mode=mode, padding_mode="reflection", align_corners=False)


def _cv2_maps(theta: torch.Tensor, size: int, out_size: int) -> np.ndarray:
    """``affine_grid``'s normalised maps (align_corners=False) in pixel coordinates, for ``warpAffine``
    with ``WARP_INVERSE_MAP``: the same 2x2 part (rescaled by in/out) around the centres (s - 1) / 2
    of input and output. (n, 2, 3) float64."""
    lin = theta[:, :, :2].double() * (size / out_size)
    c_in, c_out = (size - 1) / 2, (out_size - 1) / 2
    shift = c_in - lin.sum(dim=2) * c_out
    return torch.cat([lin, shift[:, :, None]], 2).numpy()


def _warp_cv2(x: torch.Tensor, theta: torch.Tensor, size: int, out_size: int, mode: str) -> torch.Tensor:
    maps = _cv2_maps(theta, size, out_size)
    flags = (cv2.INTER_NEAREST if mode == "nearest" else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    src = x.contiguous().numpy()
    out = np.empty((x.shape[0], x.shape[1], out_size, out_size), dtype=np.float32)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            out[i, c] = cv2.warpAffine(src[i, c], maps[i], (out_size, out_size), flags=flags,
                                       borderMode=cv2.BORDER_REFLECT)
    return torch.from_numpy(out)


def illumination(x: torch.Tensor, p: AugmentParams) -> torch.Tensor:
    """Brightness then contrast (torchvision semantics: contrast blends with the patch's mean), clipped."""
    n = x.shape[0]
    if p.brightness is not None:
        x = (x * p.brightness.to(x.device, x.dtype).view(n, 1, 1, 1)).clamp_(0, 1)
    if p.contrast is not None:
        # float64 mean: a float32 reduction depends on the thread count (workers run 1 thread)
        mean = x.double().mean(dim=(1, 2, 3), keepdim=True).to(x.dtype)
        c = p.contrast.to(x.device, x.dtype).view(n, 1, 1, 1)
        x = (c * x + (1 - c) * mean).clamp_(0, 1)
    return x


def augment(x: torch.Tensor, p: AugmentParams, out_size: int | None = None) -> torch.Tensor:
    """Full Table 8 augmentation of float patches in [0, 1]: geometry (+ centre crop), then illumination."""
    return illumination(geometric(x, p, out_size), p)


def _gauss_kernel(device, dtype) -> torch.Tensor:
    half = (BLUR_KERNEL - 1) / 2
    t = torch.linspace(-half, half, BLUR_KERNEL, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / BLUR_SIGMA) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(x: torch.Tensor) -> torch.Tensor:
    """3x3 Gaussian, sigma 1, reflect padding, per channel (as torchvision's ``gaussian_blur``).

    CPU float32 uses OpenCV (same kernel and border, ~10x faster than a 1-channel conv2d on CPU);
    other devices a separable ``conv2d``. Both agree to float rounding (~1e-7).
    """
    n, c, h, w = x.shape
    if x.device.type == "cpu" and x.dtype == torch.float32:
        src = x.contiguous().numpy().reshape(n * c, h, w)
        out = np.empty_like(src)
        for i in range(n * c):
            cv2.GaussianBlur(src[i], (BLUR_KERNEL, BLUR_KERNEL), BLUR_SIGMA, dst=out[i],
                             sigmaY=BLUR_SIGMA, borderType=cv2.BORDER_REFLECT_101)
        return torch.from_numpy(out).view(n, c, h, w)
    k = _gauss_kernel(x.device, x.dtype)
    y = F.pad(x.reshape(n * c, 1, h, w), (1, 1, 1, 1), mode="reflect")
    y = F.conv2d(y, k.view(1, 1, 1, BLUR_KERNEL))
    y = F.conv2d(y, k.view(1, 1, BLUR_KERNEL, 1))
    return y.view(n, c, h, w)


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """(n, 3, H, W) RGB in [0, 1] -> (n, 1, H, W) BT.601 luma rounded to 8 bit, as PIL's
    ``convert("L")``: the single-channel 8-bit patches of the HDF5 stream (§3.2.2); gray passes unchanged."""
    if x.shape[-3] == 1:
        return x
    # PIL's fixed-point form of GRAY_WEIGHTS (x 2^16), so results match convert("L") bit for bit
    rgb = x.mul(255).round_().to(torch.int32)
    w = torch.tensor(_GRAY_FIXED, device=x.device, dtype=torch.int32).view(3, 1, 1)
    luma = ((rgb * w).sum(dim=-3, keepdim=True) + 0x8000) >> 16
    return luma.to(x.dtype).div_(255)


def preprocess(x: torch.Tensor, brightness_factor: float) -> torch.Tensor:
    """§4.2 preprocessing of float patches (n, 1, H, W) in [0, 1]: brightness factor, clip, blur."""
    if not math.isclose(brightness_factor, 1.0):
        x = (x * brightness_factor).clamp_(0, 1)
    return gaussian_blur(x)


# -- one patch at a time on the CPU --------------------------------------------------------------
_BLUR_1D = cv2.getGaussianKernel(BLUR_KERNEL, BLUR_SIGMA, cv2.CV_64F).ravel()  # the kernel of gaussian_blur
_UNIT_LUT = (np.arange(256, dtype=np.float32) / np.float32(255)).reshape(1, 256)  # == uint8 tensor .float().div_(255)


def _clip01(x: np.ndarray) -> None:
    """``x.clamp_(0, 1)`` in place (two threshold passes; identical for finite values)."""
    cv2.threshold(x, 1.0, 1.0, cv2.THRESH_TRUNC, dst=x)
    cv2.threshold(x, 0.0, 0.0, cv2.THRESH_TOZERO, dst=x)


class PatchPipeline:
    """:func:`augment` + :func:`preprocess` of single uint8 patches on the CPU, one patch at a time.

    The same operations in the same order and precision as the batched tensor functions (uint8 -> /255
    float32, ``warpAffine`` with the maps of :func:`geometric`, brightness, contrast with a float64 mean,
    §4.2 brightness and clip, the 3x3 blur), but on one patch whose scratch buffers stay in the CPU
    cache, with no batch-sized temporaries: several times faster than the batched functions on CPU
    tensors and bit-identical to them (tests/test_stream_loader.py). Not thread-safe (the scratch
    buffers); each DataLoader worker has its own copy.

    Plain stream patches (no Table 8 augmentation) keep the loader's fused form: a lookup table for
    ``x / 255 * bf`` clipped, then the blur (for ``bf == 1`` one ``sepFilter2D`` on the uint8 patch).
    """

    def __init__(self, brightness_factor: float):
        self.bf = float(brightness_factor)
        self.unit_bf = math.isclose(self.bf, 1.0)
        self.lut = np.minimum(np.arange(256, dtype=np.float32) * np.float32(self.bf / 255), 1).astype(np.float32).reshape(1, 256)
        self._scratch: dict[tuple[int, int], np.ndarray] = {}

    def _buf(self, shape: tuple[int, int], slot: int) -> np.ndarray:
        key = (*shape, slot)
        if key not in self._scratch:
            self._scratch[key] = np.empty(shape, np.float32)
        return self._scratch[key]

    def plain(self, u8: np.ndarray, dst: np.ndarray) -> None:
        """§4.2 preprocessing of one (H, W) uint8 patch into ``dst`` (H, W) float32."""
        if self.bf == 1:
            cv2.sepFilter2D(u8, cv2.CV_32F, _BLUR_1D / 255, _BLUR_1D, dst=dst, borderType=cv2.BORDER_REFLECT_101)
        else:
            x = cv2.LUT(u8, self.lut, dst=self._buf(u8.shape, 0))
            cv2.sepFilter2D(x, cv2.CV_32F, _BLUR_1D, _BLUR_1D, dst=dst, borderType=cv2.BORDER_REFLECT_101)

    def augmented(self, u8: np.ndarray, warp: np.ndarray, brightness: float | None, contrast: float | None,
                  dst: np.ndarray) -> None:
        """Table 8 augmentation (``warp``: one row of the batch's ``warpAffine`` maps, see :meth:`maps`;
        ``brightness`` / ``contrast``: that patch's factors or None), the centre crop to ``dst``'s
        size, then §4.2 preprocessing, of one (H, W) uint8 patch into ``dst`` float32."""
        x = cv2.LUT(u8, _UNIT_LUT, dst=self._buf(u8.shape, 1))
        out = dst.shape[-1]
        y = cv2.warpAffine(x, warp, (out, out), dst=self._buf((out, out), 2),
                           flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        if brightness is not None:
            np.multiply(y, np.float32(brightness), out=y)
            _clip01(y)
        if contrast is not None:
            c = np.float32(contrast)
            mean = np.float32(cv2.mean(y)[0])  # float64 accumulation, as illumination()
            np.multiply(y, c, out=y)
            np.add(y, np.float32(np.float32(1) - c) * mean, out=y)
            _clip01(y)
        if not self.unit_bf:
            np.multiply(y, np.float32(self.bf), out=y)
            _clip01(y)
        cv2.GaussianBlur(y, (BLUR_KERNEL, BLUR_KERNEL), BLUR_SIGMA, dst=dst, sigmaY=BLUR_SIGMA,
                         borderType=cv2.BORDER_REFLECT_101)

    @staticmethod
    def maps(p: AugmentParams, size: int, out_size: int) -> np.ndarray:
        """The (n, 2, 3) ``warpAffine`` maps of a batch's parameters (as :func:`geometric` uses them)."""
        return _cv2_maps(_theta(p, size, out_size), size, out_size)

    @staticmethod
    def factors(p: AugmentParams) -> tuple[list, list]:
        """Per-patch brightness and contrast as float32 values (None where Table 8 has none)."""
        n = len(p)
        b = p.brightness.float().tolist() if p.brightness is not None else [None] * n
        c = p.contrast.float().tolist() if p.contrast is not None else [None] * n
        return b, c
