"""``ispad-bench inspect JOB_DIR IMAGES... --out DIR``: a sweep job's model on full acquisitions (docs/inspect.md)."""

from __future__ import annotations

import glob
import sys
import time
from pathlib import Path

from ispad_bench.cli import positive_float, positive_int

IMAGE_EXTS = (".png", ".tif", ".tiff", ".bmp", ".jpg", ".jpeg")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("inspect", help="a sweep job's model on full acquisitions: maps, regions, line metrics",
                              description=__doc__.splitlines()[0])
    p.add_argument("job", type=Path, help="a sweep job folder (or its record.json) that kept model.ckpt")
    p.add_argument("images", nargs="+", help="acquisition files, folders (their images) or globs")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--masks", type=Path, help="folder of full-image masks (<stem>_mask.png or <stem>.png): line metrics")
    p.add_argument("--threshold", type=float, help="image/map threshold (default: the one the job's record used)")
    p.add_argument("--pixel-size", type=positive_float, metavar="MM", help="pixel size in mm (areas in mm², alarms per m²)")
    p.add_argument("--device", default="cpu", help="torch device: cpu, cuda, cuda:1, auto (default cpu)")
    p.add_argument("--window", type=positive_int, default=None, help="window size in native pixels (default 256, §3.2)")
    p.add_argument("--stride", type=positive_int, default=None, help="window stride (default 160, §3.2)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="windows per forward pass (default 16)")
    p.add_argument("--blend", choices=("mean", "max"), help="overlap rule (default: mean for model maps, max for "
                   "window-score maps)")
    p.add_argument("--overlay-max", type=positive_int, default=None, help="longest side of overlays (default 2048)")
    p.add_argument("--bootstrap", type=positive_int, default=1000, help="resamples for the line metrics' intervals")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap resamples")
    p.set_defaults(func=main_inspect)


def expand_images(items: list[str]) -> list[Path]:
    """Files as given, folders as their images (sorted), globs expanded; an entry that matches nothing is an error."""
    from ispad_bench.errors import MissingDataError

    out: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
        elif path.exists():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(item) if Path(p).is_file())
        if not found:
            raise MissingDataError(f"{item}: no such image, folder or matching file")
        out += found
    return out


def _device(name: str) -> str:
    if name == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _names(images: list[Path]) -> list[str]:
    """Unique output stems (``<stem>``, then ``<stem>-2``... for a repeated file name)."""
    seen: dict[str, int] = {}
    out = []
    for p in images:
        seen[p.stem] = seen.get(p.stem, 0) + 1
        out.append(p.stem if seen[p.stem] == 1 else f"{p.stem}-{seen[p.stem]}")
    return out


def inspect_images(args, console) -> tuple[dict, list[dict]]:
    """Run the inspection; returns the ``inspection.json`` summary and the region rows."""
    from rich.progress import Progress

    from ispad_bench.errors import InputError, one_line
    from ispad_bench.inspect import metrics as line, regions as reg, run, tiles, write
    from ispad_bench.inspect.load import load_job
    from ispad_bench.sweep.job import versions

    images = expand_images(args.images)
    job = load_job(args.job, _device(args.device), args.threshold)
    window, stride = args.window or tiles.WINDOW, args.stride or tiles.STRIDE
    thr = job.threshold.value
    out = Path(args.out)
    rows, entries, counts = [], [], []
    blend, source = args.blend, job.map_source
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("inspecting", total=len(images))
        for path, name in zip(images, _names(images), strict=True):
            t0 = time.perf_counter()
            try:
                array, scale = tiles.read_acquisition(path, job.modality)
                mask = None
                if args.masks is not None:
                    mask_path = line.find_mask(args.masks, path)
                    mask = None if mask_path is None else line.read_mask(mask_path, array.shape[:2])
            except InputError as err:
                console.print(f"error: {one_line(err)}", highlight=False)
                entries.append({"image": str(path), "error": one_line(err)})
                progress.advance(task)
                continue
            if min(array.shape[:2]) < window:
                console.print(f"note: {path}: {array.shape[1]}x{array.shape[0]} px is smaller than the {window} px "
                              f"window: padded by reflection", highlight=False)
            scored = run.score_image(job, array, scale, window=window, stride=stride, batch_size=args.batch_size,
                                     blend=blend)
            t1 = time.perf_counter()
            found, labels = reg.find_regions(scored.amap, thr, args.pixel_size)
            scored.seconds["regions"] = time.perf_counter() - t1
            flagged = scored.window_scores >= thr
            if mask is not None or args.masks is not None:
                counts.append(line.acquisition_counts(labels, len(found), mask, bool(flagged.any())))
            overlap = set(map(int, labels[mask & (labels > 0)].ravel())) if mask is not None else set()
            for r in found:
                rows.append({"image": name, "region": r.index, **{k: v for k, v in r.row().items() if k != "index"},
                             "overlaps_mask": (r.index in overlap) if args.masks is not None else None})
            map_path = write.write_map(out / f"{name}.map.npy", scored.amap)
            ov = write.overlay(array, scale, scored.amap, thr, found, args.overlay_max or write.OVERLAY_MAX_SIDE)
            ov_path = write.write_overlay(out / f"{name}.overlay.png", ov)
            entries.append({
                "image": str(path), "name": name, "height": int(array.shape[0]), "width": int(array.shape[1]),
                "padded_from": scored.padded_from, "windows": len(scored.grid),
                "grid": [len(scored.grid.ys), len(scored.grid.xs)], "windows_flagged": int(flagged.sum()),
                "max_window_score": float(scored.window_scores.max()), "defective": bool(flagged.any()),
                "window_scores": scored.window_scores.round(6).tolist(),
                "regions": len(found), "regions_area": sum(r.group == "area" for r in found),
                "regions_points": sum(r.group == "points" for r in found),
                "largest_region_px": max((r.area_px for r in found), default=0),
                "map_max": float(scored.amap.max()), "uncovered_px": scored.uncovered_px,
                "footprint": vars(scored.footprint), "mask": None if mask is None else str(mask_path),
                "map": map_path.name, "overlay": ov_path.name, "overlay_size": list(ov.size),
                "seconds": time.perf_counter() - t0, "seconds_by_stage": scored.seconds,
            })
            blend = blend or scored.blend
            source = scored.map_source
            progress.advance(task)
    rec = job.record
    summary = {
        "job": {"dir": str(job.job_dir), "key": rec.get("key"), "method": rec.get("method"),
                "modality": job.modality.value, "seed": rec.get("seed"), "profile": rec.get("profile"),
                "row": rec.get("row"), "checkpoint": str(job.job_dir / "model.ckpt")},
        "threshold": {"value": thr, "origin": job.threshold.origin, "note": job.threshold.note,
                      "rule": "window defective when its score >= threshold; image when any window is; regions: "
                              "8-connected components of map >= threshold"},
        "window": window, "stride": stride, "device": job.device,
        "map_source": source, "blend": blend or ("mean" if source == "model" else "max"),
        "map_note": ("the model's anomaly maps, blended" if source == "model" else
                     "the model gives no segmentation map: the grid of window scores is the map"),
        "pixel_size_mm": args.pixel_size, "versions": versions(), "images": entries,
    }
    if counts:
        summary["metrics"] = line.line_metrics(counts, args.pixel_size, n=args.bootstrap, seed=args.seed)
    return summary, rows


def main_inspect(args) -> int:
    from rich.console import Console

    from ispad_bench.errors import InputError, one_line
    from ispad_bench.inspect import write

    console = Console(stderr=True)
    try:
        summary, rows = inspect_images(args, console)
    except InputError as err:
        print(f"ispad-bench inspect: {one_line(err)}", file=sys.stderr)
        return 2
    out = Path(args.out)
    write.write_regions(out / write.REGIONS_CSV, rows)
    write.write_inspection(out / write.INSPECTION_JSON, summary)
    Console(width=200).print(write.summary_table(summary))
    if "metrics" in summary:
        Console(width=200).print(write.metrics_table(summary["metrics"]))
    print(f"wrote {out / write.INSPECTION_JSON}, {out / write.REGIONS_CSV} and per image a map and an overlay")
    return 1 if any("error" in e for e in summary["images"]) else 0
