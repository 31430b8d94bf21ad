"""Stage 3 of ``data build``: sliding windows over an acquisition's region of interest.

§3.2: "Fault-free test data was generated using a sliding window with a stride of 160 px,
extracting overlapping patches (256 x 256 px) to cover a grid. The same patch extraction process
was applied to the training data for the unsupervised methods", and windows with known defects
were removed from the fault-free splits ("an additional data cleaning step").

Rules (docs/data.md):

* positions ``0, stride, 2 stride, ...`` along each axis, plus a last window aligned to the
  image's far border when the grid does not end there (the whole image is covered);
* a window is kept when at least ``roi_min`` (default 1/2) of it lies inside the ROI;
* a kept window that holds no defect pixel is fault-free (``good``);
* a window that holds a defect's centre is a defect window (test acquisitions: ``test/<class>``,
  with its mask crop); a window that only touches a defect is neither and is dropped;
* an image side shorter than the window is padded by reflection to the window (``small="pad"``;
  the padded area is never a defect, and it is recorded) or the image is skipped (``small="skip"``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ispad_bench.data.build.sources import Acquisition
from ispad_bench.data.modality import PATCH_SIZE

STRIDE = 160  # §3.2
ROI_MIN = 0.5  # share of a window inside the ROI for it to be kept (project default)
LABEL_RADIUS = 16  # a weak label (a position) marks a disc of this radius as defect (project default)


@dataclass(frozen=True)
class Defect:
    """One labelled defect of an acquisition: centre (y, x), its pixel area, and an explicit group if any."""

    y: float
    x: float
    area: int
    group: str | None  # from defects.csv; else decided by the mapping or the size rule (crops.py)


@dataclass(frozen=True)
class Window:
    y: int
    x: int
    kind: str  # "good" | "defect"


def positions(length: int, window: int = PATCH_SIZE, stride: int = STRIDE) -> list[int]:
    """Window starts along one axis of ``length`` px; the last window ends at the border."""
    if length <= window:
        return [0]
    out = list(range(0, length - window + 1, stride))
    if out[-1] != length - window:
        out.append(length - window)
    return out


def reflect_crop(image: np.ndarray, y0: int, x0: int, h: int, w: int) -> np.ndarray:
    """``image[y0:y0+h, x0:x0+w]`` where the parts outside the image are filled by reflection at its borders
    (numpy's ``reflect``: the border pixel is not repeated); no copy of the whole image is made."""
    H, W = image.shape[:2]
    ys, xs = max(0, y0), max(0, x0)
    ye, xe = min(H, y0 + h), min(W, x0 + w)
    if ys == y0 and xs == x0 and ye == y0 + h and xe == x0 + w:
        return image[ys:ye, xs:xe]
    iy = _reflect_index(np.arange(y0, y0 + h), H)
    ix = _reflect_index(np.arange(x0, x0 + w), W)
    return image[iy[:, None], ix[None, :]]


def _reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def defects_of(acq: Acquisition, mask: np.ndarray | None, label_radius: int = LABEL_RADIUS) -> tuple[list[Defect], np.ndarray]:
    """The defects of an acquisition and its full defect map (H, W) bool: mask components (8-connected)
    and weak-label discs of ``label_radius``; a label inside a mask component names that component."""
    w, h = acq.size
    defect_map = np.zeros((h, w), bool) if mask is None else mask.copy()
    defects: list[Defect] = []
    components = None
    if mask is not None and mask.any():
        components, n = ndimage.label(mask, structure=np.ones((3, 3), bool))
        index = range(1, n + 1)
        named = {int(components[int(lb.y), int(lb.x)]): lb.group for lb in acq.labels}
        defects += [Defect(float(c[0]), float(c[1]), int(a), named.get(k))
                    for k, c, a in zip(index, ndimage.center_of_mass(mask, components, index),
                                       ndimage.sum_labels(mask, components, index))]
    for label in acq.labels:
        if components is not None and components[int(label.y), int(label.x)]:
            continue  # the label names a mask component (its group, if given, was taken above)
        y0, x0 = int(label.y) - label_radius, int(label.x) - label_radius
        yy, xx = np.ogrid[max(0, y0): y0 + 2 * label_radius + 1, max(0, x0): x0 + 2 * label_radius + 1]
        disc = (yy - label.y) ** 2 + (xx - label.x) ** 2 <= label_radius**2
        view = defect_map[max(0, y0): y0 + 2 * label_radius + 1, max(0, x0): x0 + 2 * label_radius + 1]
        view |= disc[: view.shape[0], : view.shape[1]]
        defects.append(Defect(float(label.y), float(label.x), int(disc.sum()), label.group))
    return defects, defect_map


def windows(size: tuple[int, int], roi: np.ndarray | None, defect_map: np.ndarray, defects: list[Defect],
            window: int = PATCH_SIZE, stride: int = STRIDE, roi_min: float = ROI_MIN) -> tuple[list[Window], dict[str, int]]:
    """The kept windows of an image of ``size`` (width, height) and the counts of dropped ones."""
    w, h = size
    kept, dropped = [], {"roi": 0, "touches_defect": 0}
    for y in positions(h, window, stride):
        for x in positions(w, window, stride):
            if roi is not None:
                inside = reflect_crop(roi, y, x, window, window) if (h < window or w < window) else roi[y:y + window, x:x + window]
                if inside.mean() < roi_min:
                    dropped["roi"] += 1
                    continue
            hit = defect_map[y:y + window, x:x + window].any()
            if not hit:
                kept.append(Window(y, x, "good"))
            elif any(y <= d.y < y + window and x <= d.x < x + window for d in defects):
                kept.append(Window(y, x, "defect"))
            else:
                dropped["touches_defect"] += 1
    return kept, dropped


def window_count(length: int, window: int = PATCH_SIZE, stride: int = STRIDE) -> int:
    """Windows along one axis: ``ceil((length - window) / stride) + 1`` (1 when the side is at most a window)."""
    return 1 if length <= window else -(-(length - window) // stride) + 1
