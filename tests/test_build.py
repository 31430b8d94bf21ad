"""``ispad-bench data build``: generated full acquisitions with known defects -> the ISP-AD layout (issue 21)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from build_sources import write_source
from PIL import Image

from ispad_bench.data.build import BuildParams, SourceError, build
from ispad_bench.data.build.crops import group_of
from ispad_bench.data.build.manifest import read_manifest
from ispad_bench.data.build.windows import Defect, positions, reflect_crop, window_count
from ispad_bench.data.check import scan
from ispad_bench.data.hdf5 import discover_stream, real_defect_pools

SIZE = (600, 450)  # 4 x 3 windows of 256 at stride 160 (x: 0 160 320 344, y: 0 160 194)
FAST = BuildParams(stream_patches=64, unaugmented=4)


def tree_hash(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    base = tmp_path_factory.mktemp("build")
    known = write_source(base / "src", size=SIZE)
    (result,) = build(base / "src", base / "out", params=FAST, verbose=False)
    return base, known, result


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def test_window_positions_end_at_the_border():
    assert positions(600) == [0, 160, 320, 344] and positions(450) == [0, 160, 194]
    assert positions(416) == [0, 160] and positions(256) == [0] and positions(100) == [0]
    for n in range(1, 1500, 37):
        starts = positions(n)
        assert len(starts) == window_count(n) and starts[-1] == max(0, n - 256)
        assert all(b - a <= 160 for a, b in zip(starts, starts[1:]))  # the whole side is covered


def test_reflect_crop_matches_numpy_reflection():
    image = np.arange(7 * 5).reshape(7, 5)
    padded = np.pad(image, 9, mode="reflect")
    for y0, x0 in ((-3, -2), (4, 3), (-9, -9), (0, 0)):
        assert np.array_equal(reflect_crop(image, y0, x0, 6, 6), padded[y0 + 9:y0 + 15, x0 + 9:x0 + 15])


def test_built_set_passes_data_check_with_the_expected_counts(built):
    base, _, result = built
    found = scan(base / "out")
    assert found.errors == []
    rows = read_manifest(result.target)
    good = [r for r in rows if r["source"] == "good/plate01.png" or r["source"] == "good/plate00.png"]
    per_source = {s: sum(1 for r in good if r["source"] == s and r["path"].startswith(("train/good/", "test/good/")))
                  for s in {r["source"] for r in good}}
    assert set(per_source.values()) == {window_count(SIZE[0]) * window_count(SIZE[1])}  # no ROI, no defects: every window
    counts = found.counts
    assert counts[("ASM", "train")] == result.counts["train"] and counts[("ASM", "sup_stream_synthetic")] == 32
    assert counts[("ASM", "test_area")] > 0 and counts[("ASM", "test_points")] > 0
    assert counts[("ASM", "train_reduced")] == min(500, counts[("ASM", "train")])


def test_no_source_image_contributes_to_both_splits(built):
    base, _, result = built
    rows = read_manifest(result.target)
    import json

    split = json.loads((result.target / "build.json").read_text())["split"]
    test_sources = {r["source"] for r in rows if r["path"].startswith(("test/", "ground_truth/"))}
    train_sources = {r["source"] for r in rows if not r["path"].startswith(("test/", "ground_truth/"))}
    assert test_sources and train_sources and not test_sources & train_sources
    assert {split[s] for s in test_sources} == {"test"} and {split[s] for s in train_sources} == {"train"}
    assert {"good", "defective"} <= {s.split("/")[0] for s in test_sources}  # stratified: both kinds in test


def test_test_patches_and_masks_are_crops_of_their_acquisition(built):
    base, known, result = built
    rows = {r["path"]: r for r in read_manifest(result.target)}
    checked = 0
    for path in sorted((result.target / "test").glob("*/*.png")):
        if path.parent.name == "good":
            continue
        row = rows[path.relative_to(result.target).as_posix()]
        x, y = int(row["x"]), int(row["y"])
        source = base / "src" / "ASM" / row["source"]
        stem = Path(row["source"]).stem
        mask_src = _pixels(base / "src" / "ASM" / "masks" / path.parent.name / f"{stem}_mask.png")
        mask = _pixels(result.target / "ground_truth" / path.parent.name / f"{path.stem}_mask.png")
        assert np.array_equal(_pixels(path), _pixels(source)[y:y + 256, x:x + 256])
        assert np.array_equal(mask, (mask_src[y:y + 256, x:x + 256] > 0).astype(np.uint8) * 255)
        centres = [(cy, cx) for cy, cx, _ in known[row["source"]] if y <= cy < y + 256 and x <= cx < x + 256]
        assert centres  # a defect window holds a defect's centre
        checked += 1
    assert checked == result.counts["test/scratch"] + result.counts["test/misalignment"]


def test_real_defects_are_512_crops_centred_on_training_defects(built):
    base, known, result = built
    pools = real_defect_pools(result.target)
    assert set(pools) == {"area", "points"}
    rows = {r["path"]: r for r in read_manifest(result.target)}
    for group, pool in pools.items():
        for i, file in enumerate(pool.files):
            row = rows[file.relative_to(result.target).as_posix()]
            assert row["source"].startswith("defective/") and "test" not in row["source"]
            x, y = int(row["x"]), int(row["y"])
            assert any(abs(cy - y) <= 0.5 and abs(cx - x) <= 0.5 for cy, cx, _ in known[row["source"]])
            source = _pixels(base / "src" / "ASM" / row["source"])
            assert np.array_equal(pool.load(i), reflect_crop(source, y - 256, x - 256, 512, 512))
            assert group == ("area" if "misalignment" in row["source"] else "points")


def test_group_rule_order():
    point, blob = Defect(5, 5, 200, None), Defect(5, 5, 5000, None)
    assert group_of(point, "scratch") == "points" and group_of(blob, "misalignment") == "area"  # built-in mapping
    assert group_of(point, "mine") == "points" and group_of(blob, "mine") == "area"  # size rule, 1024 px
    assert group_of(blob, "mine", area_px=10_000) == "points"  # the rule's threshold is a parameter
    assert group_of(point, "mine", {"mine": "area"}) == "area"  # --defect-groups
    assert group_of(Defect(5, 5, 5000, "points"), "misalignment") == "points"  # defects.csv group wins


def test_stream_is_balanced_single_channel_and_traced(built):
    _, _, result = built
    layout = discover_stream(result.target / "supervised" / "stream.h5")
    with h5py.File(layout.path) as f:
        labels, masks = f[layout.labels_key][()], f[layout.masks_key][()]
        assert f[layout.images_key].chunks == (32, 256, 256) and f[layout.images_key].compression == "gzip"
    assert layout.length == 64 and labels.sum() == 32
    assert np.array_equal(masks.reshape(64, -1).any(axis=1), labels.astype(bool))
    rows = [r for r in read_manifest(result.target) if r["path"].startswith("supervised/stream.h5")]
    assert len(rows) == 64 and all(r["transform"].endswith(f"defect={labels[i]}") for i, r in enumerate(rows))
    affine = sum("affine=1" in r["transform"] for r in rows)
    assert 0 < affine < 64  # 87.5 % of the patches get the affine transform (§3.2.3: 80-95 %)


def test_unaugmented_patches_are_plain_crops(built):
    base, _, result = built
    rows = [r for r in read_manifest(result.target) if r["path"].startswith("unaugmented/")]
    assert len(rows) == 4
    for r in rows:
        x, y = int(r["x"]), int(r["y"])
        assert np.array_equal(_pixels(result.target / r["path"]), _pixels(base / "src" / "ASM" / r["source"])[y:y + 256, x:x + 256])


def test_same_inputs_same_bytes_and_a_finished_build_is_kept(built, tmp_path):
    base, _, result = built
    (again,) = build(base / "src", tmp_path / "out", params=FAST, verbose=False)
    assert tree_hash(again.target) == tree_hash(result.target)
    stamp = (result.target / "build.json").stat().st_mtime_ns
    (kept,) = build(base / "src", base / "out", params=FAST, verbose=False)
    assert kept.kept and (result.target / "build.json").stat().st_mtime_ns == stamp
    with pytest.raises(SourceError, match="holds a different build"):
        build(base / "src", base / "out", params=BuildParams(seed=1, stream_patches=64, unaugmented=4), verbose=False)


def test_bytes_do_not_depend_on_the_number_of_threads(tmp_path):
    write_source(tmp_path / "src", good=2, defective={"dot": 2}, size=(420, 300), per_image=1)
    one, two = (build(tmp_path / "src", tmp_path / f"out{w}", params=BuildParams(stream_patches=40, workers=w),
                      verbose=False)[0] for w in (1, 3))
    assert tree_hash(one.target) == tree_hash(two.target)


def test_reduced_split_is_a_seeded_subset(tmp_path):
    write_source(tmp_path / "src", good=2, defective={"scratch": 2}, size=(500, 400), per_image=1)
    (r,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(reduced=5, stream_patches=0), verbose=False)
    reduced = sorted((r.target / "train_reduced" / "good").iterdir())
    assert len(reduced) == 5 and r.counts["train"] > 5
    assert all((r.target / "train" / "good" / p.name).read_bytes() == p.read_bytes() for p in reduced)
    assert "no supervised stream: --stream-patches 0" in r.notes


def test_weak_labels_and_roi(tmp_path):
    known = write_source(tmp_path / "src", good=2, defective={"dot": 2}, size=(520, 300), weak=True, roi=True, per_image=1)
    (r,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=0), verbose=False)
    assert scan(tmp_path / "out").errors == []
    rows = read_manifest(r.target)
    assert all(int(row["x"]) + 256 <= 520 * 3 // 4 + 128 for row in rows if "/good/" in row["path"])  # >= 1/2 in the ROI
    for mask in (r.target / "ground_truth" / "dot").glob("*.png"):
        m = _pixels(mask) > 0
        assert 700 < m.sum() <= np.pi * 17**2  # the disc of radius 16 around the weak label
    assert r.counts["sup_real_points"] == sum(1 for k in known if "dot" in k) - 1  # one acquisition trains


@pytest.mark.parametrize("small", ["pad", "skip"])
def test_small_images_are_padded_or_skipped(tmp_path, small):
    write_source(tmp_path / "src", good=3, defective={"dot": 2}, size=(400, 300), per_image=1)
    Image.fromarray(np.full((150, 200), 90, np.uint8) + np.arange(200, dtype=np.uint8)[None] // 4).save(
        tmp_path / "src" / "ASM" / "good" / "tiny.png")
    (r,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=0, small=small), verbose=False)
    rows = [row for row in read_manifest(r.target) if row["source"] == "good/tiny.png"]
    if small == "pad":
        assert len(rows) >= 1 and rows[0]["transform"] == "pad=0,106,0,56"
        assert _pixels(r.target / rows[0]["path"]).shape == (256, 256)
    else:
        assert rows == [] and any("skipped" in n for n in r.notes)


def _bad(tmp_path, edit):
    write_source(tmp_path / "src", good=2, defective={"dot": 2}, size=(300, 280), per_image=1)
    folder = tmp_path / "src" / "ASM"
    edit(folder)
    with pytest.raises(SourceError) as err:
        build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=0), verbose=False)
    message = str(err.value)
    assert "\n" not in message
    assert not (tmp_path / "out" / "ASM").exists()
    return message


def test_mask_of_another_size_is_refused(tmp_path):
    def edit(folder):
        Image.new("L", (100, 100)).save(folder / "masks" / "dot" / "dot00_mask.png")
    assert "dot00_mask.png: mask is 100x100, its image defective/dot/dot00.png is 300x280" in _bad(tmp_path, edit)


def test_label_outside_its_image_is_refused(tmp_path):
    def edit(folder):
        (folder / "defects.csv").write_text("file,x,y\ndefective/dot/dot01.png,310,20\n")
    assert "defect label (310, 20) lies outside defective/dot/dot01.png (300x280)" in _bad(tmp_path, edit)


def test_empty_roi_is_refused(tmp_path):
    def edit(folder):
        (folder / "roi").mkdir()
        Image.new("L", (300, 280)).save(folder / "roi" / "plate00_roi.png")
    assert "plate00_roi.png: empty region of interest" in _bad(tmp_path, edit)


def test_unreadable_file_is_refused(tmp_path):
    def edit(folder):
        (folder / "good" / "plate01.png").write_bytes(b"\x89PNG not really")
    assert "plate01.png: unreadable image" in _bad(tmp_path, edit)


def test_nothing_left_to_extract(tmp_path):
    def edit(folder):
        (folder / "roi").mkdir()
        for image in [*folder.glob("good/*.png"), *folder.glob("defective/*/*.png")]:
            roi = np.zeros((280, 300), np.uint8)
            roi[:40, :40] = 255  # far less than half a window
            Image.fromarray(roi).save(folder / "roi" / f"{image.stem}_roi.png")
    assert "nothing left to extract for train" in _bad(tmp_path, edit)
    assert list((tmp_path / "out").iterdir()) == []  # no work folder left behind either


def test_no_defective_acquisitions_builds_the_unsupervised_part(tmp_path):
    write_source(tmp_path / "src", good=2, defective={}, size=(300, 280))
    (r,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=8), verbose=False)
    assert r.counts["train"] and r.counts["test_good"] and r.counts["sup_stream_synthetic"] == 4
    assert any("no defective acquisitions" in n for n in r.notes)
    assert r.counts["sup_real_area"] == r.counts["sup_real_points"] == 0


def test_cli_builds_and_prints_one_line_errors(tmp_path, capsys):
    from ispad_bench.cli import main

    write_source(tmp_path / "src", good=2, defective={"dot": 2}, size=(300, 280), per_image=1)
    folder = tmp_path / "src" / "ASM"
    argv = ["data", "build", "--source", str(folder), "--modality", "asm", "--out", str(tmp_path / "out"),
            "--stream-patches", "0", "--reduced", "3", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "train_reduced" in out and "ispad-bench data check --root" in out and "--profile smoke" in out
    assert "real_ids_file" not in out  # the smoke profile reads the build's own supervised/real_ids.json
    assert (tmp_path / "out" / "ASM" / "supervised" / "real_ids.json").is_file()
    assert len(list((tmp_path / "out" / "ASM" / "train_reduced" / "good").iterdir())) == 3
    (folder / "masks" / "dot" / "other_mask.png").write_bytes(b"")
    assert main([*argv[:-1], "--seed", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("other_mask.png: no acquisition of that name (masks: masks/<class>/<stem>_mask.png beside "
                        "defective/<class>/<stem>.png; ROIs: roi/<stem>_roi.png)") and "\n" not in err


def test_defects_on_own_patches(tmp_path):
    from ispad_bench.data.build.defects import add_defects

    (tmp_path / "in").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray((100 + 20 * rng.standard_normal((128, 128))).clip(0, 255).astype(np.uint8)).save(tmp_path / "in" / f"p{i}.png")
    labels = add_defects(tmp_path / "in", tmp_path / "out", seed=3)
    assert labels == [("p0.png", 1), ("p1.png", 1), ("p2.png", 1)]
    for i in range(3):
        before, after = _pixels(tmp_path / "in" / f"p{i}.png"), _pixels(tmp_path / "out" / "images" / f"p{i}.png")
        mask = _pixels(tmp_path / "out" / "masks" / f"p{i}_mask.png") > 0
        assert mask.any() and np.array_equal(before != after, mask & (before != after)) and (before != after).any()
    again = add_defects(tmp_path / "in", tmp_path / "again", seed=3)
    assert again == labels and tree_hash(tmp_path / "again") == tree_hash(tmp_path / "out")


RESUME = """
import sys
from ispad_bench.data.build import BuildParams, build
build(sys.argv[1], sys.argv[2], params=BuildParams(stream_patches=256, workers=1), verbose=False)
"""


@pytest.mark.slow
def test_resume_after_sigkill_gives_the_same_bytes(tmp_path):
    write_source(tmp_path / "src", good=4, defective={"scratch": 3, "misalignment": 3}, size=(760, 700))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1] / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", RESUME, str(tmp_path / "src"), str(tmp_path / "out")], env=env)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((tmp_path / "out").glob(".build-ASM-*/.journal/*.json"))) < 3:
        time.sleep(0.05)
    journaled = len(list((tmp_path / "out").glob(".build-ASM-*/.journal/*.json")))
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and 3 <= journaled < 10  # killed mid-extraction (10 acquisitions)
    assert not (tmp_path / "out" / "ASM").exists()  # nothing half-written in the dataset folder
    (resumed,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=256), verbose=False)
    (clean,) = build(tmp_path / "src", tmp_path / "clean", params=BuildParams(stream_patches=256), verbose=False)
    assert tree_hash(resumed.target) == tree_hash(clean.target)
    assert list((tmp_path / "out").glob(".build-*")) == []


def test_stream_chunks_written_whole_read_back_as_made(tmp_path):
    """write_stream deflates each chunk on its thread and hands HDF5 the finished chunk (a partial last one too)."""
    from ispad_bench.data.build.stream import StreamSource, candidates, make_chunk, write_stream
    from ispad_bench.data.modality import Modality
    from ispad_bench.data.synth.generate import run_ordered

    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 255, (300 + 256, 420 + 256), dtype=np.uint8)
    defect = np.zeros((300, 420), bool)
    defect[10:20, 10:20] = True
    src = StreamSource("good/x.png", pixels, defect.astype(np.uint8) << 1 | 1, candidates(None, defect))
    assert len(src.candidates) and all(not defect[y:y + 256, x:x + 256].any() for y, x in src.candidates)
    write_stream(tmp_path / "s.h5", [src], 40, Modality.LSM2, 5, 0.875, lambda jobs: run_ordered(jobs, 2),
                 lambda rows, k: None, chunk=16)
    made = [make_chunk(c, k, [src], Modality.LSM2, 5, 0.875) for c, k in enumerate((16, 16, 8))]
    with h5py.File(tmp_path / "s.h5") as f:
        assert np.array_equal(f["images"][()], np.concatenate([m[0] for m in made]))
        assert np.array_equal(f["ground_truth"][()], np.concatenate([m[1] for m in made]))
        assert np.array_equal(f["syn_stream"][()], np.concatenate([m[2] for m in made]))
    assert [int(m[2].sum()) for m in made] == [8, 8, 4]


def test_rgb_modality_keeps_rgb_patches_and_gray_supervision(tmp_path):
    write_source(tmp_path / "src", modality="LSM-1", good=2, defective={"dot": 2}, size=(400, 300), per_image=1)
    (r,) = build(tmp_path / "src", tmp_path / "out", params=BuildParams(stream_patches=8, unaugmented=2), verbose=False)
    found = scan(tmp_path / "out")
    assert found.errors == [] and not [w for w in found.warnings if "channel" in w]
    modes = {Image.open(p).mode for p in (r.target / "train" / "good").glob("*.png")}
    modes |= {Image.open(p).mode for p in (r.target / "unaugmented" / "good").glob("*.png")}
    assert modes == {"RGB"}
    assert {Image.open(p).mode for p in (r.target / "supervised" / "real_defects").rglob("*.png")} == {"L"}
    assert discover_stream(r.target / "supervised" / "stream.h5").image_shape == (256, 256)


@pytest.mark.slow  # ~7-9 min on 2 shared cores (555 s measured): every method of the smoke profile (supervised rows included) on a built set
def test_built_set_runs_the_smoke_sweep_of_every_method(tmp_path):
    import json

    from ispad_bench.cli import main

    write_source(tmp_path / "src", good=3, defective={"scratch": 3, "misalignment": 3}, size=(700, 600))
    build(tmp_path / "src", tmp_path / "data", params=BuildParams(stream_patches=256), verbose=False)
    assert scan(tmp_path / "data").errors == []
    argv = ["sweep", "--all", "--profile", "smoke", "--modalities", "ASM", "--data-root", str(tmp_path / "data"),
            "--out", str(tmp_path / "runs"), "--no-report"]
    assert main(argv) == 0
    found = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("record.json")]
    assert {r["status"] for r in found} == {"ok"}
    assert {r["row"] for r in found if r["method"] == "supervised"} == {"none", "mixed-1_16", "real-only"}
    assert {"efficient_ad", "uflow", "glass", "ddad", "patchcore"} <= {r["method"] for r in found}
