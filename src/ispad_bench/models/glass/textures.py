"""Texture sources for GLASS local anomaly synthesis (LAS): a local DTD-layout folder or generated textures.

The official GLASS reads the Describable Textures Dataset (DTD, ``dtd/images/<category>/*.jpg``) and picks
one file uniformly at random per training sample. GLASS here never downloads it: pass ``texture_dir`` to use
a local copy (any folder with ``*/*.jpg`` below it, or its ``images`` sub-folder), otherwise
:class:`ProceduralTextures` generates DTD-like colour textures (noise, stripes, grids, dots, cells, marble,
scratches) deterministically from ``(seed, index)``, so training needs no auxiliary files at all.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.io import ImageReadMode, decode_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class FolderTextures:
    """Textures from a local folder in DTD layout: ``<root>/images/<category>/*.jpg`` or ``<root>/<category>/*.jpg``.

    Files are listed once, sorted (as the official code does), and read on demand as uint8 RGB ``(3, H, W)``.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            msg = f"texture_dir {root} is not a directory (expected DTD layout: <dir>/images/<category>/*.jpg)"
            raise FileNotFoundError(msg)
        base = root / "images" if (root / "images").is_dir() else root
        self.files = sorted(p for p in base.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            msg = (
                f"texture_dir {root} holds no textures: expected image files at {base}/<category>/*.jpg "
                "(DTD layout); leave texture_dir unset to use generated textures"
            )
            raise FileNotFoundError(msg)
        self.root = root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        path = self.files[index]
        try:
            return decode_image(str(path), mode=ImageReadMode.RGB)
        except RuntimeError as err:
            msg = f"cannot read texture {path}: {err}"
            raise RuntimeError(msg) from err

    def __repr__(self) -> str:
        return f"FolderTextures({str(self.root)!r}, n={len(self)})"


class ProceduralTextures:
    """``count`` DTD-like RGB textures of ``size``², generated on demand; texture ``i`` depends only on ``(seed, i)``.

    Kinds cycle over fractal noise, oriented stripes, grids, dots, cells, marble and scratches with random
    colours, frequencies and orientations, so LAS sees the same variety of structure and colour that DTD
    provides (the textures only need to look unlike the normal patches).
    """

    KINDS = ("noise", "stripes", "grid", "dots", "cells", "marble", "scratches")

    def __init__(self, count: int = 512, size: int = 288, seed: int = 0) -> None:
        if count < 1 or size < 16:
            msg = f"ProceduralTextures needs count >= 1 and size >= 16, got count={count}, size={size}"
            raise ValueError(msg)
        self.count, self.size, self.seed = count, size, seed

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> torch.Tensor:
        if not 0 <= index < self.count:
            msg = f"texture index {index} out of range [0, {self.count})"
            raise IndexError(msg)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        kind = self.KINDS[index % len(self.KINDS)]
        field = getattr(self, f"_{kind}")(g, self.size)  # (S, S) in [0, 1]
        return _colourise(field, g)

    def __repr__(self) -> str:
        return f"ProceduralTextures(count={self.count}, size={self.size}, seed={self.seed})"

    # --- scalar fields in [0, 1] -------------------------------------------------------------------------
    @staticmethod
    def _coords(size: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Pixel coordinates rotated by a random angle."""
        angle = float(torch.rand(1, generator=g)) * math.pi
        y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
        return x * math.cos(angle) + y * math.sin(angle), -x * math.sin(angle) + y * math.cos(angle)

    @staticmethod
    def _noise(g: torch.Generator, size: int) -> torch.Tensor:
        return _fractal_noise(size, g, octaves=int(torch.randint(3, 6, (1,), generator=g)))

    def _stripes(self, g: torch.Generator, size: int) -> torch.Tensor:
        u, _ = self._coords(size, g)
        period = 4 + 28 * float(torch.rand(1, generator=g))
        wave = 0.5 + 0.5 * torch.sin(2 * math.pi * u / period)
        sharp = 1 + 7 * float(torch.rand(1, generator=g))
        return torch.sigmoid((wave - 0.5) * sharp * 4)

    def _grid(self, g: torch.Generator, size: int) -> torch.Tensor:
        u, v = self._coords(size, g)
        period = 8 + 40 * float(torch.rand(1, generator=g))
        width = 0.08 + 0.25 * float(torch.rand(1, generator=g))
        line = ((u / period) % 1 < width) | ((v / period) % 1 < width)
        return line.float()

    @staticmethod
    def _dots(g: torch.Generator, size: int) -> torch.Tensor:
        # one disk per cell of a jittered lattice: cost independent of the number of dots
        cells = int(torch.randint(4, 20, (1,), generator=g))
        pitch = size / cells
        jitter = (torch.rand(2, cells + 1, cells + 1, generator=g) - 0.5) * pitch * 0.5
        radius = pitch * (0.15 + 0.3 * float(torch.rand(1, generator=g)))
        coord = torch.arange(size, dtype=torch.float32)
        iy, ix = (coord / pitch).round().long(), (coord / pitch).round().long()
        cy = iy.float()[:, None] * pitch + jitter[0][iy][:, ix]
        cx = ix.float()[None, :] * pitch + jitter[1][iy][:, ix]
        return (((coord[:, None] - cy) ** 2 + (coord[None, :] - cx) ** 2) < radius**2).float()

    @staticmethod
    def _cells(g: torch.Generator, size: int) -> torch.Tensor:
        n = int(torch.randint(8, 40, (1,), generator=g))
        seeds = torch.rand(n, 2, generator=g) * size
        coord = torch.arange(size, dtype=torch.float32)
        first = torch.full((size, size), float("inf"))
        second = first.clone()
        for sy, sx in seeds.tolist():  # running two smallest seed distances (cheaper than topk over a stack)
            d = ((coord[:, None] - sy) ** 2 + (coord[None, :] - sx) ** 2).sqrt()
            second = torch.minimum(second, torch.maximum(first, d))
            first = torch.minimum(first, d)
        return ((second - first) / (size / math.sqrt(n))).clamp(0, 1)  # distance to the nearest cell border

    def _marble(self, g: torch.Generator, size: int) -> torch.Tensor:
        u, _ = self._coords(size, g)
        period = 16 + 48 * float(torch.rand(1, generator=g))
        turbulence = _fractal_noise(size, g, octaves=4) * (2 + 6 * float(torch.rand(1, generator=g)))
        return 0.5 + 0.5 * torch.sin(2 * math.pi * u / period + turbulence)

    @staticmethod
    def _scratches(g: torch.Generator, size: int) -> torch.Tensor:
        field = torch.zeros(size, size)
        y, x = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32), indexing="ij")
        for _ in range(int(torch.randint(6, 24, (1,), generator=g))):
            p = torch.rand(2, generator=g) * size
            a = float(torch.rand(1, generator=g)) * math.pi
            dist = ((x - p[1]) * math.sin(a) - (y - p[0]) * math.cos(a)).abs()
            along = ((x - p[1]) * math.cos(a) + (y - p[0]) * math.sin(a)).abs()
            length = size * (0.1 + 0.5 * float(torch.rand(1, generator=g)))
            field = torch.maximum(field, ((dist < 1.5) & (along < length)).float())
        return field


def _fractal_noise(size: int, g: torch.Generator, octaves: int = 4) -> torch.Tensor:
    """Sum of upsampled random grids (value noise), normalised to [0, 1]."""
    out = torch.zeros(1, 1, size, size)
    for octave in range(octaves):
        cells = 2 ** (octave + 2)
        grid = torch.rand(1, 1, cells, cells, generator=g)
        out += F.interpolate(grid, size=(size, size), mode="bicubic", align_corners=False) / 2**octave
    out = out[0, 0]
    return (out - out.min()) / (out.max() - out.min() + 1e-8)


def _colourise(field: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Map a [0, 1] field between two random colours plus mild grain; returns uint8 ``(3, S, S)``."""
    lo, hi = torch.rand(3, generator=g), torch.rand(3, generator=g)
    rgb = lo[:, None, None] + (hi - lo)[:, None, None] * field[None]
    rgb = rgb + 0.04 * torch.randn(rgb.shape, generator=g)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


def texture_source(
    texture_dir: str | Path | None, seed: int = 0, fallback: bool = False
) -> FolderTextures | ProceduralTextures:
    """Folder textures when ``texture_dir`` is given, else generated ones (never a download).

    ``fallback=True``: a ``texture_dir`` that is absent or holds no textures gives generated textures
    with a warning (configs name the default DTD place, ``ispad-bench data textures`` fills it).
    """
    if not texture_dir:
        return ProceduralTextures(seed=seed)
    try:
        return FolderTextures(texture_dir)
    except FileNotFoundError as err:
        if not fallback:
            raise
        warnings.warn(f"{err}; using generated textures instead (get DTD with `ispad-bench data textures "
                      f"--root {texture_dir}`)", RuntimeWarning, stacklevel=2)
        return ProceduralTextures(seed=seed)


def source_name(textures: FolderTextures | ProceduralTextures) -> str:
    """``"dtd"`` for folder textures, ``"generated"`` otherwise (recorded with every GLASS run)."""
    return "dtd" if isinstance(textures, FolderTextures) else "generated"
