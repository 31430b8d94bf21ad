"""``ispad-bench inspect``: the window grid, blending, regions, the line's metrics, and a real sweep job's model on a
generated full acquisition (issue 23)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from ispad_bench.data.modality import Modality
from ispad_bench.inspect import blend, metrics, regions, run, tiles
from ispad_bench.inspect.load import InspectJob, JobError, Threshold, load_job, record_threshold

ASM = Modality.ASM


def _covered(grid: tiles.Grid, fp: tiles.Footprint) -> np.ndarray:
    count = np.zeros((grid.height, grid.width), int)
    for y, x in grid.corners:
        count[y + fp.y:y + fp.y + fp.height, x + fp.x:x + fp.x + fp.width] += 1
    return count


@pytest.mark.parametrize("shape", [(256, 256), (257, 700), (1000, 417), (896, 896)])
def test_windows_cover_the_image_exactly(shape):
    """Every pixel in some window, no window outside the image, stride 160 then a last window on the border."""
    grid = tiles.Grid.of(*shape)
    whole = tiles.Footprint(0, 0, tiles.WINDOW, tiles.WINDOW)
    assert _covered(grid, whole).min() >= 1
    for starts, length in ((grid.ys, shape[0]), (grid.xs, shape[1])):
        assert starts[0] == 0 and starts[-1] == length - tiles.WINDOW
        steps = np.diff(starts)
        assert (steps[:-1] == tiles.STRIDE).all() and ((steps > 0) & (steps <= tiles.STRIDE)).all()
    assert len(grid) == len(grid.corners) == len(grid.ys) * len(grid.xs)
    with pytest.raises(ValueError, match="shorter than"):
        tiles.axis_starts(200)


def test_footprint_follows_the_modality_crops():
    from ispad_bench.data.datamodule import geometry

    assert tiles.footprint(geometry(8, 224)) == tiles.Footprint(16, 16, 224, 224)  # ASM: borders, then 224 centre
    assert tiles.footprint(geometry(8)) == tiles.Footprint(0, 8, 256, 240)
    assert tiles.footprint(geometry(0, None, 448)) == tiles.Footprint(0, 0, 256, 256)  # a resize keeps the region
    assert tiles.footprint(None) == tiles.Footprint(0, 0, 256, 256)


@pytest.mark.parametrize("rule", blend.RULES)
def test_blending_a_constant_gives_a_constant_map_even_in_the_uncovered_margin(rule):
    grid, fp = tiles.Grid.of(700, 555), tiles.Footprint(16, 16, 224, 224)
    b = blend.Blender(grid, fp, rule)
    b.add(grid.corners, np.full((len(grid), 224, 224), 0.37, np.float32))
    out = b.result()
    assert out.shape == (700, 555) and b.uncovered == 700 * 555 - (700 - 32) * (555 - 32)
    np.testing.assert_allclose(out, 0.37, rtol=1e-6)


def test_mean_blend_is_the_mean_of_the_covering_windows_and_max_their_max():
    grid, fp = tiles.Grid.of(600, 500), tiles.Footprint(0, 8, 256, 240)
    values = np.arange(1, len(grid) + 1, dtype=np.float32) ** 1.5
    maps = np.broadcast_to(values[:, None, None], (len(grid), 256, 240))
    results = {}
    for rule in blend.RULES:
        b = blend.Blender(grid, fp, rule)
        b.add(grid.corners, maps)
        results[rule] = b.result()
    rng = np.random.default_rng(0)
    for y, x in zip(rng.integers(0, 600, 50), rng.integers(8, 492, 50), strict=True):
        cover = [v for (cy, cx), v in zip(grid.corners, values, strict=True)
                 if cy <= y < cy + 256 and cx + 8 <= x < cx + 248]
        assert results["mean"][y, x] == pytest.approx(np.mean(cover), rel=1e-5)
        assert results["max"][y, x] == pytest.approx(max(cover))
    np.testing.assert_array_equal(results["mean"][:, 0], results["mean"][:, 8])  # margin: nearest covered column


def test_regions_boxes_areas_scores_and_group_guess():
    amap = np.zeros((300, 400), np.float32)
    amap[50:90, 100:140] = 0.8  # 40 x 40 = 1600 px: area
    amap[60, 100] = 0.95
    amap[200:205, 300:305] = 0.6  # 25 px: points
    amap[250, 10] = amap[251, 11] = 0.7  # diagonal neighbours: one 8-connected region
    found, labels = regions.find_regions(amap, 0.5, pixel_size_mm=0.1)
    assert [(r.y0, r.x0, r.y1, r.x1, r.area_px, r.group) for r in found] == [
        (50, 100, 90, 140, 1600, "area"), (250, 10, 252, 12, 2, "points"), (200, 300, 205, 305, 25, "points")]
    assert found[0].max_score == pytest.approx(0.95) and found[0].mean_score == pytest.approx((0.8 * 1599 + 0.95) / 1600)
    assert found[0].area_mm2 == pytest.approx(16.0) and labels.max() == 3
    assert regions.group_guess(regions.AREA_MIN_PX) == "area" and regions.group_guess(regions.AREA_MIN_PX - 1) == "points"
    assert regions.find_regions(amap, 1.0)[0] == []


def test_labels_are_scipys_8_connected_components():
    from scipy import ndimage

    mask = np.random.default_rng(4).random((300, 200)) > 0.6
    ours, n = regions.label(mask)
    ref, n_ref = ndimage.label(mask, structure=np.ones((3, 3), bool))
    assert n == n_ref > 10
    np.testing.assert_array_equal(ours > 0, ref > 0)
    pairs = np.unique(np.stack([ours[mask], ref[mask]]), axis=1)  # a one-to-one relabelling
    assert pairs.shape[1] == n and len(np.unique(pairs[0])) == len(np.unique(pairs[1])) == n


def test_line_metrics_on_a_constructed_case():
    """Four acquisitions: found (+1 false region), missed, fault-free with 2 false alarms, fault-free clean."""
    def case(pred_boxes, mask_boxes, flagged, shape=(100, 100)):
        pred, mask = np.zeros(shape, np.int32), np.zeros(shape, bool)
        for i, (y, x, s) in enumerate(pred_boxes, 1):
            pred[y:y + s, x:x + s] = i
        for y, x, s in mask_boxes:
            mask[y:y + s, x:x + s] = True
        return metrics.acquisition_counts(pred, len(pred_boxes), mask if mask_boxes else None, flagged)

    counts = [case([(10, 10, 5), (80, 80, 3)], [(12, 12, 40), (70, 10, 2)], True),  # area hit, points missed
              case([], [(30, 30, 3)], False),  # points missed
              case([(5, 5, 2), (50, 50, 2)], [], True),
              case([], [], False)]
    assert (counts[0].gt_area, counts[0].hit_area, counts[0].gt_points, counts[0].hit_points) == (1, 1, 1, 0)
    out = metrics.line_metrics(counts, pixel_size_mm=1.0, n=200, seed=3)
    v = {k: e["value"] for k, e in out["values"].items()}
    assert v["detection_rate"] == 0.5 and v["defective_rejected"] == 0.5 and v["good_rejected"] == 0.5
    assert v["false_alarms_per_good"] == 1.0 and v["false_regions_on_defective"] == 0.5
    assert v["region_recall_area"] == 1.0 and v["region_recall_points"] == 0.0 and v["region_recall"] == pytest.approx(1 / 3)
    assert v["false_alarms_per_m2"] == pytest.approx(2 / (2 * 100 * 100 / 1e6))
    for name, e in out["values"].items():
        assert e["interval"][0] <= e["value"] <= e["interval"][1], name
    assert out["values"]["detection_rate"]["interval"] == [0.0, 1.0]  # 2 defective acquisitions: 0, 1/2 or 1


def test_masks_are_found_by_name_and_must_fit(tmp_path):
    from PIL import Image

    from ispad_bench.data.images import ImageReadError

    Image.fromarray(np.full((20, 30), 255, np.uint8)).save(tmp_path / "plate_mask.png")
    assert metrics.find_mask(tmp_path, Path("x/plate.png")) == tmp_path / "plate_mask.png"
    assert metrics.find_mask(tmp_path, Path("x/other.png")) is None
    assert metrics.read_mask(tmp_path / "plate_mask.png", (20, 30)).all()
    with pytest.raises(ImageReadError, match="plate_mask.png: mask is 30x20, its acquisition 31x20"):
        metrics.read_mask(tmp_path / "plate_mask.png", (20, 31))


def test_reading_checks_channels_depth_and_files(tmp_path):
    from PIL import Image

    from ispad_bench.data.images import ImageReadError

    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "rgb.png")
    Image.fromarray(np.full((10, 10), 65535, np.uint16)).save(tmp_path / "deep.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(tiles.ChannelError, match=r"rgb.png: 3 channel\(s\), but the job's modality ASM has 1"):
        tiles.read_acquisition(tmp_path / "rgb.png", ASM)
    assert tiles.read_acquisition(tmp_path / "rgb.png", Modality.LSM1)[0].shape == (10, 10, 3)
    array, scale = tiles.read_acquisition(tmp_path / "deep.png", ASM)
    assert scale == 65535.0 and float(tiles.windows(np.pad(array, 123), np.array([[0, 0]]), 256, scale).max()) == 1.0
    with pytest.raises(ImageReadError, match="bad.png: unreadable image"):
        tiles.read_acquisition(tmp_path / "bad.png", ASM)
    padded, original = tiles.pad_to_window(np.arange(200 * 100, dtype=np.uint8).reshape(200, 100))
    assert padded.shape == (256, 256) and original == (200, 100)
    np.testing.assert_array_equal(padded[200:, :100], padded[198:142:-1, :100])  # reflection, not zeros


@pytest.mark.parametrize(("mode", "metrics_", "expected"), [
    ("oracle", {"threshold": 0.4}, (0.4, "oracle")),
    ("validation", {"threshold": 0.5}, (0.5, "validation")),
    (0.25, {"threshold": 0.25}, (0.25, "fixed")),
    ("0.25", {"threshold": 0.25}, (0.25, "fixed")),
    ("cross_fit", {"threshold": None, "threshold_a": 0.2, "threshold_b": 0.4}, (pytest.approx(0.3), "cross_fit")),
])
def test_threshold_is_the_records(mode, metrics_, expected):
    record = {"config": {"model": {"init_args": {"evaluator": {"init_args": {"threshold": mode}}}}}, "metrics": metrics_}
    thr = record_threshold(record)
    assert (thr.value, thr.origin) == expected
    assert (record_threshold(record, 0.9).value, record_threshold(record, 0.9).origin) == (0.9, "--threshold")
    with pytest.raises(JobError, match="pass --threshold"):
        record_threshold({**record, "metrics": {}})


def test_a_job_without_checkpoint_says_which_option_keeps_it(tmp_path):
    from ispad_bench.sweep import records

    job = tmp_path / "job"
    job.mkdir()
    (job / records.CONFIG).write_text("model: {}\n")
    (job / records.RECORD).write_text(json.dumps({"schema": records.SCHEMA, "status": "ok", "metrics": {"threshold": 0.5},
                                                  "kept": {"keep": "none", "file": None}}))
    with pytest.raises(JobError, match=r"no model.ckpt \(the sweep ran with --keep none\).*--keep model"):
        load_job(job / records.RECORD)
    (job / records.RECORD).write_text(json.dumps({"schema": records.SCHEMA, "status": "failed"}))
    with pytest.raises(JobError, match="status 'failed'"):
        load_job(job)


# ------------------------------------------------------------------ the pipeline with deliberately simple scorers
class _Scorer:
    """A stand-in model: map = brightness above 0.75 (or a constant, or no map), score = map max."""

    def __init__(self, kind: str = "bright") -> None:
        self.kind, self.seen = kind, []

    def test_step(self, batch, _idx):
        import torch

        x = batch.image
        self.seen.append(tuple(x.shape))
        if self.kind == "constant":
            amap = torch.full((x.shape[0], 1, *x.shape[-2:]), 0.25)
        else:
            amap = (x.mean(dim=1, keepdim=True) - 0.75).clamp_min(0)
        score = amap.amax(dim=(1, 2, 3))
        return SimpleNamespace(pred_score=score, anomaly_map=None if self.kind == "no map" else amap)


def _job(kind: str, threshold: float = 0.1) -> InspectJob:
    from torchvision.transforms import v2

    from ispad_bench.data.datamodule import geometry

    return InspectJob(Path("."), {"key": "k"}, _Scorer(kind), geometry(8, 224), None, v2.Resize((112, 112)), ASM,
                      Threshold(threshold, "oracle"), "cpu", "model")


def _plate(h=1100, w=1300, seed=0):
    rng = np.random.default_rng(seed)
    plate = rng.integers(90, 140, (h, w), dtype=np.uint8)
    planted = [(300, 420, 40, 50), (700, 1000, 6, 6), (130, 900, 12, 30)]  # y, x, height, width
    for y, x, dh, dw in planted:
        plate[y:y + dh, x:x + dw] = 250
    return plate, planted


def test_planted_defects_are_found_where_they_are():
    plate, planted = _plate()
    job = _job("bright")
    scored = run.score_image(job, plate, 255.0, batch_size=7)
    assert scored.amap.shape == plate.shape and scored.map_source == "model" and scored.blend == "mean"
    assert scored.footprint == tiles.Footprint(16, 16, 224, 224) and set(job.model.seen) <= {(7, 3, 112, 112), (6, 3, 112, 112)}
    found, _ = regions.find_regions(scored.amap, job.threshold.value)
    assert len(found) == len(planted)
    for y, x, dh, dw in planted:  # each planted defect inside one region whose box hugs it (bilinear spread <= 4 px)
        (hit,) = [r for r in found if r.y0 <= y and r.x0 <= x and r.y1 >= y + dh and r.x1 >= x + dw]
        assert max(y - hit.y0, x - hit.x0, hit.y1 - y - dh, hit.x1 - x - dw) <= 4
    assert (scored.window_scores >= job.threshold.value).sum() >= len(planted)
    flagged = np.argwhere(scored.window_scores >= job.threshold.value)
    for i, j in flagged:  # a flagged window's footprint holds a planted defect
        y, x = scored.grid.ys[i] + 16, scored.grid.xs[j] + 16
        assert any(y <= py + dh and py < y + 224 and x <= px + dw and px < x + 224 for py, px, dh, dw in planted)


def test_constant_model_gives_a_constant_map_and_a_mapless_one_its_window_grid():
    plate, planted = _plate(700, 900)
    const = run.score_image(_job("constant"), plate, 255.0)
    np.testing.assert_allclose(const.amap, 0.25, rtol=1e-6)
    grid = run.score_image(_job("no map"), plate, 255.0)
    assert grid.map_source == "window scores" and grid.blend == "max"
    y, x, dh, dw = planted[0]
    assert grid.amap[y, x] == pytest.approx(grid.window_scores.max())
    union = np.zeros(plate.shape, bool)  # thresholded map = the union of the flagged windows' footprints
    for (wy, wx), s in zip(grid.grid.corners, grid.window_scores.ravel(), strict=True):
        union[wy + 16:wy + 240, wx + 16:wx + 240] |= s >= 0.1
    assert union.any() and not union.all()
    np.testing.assert_array_equal((grid.amap >= 0.1)[16:-16, 16:-16], union[16:-16, 16:-16])


def test_rgb_acquisition_of_a_line_scan_modality():
    """LSM windows are RGB (§3.2.2): the channels reach the model as read, and the planted defects are found."""
    from dataclasses import replace

    plate, planted = _plate(600, 1000)
    planted = [p for p in planted if p[0] + p[2] <= 600 and p[1] + p[3] <= 1000]  # two of the three fit
    rgb = np.stack([plate, plate, plate], axis=-1)
    job = replace(_job("bright"), modality=Modality.LSM1)
    scored = run.score_image(job, rgb, 255.0)
    gray = run.score_image(_job("bright"), plate, 255.0)
    np.testing.assert_allclose(scored.amap, gray.amap, atol=1e-6)
    assert len(regions.find_regions(scored.amap, 0.1)[0]) == len(planted)


def test_small_image_is_padded_and_cut_back():
    plate, _ = _plate(180, 300)
    scored = run.score_image(_job("bright"), plate, 255.0)
    assert scored.padded_from == (180, 300) and scored.amap.shape == (180, 300) and len(scored.grid) == 2


# ------------------------------------------------------------------ a real sweep job (one tiny PaDiM sweep per module)
@pytest.fixture(scope="module")
def padim_job(tiny_root, tmp_path_factory):
    """The job folder of a smoke PaDiM sweep on ASM (~20 s, the only sweep of the default run)."""
    from ispad_bench.cli import main

    out = tmp_path_factory.mktemp("inspect-runs")
    assert main(["sweep", "--methods", "padim", "--modalities", "ASM", "--profile", "smoke", "--data-root",
                 str(tiny_root), "--out", str(out), "--no-report"]) == 0
    (record,) = out.glob("padim/asm/*/record.json")
    return record.parent


def test_a_kept_job_scores_its_own_test_patches_as_its_test_did(padim_job, one_thread):
    """Rebuilt from config.yaml + model.ckpt, each 256 px test patch (one window) gets the score the job's test
    recorded, and the threshold is the record's."""
    job = load_job(padim_job)
    record = json.loads((padim_job / "record.json").read_text())
    assert (job.threshold.value, job.threshold.origin) == (record["metrics"]["threshold"], "oracle")
    assert job.map_source == "model" and tiles.footprint(job.geometry) == tiles.Footprint(16, 16, 224, 224)
    predictions = np.load(padim_job / "predictions.npz")
    for path, expected in zip(predictions["paths"], predictions["scores"], strict=True):
        array, scale = tiles.read_acquisition(Path(path), ASM)
        scored = run.score_image(job, array, scale)
        assert scored.window_scores.shape == (1, 1)
        assert scored.window_scores[0, 0] == pytest.approx(expected, rel=1e-4, abs=1e-5), path


def test_inspect_command_writes_overlay_map_regions_and_metrics(padim_job, tmp_path, capsys, one_thread):
    from PIL import Image

    from ispad_bench.cli import main

    plate, planted = _plate(700, 1000, seed=1)
    Image.fromarray(plate).save(tmp_path / "plate.png")
    Image.fromarray(plate[:200, :230]).save(tmp_path / "tiny_plate.png")
    (tmp_path / "masks").mkdir()
    mask = np.zeros(plate.shape, np.uint8)
    y, x, dh, dw = planted[0]
    mask[y:y + dh, x:x + dw] = 255
    Image.fromarray(mask).save(tmp_path / "masks" / "plate_mask.png")
    out = tmp_path / "out"
    rc = main(["inspect", str(padim_job), str(tmp_path / "*.png"), "--out", str(out), "--masks", str(tmp_path / "masks"),
               "--pixel-size", "0.02", "--overlay-max", "400", "--bootstrap", "50"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "tiny_plate.png: 230x200 px is smaller than the 256 px window: padded by reflection" in captured.err.replace("\n", "")
    summary = json.loads((out / "inspection.json").read_text())
    record = json.loads((padim_job / "record.json").read_text())
    assert summary["threshold"]["value"] == record["metrics"]["threshold"] and summary["job"]["key"] == record["key"]
    assert summary["versions"]["anomalib"] and summary["map_source"] == "model" and summary["blend"] == "mean"
    images = {Path(e["image"]).name: e for e in summary["images"]}
    assert images["plate.png"]["windows"] == 4 * 6 and images["tiny_plate.png"]["padded_from"] == [200, 230]
    amap = np.load(out / "plate.map.npy")
    assert amap.shape == plate.shape and amap.dtype == np.float32
    with Image.open(out / "plate.overlay.png") as ov:
        assert max(ov.size) == 400 and ov.size == (400, 280)
    assert images["plate.png"]["windows_flagged"] == int((np.asarray(images["plate.png"]["window_scores"])
                                                          >= summary["threshold"]["value"]).sum())
    rows = (out / "regions.csv").read_text().splitlines()
    assert rows[0].startswith("image,region,y0,x0,y1,x1,area_px,area_mm2")
    assert len(rows) - 1 == sum(e["regions"] for e in summary["images"])
    found, _ = regions.find_regions(amap, summary["threshold"]["value"])
    assert images["plate.png"]["regions"] == len(found)
    line = summary["metrics"]
    assert line["n_acquisitions"] == 2 and line["n_defective"] == 1
    assert line["values"]["detection_rate"]["value"] in (0.0, 1.0) and "false_alarms_per_m2" in line["values"]
    assert "line metrics over 2 acquisitions" in captured.out

    import shutil  # an inspection folder inside a sweep: the report shows its line metrics

    from ispad_bench.report.write import report_is_current, write_report

    sweep = tmp_path / "sweep"
    shutil.copytree(out, sweep / "inspections" / "plate")
    write_report(sweep)  # no records: tables and the stamp, no figures
    tables = (sweep / "tables.md").read_text()
    assert "## Full acquisitions (`ispad-bench inspect`)" in tables and "`inspections/plate`" in tables
    assert f"| detection_rate | {line['values']['detection_rate']['value']:.3f} |" in tables
    assert report_is_current(sweep)
    (sweep / "inspections" / "plate" / "inspection.json").touch()  # a new inspection makes the report stale
    assert not report_is_current(sweep)


def test_inspect_command_one_line_errors(padim_job, tmp_path, capsys):
    import shutil

    from ispad_bench.cli import main

    bare = tmp_path / "job"
    shutil.copytree(padim_job, bare, ignore=shutil.ignore_patterns("model.ckpt", "anomalib"))
    (tmp_path / "a.png").write_bytes(b"")
    assert main(["inspect", str(bare), str(tmp_path / "a.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no model.ckpt" in err and "--keep model" in err
    assert main(["inspect", str(padim_job), str(tmp_path / "nothing*.png"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing*.png: no such image, folder or matching file" in capsys.readouterr().err


@pytest.mark.slow
def test_every_smoke_method_inspects_one_image(tiny_root, tmp_path):
    """Each method of the smoke profile (the paper's four, the supervised ResNet18, PaDiM, and GANomaly, which gives no
    map) rebuilds from its job folder and inspects one generated acquisition; map-less ones say so."""
    from PIL import Image

    from ispad_bench.cli import main

    out = tmp_path / "runs"
    methods = "efficient_ad,uflow,glass,ddad,supervised,padim,ganomaly"
    assert main(["sweep", "--methods", methods, "--modalities", "ASM", "--rows", "none", "--profile", "smoke",
                 "--data-root", str(tiny_root), "--out", str(out), "--no-report"]) == 0
    plate, _ = _plate(420, 500)
    Image.fromarray(plate).save(tmp_path / "plate.png")
    seen = {}
    for record in sorted(out.rglob("record.json")):
        dest = tmp_path / "inspect" / record.parent.name
        assert main(["inspect", str(record), str(tmp_path / "plate.png"), "--out", str(dest)]) == 0, record
        summary = json.loads((dest / "inspection.json").read_text())
        assert np.load(dest / "plate.map.npy").shape == plate.shape
        seen[summary["job"]["method"]] = summary["map_source"]
    assert set(seen) == set(methods.split(","))
    assert seen["ganomaly"] == seen["supervised"] == "window scores" and seen["padim"] == seen["glass"] == "model"


def test_generated_scan_has_area_and_points_defects_under_its_mask():
    from ispad_bench.inspect.scan import generate_scan

    image, mask = generate_scan(600, "ASM", seed=2)
    assert image.shape == (600, 600) and image.dtype == np.uint8 and generate_scan(300, "LSM-1")[0].shape == (300, 300, 3)
    labels, n = regions.label(mask)
    groups = set(regions.group_guess(np.bincount(labels.ravel())[1:]).tolist())
    assert n >= 4 and groups == {"area", "points"}
    assert ((image[mask] >= 230) | (image[mask] <= 30)).all() and (image[~mask] > 40).all() and (image[~mask] < 220).all()
    np.testing.assert_array_equal(generate_scan(600, "ASM", seed=2)[0], image)  # seeded


def test_gaps_between_footprints_take_the_nearest_covered_value():
    """A stride wider than the footprint leaves gaps inside the image: filled from the nearest covered row/column."""
    grid, fp = tiles.Grid.of(600, 300, stride=250), tiles.Footprint(16, 16, 224, 224)
    b = blend.Blender(grid, fp)
    values = np.arange(len(grid), dtype=np.float32)
    b.add(grid.corners, np.broadcast_to(values[:, None, None], (len(grid), 224, 224)))
    out = b.result()
    assert list(grid.ys) == [0, 250, 344] and out.shape == (600, 300)
    np.testing.assert_array_equal(out[250], out[239])  # rows 240-265 lie between footprints; 239 is nearest to 250
    np.testing.assert_array_equal(out[260], out[266])
    assert np.isfinite(out).all()


def _anomalib_parser(subcommand: str):
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI.__new__(AnomalibCLI)  # the parsers only, as ispad_bench.sweep.resolve.train_parser builds them
    cli.parser = cli.init_parser()
    cli.subcommand_parsers, cli.subcommand_method_arguments = {}, {}
    cli.add_subcommands()
    return cli.subcommand_parsers[subcommand]


def test_config_predict_prints_a_config_anomalib_predict_accepts(padim_job, tmp_path, capsys):
    import yaml

    from ispad_bench.cli import main

    assert main(["config", "--predict", str(padim_job)]) == 0
    text = capsys.readouterr().out
    config = yaml.safe_load(text)
    assert "optimizer" not in config and config["ckpt_path"] == str((padim_job / "model.ckpt").resolve())
    (tmp_path / "predict.yaml").write_text(text)
    parser = _anomalib_parser("predict")
    parsed = parser.parse_args(["--config", str(tmp_path / "predict.yaml")])
    assert parsed.model.class_path == "anomalib.models.Padim"
    with pytest.raises(SystemExit):  # the job's own config: "does not accept option 'optimizer'"
        parser.parse_args(["--config", str(padim_job / "config.yaml")])
    capsys.readouterr()
    assert main(["config"]) == 2 and "--predict JOB_DIR" in capsys.readouterr().err


@pytest.mark.slow
def test_anomalib_predict_runs_the_printed_config(padim_job, tmp_path):
    import subprocess
    import sys

    from ispad_bench.inspect.predict import predict_config
    from ispad_bench.files import write_json

    write_json(tmp_path / "predict.json", {**predict_config(padim_job), "default_root_dir": str(tmp_path / "out")})
    anomalib = Path(sys.executable).with_name("anomalib")
    proc = subprocess.run([str(anomalib), "predict", "--config", str(tmp_path / "predict.json")], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
