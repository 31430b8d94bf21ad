"""A full acquisition as the paper's extraction windows: reading, the window grid, padding, each window's footprint.

Windows are 256 x 256 native pixels at stride 160 (§3.2: the windows the test patches were cut with),
the last window of a row or column aligned to the image border so that windows cover the image
exactly and never leave it. Each window then goes through the job's own per-patch geometry (the
modality's crops, e.g. ASM's 8 px side borders and 224 centre crop, §3.2.5, §4.3.5) before the
model's resize, as in training and test; the part of the window that survives the crops is its
*footprint*, where its map lands. Anomalib's ``Tiler`` is not used: it zero-pads (or interpolates)
the image to a multiple of the stride instead of aligning the last window to the border, unfolds
every tile of the image at once, and tiles at the model's input size after its resize.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ispad_bench.data.images import ImageReadError
from ispad_bench.data.modality import PATCH_SIZE, Modality

WINDOW = PATCH_SIZE  # §3.2: 256 x 256 extraction windows
STRIDE = 160  # §3.2: stride of the sliding-window extraction


class ChannelError(ImageReadError):
    """An acquisition with another channel count than the job's modality; names the file."""


def read_acquisition(path: Path, modality: Modality) -> tuple[np.ndarray, float]:
    """(pixels as stored: (H, W) grayscale or (H, W, 3) RGB, full-scale value) of an acquisition.

    8- and 16-bit grayscale and 8-bit RGB are read (the values the loaders read, ``data/images.py``);
    a channel count other than the modality's (§3.2.2: ASM single channel, LSM RGB) is refused."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # acquisitions are large on purpose (8k x 8k and more)
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            if mode in ("P", "RGBA", "LA"):
                img = img.convert("RGB" if mode != "LA" else "L")
                mode = img.mode
            array = np.array(img)
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: file not found") from err
    except Exception as err:
        raise ImageReadError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    scales = {"L": 255.0, "1": 1.0, "RGB": 255.0, "I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0}
    if mode not in scales:
        raise ImageReadError(f"{path}: unsupported image mode {mode!r} (expected 8- or 16-bit grayscale or 8-bit RGB)")
    if mode == "1":
        array = array.astype(np.uint8)
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels != modality.channels:
        raise ChannelError(f"{path}: {channels} channel(s), but the job's modality {modality.value} has "
                           f"{modality.channels} (§3.2.2: ASM single channel, LSM-1/LSM-2 RGB)")
    return array, scales[mode]


def axis_starts(length: int, window: int = WINDOW, stride: int = STRIDE) -> np.ndarray:
    """Window starts along one axis: 0, stride, 2 stride, ... and a last one aligned to the border."""
    if length < window:
        raise ValueError(f"axis of {length} px is shorter than the {window} px window (pad it first)")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] + window < length:
        starts.append(length - window)
    return np.asarray(starts, dtype=np.int64)


@dataclass(frozen=True)
class Grid:
    """The windows of one image: top-left corners ``(y, x)``, row-major."""

    height: int
    width: int
    window: int
    stride: int
    ys: np.ndarray
    xs: np.ndarray

    @classmethod
    def of(cls, height: int, width: int, window: int = WINDOW, stride: int = STRIDE) -> Grid:
        return cls(height, width, window, stride, axis_starts(height, window, stride), axis_starts(width, window, stride))

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)

    @property
    def corners(self) -> np.ndarray:
        """(n, 2) ``(y, x)`` of every window, row-major."""
        yy, xx = np.meshgrid(self.ys, self.xs, indexing="ij")
        return np.stack([yy.ravel(), xx.ravel()], axis=1)


def pad_to_window(array: np.ndarray, window: int = WINDOW) -> tuple[np.ndarray, tuple[int, int]]:
    """An image smaller than a window along an axis, padded by reflection at the bottom/right to ``window``;
    returns it and the original (H, W) (the map is cut back to it)."""
    h, w = array.shape[:2]
    pad_h, pad_w = max(0, window - h), max(0, window - w)
    if not (pad_h or pad_w):
        return array, (h, w)
    pads = [(0, pad_h), (0, pad_w)] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, pads, mode="symmetric" if min(h, w) == 1 else "reflect"), (h, w)


@dataclass(frozen=True)
class Footprint:
    """The part of a native window that survives the job's crops: offset and size in native pixels."""

    y: int
    x: int
    height: int
    width: int


def footprint(geometry, window: int = WINDOW) -> Footprint:
    """Where the crops of ``geometry`` leave a window's pixels: a row/column index image goes through its
    crops only (resizes keep the region, they change its sampling)."""
    import torch
    from torchvision.transforms import v2

    steps = list(getattr(geometry, "transforms", [geometry] if geometry is not None else []))
    crops = [t for t in steps if not isinstance(t, v2.Resize)]
    rows = torch.arange(window, dtype=torch.float32)[:, None].expand(window, window)
    cols = torch.arange(window, dtype=torch.float32)[None, :].expand(window, window)
    probe = torch.stack([rows, cols])
    for t in crops:
        probe = t(probe)
    y0, x0 = int(probe[0].min()), int(probe[1].min())
    return Footprint(y0, x0, int(probe[0].max()) - y0 + 1, int(probe[1].max()) - x0 + 1)


def windows(array: np.ndarray, corners: np.ndarray, window: int, scale: float):
    """(n, 3, window, window) float32 tensor in [0, 1] of the windows at ``corners``; grayscale becomes three
    equal channels (as ``read_patch`` gives the model)."""
    import torch

    stack = np.stack([array[y:y + window, x:x + window] for y, x in corners])
    tensor = torch.from_numpy(stack).to(torch.float32)
    tensor = tensor.div_(255.0) if scale == 255.0 else tensor.mul_(np.float32(1.0 / scale))  # as read_patch scales
    if tensor.ndim == 3:
        return tensor[:, None].expand(-1, 3, -1, -1)
    return tensor.permute(0, 3, 1, 2)
