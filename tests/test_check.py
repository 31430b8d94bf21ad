"""``data check``: a valid tree passes; each broken file gives exactly its one error line; what
training handles (resizing, channel conversion, the reduced-split fallback) is a warning only."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import write_tiny_tree
from PIL import Image

from ispad_bench.data.check import find_problems, find_warnings, main_check, scan


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return write_tiny_tree(tmp_path_factory.mktemp("pristine"), modalities=("LSM-1", "ASM"))


@pytest.fixture
def root(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "data")


def only_problem(root) -> str:
    problems = find_problems(root)
    assert len(problems) == 1, problems
    return problems[0]


def test_valid_tree_passes_and_prints_counts_beside_the_paper(tiny_root, capsys):
    assert main_check(tiny_root) == 0
    out = capsys.readouterr().out
    assert "OK: no errors" in out
    lines = [line for line in out.splitlines() if "LSM-1" in line and "test_good" in line]
    assert lines and lines[0].split("│")[3:5] == [f"{3:>6} ", f" {1470:>15} "]  # found 3, Table 7: 1470


def test_modality_folder_as_root(tiny_root):
    assert find_problems(tiny_root / "LSM-2") == []


def test_generated_dataset_passes(synth_root):
    assert find_problems(synth_root) == []
    assert find_warnings(synth_root) == []


def test_own_data_resized_renamed_without_reduced_split(synth_root, tmp_path, capsys):
    """Another line's data (variable sizes, own folder names, no train_reduced): warnings only, and
    with its group mapping the group counts equal the original data's."""
    from own_data import OWN_GROUPS, own_data

    root = own_data(synth_root / "ASM", tmp_path / "ASM", resize=True)
    assert main_check(root, defect_groups=OWN_GROUPS) == 0
    out = capsys.readouterr().out
    assert "  warning: 40 x images that are not 256x256; the datamodules resize them (masks follow)" in out
    assert "train_split 'reduced' trains on" in out and "ASM: counts differ from ISP-AD's Table 7" in out
    original, own = scan(synth_root / "ASM").counts, scan(root, OWN_GROUPS).counts
    for split in ("test_good", "test_area", "test_points"):
        assert own[("ASM", split)] == original[("ASM", split)] > 0


def test_truncated_image(root):
    path = root / "LSM-1/train/good/002.png"
    path.write_bytes(path.read_bytes()[:3000])
    assert only_problem(root).startswith(f"{path}: unreadable or truncated image")


def test_unreadable_image(root):
    path = root / "ASM/test/good/001.png"
    path.write_bytes(b"this is not a png")
    assert only_problem(root).startswith(f"{path}: unreadable or truncated image (UnidentifiedImageError")


def test_other_size_is_a_warning_the_datamodule_resizes(root):
    path = root / "LSM-1/test/good/000.png"
    Image.open(path).resize((128, 96)).save(path)
    assert find_problems(root) == []
    assert find_warnings(root) == [f"{path}: image is 128x96, expected 256x256"]


@pytest.mark.parametrize(("modality", "mode", "found", "expected"), [("ASM", "RGB", 3, 1), ("LSM-1", "L", 1, 3)])
def test_other_channel_count_is_a_warning(root, modality, mode, found, expected):
    path = root / modality / "train_reduced/good/001.png"
    Image.open(path).convert(mode).save(path)
    assert find_problems(root) == []
    assert find_warnings(root) == [f"{path}: image has {found} channel(s), expected {expected}"]


def test_16_bit_image_is_a_warning_other_depths_are_errors(root):
    """The loaders rescale 16-bit images correctly (a warning, issue 25's severity rule); 32-bit is refused."""
    path = root / "ASM/test/good/000.png"
    Image.fromarray(np.full((256, 256), 40000, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    assert find_problems(root) == []
    assert [w for w in find_warnings(root) if str(path) in w][0].startswith(f"{path}: bit depth 16 (mode I")
    path = root / "ASM/test/good/001.tif"
    Image.fromarray(np.full((256, 256), 1 << 20, np.int32)).save(path)
    assert only_problem(root).startswith(f"{path}: bit depth 32 (mode I")


def test_every_check_runs_on_every_file(root):
    """A file with two faults reports both (no early return after the first)."""
    path = root / "ASM/test/good/001.png"
    Image.fromarray(np.full((100, 120), 30000, np.uint16)).save(path)
    result = scan(root)
    assert [f.kind for f in result.findings if str(path) in f.message] == ["bit_depth16", "resize"]


def test_image_without_mask(root):
    mask = root / "LSM-1/ground_truth/pinhole/001_mask.png"
    mask.unlink()
    assert only_problem(root) == f"{root / 'LSM-1/test/pinhole/001.png'}: image without mask (expected {mask})"


def test_mask_without_image(root):
    image = root / "ASM/test/squeegee_stroke/000.png"
    image.unlink()
    mask = root / "ASM/ground_truth/squeegee_stroke/000_mask.png"
    problems = find_problems(root)
    assert f"{mask}: mask without image in {image.parent}" in problems
    # the folder is now empty too; that is its own (second) problem
    assert problems == [f"{image.parent}: empty folder (no images)", f"{mask}: mask without image in {image.parent}"]


def test_mask_for_a_missing_defect_folder(root):
    folder = root / "LSM-1/ground_truth/scratch"
    folder.mkdir()
    shutil.copy(root / "LSM-1/ground_truth/pinhole/000_mask.png", folder / "005_mask.png")
    assert only_problem(root) == f"{folder / '005_mask.png'}: mask without image (no {root / 'LSM-1/test/scratch'})"


def test_empty_mask_for_a_defect(root):
    mask = root / "LSM-1/ground_truth/pinhole/000_mask.png"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(mask)
    assert only_problem(root) == f"{mask}: mask of a defect image is empty (all zero)"


def test_mask_size_is_compared_with_its_own_image(root):
    mask = root / "ASM/ground_truth/pinhole/001_mask.png"
    Image.open(mask).resize((256, 200), Image.NEAREST).save(mask)
    assert find_problems(root) == []  # the loaders resize it to its image (nearest): a warning
    assert find_warnings(root) == [f"{mask}: mask is 256x200, its image 001.png is 256x256"]
    image = root / "ASM/test/pinhole/001.png"  # image and mask resized alike: a resize warning only
    Image.open(image).resize((256, 200)).save(image)
    assert find_problems(root) == []
    assert find_warnings(root) == [f"{image}: image is 256x200, expected 256x256"]


def test_mask_values(root):
    mask = root / "LSM-1/ground_truth/pinhole/000_mask.png"
    array = np.asarray(Image.open(mask))
    Image.fromarray((array > 0).astype(np.uint8) * 3).save(mask)  # 0/3: counted as defect, a warning
    assert find_problems(root) == []
    assert find_warnings(root) == [f"{mask}: mask values 0/3, expected 0/255"]
    soft = (array > 0).astype(np.uint8) * 255
    soft[110] //= 2  # anti-aliased or lossy: several non-zero values
    Image.fromarray(soft).save(mask)
    assert find_problems(root) == []  # binarised at > 0 by the loaders, as Anomalib's read_mask: a warning
    assert find_warnings(root) == [f"{mask}: mask has 2 non-zero values (0, 127, 255), expected 0 and one value (255)"]


def test_empty_and_missing_folders(root):
    (root / "ASM/test/dot").mkdir()
    shutil.rmtree(root / "LSM-1/train")
    assert find_problems(root) == [f"{root / 'ASM/test/dot'}: empty folder (no images)"]
    # train_reduced/good still trains (the default); only train_split 'full' would fail
    assert find_warnings(root) == [f"{root / 'LSM-1/train/good'}: missing folder; train_split 'full' will not work"]
    shutil.rmtree(root / "LSM-1/train_reduced")
    assert f"{root / 'LSM-1/train/good'}: missing folder" in find_problems(root)


def test_unknown_modality_folder_is_ignored_with_a_warning(root):
    (root / "LSM-3").mkdir()
    (root / ".download").mkdir()  # hidden folders (download cache) are ignored
    assert find_problems(root) == []
    assert find_warnings(root) == [f"{root / 'LSM-3'}: unknown modality folder (expected LSM-1, LSM-2, ASM), ignored"]


def test_hdf5_key_missing(root):
    path = root / "LSM-1/supervised/stream.h5"
    with h5py.File(path, "a") as f:
        f.move("syn_stream", "y")
    problem = only_problem(root)
    assert problem.startswith(f"{path}: no unique labels dataset 'syn_stream' | expected datasets:")
    assert "| found: | ground_truth (4, 256, 256) uint8 | images (4, 256, 256) uint8 | y (4,) uint8" in problem


def test_hdf5_misshaped(root):
    path = root / "ASM/supervised/stream.h5"
    with h5py.File(path, "a") as f:
        del f["ground_truth"]
        f["ground_truth"] = np.zeros((4, 256, 128), np.uint8)
    assert "masks 'ground_truth' has shape (4, 256, 128), expected (N,256,256)" in only_problem(root)


def test_real_defect_wrong_size(root):
    path = root / "ASM/supervised/real_defects/points/points_000.png"
    Image.fromarray(np.zeros((256, 256), np.uint8)).save(path)
    assert only_problem(root) == f"{path}: image is 256x256, expected 512x512"


def test_summary_per_kind_with_examples_and_exit_code_1_for_errors(root, capsys):
    (root / "LSM-1/ground_truth/pinhole/001_mask.png").unlink()
    (root / "ASM/train/good/003.png").write_bytes(b"")
    (root / "LSM-3").mkdir()
    for path in sorted((root / "LSM-1/train/good").glob("*.png")):
        Image.open(path).resize((300, 200)).save(path)
    assert main_check(root) == 1
    out = capsys.readouterr().out.splitlines()
    errors, warnings = out.index("2 error(s) (will stop or corrupt training):"), out.index("7 warning(s) (training handles these):")
    assert errors < warnings
    assert out[errors + 1 : warnings] == [
        "  error: 1 x unreadable or truncated images",
        f"    {root / 'ASM/train/good/003.png'}: unreadable or truncated image (UnidentifiedImageError: "
        f"cannot identify image file {str(root / 'ASM/train/good/003.png')!r})",
        "  error: 1 x defect images without a mask, or masks without an image",
        f"    {root / 'LSM-1/test/pinhole/001.png'}: image without mask (expected "
        f"{root / 'LSM-1/ground_truth/pinhole/001_mask.png'})",
    ]
    assert out[warnings + 1].startswith("  error: ") is False
    assert out[warnings + 1] == "  warning: 6 x images that are not 256x256; the datamodules resize them (masks follow)"
    assert out[warnings + 5] == "    ... 3 more (--verbose lists all)"
    assert main_check(root, verbose=True) == 1
    assert "--verbose" not in capsys.readouterr().out


def test_only_warnings_exit_0(root, capsys):
    shutil.rmtree(root / "ASM/train_reduced")  # 6 <= 500 training images: the datamodule falls back
    assert main_check(root) == 0
    out = capsys.readouterr().out
    assert f"{root / 'ASM/train_reduced/good'}: missing; train_split 'reduced' trains on {root / 'ASM/train/good'} (6 <= 500 images)" in out
    assert "OK: no errors (1 warning(s))" in out


def test_no_reduced_split_with_more_than_500_images_is_the_error_training_stops_on(root):
    shutil.rmtree(root / "ASM/train_reduced")
    good = root / "ASM/train/good"
    tiny = Image.fromarray(np.full((256, 256), 128, np.uint8))
    for i in range(6, 501):
        tiny.save(good / f"{i:03d}.png", compress_level=1)
    assert only_problem(root) == (
        f"{root / 'ASM/train_reduced/good'}: missing and {good} holds 501 > 500 images: training with "
        "train_split 'reduced' (the default) stops; pass --data.init_args.train_split full "
        "(or create the folder with <= 500 images)"
    )


@pytest.mark.parametrize("damage", ["truncate", "random"])
def test_corrupt_hdf5_is_named_not_a_traceback(root, damage):
    path = root / "LSM-1/supervised/stream.h5"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncate" else np.random.default_rng(0).bytes(4096))
    problem = only_problem(root)
    assert problem.startswith(f"{path}: not a readable HDF5 file (")
    assert ("truncated" in problem) if damage == "truncate" else ("signature" in problem)


def test_defect_groups_mapping_counts_the_groups(root):
    mapping = {"pinhole": "area", "squeegee_stroke": "area", "crack": "points"}
    result = scan(root, mapping)
    assert result.counts[("LSM-1", "test_area")] == 3 and result.counts[("LSM-1", "test_points")] == 0
    assert result.errors == []
    assert result.warnings == [f"{root}: the group mapping names 'crack', but no test folder has that name"]
    renamed = root / "LSM-1/test/blowhole"
    (root / "LSM-1/test/pinhole").rename(renamed)
    (root / "LSM-1/ground_truth/pinhole").rename(root / "LSM-1/ground_truth/blowhole")
    assert find_warnings(root / "LSM-1")[0].startswith(f"{renamed}: defect folder not in the group mapping, counted as its own group 'blowhole'")
    assert scan(root / "LSM-1", {"blowhole": "points"}).counts[("LSM-1", "test_points")] == 2


def test_cli_exit_codes(tiny_root, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ispad_bench.cli", "data", "check", "--root"]
    assert subprocess.run([*cmd, str(tiny_root)], capture_output=True).returncode == 0
    broken = write_tiny_tree(tmp_path, modalities=("LSM-2",), defects={"dot": 1})
    (broken / "LSM-2/ground_truth/dot/000_mask.png").unlink()
    proc = subprocess.run([*cmd, str(broken)], capture_output=True, text=True)
    assert proc.returncode == 1 and "image without mask" in proc.stdout


def test_cli_defect_groups_option(tiny_root, tmp_path, capsys):
    from ispad_bench.cli import main

    assert main(["data", "check", "--root", str(tiny_root / "ASM"), "--defect-groups", "{pinhole: area}"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if "test_area" in line]
    # the mapping replaces the defaults, as in the datamodule: squeegee_stroke is now its own group
    assert rows and rows[0].split("│")[3].strip() == "2"
    assert "counted as its own group 'squeegee_stroke'" in out
    mapping = tmp_path / "groups.yaml"
    mapping.write_text("pinhole: area\nsqueegee_stroke: points\n")
    assert main(["data", "check", "--root", str(tiny_root / "ASM"), "--defect-groups", str(mapping)]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "test_points" in line]
    assert rows[0].split("│")[3].strip() == "1"
    with pytest.raises(SystemExit):
        main(["data", "check", "--root", str(tiny_root), "--defect-groups", "[a, b]"])
    assert "expected a mapping folder: group" in capsys.readouterr().err


def test_integrity_leakage_dangling_links_stream_labels_and_no_defects(root):
    """Each was `OK` before issue 25: found by content, with the severity rule (error: corrupts training)."""
    import os

    leaked = root / "LSM-1/train/good/000.png"
    shutil.copy(root / "LSM-1/test/good/000.png", leaked)  # a test image in the training split
    copied = root / "ASM/train_reduced/good/000.png"
    shutil.copy(root / "ASM/test/pinhole/000.png", copied)  # a defect test image copied into training
    assert sorted(find_problems(root)) == sorted([
        f"{leaked}: the same pixels as test image {root / 'LSM-1/test/good/000.png'}",
        f"{copied}: the same pixels as test image {root / 'ASM/test/pinhole/000.png'}"])
    shutil.copy(root / "LSM-1/train/good/001.png", leaked)
    shutil.copy(root / "ASM/train_reduced/good/001.png", copied)
    assert find_problems(root) == []
    link = root / "ASM/test/good/zz.png"
    os.symlink(root / "nowhere.png", link)
    assert f"{link}: symbolic link to a missing file ({root / 'nowhere.png'})" in find_warnings(root)
    with h5py.File(root / "LSM-1/supervised/stream.h5", "r+") as f:
        labels, masks = f["syn_stream"][()], f["ground_truth"][()]
        masks[labels == 1] = 0  # a label-1 patch without defect
        masks[np.flatnonzero(labels == 0)[0], 5, 5] = 255  # a label-0 patch with one
        f["ground_truth"][...] = masks
    n1, n0 = int((labels == 1).sum()), 1
    assert (f"{root / 'LSM-1/supervised/stream.h5'}: {n1} label-1 patch(es) with an empty mask, {n0} label-0 "
            "patch(es) with a defect in their mask") in find_warnings(root)
    for folder in (root / "ASM/test").iterdir():
        if folder.name != "good":
            shutil.rmtree(folder)
    shutil.rmtree(root / "ASM/ground_truth")
    assert find_problems(root) == [f"{root / 'ASM/test'}: no defect folder with images (only good/); training would "
                                   "stop after fitting, at the test (put defect images in test/<defect>/ with masks in "
                                   "ground_truth/)"]


def test_defects_outside_the_evaluation_crop_are_predicted(root):
    """On a real foreign set 43 of 388 ASM masks lay wholly outside the centre-224 crop; `data check` says which."""
    mask = root / "ASM/ground_truth/pinhole/000_mask.png"
    edge = np.zeros((256, 256), np.uint8)
    edge[100:110, 0:6] = 255  # in the masked left border: outside every method's view
    Image.fromarray(edge).save(mask)
    other = root / "ASM/ground_truth/pinhole/001_mask.png"
    corner = np.zeros((256, 256), np.uint8)
    corner[2:10, 100:120] = 255  # top rows: inside the border crop, outside the centre-224 crop
    Image.fromarray(corner).save(other)
    warnings = find_warnings(root)
    assert f"{mask}: the defect lies wholly outside the ASM 8-px border crop (every method)" in warnings
    assert any(w.startswith(f"{other}: the defect lies wholly outside the ASM centre-224 crop") for w in warnings)
    assert not any("LSM-1" in w and "outside" in w for w in warnings)  # LSM-1 has no crop
    assert find_problems(root) == []


def test_thin_defects_that_vanish_at_the_model_input_size_are_predicted(root):
    mask = root / "LSM-1/ground_truth/pinhole/000_mask.png"
    thin = np.zeros((256, 256), np.uint8)
    thin[101, 50:200] = 255  # one pixel high: gone at 64 px (nearest keeps every 4th row)
    Image.fromarray(thin).save(mask)
    assert not any("vanishes" in w for w in find_warnings(root))  # only with an input size
    warnings = find_warnings(root, input_size=64)
    assert f"{mask}: the defect vanishes when the mask is resized to 64x64 (nearest, after the border crop)" in warnings
    assert not any("vanishes" in w for w in find_warnings(root, input_size=256))
