"""Fault-free ISP-AD-like patches: a screen-printed design seen through an imperfect camera.

A fixed product design per modality (two inks on a foil: an opaque main print ``A`` and a
semi-transparent second colour ``B`` - halftone dot grids, a printed mesh, rounded buttons with
symbols, lettering, §3.1) is sampled per patch with a small random rotation, scale and shift
(permitted design variance, §3.2), then shaded like the modality images it (LSM-1 darkfield:
dark foil, bright print edges; LSM-2 transmission: bright foil, dark tinted print; ASM
brightfield: grey, with a direct-reflection band) and degraded by the imaging conditions the
paper stresses: illumination gradients, line-to-line gain drift and column fixed-pattern noise
of the line-scan cameras, sensor noise, and the masked left/right borders of ASM (§3.2.5).

Defects (``defects.py``) are :class:`Edits` of the same scene, so a defective patch differs
from its fault-free twin only where the defect changed something - which makes masks exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from ispad_bench.data.modality import Modality

TILE = 512  # period of the product design in pixels; a 256 patch sees a quarter of it
_DESIGN_SEED = {Modality.LSM1: 101, Modality.LSM2: 202, Modality.ASM: 303}  # the "product"
_LABELS = ("AUTO", "A/C", "MAX", "ECO", "SET", "12:30", "OFF", "ON", "MODE", "24 V", "MENU", "+", "-")
_MAX_WIDTH = 1024  # widest patch the fixed-pattern noise covers
_NOISE_BANK = 1536  # side of the sensor-noise field; patches up to 512 px take windows of it


# ----------------------------------------------------------------------------- design
def _aa(sdf: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of a signed distance (negative inside)."""
    return np.clip(0.5 - sdf, 0.0, 1.0)


def _halftone(yy, xx, box, rng) -> np.ndarray:
    """Dot grid whose dot radius ramps across the box (a printed halftone gradient)."""
    y0, x0, y1, x1 = box
    period = rng.uniform(7.0, 10.0)
    angle = np.deg2rad(rng.choice([0.0, 45.0, 15.0]))
    u = xx * np.cos(angle) + yy * np.sin(angle)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    du = (u % period) - period / 2
    dv = (v % period) - period / 2
    ramp = np.clip((xx - x0) / max(x1 - x0, 1), 0, 1) if rng.random() < 0.5 else np.clip((yy - y0) / max(y1 - y0, 1), 0, 1)
    radius = period * (0.18 + 0.22 * ramp)
    return _aa(np.hypot(du, dv) - radius)


def _mesh(yy, xx, rng) -> np.ndarray:
    """A printed line grid (thin lines, both directions)."""
    period = rng.uniform(11.0, 16.0)
    half_width = rng.uniform(0.8, 1.3)
    dy = np.abs((yy % period) - period / 2)
    dx = np.abs((xx % period) - period / 2)
    return np.maximum(_aa(dy - half_width), _aa(dx - half_width))


def _draw_zone(kind: str, box, rng, a: ImageDraw.ImageDraw, b: ImageDraw.ImageDraw, font_size: float) -> None:
    """Draw buttons or lettering into a zone (PIL canvases at 2x for anti-aliasing)."""
    y0, x0, y1, x1 = (2 * v for v in box)
    font = ImageFont.load_default(size=int(2 * font_size))
    if kind == "buttons":
        cols, rows = rng.integers(2, 4), rng.integers(2, 4)
        w, h = (x1 - x0) / cols, (y1 - y0) / rows
        for i in range(rows):
            for j in range(cols):
                bx0, by0 = x0 + j * w + 10, y0 + i * h + 10
                bx1, by1 = bx0 + w - 20, by0 + h - 20
                rect = (bx0, by0, bx1, by1)
                radius = int(rng.uniform(8, 22))
                b.rounded_rectangle(rect, radius=radius, fill=255)
                a.rounded_rectangle(rect, radius=radius, outline=255, width=int(rng.uniform(4, 8)))
                label = _LABELS[int(rng.integers(len(_LABELS)))]
                a.text(((bx0 + bx1) / 2, (by0 + by1) / 2), label, fill=255, font=font, anchor="mm")
    else:  # lettering rows and a thick bar
        line_h = 2.2 * 2 * font_size
        y = y0 + 12
        a.rectangle((x0 + 6, y, x1 - 6, y + int(rng.uniform(10, 24))), fill=255)
        y += 40
        while y + line_h < y1:
            words = " ".join(_LABELS[int(k)] for k in rng.integers(len(_LABELS), size=4))
            a.text((x0 + 8, y), words, fill=255, font=font)
            if rng.random() < 0.5:
                r = line_h * 0.35
                cx = x1 - 3 * r
                b.ellipse((cx - r, y, cx + r, y + 2 * r), fill=255)
            y += line_h


@lru_cache(maxsize=None)
def design(modality: Modality) -> np.ndarray:
    """The periodic product design of a modality: float32 (2, TILE, TILE) ink coverages A and B."""
    rng = np.random.default_rng(_DESIGN_SEED[modality])
    yy, xx = np.mgrid[0:TILE, 0:TILE].astype(np.float32) + 0.5
    cy, cx = (int(rng.integers(220, 292)) for _ in range(2))
    gap = 6  # foil between zones and at the tile edge (hides the wrap seam)
    boxes = [(gap, gap, cy - gap, cx - gap), (gap, cx + gap, cy - gap, TILE - gap),
             (cy + gap, gap, TILE - gap, cx - gap), (cy + gap, cx + gap, TILE - gap, TILE - gap)]
    kinds = ["halftone", "buttons", "text", "mesh"]
    rng.shuffle(kinds)
    a_np = np.zeros((TILE, TILE), np.float32)
    b_np = np.zeros((TILE, TILE), np.float32)
    a_img, b_img = Image.new("L", (2 * TILE, 2 * TILE)), Image.new("L", (2 * TILE, 2 * TILE))
    a_draw, b_draw = ImageDraw.Draw(a_img), ImageDraw.Draw(b_img)
    for kind, box in zip(kinds, boxes):
        y0, x0, y1, x1 = box
        inside = (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
        if kind == "halftone":
            a_np = np.where(inside, np.maximum(a_np, _halftone(yy, xx, box, rng)), a_np)
        elif kind == "mesh":
            b_np = np.where(inside, np.maximum(b_np, _mesh(yy, xx, rng)), b_np)
            r = rng.uniform(25, 45)  # a printed ring on the mesh
            ring = np.abs(np.hypot(yy - (y0 + y1) / 2, xx - (x0 + x1) / 2) - r) - rng.uniform(2.5, 4.0)
            a_np = np.maximum(a_np, _aa(ring))
        else:
            _draw_zone(kind, box, rng, a_draw, b_draw, font_size=rng.uniform(9, 13))
    drawn = [np.asarray(img.resize((TILE, TILE), Image.Resampling.BOX), np.float32) / 255 for img in (a_img, b_img)]
    a_np, b_np = np.maximum(a_np, drawn[0]), np.maximum(b_np, drawn[1])
    # ink spreads a little on the foil: soften every edge slightly (wrap keeps the tile periodic)
    return np.stack([ndimage.gaussian_filter(x, 0.5, mode="wrap") for x in (a_np, b_np)]).astype(np.float32)


@lru_cache(maxsize=None)
def _column_gain(modality: Modality) -> np.ndarray:
    """Fixed-pattern gain per sensor column of the line-scan cameras (a property of the sensor)."""
    rng = np.random.default_rng(_DESIGN_SEED[modality] + 1)
    if modality is Modality.ASM:
        return np.ones(_MAX_WIDTH, np.float32)
    return (1 + 0.006 * rng.standard_normal(_MAX_WIDTH)).astype(np.float32)


# ----------------------------------------------------------------------------- scenes
@dataclass
class Edits:
    """What a defect changes in a scene; every field is optional and (H, W) unless noted.

    ``warp_a``/``warp_b`` (2, H, W) displace the design sampling of ink A/B (misalignment, grid
    distortion); ``ink_scale`` multiplies both inks (pinholes, missing grid); ``ink_add`` adds
    ink A (dots, squeegee residue); ``debris`` is foreign material (fibres, dust); ``scratch``
    surface damage; ``gloss`` a loss of gloss of the foil (squeegee stroke).
    """

    warp_a: np.ndarray | None = None
    warp_b: np.ndarray | None = None
    ink_scale: np.ndarray | None = None
    ink_add: np.ndarray | None = None
    debris: np.ndarray | None = None
    scratch: np.ndarray | None = None
    gloss: np.ndarray | None = None


@dataclass
class Scene:
    """Everything random about one fault-free patch; :func:`render` turns it into pixels."""

    modality: Modality
    size: int
    coords: np.ndarray  # (2, H, W) design coordinates (y, x) of every pixel
    grain: np.ndarray  # (H, W) ink-film thickness, ~1
    foil: np.ndarray  # (H, W) fine streaky texture of the carrier foil, std ~1
    gain: np.ndarray  # (H, W) illumination x line drift x column gain x exposure
    noise: np.ndarray  # (H, W, C) standard normal sensor noise
    tint: np.ndarray  # (C,)
    band: np.ndarray | None  # (H, W) direct reflection 0..1 (ASM)
    borders: tuple[int, int]  # masked columns left/right (ASM)
    _inks: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def crop(self, y0: int, x0: int, size: int) -> Scene:
        """A square window of the scene (renders like the full scene cropped, up to LSM-1's edge filter at the rim)."""
        ys, xs = slice(y0, y0 + size), slice(x0, x0 + size)
        band = None if self.band is None else self.band[ys, xs]
        borders = (max(0, self.borders[0] - x0), max(0, x0 + size - (self.size - self.borders[1])))
        inks = None if self._inks is None else (self._inks[0][ys, xs], self._inks[1][ys, xs])
        return Scene(self.modality, size, self.coords[:, ys, xs], self.grain[ys, xs], self.foil[ys, xs], self.gain[ys, xs],
                     self.noise[ys, xs], self.tint, band, borders, inks)

    def inks(self, warp_a=None, warp_b=None) -> tuple[np.ndarray, np.ndarray]:
        """Ink coverages A and B sampled from the design (cached when not warped)."""
        if warp_a is None and warp_b is None:
            if self._inks is None:
                self._inks = _sample(self.modality, self.coords)
            return self._inks
        if warp_a is warp_b:
            return _sample(self.modality, self.coords + warp_a)
        a = self.inks()[0] if warp_a is None else _sample(self.modality, self.coords + warp_a)[0]
        b = self.inks()[1] if warp_b is None else _sample(self.modality, self.coords + warp_b)[1]
        return a, b


@lru_cache(maxsize=None)
def _interleaved(modality: Modality) -> np.ndarray:
    """Both design layers as one complex64 array (A real, B imaginary): one gather samples both."""
    tile = design(modality)
    return (tile[0] + 1j * tile[1]).astype(np.complex64).ravel()


def _sample(modality: Modality, coords: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear sample of both periodic design layers at (2, H, W) coordinates (wrapping).

    Same as ``ndimage.map_coordinates(order=1, mode="grid-wrap")`` per layer, several times faster.
    """
    flat = _interleaved(modality)
    y0, x0 = np.floor(coords[0]), np.floor(coords[1])
    fy, fx = coords[0] - y0, coords[1] - x0
    mask = TILE - 1  # TILE is a power of two
    iy, ix = y0.astype(np.int32) & mask, x0.astype(np.int32) & mask
    iy1, ix1 = ((iy + 1) & mask) * TILE, (ix + 1) & mask
    iy = iy * TILE
    top = flat.take(iy + ix) * (1 - fx) + flat.take(iy + ix1) * fx
    bottom = flat.take(iy1 + ix) * (1 - fx) + flat.take(iy1 + ix1) * fx
    both = top * (1 - fy) + bottom * fy
    return np.ascontiguousarray(both.real), np.ascontiguousarray(both.imag)


def _smooth_walk(rng: np.random.Generator, n: int) -> np.ndarray:
    """Zero-mean, unit-std slow drift of length n (integrated noise, detrended)."""
    walk = np.cumsum(rng.standard_normal(n))
    walk -= np.linspace(walk[0], walk[-1], n)
    return walk / (walk.std() + 1e-6)


@lru_cache(maxsize=4)
def _grids(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pixel offsets from the centre and normalised [-1, 1] coordinates of a patch."""
    grid = np.arange(size, dtype=np.float32) - size / 2
    lin = np.linspace(-1, 1, size, dtype=np.float32)
    return (*np.meshgrid(grid, grid, indexing="ij"), *np.meshgrid(lin, lin, indexing="ij"))


@lru_cache(maxsize=None)
def _grain_bank(modality: Modality) -> np.ndarray:
    """A large periodic ink-grain texture; patches take random windows of it (cheap)."""
    rng = np.random.default_rng(_DESIGN_SEED[modality] + 2)
    bank = ndimage.gaussian_filter(rng.standard_normal((_MAX_WIDTH, _MAX_WIDTH)).astype(np.float32), 1.2, mode="wrap")
    return np.tile(1 + 0.056 * bank / bank.std(), (2, 2))  # ~5.6 % film thickness variation


@lru_cache(maxsize=None)
def _foil_bank(modality: Modality) -> np.ndarray:
    """Periodic texture of the polymer foil: fine streaks along the extrusion direction (rows)."""
    rng = np.random.default_rng(_DESIGN_SEED[modality] + 3)
    bank = ndimage.gaussian_filter(rng.standard_normal((_MAX_WIDTH, _MAX_WIDTH)).astype(np.float32), (0.7, 9.0), mode="wrap")
    return np.tile(bank / bank.std(), (2, 2))


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed field of standard-normal sensor noise; each patch takes a random window of it.

    Drawing fresh noise per patch costs about as much as rendering it; windows at random
    offsets of a 1536 x 1536 field are just as unstructured to a detector.
    """
    rng = np.random.default_rng(404)
    return rng.standard_normal((_NOISE_BANK, _NOISE_BANK, 3), dtype=np.float32).astype(np.float16)


def sample_scene(modality: Modality | str, rng: np.random.Generator, size: int = 256, gray: bool = False) -> Scene:
    """Draw a fault-free patch position and imaging conditions (``gray``: for ``render(gray=True)`` only)."""
    modality = Modality.parse(modality)
    if size > _NOISE_BANK // 2:
        raise ValueError(f"patch size {size} > {_NOISE_BANK // 2} is not supported")
    channels = 1 if modality is Modality.ASM else 3
    py, px, gy, gx = _grids(size)
    angle = float(np.deg2rad(rng.uniform(-1.0, 1.0)))  # permitted placement variance of the print
    scale = float(rng.uniform(0.985, 1.015))
    oy, ox = (float(v) for v in rng.uniform(0, TILE, size=2))
    cos, sin = float(np.cos(angle)) * scale, float(np.sin(angle)) * scale  # python floats keep float32
    coords = np.stack([oy + cos * py + sin * px, ox - sin * py + cos * px])

    # smooth illumination: tilt plus a mild vignetting; exposure varies per patch
    tilt_x, tilt_y, vignette, exposure = (float(v) for v in rng.uniform([-0.07, -0.07, 0, 0.93], [0.07, 0.07, 0.08, 1.07]))
    gain = exposure * (1 + tilt_x * gx + tilt_y * gy - vignette / 2 * (gx * gx + gy * gy))
    band, borders = None, (0, 0)
    if modality is Modality.ASM:
        phi = float(np.deg2rad(rng.choice([rng.uniform(-10, 10), rng.uniform(25, 50) * rng.choice([-1, 1])])))
        offset, width, strength = float(rng.uniform(-0.6, 0.6)) * size, float(rng.uniform(18, 55)), float(rng.uniform(0.7, 1.0))
        dist = float(np.sin(phi) * size / 2) * gx - float(np.cos(phi) * size / 2) * gy - offset
        band = strength / (1 + (np.abs(dist) / width) ** 4)
        hi = max(3, modality.border_crop_px)  # §3.2.5: masked borders "a few pixels" wide
        borders = (int(rng.integers(3, hi + 1)), int(rng.integers(3, hi + 1)))
    else:
        # line scan: each row is one exposure; its gain drifts slowly and jitters a little
        rows = (1 + 0.012 * _smooth_walk(rng, size) + 0.003 * rng.standard_normal(size)).astype(np.float32)
        start = int(rng.integers(0, _MAX_WIDTH - size + 1))
        gain = gain * rows[:, None] * _column_gain(modality)[None, start : start + size]
    gy0, gx0 = (int(v) for v in rng.integers(0, _MAX_WIDTH, size=2))
    grain = _grain_bank(modality)[gy0 : gy0 + size, gx0 : gx0 + size]
    fy0, fx0 = (int(v) for v in rng.integers(0, _MAX_WIDTH, size=2))
    foil = _foil_bank(modality)[fy0 : fy0 + size, fx0 : fx0 + size]
    tint = np.ones(channels, np.float32) if channels == 1 else (1 + rng.uniform(-0.02, 0.02, 3)).astype(np.float32)
    ny, nx = (int(v) for v in rng.integers(0, _NOISE_BANK - size + 1, size=2))
    noise = _noise_bank()[ny : ny + size, nx : nx + size, : 1 if gray else channels].astype(np.float32)
    return Scene(modality, size, coords, grain, foil, gain, noise, tint, band, borders)


# ----------------------------------------------------------------------------- shading
_LSM1_TINT = np.array([1.0, 0.93, 0.8], np.float32)  # warm darkfield LEDs
_LSM2_LIGHT = np.array([0.97, 1.0, 0.92], np.float32)
_LSM2_ABSORB_B = np.array([0.62, 0.38, 0.15], np.float32)  # ink B: a cyan-ish translucent colour
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R 601-2, as PIL convert("L")


def _edges(film: np.ndarray) -> np.ndarray:
    """Gradient magnitude of the (slightly blurred) ink film: where darkfield light scatters."""
    smooth = ndimage.gaussian_filter(film, 0.8)
    pad = np.pad(smooth, 1, mode="edge")
    dy = pad[2:, 1:-1] - pad[:-2, 1:-1]
    dx = pad[1:-1, 2:] - pad[1:-1, :-2]
    return np.sqrt(dy * dy + dx * dx)


def render(scene: Scene, edits: Edits | None = None, gray: bool = False) -> np.ndarray:
    """Float32 (H, W, C) intensities in [0, 255] of a scene, optionally with a defect's edits.

    ``gray=True`` renders the luma (C = 1) of an RGB modality directly, as the single-channel
    supervised patches are stored (§3.2.2); ASM is single-channel anyway.
    """
    e = edits or Edits()
    a, b = scene.inks(e.warp_a, e.warp_b)
    if e.ink_scale is not None:
        a, b = a * e.ink_scale, b * e.ink_scale
    if e.ink_add is not None:
        a = np.clip(a + e.ink_add, 0, 1)
    g = scene.grain
    m = scene.modality
    light = scene.tint
    if m is Modality.LSM1:  # darkfield: foil dark, print edges and rough ink scatter light
        edge = _edges(a * g + 0.5 * b * g)
        base = 9 + 110 * edge + 26 * a * g + 9 * b * g + 1.8 * scene.foil * (1 - a)
        for layer, k in ((e.debris, 120), (e.scratch, 95), (e.gloss, 30)):
            if layer is not None:
                base = base + k * layer
        light = _LSM1_TINT * scene.tint
        img = base[..., None] * (light @ _LUMA if gray else light)
        sigma = np.sqrt(1.2 + 0.05 * img)
    elif m is Modality.LSM2:  # transmission: bright foil, inks absorb (B per colour channel)
        ta = 1 - 0.86 * np.clip(a * g, 0, 1)
        bg = np.clip(b * g, 0, 1)[..., None]
        light = _LSM2_LIGHT * scene.tint
        if gray:  # luma of the three channels, exact before noise (transmission is linear in b)
            trans = ta[..., None] * ((light @ _LUMA) - bg * ((light * _LSM2_ABSORB_B) @ _LUMA))
        else:
            trans = ta[..., None] * light * (1 - _LSM2_ABSORB_B * bg)
        if e.debris is not None:
            trans = trans * (1 - 0.55 * e.debris)[..., None]
        if e.gloss is not None:
            trans = trans * (1 - 0.06 * e.gloss)[..., None]
        if e.scratch is not None:  # a scratch in the ink lets light through
            trans = trans + (0.35 * e.scratch * a)[..., None] * (light @ _LUMA if gray else light)
        img = 226 * trans * (1 + 0.012 * scene.foil)[..., None]
        sigma = np.sqrt(2.0 + 0.03 * img)
    else:  # brightfield: grey foil, darker inks, specular band on the glossy foil
        band = scene.band * (1 - 0.75 * a - 0.4 * b) * (1 + 0.04 * scene.foil)  # gloss varies along the foil
        if e.gloss is not None:
            band = band * (1 - e.gloss)
        base = 118 - 62 * a * g - 30 * b * g + 190 * band + 1.2 * scene.foil * (1 - a)
        if e.debris is not None:
            base = base - 55 * e.debris
        if e.scratch is not None:
            base = base + e.scratch * (35 - 110 * scene.band)
        img = base[..., None]
        sigma = np.sqrt(1.5 + 0.02 * np.abs(img))
    noise = scene.noise[..., :1] * 0.67 if gray and m is not Modality.ASM else scene.noise  # luma of 3 noises
    img = img * scene.gain[..., None] + sigma * noise
    if scene.borders[0]:
        img[:, : scene.borders[0]] = 0
    if scene.borders[1]:
        img[:, scene.size - scene.borders[1] :] = 0
    return np.clip(img, 0, 255, out=img)


def warm_up(modality: Modality) -> None:
    """Build the cached design and textures of a modality once (before threads use them)."""
    design(modality), _interleaved(modality), _grain_bank(modality), _foil_bank(modality), _column_gain(modality), _noise_bank()


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Quantise a rendered image; drop the channel axis for single-channel images."""
    out = np.rint(img).astype(np.uint8)
    return out[..., 0] if out.shape[-1] == 1 else out


def to_gray(img: np.ndarray) -> np.ndarray:
    """uint8 RGB -> luma exactly like PIL ``Image.convert("L")`` (ITU-R 601-2); gray passes through.

    The supervised HDF5 patches are single-channel for every modality (§3.2.2); converting the
    RGB test PNGs of LSM-1/LSM-2 with ``convert("L")`` gives a model the same input it trained on.
    """
    if img.ndim == 2:
        return img
    r, g, b = (img[..., i].astype(np.uint32) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(np.uint8)
