"""What an inspection leaves: per image an overlay PNG and the full-resolution map (``.npy``); per run
``regions.csv``, ``inspection.json`` and a terminal summary table. Every file is written atomically
(:mod:`ispad_bench.files`)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np

from ispad_bench.files import atomic_write_bytes, write_json
from ispad_bench.sweep import records
from ispad_bench.inspect.regions import Region

OVERLAY_MAX_SIDE = 2048  # overlays of larger acquisitions are downscaled to this longest side
REGIONS_CSV = "regions.csv"
INSPECTION_JSON = records.INSPECTION  # the report finds inspections inside a sweep by this name
CSV_FIELDS = ("image", "region", "y0", "x0", "y1", "x1", "area_px", "area_mm2", "max_score", "mean_score", "group",
              "overlaps_mask")


def write_map(path: Path, amap: np.ndarray) -> Path:
    """The full-resolution float32 map as ``.npy`` (``numpy.load`` reads it)."""
    buf = io.BytesIO()
    np.save(buf, np.asarray(amap, np.float32), allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def _gray8(array: np.ndarray, scale: float) -> np.ndarray:
    if scale == 255.0 and array.dtype == np.uint8:
        return array
    return np.rint(array.astype(np.float32) * (255.0 / scale)).astype(np.uint8)


def overlay(array: np.ndarray, scale: float, amap: np.ndarray, threshold: float, regions: list[Region],
            max_side: int = OVERLAY_MAX_SIDE):
    """PIL RGB image: the acquisition, pixels at or above the threshold tinted red by score, region boxes in
    yellow; downscaled (box filter) so that its longest side is at most ``max_side``."""
    from PIL import Image, ImageDraw

    h, w = amap.shape
    factor = min(1.0, max_side / max(h, w))
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    base = Image.fromarray(_gray8(array, scale)).convert("RGB")
    heat = Image.fromarray(amap.astype(np.float32), mode="F")
    if factor < 1.0:
        base = base.resize(size, Image.Resampling.BOX)
        heat = heat.resize(size, Image.Resampling.BOX)
    rgb = np.asarray(base, np.float32)
    m = np.asarray(heat, np.float32)
    hot = m >= threshold
    if hot.any():
        top = max(float(m[hot].max()), threshold + 1e-12)
        alpha = (0.35 + 0.5 * np.clip((m - threshold) / (top - threshold), 0, 1)) * hot
        rgb = rgb * (1 - alpha[..., None]) + np.array([255.0, 0.0, 0.0]) * alpha[..., None]
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for r in regions:
        box = [r.x0 * factor, r.y0 * factor, max(r.x0 * factor + 1, r.x1 * factor - 1),
               max(r.y0 * factor + 1, r.y1 * factor - 1)]
        draw.rectangle(box, outline=(255, 220, 0), width=1)
    return image


def write_overlay(path: Path, image) -> Path:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())
    return Path(path)


def write_regions(path: Path, rows: list[dict]) -> Path:
    """``regions.csv``: one row per region of every image (the image's file name, 1-based region number)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in CSV_FIELDS})
    atomic_write_bytes(path, buf.getvalue().encode())
    return Path(path)


def write_inspection(path: Path, summary: dict) -> Path:
    write_json(path, summary)
    return Path(path)


def summary_table(summary: dict):
    """A rich table: one row per image (decision, windows flagged, regions by group, seconds)."""
    from rich.table import Table

    thr = summary["threshold"]
    table = Table(title=f"{summary['job']['method']} {summary['job']['modality']} ({summary['job']['key']}) at threshold "
                        f"{thr['value']:.6g} ({thr['origin']}); map: {summary['map_source']}, blend {summary['blend']}")
    for name in ("image", "size", "windows", "flagged", "max window score", "decision", "regions (area/points)",
                 "largest px", "s"):
        table.add_column(name, justify="left" if name in ("image", "decision") else "right")
    for img in summary["images"]:
        if "error" in img:
            table.add_row(img["image"], "", "", "", "", f"[red]error[/red]: {img['error']}", "", "", "")
            continue
        decision = "[red]defective[/red]" if img["defective"] else "[green]good[/green]"
        table.add_row(img["image"], f"{img['width']}x{img['height']}", str(img["windows"]), str(img["windows_flagged"]),
                      f"{img['max_window_score']:.4g}", decision,
                      f"{img['regions']} ({img['regions_area']}/{img['regions_points']})",
                      str(img["largest_region_px"]), f"{img['seconds']:.1f}")
    return table


def metrics_table(metrics: dict):
    """A rich table of the line's metrics (value and bootstrap interval)."""
    from rich.table import Table

    table = Table(title=f"line metrics over {metrics['n_acquisitions']} acquisitions "
                        f"({metrics['n_defective']} defective; {metrics['bootstrap']['n']} bootstrap resamples, "
                        f"{metrics['bootstrap']['level']:.0%} intervals)")
    for name in ("metric", "value", "interval", "counts"):
        table.add_column(name, justify="left" if name == "metric" else "right")
    for name, entry in metrics["values"].items():
        lo, hi = entry.get("interval") or (None, None)
        interval = "" if lo is None else f"[{lo:.3g}, {hi:.3g}]"
        value = "n/a" if entry["value"] is None else f"{entry['value']:.4g}"
        table.add_row(name, value, interval, entry.get("counts", ""))
    return table
