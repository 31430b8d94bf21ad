"""Defects for the generated ISP-AD-like data.

Two families:

* :func:`synthesize_defect` - the random-walk-with-momentum defect synthesizer that made the
  synthetic half of the supervised stream (§3.2, ref [25] of the paper: "a stochastic process
  resembling a random walk with momentum"). It works on any uint8 gray or RGB patch, so users
  can synthesize defects on their own fault-free patches. (Our own implementation of the idea.)
* :func:`defect_patch` - the test-split defect types of §3.1 (points: pinhole, dot, fibre,
  scratch; areas: pattern misalignment, squeegee stroke, grid defect), drawn as physical
  changes of a printed scene (``patterns.Edits``) and rendered through the same camera model.

Masks are exact: a pixel is in the mask iff the defect changed it by at least a small threshold
(pixels changed less are reset to their fault-free value). Area-defect masks are additionally
closed and hole-filled inside the defect region, like an annotator would draw them, so they may
contain unchanged pixels; no changed pixel is ever outside a mask.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage, signal

from ispad_bench.data.modality import Modality
from ispad_bench.data.synth.patterns import Edits, Scene, render, sample_scene, to_uint8

POINT_TYPES = ("pinhole", "dot", "fibre", "scratch")
AREA_TYPES = ("misalignment", "squeegee_stroke", "grid")
DEFECT_TYPES = AREA_TYPES + POINT_TYPES

# Synthesizer presets: ranges (lo, hi) drawn uniformly unless a parameter is passed explicitly.
PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "point": {"steps": (2, 10), "momentum": (0.3, 0.7), "radius": (0.8, 2.6), "contrast": (0.25, 0.6)},
    "blob": {"steps": (10, 35), "momentum": (0.6, 0.85), "radius": (1.5, 4.0), "contrast": (0.12, 0.3)},
    "fibre": {"steps": (30, 120), "momentum": (0.9, 0.97), "radius": (0.5, 1.0), "contrast": (0.2, 0.55)},
    "scratch": {"steps": (40, 160), "momentum": (0.985, 0.998), "radius": (0.4, 0.8), "contrast": (0.2, 0.5)},
}
_PRESET_P = {"point": 0.35, "blob": 0.2, "fibre": 0.3, "scratch": 0.15}


# ----------------------------------------------------------------------------- strokes
def random_walk(
    rng: np.random.Generator, start, steps: int, momentum: float, step: float = 1.0, velocity=None
) -> np.ndarray:
    """Positions (steps + 1, 2) of a walk whose velocity keeps ``momentum`` of its last value.

    ``v_t = momentum * v_{t-1} + (1 - momentum) * noise_t`` (an AR(1) vector process, computed
    with one linear filter); each move has length ``step`` along ``v_t``. Momentum near 1 gives
    smooth, nearly straight strokes (scratches), lower momentum curls into blobs.
    """
    v0 = rng.standard_normal(2) if velocity is None else np.asarray(velocity, float)
    v0 = v0 / (np.linalg.norm(v0) + 1e-9)
    noise = (1 - momentum) * rng.standard_normal((steps, 2))
    vel, _ = signal.lfilter([1.0], [1.0, -momentum], noise, axis=0, zi=momentum * v0[None])
    vel /= np.linalg.norm(vel, axis=1, keepdims=True) + 1e-9
    return np.concatenate([np.asarray(start, float)[None], start + np.cumsum(step * vel, axis=0)])


def along(rng: np.random.Generator, n: int, momentum: float = 0.95, spread: float = 0.3) -> np.ndarray:
    """A smooth positive factor along a path (``exp`` of an AR(1) process with std ~``spread``)."""
    noise = rng.standard_normal(n) * np.sqrt(1 - momentum**2)
    ar = signal.lfilter([1.0], [1.0, -momentum], noise, zi=[momentum * rng.standard_normal()])[0]
    return np.exp(spread * ar)


def stroke(shape: tuple[int, int], path: np.ndarray, radius, intensity) -> np.ndarray:
    """Rasterise a brush along ``path`` (K, 2) as float (H, W): max over anti-aliased discs.

    ``radius`` and ``intensity`` are scalars or per-point arrays (brush width and strength change
    along the path). The path is resampled to half-pixel spacing so the stamps overlap.
    """
    path = np.asarray(path, float)
    radius = np.broadcast_to(np.asarray(radius, float), (len(path),))
    intensity = np.broadcast_to(np.asarray(intensity, float), (len(path),))
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    fine = np.linspace(0, arc[-1], max(2, int(np.ceil(arc[-1] / 0.5)) + 1))
    py, px = np.interp(fine, arc, path[:, 0]), np.interp(fine, arc, path[:, 1])
    r, a = np.interp(fine, arc, radius), np.interp(fine, arc, intensity)
    out = np.zeros(shape, np.float32)
    k = int(np.ceil(r.max() + 1.5))  # each stamp touches a (2k+1)^2 window around its point
    off = np.arange(-k, k + 1)
    iy = np.floor(py).astype(np.int64)[:, None, None] + off[None, :, None]
    ix = np.floor(px).astype(np.int64)[:, None, None] + off[None, None, :]
    d = np.hypot(iy - py[:, None, None], ix - px[:, None, None])
    value = (np.clip(r[:, None, None] + 0.5 - d, 0, 1) * a[:, None, None]).astype(np.float32)
    keep = (value > 0) & (iy >= 0) & (iy < shape[0]) & (ix >= 0) & (ix < shape[1])
    np.maximum.at(out.reshape(-1), (iy * shape[1] + ix)[keep], value[keep])
    return out


def disc(shape, centre, radius: float) -> np.ndarray:
    """Anti-aliased disc (H, W) in [0, 1]."""
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return np.clip(radius + 0.5 - np.hypot(yy - centre[0], xx - centre[1]), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- synthesizer
def _amp(x, strength: float, cap: float = 1.0):
    """``x`` scaled by ``strength``, capped at ``cap`` (never below ``x``: strength 1 is exactly the identity)."""
    out = np.minimum(np.multiply(x, strength), np.maximum(x, cap))
    return float(out) if np.ndim(out) == 0 else out  # a Python float keeps float32 arrays float32 (NEP 50)


def check_strength(strength: float) -> float:
    """``strength`` as a float; a ValueError unless it is finite and > 0 (the generator checks with this too)."""
    strength = float(strength)
    if not strength > 0 or not np.isfinite(strength):
        raise ValueError(f"defect_strength must be a finite number > 0, got {strength}")
    return strength


def _draw(params: dict, name: str, rng: np.random.Generator, preset: dict) -> float:
    if params.get(name) is not None:
        return float(params[name])
    lo, hi = preset[name]
    return float(rng.uniform(lo, hi))


def synthesize_defect(patch: np.ndarray, rng: np.random.Generator, **params) -> tuple[np.ndarray, np.ndarray]:
    """Draw one random-walk-with-momentum defect onto a fault-free uint8 patch.

    A brush starts at a random point and walks with a velocity vector that keeps ``momentum``
    of its previous value plus a random perturbation (:func:`random_walk`); brush radius and
    intensity vary smoothly along the path; a mild multiplicative texture roughens it. The
    stroke is blended weakly into the patch toward black or white:
    ``out = patch + contrast * stroke * (target - patch)``.

    Args:
        patch: uint8 (H, W) or (H, W, C) fault-free patch (any size).
        rng: the random generator (same state -> same defect).
        kind: preset ``point`` (pinhole-like), ``blob`` (low-contrast deformation), ``fibre``
            (thin curved line), ``scratch`` (long, nearly straight); default random.
        steps, momentum, radius, contrast: override the preset (steps in px of path length,
            momentum in [0, 1), brush radius in px, contrast = blend fraction in (0, 1]).
        polarity: +1 brighter, -1 darker (default random).
        start: (y, x) start of the walk (default random, 8 px from the edges).
        texture: amplitude of the brush's texture (default 0.3).
        valid: bool (H, W) where the defect may change pixels (e.g. exclude masked borders).
        threshold: smallest change in gray levels that counts as defect (default 2).
        strength: visibility multiplier (default 1): contrast x strength (capped at 1), radius x sqrt(strength).

    Returns:
        ``(defective, mask)``: uint8 patch like the input, and uint8 (H, W) mask, 255 exactly
        where a pixel changed. Raises ``ValueError`` if no visible defect could be placed.
    """
    patch = np.asarray(patch)
    if patch.dtype != np.uint8 or patch.ndim not in (2, 3):
        raise ValueError(f"synthesize_defect needs a uint8 (H, W) or (H, W, C) patch, got {patch.dtype} {patch.shape}")
    unknown = set(params) - {"kind", "steps", "momentum", "radius", "contrast", "polarity", "start", "texture", "valid", "threshold",
                             "strength"}
    if unknown:
        raise TypeError(f"synthesize_defect got unknown parameters {sorted(unknown)}")
    kind = params.get("kind") or str(rng.choice(list(_PRESET_P), p=list(_PRESET_P.values())))
    if kind not in PRESETS:
        raise ValueError(f"unknown defect kind {kind!r}; choose from {sorted(PRESETS)}")
    preset, (h, w) = PRESETS[kind], patch.shape[:2]
    img = patch.astype(np.float32).reshape(h, w, -1)
    threshold = 2.0 if params.get("threshold") is None else float(params["threshold"])
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0 gray levels, got {threshold}")
    valid = params.get("valid")
    strength = check_strength(1.0 if params.get("strength") is None else params["strength"])
    for _ in range(20):  # a stroke on saturated or excluded pixels changes nothing: try again
        steps = max(1, int(round(_draw(params, "steps", rng, preset))))
        momentum = _draw(params, "momentum", rng, preset)
        radius, contrast = _draw(params, "radius", rng, preset), _draw(params, "contrast", rng, preset)
        radius, contrast = radius * np.sqrt(strength), _amp(contrast, strength)
        margin = min(8, h // 4, w // 4)
        start = params.get("start")
        if start is None:
            start = (rng.uniform(margin, h - margin), rng.uniform(margin, w - margin))
        path = random_walk(rng, start, steps, momentum)
        n = len(path)
        brush = stroke((h, w), path, radius * along(rng, n, 0.9, 0.25), np.clip(along(rng, n, 0.9, 0.3), 0.3, 1.5))
        texture = float(params.get("texture", 0.3) or 0.0)
        rough = 1 + texture * ndimage.gaussian_filter(rng.standard_normal((h, w)).astype(np.float32), 0.8) * 2.5
        s = np.clip(brush * rough, 0, 1)
        polarity = params.get("polarity") or (1 if rng.random() < 0.5 else -1)
        target = 255.0 if polarity > 0 else 0.0
        out = img + (contrast * s)[..., None] * (target - img)
        change = np.abs(out - img).max(axis=2)
        mask = change >= threshold
        if valid is not None:
            mask &= np.asarray(valid, bool)
        if mask.any():
            result = np.where(mask[..., None], np.rint(out), img).astype(np.uint8).reshape(patch.shape)
            return result, (mask * np.uint8(255))
    raise ValueError(f"could not place a visible {kind} defect on a {patch.shape} patch (saturated or excluded?)")


# ----------------------------------------------------------------------------- test-split defects
def _centre(scene: Scene, rng, centered: bool, margin: int = 16, where: np.ndarray | None = None):
    """A defect position: random (optionally among ``where`` pixels) or near the patch centre."""
    n, left, right = scene.size, max(margin, scene.borders[0] + 4), max(margin, scene.borders[1] + 4)
    if where is not None:
        ok = where.copy()
        ok[:margin], ok[n - margin :], ok[:, :left], ok[:, n - right :] = False, False, False, False
        if centered:
            yy, xx = np.ogrid[:n, :n]
            ok &= np.hypot(yy - n / 2, xx - n / 2) < 24
        idx = np.flatnonzero(ok)
        if idx.size == 0:
            return None
        k = idx[rng.integers(idx.size)]
        return np.array([k // n, k % n], float)
    if centered:
        return np.array([n / 2, n / 2]) + rng.uniform(-3, 3, 2)
    return np.array([rng.uniform(margin, n - margin), rng.uniform(left, n - right)])


def _smooth_field(rng, shape, sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return f / (np.abs(f).max() + 1e-9)


def _scene_edits(kind: str, scene: Scene, rng, centered: bool, strength: float = 1.0) -> tuple[Edits, np.ndarray | None] | None:
    """Physical description of one defect of ``kind`` in ``scene``; None if it does not fit there.

    ``strength`` scales what the defect changes (amounts x strength, capped at full; sizes of point
    defects x sqrt(strength); shifts and warps x strength) after the same random draws.
    """
    n, s, r = scene.size, strength, np.sqrt(strength)
    shape = (n, n)
    yy, xx = np.mgrid[:n, :n].astype(np.float32)
    if kind == "pinhole":  # ink missing in a few pixels
        c = _centre(scene, rng, centered, where=scene.inks()[0] > 0.7)
        if c is None:
            return None
        hole = disc(shape, c, rng.uniform(0.7, 2.2) * r)
        if rng.random() < 0.4:
            hole = np.maximum(hole, disc(shape, c + rng.uniform(-2, 2, 2), rng.uniform(0.5, 1.5) * r))
        return Edits(ink_scale=1 - hole * rng.uniform(0.75, 1.0)), None
    if kind == "dot":  # an extra ink dot, or a dust particle
        c = _centre(scene, rng, centered)
        blob = stroke(shape, random_walk(rng, c, int(rng.integers(1, 6)), 0.5), rng.uniform(1.0, 3.0) * r, 1.0)
        if rng.random() < 0.5:
            return Edits(ink_add=blob * _amp(rng.uniform(0.3, 0.75), s)), None
        return Edits(debris=blob * _amp(rng.uniform(0.2, 0.5), s)), None
    if kind in ("fibre", "scratch"):  # thin curved foreign fibre / nearly straight surface scratch
        fibre = kind == "fibre"
        steps = int(rng.integers(30, 110) if fibre else rng.integers(50, 170))
        path = random_walk(rng, (0.0, 0.0), steps, rng.uniform(0.92, 0.98) if fibre else rng.uniform(0.993, 0.999))
        path = path - path.mean(axis=0) + _centre(scene, rng, centered, margin=24)
        m = len(path)
        width = (rng.uniform(0.5, 0.9) if fibre else rng.uniform(0.35, 0.6)) * r * along(rng, m, 0.95, 0.2)
        amount = _amp(rng.uniform(0.25, 0.6) if fibre else rng.uniform(0.3, 0.7), s)
        layer = stroke(shape, path, width, amount * np.clip(along(rng, m, 0.97, 0.35), 0.2, 1.5))
        return (Edits(debris=layer) if fibre else Edits(scratch=layer)), None
    if kind == "misalignment":  # one print layer registered off by a few px over a large region
        c = _centre(scene, rng, centered, margin=64)
        theta = rng.uniform(0, 2 * np.pi)
        side = (yy - c[0]) * np.cos(theta) + (xx - c[1]) * np.sin(theta)
        region = (1 / (1 + np.exp(-side / 1.5))).astype(np.float32)
        # shift the layer whose printed edges show most in this region (ink B is faint in darkfield)
        visibility = {Modality.LSM1: (1.0, 0.3), Modality.LSM2: (1.0, 0.8), Modality.ASM: (1.0, 0.5)}[scene.modality]
        edges = [w * float((np.abs(np.diff(ink, axis=1))[:, :] * region[:, 1:]).sum()) for w, ink in zip(visibility, scene.inks())]
        if max(edges) < 150:  # hardly any print here: a misregistration would not show
            return None
        angle = rng.uniform(0, 2 * np.pi)
        shift = rng.uniform(2.0, 5.0) * s * np.array([np.cos(angle), np.sin(angle)], np.float32)
        warp = region[None] * shift[:, None, None]
        return (Edits(warp_b=warp) if edges[1] > edges[0] else Edits(warp_a=warp)), region
    if kind == "squeegee_stroke":  # long faint streak of ink residue / lost gloss along the print direction
        if scene.band is not None and rng.random() < 0.8:  # §3.1 / Fig. 2: in the reflection transition
            c = _centre(scene, rng, centered, where=(scene.band > 0.25) & (scene.band < 0.75))
            if c is None:
                return None
            gy, gx = np.gradient(scene.band)
            k = (int(c[0]), int(c[1]))
            theta = np.arctan2(gy[k], gx[k])  # across-stroke direction = band gradient
        else:
            c = _centre(scene, rng, centered, margin=40)
            theta = rng.choice([0.0, np.pi / 2]) + np.deg2rad(rng.uniform(-4, 4))
        across = (yy - c[0]) * np.sin(theta) + (xx - c[1]) * np.cos(theta)
        length = (xx - c[1]) * np.sin(theta) - (yy - c[0]) * np.cos(theta)
        half = rng.uniform(3, 11)
        profile = np.clip((half - np.abs(across)) / 3 + 0.5, 0, 1)
        lengthwise = 1 + 0.35 * _smooth_field(rng, shape, 10)  # uneven along the stroke
        fade = np.clip((rng.uniform(90, 300) - np.abs(length)) / 20, 0, 1)
        streak = (profile * lengthwise * fade).astype(np.float32)
        ink, gloss = _amp(rng.uniform(0.04, 0.1), s), _amp(rng.uniform(0.2, 0.45), s)
        return Edits(ink_add=streak * ink, gloss=streak * gloss), (streak > 0.02).astype(np.float32)
    if kind == "grid":  # printed grid locally distorted and partly missing (screen damage)
        c = _centre(scene, rng, centered, margin=40)
        ay, ax, rot = rng.uniform(14, 50), rng.uniform(14, 50), rng.uniform(0, np.pi)
        u = ((yy - c[0]) * np.cos(rot) + (xx - c[1]) * np.sin(rot)) / ay
        v = (-(yy - c[0]) * np.sin(rot) + (xx - c[1]) * np.cos(rot)) / ax
        region = np.clip((1 - np.hypot(u, v)) * 4, 0, 1).astype(np.float32)
        amp = rng.uniform(1.5, 3.0) * s
        warp = np.stack([_smooth_field(rng, shape, 5), _smooth_field(rng, shape, 5)]) * amp * region[None]
        missing = region * (_smooth_field(rng, shape, 2.5) > rng.uniform(0.0, 0.3)) * _amp(rng.uniform(0.4, 0.9), s)
        return Edits(warp_a=warp, warp_b=warp, ink_scale=1 - missing), region
    raise ValueError(f"unknown defect type {kind!r}; choose from {DEFECT_TYPES}")


def _area_mask(changed: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Annotator-like mask: changed pixels closed (6 px) and hole-filled, kept inside the region."""
    r = 6
    padded = np.pad(changed, r + 1)
    structure = disc((2 * r + 1, 2 * r + 1), (r, r), r) > 0.5
    closed = ndimage.binary_closing(padded, structure)[r + 1 : -r - 1, r + 1 : -r - 1]
    return (ndimage.binary_fill_holes(closed) & (region > 0.02)) | changed


def defect_patch(
    kind: str,
    modality: Modality | str,
    rng: np.random.Generator,
    size: int = 256,
    centered: bool = False,
    with_mask: bool = True,
    max_tries: int = 30,
    return_clean: bool = False,
    strength: float = 1.0,
):
    """A patch with one test-split defect of ``kind`` and its mask (uint8 0/255, exact).

    Returns ``(image, mask)``: image uint8 (H, W, 3) for LSM-1/LSM-2, (H, W) for ASM.
    ``centered`` puts the defect at the patch centre (real-defect patches, §3.2);
    ``with_mask=False`` skips the mask (returns None) and only checks that the defect is visible
    in the central 256 px, which is cheaper for the large real-defect patches.
    ``return_clean=True`` also returns the same patch without the defect (for checks).
    ``strength`` scales how much the defect changes the scene (1: ISP-AD-like faint; see ``_scene_edits``).
    """
    modality = Modality.parse(modality)
    strength = check_strength(strength)
    area = kind in AREA_TYPES
    for _ in range(max_tries):  # some scenes cannot show a defect (no ink for a pinhole...): redraw
        scene = sample_scene(modality, rng, size)
        found = _scene_edits(kind, scene, rng, centered, strength)
        if found is None:
            continue
        edits, region = found
        bad = render(scene, edits)
        if with_mask:
            clean = render(scene)
            bad_view, clean_view = bad, clean
        else:
            win = min(size, 256)
            y0 = (size - win) // 2
            view = slice(y0, y0 + win)
            bad_view = bad[view, view]
            clean_view = render(scene.crop(y0, y0, win))
        change = np.abs(bad_view - clean_view).max(axis=2)
        if not with_mask:
            change[:4], change[-4:], change[:, :4], change[:, -4:] = 0, 0, 0, 0  # crop rim differs (edge filter)
        peak = float(change.max())
        changed = change >= max(3.0 if area else 2.0, 0.1 * peak)
        if changed.sum() < (60 if area else 4):
            continue
        if not with_mask:
            return to_uint8(bad), None
        mask = _area_mask(changed, region) if area else changed
        if scene.borders != (0, 0):  # nothing is annotated on the masked (black) ASM borders
            mask[:, : scene.borders[0]] = False
            mask[:, size - scene.borders[1] :] = False
        image = np.where(mask[..., None], bad, clean)  # sub-threshold changes outside the mask are reset
        if return_clean:
            return to_uint8(image), (mask * np.uint8(255)), to_uint8(clean)
        return to_uint8(image), (mask * np.uint8(255))
    raise RuntimeError(f"could not place a visible {kind} defect in {max_tries} {modality.value} scenes")
