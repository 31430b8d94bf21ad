"""ISPAD datamodule: counts, labels, masks, groups, crops, resize, validation modes, determinism, YAML/CLI."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import write_tiny_tree
from PIL import Image
from torchvision.transforms import v2

from ispad_bench.data import ISPAD, Modality, defect_group


def setup(root, **kwargs) -> ISPAD:
    kwargs.setdefault("num_workers", 0)
    dm = ISPAD(root, **kwargs)
    dm.setup()
    return dm


def test_counts_labels_groups_and_masks(tiny_root):
    dm = setup(tiny_root, modality="lsm1")
    assert dm.name == "ISPAD" and dm.category == "LSM-1"
    assert len(dm.train_data) == 4  # the reduced split by default
    test = dm.test_data.samples
    assert len(test) == 6 and test.label_index.tolist().count(1) == 3
    assert sorted(test.defect_group.unique()) == ["area", "good", "points"]
    assert (test[test.defect == "squeegee_stroke"].defect_group == "area").all()
    assert (test[test.defect == "pinhole"].defect_group == "points").all()
    for _, row in test[test.label_index == 1].iterrows():
        assert Path(row.mask_path).name == Path(row.image_path).stem + "_mask.png"
        assert Path(row.mask_path).parent.name == Path(row.image_path).parent.name
    # validation = test (the paper's protocol)
    assert dm.val_data.samples.image_path.tolist() == test.image_path.tolist()

    item = next(i for i in dm.test_data if i.gt_label == 1)
    k = int(np.asarray(Image.open(item.image_path))[0, 0, 0]) - 100  # tree writes index into pixel (0, 0)
    assert item.image.shape == (3, 256, 256) and item.gt_mask.shape == (256, 256)
    assert item.gt_mask.sum() == 400 and item.gt_mask[100 + k, 50] == 1 and item.gt_mask[99 + k, 50] == 0
    good = next(i for i in dm.test_data if i.gt_label == 0)
    assert good.gt_mask.sum() == 0


def test_full_split_mapping_and_modality_folder_as_root(tiny_root):
    dm = setup(tiny_root / "LSM-2", modality="LSM_2", train_split="full",
               defect_groups={"pinhole": "tiny", "squeegee_stroke": "stroke"})
    assert len(dm.train_data) == 6
    assert sorted(dm.test_data.samples.defect_group.unique()) == ["good", "stroke", "tiny"]


def test_grayscale_becomes_three_equal_channels_and_asm_border_is_cropped(tiny_root):
    dm = setup(tiny_root, modality="ASM")
    assert dm.border_crop == 8
    train, test = dm.train_data[0], dm.test_data[0]
    assert train.image.shape == (3, 256, 256)  # training is not cropped by default
    assert torch.equal(train.image[0], train.image[1]) and torch.equal(train.image[1], train.image[2])
    assert train.image[:, :, 0].max() == 0 and train.image[:, :, -1].min() == 1  # the 8 px borders
    assert test.image.shape == (3, 256, 240) and test.gt_mask.shape == (256, 240)
    assert test.image[:, :, 0].max() > 0 and test.image[:, :, -1].min() < 1  # borders gone
    # mask cropped with the image: the 50..69 column square moved left by 8
    defect = next(i for i in dm.test_data if i.gt_label == 1)
    cols = torch.nonzero(defect.gt_mask.sum(0)).flatten()
    assert cols.min() == 42 and cols.max() == 61
    assert setup(tiny_root, modality="ASM", border_crop=0).test_data[0].image.shape == (3, 256, 256)
    assert setup(tiny_root, modality="ASM", border_crop_train=True).train_data[0].image.shape == (3, 256, 240)
    assert setup(tiny_root, modality="LSM-1").test_data[0].image.shape == (3, 256, 256)  # LSM: no border


def test_center_crop_and_image_size(tiny_root):
    dm = setup(tiny_root, modality="ASM", center_crop=224)
    assert dm.train_data[0].image.shape == (3, 224, 224) and dm.test_data[0].gt_mask.shape == (224, 224)
    dm = setup(tiny_root, modality="LSM-1", center_crop=224, image_size=112)
    assert dm.test_data[0].image.shape == (3, 112, 112) and dm.val_data[0].gt_mask.shape == (112, 112)


def test_other_sized_images_are_resized_with_their_masks(tmp_path):
    root = write_tiny_tree(tmp_path, modalities=("LSM-1",), defects={"dot": 1})
    image = root / "LSM-1/test/dot/000.png"
    mask = root / "LSM-1/ground_truth/dot/000_mask.png"
    Image.open(image).resize((512, 512)).save(image)
    Image.open(mask).resize((512, 512), Image.NEAREST).save(mask)
    item = next(i for i in setup(root).test_data if i.gt_label == 1)
    assert item.image.shape == (3, 256, 256)
    rows = torch.nonzero(item.gt_mask.sum(1)).flatten()
    assert (rows.min(), rows.max()) == (100, 119)


def test_model_resize_composes_after_crops(tiny_root):
    """What the model receives: geometry (crop) first, then augmentations, then the model's resize."""
    dm = ISPAD(tiny_root, modality="ASM", num_workers=0, test_augmentations=v2.RandomHorizontalFlip(p=1.0))
    dm.setup()
    dm._update_subset_augmentations(dm.test_data, dm.test_augmentations, v2.Compose([v2.Resize((64, 64))]))
    item = dm.test_data[0]
    reference = dm.test_data.samples.image_path[0]
    raw = torch.from_numpy(np.asarray(Image.open(reference), dtype=np.float32) / 255)
    expected = v2.functional.resize(raw[None, :, 8:-8].flip(-1), [64, 64])[0]
    assert item.image.shape == (3, 64, 64) and item.gt_mask.shape == (64, 64)
    assert torch.allclose(item.image[0], expected, atol=1e-5)
    batch = next(iter(dm.test_dataloader()))
    assert batch.image.shape == (6, 3, 64, 64)


def test_from_train_validation_is_seeded_and_evaluated_like_test(tiny_root):
    dm = setup(tiny_root, modality="ASM", train_split="full", val_split_mode="from_train", val_split_ratio=0.5, seed=3)
    val = dm.val_data.samples
    assert len(val) == 3 and len(dm.train_data) == 3 and (val.label_index == 0).all()
    assert set(val.image_path).isdisjoint(dm.train_data.samples.image_path)
    assert dm.val_data[0].image.shape == (3, 256, 240)  # border-cropped like test
    again = setup(tiny_root, modality="ASM", train_split="full", val_split_mode="from_train",
                  val_split_ratio=0.5, seed=3)
    assert again.val_data.samples.image_path.tolist() == val.image_path.tolist()
    items = [dm.test_data[i].image for i in range(2)], [again.test_data[i].image for i in range(2)]
    assert all(torch.equal(a, b) for a, b in zip(*items))


def test_reduced_fallback_and_errors(tmp_path):
    root = write_tiny_tree(tmp_path, modalities=("LSM-1",))
    shutil.rmtree(root / "LSM-1/train_reduced")
    assert len(setup(root).train_data) == 6  # small train/ used instead, with a warning
    for i in range(6, 501):
        shutil.copy(root / "LSM-1/train/good/000.png", root / f"LSM-1/train/good/{i:03d}.png")
    with pytest.raises(FileNotFoundError, match=r"train_reduced/good missing and .* holds 501 > 500"):
        setup(root)
    (root / "LSM-1/ground_truth/pinhole/001_mask.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"no mask for defect image .*pinhole/001.png: expected .*001_mask.png"):
        setup(root, train_split="full")
    with pytest.raises(ValueError, match="val_split_mode must be one of"):
        ISPAD(root, val_split_mode="synthetic")
    with pytest.raises(ValueError, match="unknown modality 'LSM-3'"):
        ISPAD(root, modality="LSM-3")
    with pytest.raises(FileNotFoundError, match="ispad-bench data synth"):
        ISPAD(root, modality="ASM").prepare_data()


@pytest.mark.parametrize("modality", ["LSM-1", "LSM-2", "ASM"])
def test_generated_dataset(synth_root, modality):
    """On the generator's output: counts match the folders, labels/masks/groups agree with the paths."""
    dm = setup(synth_root, modality=modality, eval_batch_size=64)
    base = synth_root / modality
    assert len(dm.train_data) == len(list((base / "train_reduced/good").glob("*.png")))
    test = dm.test_data.samples
    assert len(test) == len(list((base / "test").glob("*/*.png")))
    for _, row in test.iterrows():
        folder = Path(row.image_path).parent.name
        assert row.label_index == (folder != "good") and row.defect_group == defect_group(folder)
    batch = next(iter(dm.test_dataloader()))
    width = 256 - 2 * Modality.parse(modality).border_crop_px
    assert batch.image.shape == (len(test), 3, 256, width) and batch.gt_mask.shape == (len(test), 256, width)
    per_image = batch.gt_mask.flatten(1).sum(1)
    assert ((per_image > 0) == batch.gt_label.bool()).all()  # every defect has a non-empty mask, good ones none


def test_anomalib_train_from_yaml(tmp_path, synth_root):
    """``anomalib train --config`` with ``data: {class_path: ispad_bench.data.ISPAD}`` runs end to end."""
    config = tmp_path / "padim.yaml"
    config.write_text(textwrap.dedent(f"""\
        seed_everything: 0
        trainer:
          max_epochs: 1
          accelerator: cpu
          devices: 1
          logger: false
          enable_progress_bar: false
        default_root_dir: {tmp_path / "results"}
        model:
          class_path: anomalib.models.Padim
          init_args:
            backbone: resnet18
            pre_trained: false
            layers: [layer2]  # 32x32 positions x 10 features: cheap Gaussian fit and Mahalanobis maps
            n_features: 10
            visualizer: false
        data:
          class_path: ispad_bench.data.ISPAD
          init_args:
            root: {synth_root}
            modality: ASM
            train_batch_size: 4
            eval_batch_size: 4
            num_workers: 0
        """))
    anomalib = Path(sys.executable).parent / "anomalib"
    proc = subprocess.run([str(anomalib), "train", "--config", str(config)], capture_output=True, text=True,
                          timeout=420, cwd=tmp_path)  # generous: 2 shared cores
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = list((tmp_path / "results" / "Padim" / "ISPAD" / "ASM").glob("v*"))
    assert runs, f"no ISPAD/ASM output folder under {tmp_path / 'results'}"
    assert "image_AUROC" in proc.stdout + proc.stderr
