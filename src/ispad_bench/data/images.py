"""Reading patch and mask files for training: every failure names the file, every bit depth is scaled right.

Anomalib's ``read_image`` converts with ``Image.convert("RGB")``, which clips a 16-bit grayscale PNG
at 255 (a real ASM patch became 96 % white), and lets a truncated file fail as a bare
``OSError: image file is truncated``. Here 8-bit images are read as before (value / 255), 16-bit
ones are scaled by their format's range (value / 65535, the PNG meaning of a sample), other modes
(32-bit integer, float) are refused, and any decoding error becomes :class:`ImageReadError`
``<path>: unreadable image (...)``. Masks: any non-zero value is a defect pixel (docs/data.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ispad_bench.errors import InputError

# bits per channel of PIL's modes (``data check`` reports depths other than 8 from the same table)
MODE_BITS = {"1": 1, "L": 8, "P": 8, "RGB": 8, "RGBA": 8, "LA": 8, "CMYK": 8, "YCbCr": 8, "I": 32, "F": 32,
             "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}
# the modes the loaders read, with their full-scale value (a 16-bit PNG: value / 65535)
_SCALE = {m: 2.0 ** MODE_BITS[m] - 1 for m in ("1", "L", "P", "RGB", "RGBA", "LA", "I;16", "I;16B", "I;16L", "I;16N")}


class ImageReadError(InputError, OSError):
    """A patch or mask cannot be read (truncated, not an image, unsupported bit depth); names the file."""


def _open(path: str | Path) -> tuple[np.ndarray, float]:
    """The pixels of ``path`` as stored (no conversion), or :class:`ImageReadError` naming the file."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decode now: a truncated file fails here, not inside a worker's batch
            mode = img.mode
            if mode not in _SCALE:
                raise ImageReadError(f"{path}: unsupported image mode {mode!r} (expected 8- or 16-bit "
                                     "grayscale or 8-bit RGB)")
            if mode in ("P", "RGBA", "LA"):
                img = img.convert("RGB")
            array = np.array(img)
    except ImageReadError:
        raise
    except FileNotFoundError as err:
        raise ImageReadError(f"{path}: file not found") from err
    except Exception as err:  # PIL raises OSError, SyntaxError, ValueError, ... for bad files
        raise ImageReadError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if mode.startswith("I;16"):
        array = array.astype(np.uint16, copy=False)
    return array, _SCALE[mode]


def read_gray8(path: str | Path) -> np.ndarray:
    """(H, W) uint8 grayscale: 16-bit rescaled (value / 257, rounded), colour converted as PIL's ``L``."""
    array, scale = _open(path)
    if array.ndim == 3:
        from PIL import Image

        return np.asarray(Image.fromarray(array[..., :3].astype(np.uint8)).convert("L"))
    return np.rint(array.astype(np.float64) * (255.0 / scale)).astype(np.uint8)


def read_patch(path: str | Path):
    """RGB float tensor (3, H, W) in [0, 1]; grayscale becomes three equal channels (as Anomalib does)."""
    import torch
    from torchvision.tv_tensors import Image as TvImage

    from torchvision.transforms.v2.functional import to_dtype

    array, scale = _open(path)
    if array.dtype == np.uint8:  # torchvision's own scaling: bit-identical to Anomalib's read_image
        tensor = to_dtype(torch.from_numpy(array), torch.float32, scale=True)
    else:
        tensor = torch.from_numpy(array.astype(np.float32) * np.float32(1.0 / scale))
    tensor = tensor.unsqueeze(0).expand(3, -1, -1) if tensor.ndim == 2 else tensor[..., :3].permute(2, 0, 1)
    return TvImage(tensor.contiguous())


def read_binary_mask(path: str | Path):
    """(H, W) uint8 mask, 1 where the file is non-zero (0/255, 0/1 or 16-bit masks alike)."""
    import torch
    from torchvision.tv_tensors import Mask

    array, _ = _open(path)
    if array.ndim == 3:
        array = array.max(axis=-1)
    return Mask(torch.from_numpy(np.ascontiguousarray(array != 0)).to(torch.uint8))
