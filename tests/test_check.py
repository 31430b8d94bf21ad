"""``data check``: a valid tree passes; each broken file gives exactly its one problem line."""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest
from conftest import write_tiny_tree
from PIL import Image

from ispad_bench.data.check import find_problems, main_check


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
    assert "OK: no problems found" in out
    lines = [line for line in out.splitlines() if "LSM-1" in line and "test_good" in line]
    assert lines and lines[0].split("│")[3:5] == [f"{3:>6} ", f" {1470:>15} "]  # found 3, Table 7: 1470


def test_modality_folder_as_root(tiny_root):
    assert find_problems(tiny_root / "LSM-2") == []


def test_generated_dataset_passes(synth_root):
    assert find_problems(synth_root) == []


def test_truncated_image(root):
    path = root / "LSM-1/train/good/002.png"
    path.write_bytes(path.read_bytes()[:3000])
    assert only_problem(root).startswith(f"{path}: unreadable or truncated image")


def test_unreadable_image(root):
    path = root / "ASM/test/good/001.png"
    path.write_bytes(b"this is not a png")
    assert only_problem(root).startswith(f"{path}: unreadable or truncated image (UnidentifiedImageError")


def test_wrong_size(root):
    path = root / "LSM-1/test/good/000.png"
    Image.open(path).resize((128, 128)).save(path)
    assert only_problem(root) == f"{path}: image is 128x128, expected 256x256"


@pytest.mark.parametrize(("modality", "mode", "found", "expected"), [("ASM", "RGB", 3, 1), ("LSM-1", "L", 1, 3)])
def test_wrong_channel_count(root, modality, mode, found, expected):
    path = root / modality / "train_reduced/good/001.png"
    Image.open(path).convert(mode).save(path)
    assert only_problem(root) == f"{path}: image has {found} channel(s), expected {expected}"


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


def test_mask_wrong_size(root):
    mask = root / "ASM/ground_truth/pinhole/001_mask.png"
    Image.open(mask).resize((256, 200)).save(mask)
    assert only_problem(root) == f"{mask}: mask is 256x200, expected 256x256"


def test_empty_and_missing_folders(root):
    (root / "ASM/test/dot").mkdir()
    shutil.rmtree(root / "LSM-1/train")
    assert sorted(find_problems(root)) == [
        f"{root / 'ASM/test/dot'}: empty folder (no images)",
        f"{root / 'LSM-1/train/good'}: missing folder",
    ]


def test_unknown_modality_folder(root):
    (root / "LSM-3").mkdir()
    (root / ".download").mkdir()  # hidden folders (download cache) are ignored
    assert only_problem(root) == f"{root / 'LSM-3'}: unknown modality folder (expected LSM-1, LSM-2, ASM)"


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


def test_every_problem_is_listed_and_exit_code_is_1(root, capsys):
    (root / "LSM-1/ground_truth/pinhole/001_mask.png").unlink()
    (root / "ASM/train/good/003.png").write_bytes(b"")
    (root / "LSM-3").mkdir()
    assert main_check(root) == 1
    out = capsys.readouterr().out.splitlines()
    start = out.index("3 problem(s):")
    assert len(out[start + 1 :]) == 3
    assert all(line.startswith(str(root)) for line in out[start + 1 :])


def test_cli_exit_codes(tiny_root, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "ispad_bench.cli", "data", "check", "--root"]
    assert subprocess.run([*cmd, str(tiny_root)], capture_output=True).returncode == 0
    broken = write_tiny_tree(tmp_path, modalities=("LSM-2",), defects={"dot": 1})
    (broken / "LSM-2/ground_truth/dot/000_mask.png").unlink()
    proc = subprocess.run([*cmd, str(broken)], capture_output=True, text=True)
    assert proc.returncode == 1 and "image without mask" in proc.stdout
