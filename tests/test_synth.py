"""The generated ISP-AD-like dataset: layout, counts, exact masks, determinism, the HDF5 stream
and the random-walk defect synthesizer."""

from __future__ import annotations

import hashlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from ispad_bench.data import layout
from ispad_bench.data.synth.defects import AREA_TYPES, DEFECT_TYPES, POINT_TYPES, defect_patch, synthesize_defect
from ispad_bench.data.modality import Modality
from ispad_bench.data.synth import contact_sheet
from ispad_bench.data.synth.generate import STREAM_FILE, generate, plan

MODALITIES = ("LSM-1", "LSM-2", "ASM")


def _pngs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.png"))


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def small_roots(tmp_path_factory):
    """The same small dataset twice (1 vs 2 threads) and once with another seed."""
    kw = dict(patches=10, modalities=list(MODALITIES), stream_patches=16, real_defects=1, verbose=False)
    a = generate(tmp_path_factory.mktemp("a"), seed=3, workers=1, **kw)
    b = generate(tmp_path_factory.mktemp("b"), seed=3, workers=2, **kw)
    c = generate(tmp_path_factory.mktemp("c"), seed=4, workers=2, **kw)
    return a, b, c


def test_plan_sizes_follow_table7():
    for m in MODALITIES:
        p = plan(m, 20)
        assert sum(p.test.values()) == 20 and all(p.test[t] >= 1 for t in DEFECT_TYPES)
        assert p.test["good"] > sum(p.test[t] for t in DEFECT_TYPES)  # imbalanced like production
        assert p.stream == 80 and p.stream_defects == 40 and p.train >= 20 and p.train_reduced <= 500
        assert min(p.real.values()) >= 4
    big = plan("LSM-1", 2000)  # Table 7, LSM-1: 49 area / 46 points of 1565 test patches
    area = sum(big.test[t] for t in AREA_TYPES) / 2000
    assert abs(area - 49 / 1565) < 0.005 and big.train_reduced == 500 and big.train > 4000
    assert plan("ASM", 2000, stream_patches=20000).stream == 20000
    with pytest.raises(ValueError, match="patches must be"):
        plan("ASM", 5)
    with pytest.raises(ValueError, match="real_defects"):
        plan("ASM", 20, real_defects=0)


@pytest.mark.parametrize("name", MODALITIES)
def test_layout_counts_and_channels(synth_root, name):
    modality = Modality.parse(name)
    base, p = synth_root / name, plan(name, 20)
    mode = "L" if modality is Modality.ASM else "RGB"
    train = _pngs(base / "train/good")
    reduced = _pngs(base / "train_reduced/good")
    assert len(train) == p.train and len(reduced) == p.train_reduced
    for r in reduced:  # the reduced split is a subset of the full one (same files)
        assert (base / "train/good" / r.name).read_bytes() == r.read_bytes()
    test_dirs = sorted(d.name for d in (base / "test").iterdir())
    assert test_dirs == sorted(["good", *DEFECT_TYPES]) and all(layout.DEFECT_GROUPS[d] for d in DEFECT_TYPES)
    for sub in test_dirs:
        files = _pngs(base / "test" / sub)
        assert len(files) == p.test[sub]
        for f in files:
            with Image.open(f) as img:
                assert img.size == (256, 256) and img.mode == mode, f
            if sub != "good":
                mask_file = base / "ground_truth" / sub / f"{f.stem}_mask.png"
                mask = np.asarray(Image.open(mask_file))
                assert Image.open(mask_file).mode == "L" and mask.shape == (256, 256)
                assert set(np.unique(mask)) == {0, 255}, mask_file  # binary and nonempty
    assert not (base / "ground_truth" / "good").exists()
    for f in train[:3]:
        assert Image.open(f).mode == mode
    assert not [d for d in synth_root.iterdir() if d.name.startswith(".")]  # no temporary folders left


def test_asm_borders_are_masked(synth_root):
    border = Modality.ASM.border_crop_px
    files = _pngs(synth_root / "ASM/test/good") + _pngs(synth_root / "ASM/train/good") + _pngs(synth_root / "ASM/test/dot")
    for f in files:
        img = np.asarray(Image.open(f))
        assert (img[:, :3] == 0).all() and (img[:, -3:] == 0).all(), f
        assert img[:, border:-border].mean() > 40, f  # only the borders are black
    with h5py.File(synth_root / "ASM/supervised" / STREAM_FILE) as f:
        images, masks = f["images"][:], f["ground_truth"][:]
    assert (images[:, :, :3] == 0).all() and (images[:, :, -3:] == 0).all()
    assert not masks[:, :, :3].any() and not masks[:, :, -3:].any()  # no synthetic defect on a border


@pytest.mark.parametrize("name", MODALITIES)
def test_supervised_stream_and_real_defects(synth_root, name):
    base = synth_root / name / "supervised"
    with h5py.File(base / STREAM_FILE) as f:
        assert {k: (f[k].shape, f[k].dtype) for k in f} == {
            "images": ((80, 256, 256), np.uint8),
            "syn_stream": ((80,), np.uint8),
            "ground_truth": ((80, 256, 256), np.uint8),
        }
        assert f["images"].chunks[0] == 32 and f["images"].compression is None
        labels, masks, images = f["syn_stream"][:], f["ground_truth"][:], f["images"][:]
    assert labels.sum() == 40 and set(np.unique(labels)) == {0, 1}  # balanced: 50 % synthetic defects
    assert set(np.unique(masks)) <= {0, 255}
    has_defect = masks.reshape(80, -1).any(axis=1)
    assert (has_defect == (labels == 1)).all()  # a mask for every defect, none for the fault-free
    assert images.std() > 10  # real content, not a constant
    real = layout.REAL_DEFECTS_DIR
    for group, kinds in (("area", AREA_TYPES), ("points", POINT_TYPES)):
        files = _pngs(base / real / group)
        assert len(files) == plan(name, 20).real[group]
        assert {f.stem.split("_", 1)[1] for f in files} <= set(kinds)
        for f in files:
            with Image.open(f) as img:
                assert img.size == (512, 512) and img.mode == "L", f
    hdf5 = pytest.importorskip("ispad_bench.data.hdf5")
    pools = hdf5.real_defect_pools(synth_root / name)  # what the supervised datamodule reads
    assert {g: len(pool) for g, pool in pools.items()} == plan(name, 20).real
    assert pools["points"].load(0).shape == (512, 512) and pools["points"].load(0).std() > 5


def test_stream_is_readable_by_the_hdf5_discovery(synth_root):
    hdf5 = pytest.importorskip("ispad_bench.data.hdf5")
    found = hdf5.discover_stream(synth_root / "LSM-1/supervised" / STREAM_FILE)
    assert (found.images_key, found.labels_key, found.masks_key, found.length) == ("images", "syn_stream", "ground_truth", 80)


def test_generated_root_passes_the_dataset_check(synth_root):
    check = pytest.importorskip("ispad_bench.data.check")
    assert check.main_check(synth_root) == 0


@pytest.mark.parametrize("kind", DEFECT_TYPES)
@pytest.mark.parametrize("name", MODALITIES)
def test_test_defect_masks_are_exact(name, kind):
    image, mask, clean = defect_patch(kind, name, np.random.default_rng(7), return_clean=True)
    changed = (image != clean).reshape(256, 256, -1).any(axis=2)
    inside = mask > 0
    assert changed.any() and inside.any()
    assert not (changed & ~inside).any()  # no pixel changed outside the mask
    if kind in POINT_TYPES:  # point masks are exactly the changed pixels
        assert (changed == inside).all()
    else:  # area masks are closed regions of changes, still mostly changed pixels
        assert changed[inside].mean() > 0.2


def test_same_seed_same_bytes_other_seed_differs(small_roots):
    a, b, c = small_roots
    ha, hb, hc = _tree_hashes(a), _tree_hashes(b), _tree_hashes(c)
    assert ha == hb  # identical across runs and thread counts, HDF5 included
    assert any(k.endswith(STREAM_FILE) for k in ha)
    assert ha.keys() == hc.keys()
    differing = [k for k in ha if ha[k] != hc[k]]
    assert len(differing) > 0.9 * len(ha)


def test_existing_modality_is_kept_refused_or_replaced(small_roots, tmp_path):
    a = small_roots[0]
    stream = a / "ASM/supervised" / STREAM_FILE
    before = stream.stat().st_mtime_ns
    kw = dict(patches=10, modalities=["ASM"], stream_patches=16, real_defects=1, verbose=False)
    generate(a, seed=3, **kw)  # same parameters: kept, nothing rewritten
    assert stream.stat().st_mtime_ns == before
    with pytest.raises(FileExistsError, match="overwrite"):
        generate(a, seed=5, **kw)
    stale = tmp_path / ".synth-ASM-999999999-abc"  # left by a killed run (no such process)
    (stale / "train/good").mkdir(parents=True)
    (tmp_path / "ASM").mkdir()
    (tmp_path / "ASM" / "notes.txt").write_text("real data")
    with pytest.raises(FileExistsError, match="not written by this generator"):
        generate(tmp_path, **kw)
    generate(tmp_path, overwrite=True, **kw)
    assert not (tmp_path / "ASM" / "notes.txt").exists() and (tmp_path / "ASM/supervised" / STREAM_FILE).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ASM"]


@pytest.mark.parametrize("shape", [(256, 256), (97, 130, 3), (64, 64)])
def test_synthesizer_changes_only_its_mask_and_is_deterministic(shape):
    rng = np.random.default_rng(0)
    patch = rng.integers(40, 200, shape, dtype=np.uint8)
    for seed in range(12):
        out, mask = synthesize_defect(patch, np.random.default_rng(seed))
        again, mask2 = synthesize_defect(patch, np.random.default_rng(seed))
        assert np.array_equal(out, again) and np.array_equal(mask, mask2)
        assert out.shape == patch.shape and out.dtype == np.uint8 and mask.shape == shape[:2]
        changed = (out != patch).reshape(*shape[:2], -1).any(axis=2)
        assert set(np.unique(mask)) == {0, 255}
        assert (changed == (mask > 0)).all()  # changed pixels are exactly the mask


def test_synthesizer_parameters():
    patch = np.full((128, 128), 120, np.uint8)
    valid = np.zeros((128, 128), bool)
    valid[:, 64:] = True
    out, mask = synthesize_defect(patch, np.random.default_rng(1), kind="scratch", start=(64, 80), valid=valid, polarity=1)
    assert mask[:, :64].max() == 0 and (out[mask > 0] > 120).all()  # brighter, only where allowed
    _, long = synthesize_defect(patch, np.random.default_rng(2), kind="fibre", steps=150, radius=0.6)
    _, dot = synthesize_defect(patch, np.random.default_rng(2), kind="point", steps=2, radius=1.0)
    assert (long > 0).sum() > 2 * (dot > 0).sum()
    with pytest.raises(ValueError, match="uint8"):
        synthesize_defect(patch.astype(np.float32), np.random.default_rng(0))
    with pytest.raises(TypeError, match="unknown parameters"):
        synthesize_defect(patch, np.random.default_rng(0), sizee=3)
    with pytest.raises(ValueError, match="kind"):
        synthesize_defect(patch, np.random.default_rng(0), kind="crack")


def test_cli_writes_what_generate_writes_and_refuses_other_seeds(tmp_path, capsys):
    from ispad_bench.cli import main

    args = ["data", "synth", "--root", str(tmp_path / "cli"), "--patches", "10", "--seed", "3",
            "--modalities", "asm", "--stream-patches", "16", "--real-defects", "1"]
    assert main(args) == 0
    generate(tmp_path / "api", patches=10, seed=3, modalities=["ASM"], stream_patches=16, real_defects=1, verbose=False)
    assert _tree_hashes(tmp_path / "cli") == _tree_hashes(tmp_path / "api")
    assert main(["data", "check", "--root", str(tmp_path / "cli")]) == 0
    capsys.readouterr()
    other_seed = ["4" if a == "3" else a for a in args]
    assert main(other_seed) == 2  # another seed into an existing folder: refused, one line
    err = capsys.readouterr().err
    assert "error:" in err and "--overwrite" in err and "Traceback" not in err


def test_contact_sheet_shows_test_stream_and_real_defects(synth_root, tmp_path):
    sheet = np.asarray(Image.open(contact_sheet(synth_root, "lsm2", tmp_path / "sheet.png")))
    columns = 1 + len(DEFECT_TYPES)  # good + one per defect folder
    assert sheet.shape == (4 * 256, columns * 256, 3)  # test, test + masks, stream, real defects
    red = (sheet[..., 0] == 255) & (sheet[..., 1] == 0) & (sheet[..., 2] == 0)
    assert not red[:256].any() and red[256:512, 256:].any()  # outlines only on the mask row's defects
    assert red[512:768].any()  # synthetic stream defects outlined
    only_test = np.asarray(Image.open(contact_sheet(synth_root, "ASM", tmp_path / "t.png", supervised=False)))
    assert only_test.shape == (2 * 256, columns * 256, 3)


@pytest.mark.parametrize("name", MODALITIES)
def test_defect_strength_scales_every_defect(name):
    for kind in DEFECT_TYPES:
        change = {}
        for strength in (1.0, 3.0):
            image, mask, clean = defect_patch(kind, name, np.random.default_rng(11), return_clean=True, strength=strength)
            change[strength] = np.abs(image.astype(np.int32) - clean).sum()
            assert not ((image != clean).reshape(256, 256, -1).any(axis=2) & (mask == 0)).any()  # masks stay exact
        # a misregistered print differs everywhere near its edges already at 2-5 px: a larger shift adds less
        assert change[3.0] > (1.0 if kind == "misalignment" else 1.5) * change[1.0], (kind, change)
    with pytest.raises(ValueError, match="strength"):
        defect_patch("dot", name, np.random.default_rng(0), strength=0)


def test_synthesizer_strength():
    patch = np.full((128, 128), 100, np.uint8)
    faint, m1 = synthesize_defect(patch, np.random.default_rng(5), kind="fibre", polarity=1)
    strong, m3 = synthesize_defect(patch, np.random.default_rng(5), kind="fibre", polarity=1, strength=3)
    assert (m3 > 0).sum() > (m1 > 0).sum() and strong.max() > faint.max()
    same, _ = synthesize_defect(patch, np.random.default_rng(5), kind="fibre", polarity=1, strength=1)
    assert np.array_equal(same, faint)
    with pytest.raises(ValueError, match="strength"):
        synthesize_defect(patch, np.random.default_rng(0), strength=-1)


def test_defect_strength_is_recorded_and_checked(tmp_path):
    kw = dict(patches=10, modalities=["ASM"], stream_patches=16, real_defects=1, verbose=False)
    generate(tmp_path / "api", defect_strength=2, **kw)
    with h5py.File(tmp_path / "api/ASM/supervised" / STREAM_FILE) as f:
        assert f.attrs["defect_strength"] == 2.0
    with pytest.raises(FileExistsError, match="'defect_strength': 2.0"):
        generate(tmp_path / "api", **kw)  # the default strength 1 is another dataset
    with pytest.raises(ValueError, match="defect_strength"):
        generate(tmp_path / "bad", defect_strength=float("nan"), **kw)
    from ispad_bench.cli import main

    assert main(["data", "synth", "--root", str(tmp_path / "cli"), "--patches", "10", "--modalities", "asm",
                 "--stream-patches", "16", "--real-defects", "1", "--defect-strength", "2"]) == 0
    assert _tree_hashes(tmp_path / "cli") == _tree_hashes(tmp_path / "api")
