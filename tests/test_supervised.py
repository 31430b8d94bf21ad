"""ISPADSupervised: real-defect selection, stream order, injection, augmentation, bad input."""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from ispad_bench.data.augment import AFFINE_P, augment, gaussian_blur, geometric, sample_params
from ispad_bench.data.modality import Modality
from ispad_bench.data.supervised import FRACTIONS, ISPADSupervised, parse_fraction, select_real
from ispad_bench.data.stream import StreamSampler, finish_batch

N_STREAM = 640


def _write_stream(path: Path, n: int = N_STREAM, seed: int = 0, *, drop=None, labels_len=None, image_shape=(256, 256)):
    """A small stream in the documented layout; the value of every patch encodes its index."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        images = np.zeros((n, *image_shape), np.uint8)
        images[:] = (np.arange(n) % 251).reshape(n, *([1] * len(image_shape)))
        images[:, :4, :4] = rng.integers(0, 255, (n, 4, 4))
        if drop != "images":
            f.create_dataset("images", data=images, chunks=(32, *image_shape))
        if drop != "syn_stream":
            f.create_dataset("syn_stream", data=(np.arange(labels_len or n) % 2).astype(np.uint8))
        if drop != "ground_truth":
            f.create_dataset("ground_truth", data=np.zeros((n, 256, 256), np.uint8), chunks=(32, 256, 256))


def _write_real(mod_dir: Path, counts: dict[str, int]):
    rng = np.random.default_rng(1)
    for group, n in counts.items():
        folder = mod_dir / "supervised" / "real_defects" / group
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)).save(folder / f"{group[0]}{i:03d}.png")


@pytest.fixture
def stream_root(tmp_path):
    mod = tmp_path / "LSM-1"
    _write_stream(mod / "supervised" / "stream.h5")
    _write_real(mod, {"area": 17, "points": 9})
    # a minimal test split so setup() can build the test set
    for sub in ("test/good", "test/dot", "ground_truth/dot"):
        (mod / sub).mkdir(parents=True)
    for i in range(2):
        Image.fromarray(np.full((256, 256, 3), 60, np.uint8)).save(mod / f"test/good/{i}.png")
        Image.fromarray(np.full((256, 256, 3), 90, np.uint8)).save(mod / f"test/dot/{i}.png")
        Image.fromarray(np.zeros((256, 256), np.uint8)).save(mod / f"ground_truth/dot/{i}_mask.png")
    return tmp_path


def _dm(root, **kw) -> ISPADSupervised:
    args = dict(root=root, modality="LSM-1", train_batch_size=16, num_workers=0, shuffle_buffer=128, seed=3)
    dm = ISPADSupervised(**(args | kw))
    dm.setup()
    return dm


# -- real-defect selection ---------------------------------------------------------------------
def test_fractions_are_nested_prefixes_of_one_shuffle():
    pools = {"area": [f"a{i:03d}" for i in range(37)], "points": [f"p{i:03d}" for i in range(109)]}
    for group in ("points", "area", "mixed"):
        previous: list = []
        for frac in FRACTIONS[1:]:
            chosen = select_real(pools, group, frac, seed=5)
            assert len(set(chosen)) == len(chosen)
            assert chosen[: len(previous)] == previous, (group, frac)  # a prefix, not only a subset
            assert group == "mixed" or {g for g, _ in chosen} == {group}
            previous = chosen
        assert len(previous) == (146 if group == "mixed" else len(pools[group]))
    # the single-group selections follow the same shuffle as mixed
    mixed = select_real(pools, "mixed", 1, 5)
    assert select_real(pools, "area", "1/4", 5) == [gi for gi in mixed if gi[0] == "area"][:36]
    assert select_real(pools, "points", "1/2", 5) != select_real(pools, "points", "1/2", 6)
    # the listing order of the files does not matter
    shuffled = {g: list(reversed(v)) for g, v in pools.items()}
    ids = lambda p, c: [p[g][i] for g, i in c]  # noqa: E731
    assert ids(pools, select_real(pools, "mixed", "1/8", 5)) == ids(shuffled, select_real(shuffled, "mixed", "1/8", 5))


def test_defect_counts_reproduce_tables_2_and_3():
    """#Real Defects of Tables 2-3 from the Table 7 pool sizes (reference/paper_supervised.csv)."""
    import csv
    from importlib import resources

    text = resources.files("ispad_bench.reference").joinpath("paper_supervised.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    for name in ("LSM-1", "ASM"):
        s = Modality.parse(name).splits
        pools = {"area": [f"a{i}" for i in range(s.sup_train_real_area)],
                 "points": [f"p{i}" for i in range(s.sup_train_real_points)]}
        paper = [(r["defect_group"], int(r["n_real_defects"])) for r in rows if r["modality"] == name]
        ours = [("none", 0)] + [(g, len(select_real(pools, g, "1/16", 0))) for g in ("points", "area")]
        ours += [("mixed", len(select_real(pools, "mixed", f, 0))) for f in FRACTIONS[1:]]
        assert ours == paper, name


@pytest.mark.parametrize("bad", [0.3, "1/3", 2, -0.5, "abc"])
def test_fraction_outside_the_set_is_rejected(bad):
    with pytest.raises(ValueError, match="real_fraction"):
        parse_fraction(bad)
    with pytest.raises(ValueError, match="real_fraction"):
        ISPADSupervised(root=".", real_fraction=bad)


def test_fraction_spellings():
    assert parse_fraction("1/16") == parse_fraction(0.0625) == Fraction(1, 16)
    assert parse_fraction(1) == 1 and parse_fraction("0") == 0


# -- stream ------------------------------------------------------------------------------------
def _epoch(dm, epoch=0, limit=None):
    sampler = StreamSampler(dm.train_data, dm.steps_per_epoch, 1)
    sampler.set_epoch(epoch)
    out = []
    for k, key in enumerate(sampler):
        if limit is not None and k >= limit:
            break
        out.append(finish_batch(dm.train_data[key]))
    return out


def test_stream_covers_every_patch_once_per_pass_and_is_deterministic(stream_root):
    dm = _dm(stream_root, real_fraction=0)
    batches = _epoch(dm)
    seen = [int(s.split(":")[1]) for b in batches for s in b["source"]]
    assert len(seen) == len(set(seen)) == N_STREAM  # 640 = 5 windows of 128, no remainder
    assert seen != sorted(seen)
    again = _epoch(_dm(stream_root, real_fraction=0))
    assert all(torch.equal(a["image"], b["image"]) and a["source"] == b["source"] for a, b in zip(batches, again))
    other_epoch = [s for b in _epoch(dm, epoch=1) for s in b["source"]]
    assert sorted(other_epoch) == sorted(f"stream:{i}" for i in seen) and other_epoch != [f"stream:{i}" for i in seen]
    other_seed = [s for b in _epoch(_dm(stream_root, real_fraction=0, seed=4)) for s in b["source"]]
    assert other_seed != [f"stream:{i}" for i in seen]
    # labels follow the file (label = index parity); no patch injected at fraction 0
    for b in batches:
        idx = torch.tensor([int(s.split(":")[1]) for s in b["source"]])
        assert torch.equal(b["gt_label"], (idx % 2).bool()) and not b["injected"].any()


def test_worker_loader_delivers_the_same_batches(stream_root):
    dm = _dm(stream_root, real_fraction=1, num_workers=2, steps_per_epoch=12)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(1)
    got = {tuple(b["source"]): b["image"] for b in loader}
    ref = _dm(stream_root, real_fraction=1, num_workers=0, steps_per_epoch=12)
    expected = _epoch(ref, epoch=1)
    assert len(got) == len(expected) == 12
    for b in expected:  # same set of batches; workers only change the order of arrival
        assert torch.equal(got[tuple(b["source"])], b["image"])


def test_steps_per_epoch_continues_the_stream(stream_root):
    dm = _dm(stream_root, real_fraction=0, steps_per_epoch=7)
    first = [s for e in range(6) for b in _epoch(dm, e) for s in b["source"]]
    assert len(first) == 42 * 16 and len(set(first[: N_STREAM])) == N_STREAM  # one full pass first


def test_injection_rate_matches_p(stream_root):
    p = 0.25
    dm = _dm(stream_root, real_fraction=1, real_group="mixed", injection_p=p, steps_per_epoch=60)
    inj = torch.cat([b["injected"] for e in range(2) for b in _epoch(dm, e)])
    n = len(inj)
    k = int(inj.sum())
    assert abs(k - n * p) < 4.5 * math.sqrt(n * p * (1 - p)), (k, n)  # binomial, ~1e-5 false alarm
    batches = _epoch(dm, 0)
    for b in batches:
        real = [s for s in b["source"] if s.startswith("real:")]
        assert len(real) == int(b["injected"].sum())
        assert b["gt_label"][b["injected"]].all()
        assert set(s[5:] for s in real) <= set(dm.real_defect_ids)
    assert len(dm.real_defect_ids) == 26 and all(i.split("/")[0] in ("area", "points") for i in dm.real_defect_ids)


def test_real_defect_record_is_written(stream_root, tmp_path):
    dm = ISPADSupervised(root=stream_root, real_fraction="1/4", real_group="area", num_workers=0)

    class _Trainer:
        default_root_dir = str(tmp_path / "run")

    dm.trainer = _Trainer()
    dm.setup()
    import json

    record = json.loads((tmp_path / "run" / "real_defects.json").read_text())
    # floor(1/4 * (17 + 9)) = 6 area defects (the mixed count, from one group)
    assert record["ids"] == dm.real_defect_ids and record["count"] == 6 and record["real_group"] == "area"
    assert all(i.startswith("area/") for i in record["ids"])
    assert dm.hparams["real_defect_ids"] == record["ids"]


# -- augmentation ------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["LSM-1", "LSM-2", "ASM"])
def test_sampled_parameters_respect_table8(name):
    aug = Modality.parse(name).augmentation
    p = sample_params(20000, aug, torch.Generator().manual_seed(0))
    affine = p.affine
    assert abs(affine.float().mean() - AFFINE_P) < 0.02
    assert p.angle[affine].abs().max() <= aug.rotation_deg and p.angle[affine].abs().max() > 0.95 * aug.rotation_deg
    assert p.shear[affine].abs().max() <= aug.shear_deg
    lo, hi = aug.scale
    assert lo <= p.scale[affine].min() and p.scale[affine].max() <= hi
    assert (p.angle[~affine] == 0).all() and (p.scale[~affine] == 1).all()
    assert abs(p.hflip.float().mean() - 0.5) < 0.02 and abs(p.vflip.float().mean() - 0.5) < 0.02
    if aug.brightness:
        assert aug.brightness[0] <= p.brightness.min() and p.brightness.max() <= aug.brightness[1]
        assert aug.contrast[0] <= p.contrast.min() and p.contrast.max() <= aug.contrast[1]
    else:
        assert p.brightness is None and p.contrast is None


def test_geometry_crops_the_centre_and_cpu_matches_grid_sample():
    x = torch.rand(6, 1, 512, 512)
    p = sample_params(6, Modality.LSM2.augmentation, torch.Generator().manual_seed(1), affine_p=1.0)
    cpu = geometric(x, p, 256)
    ref = geometric(x.double(), p, 256).float()  # the grid_sample path
    assert cpu.shape == (6, 1, 256, 256) and (cpu - ref).abs().max() < 1e-3
    none = sample_params(2, Modality.ASM.augmentation, torch.Generator().manual_seed(0), affine_p=0.0)
    none.hflip[:] = False
    none.vflip[:] = False
    assert torch.equal(geometric(x[:2], none, 256), x[:2, :, 128:384, 128:384])
    none.hflip[0] = True
    assert torch.equal(geometric(x[:1], none, 256)[0], x[0, :, 128:384, 128:384].flip(-1))
    # brightness/contrast only move values inside [0, 1]
    y = augment(x, p, 256)
    assert y.min() >= 0 and y.max() <= 1


def test_preprocessing_matches_torchvision_and_test_patches_are_gray():
    from torchvision.transforms.v2 import functional as TF

    from ispad_bench.data.supervised import GrayPreprocess

    x = torch.rand(3, 1, 64, 64)
    assert (gaussian_blur(x) - TF.gaussian_blur(x, [3, 3], [1.0, 1.0])).abs().max() < 1e-6
    rgb8 = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    rgb = torch.from_numpy(rgb8).permute(2, 0, 1).float() / 255
    out = GrayPreprocess(1.5)(rgb)
    # RGB test patches become the 8-bit gray of PIL's convert("L") (what the stream holds), then §4.2
    pil = torch.from_numpy(np.asarray(Image.fromarray(rgb8).convert("L"))).float() / 255
    gray = (pil * 1.5).clamp(0, 1)
    assert out.shape == (3, 64, 64) and torch.equal(out[0], out[2])
    assert (out[0] - TF.gaussian_blur(gray[None, None], [3, 3], [1.0, 1.0])[0, 0]).abs().max() < 1e-5


def test_stream_and_test_patches_get_the_same_preprocessing(stream_root):
    dm = _dm(stream_root, real_fraction=0)
    b = _epoch(dm, limit=1)[0]
    k = int(b["source"][0].split(":")[1])
    with h5py.File(stream_root / "LSM-1/supervised/stream.h5") as f:
        raw = torch.from_numpy(f["images"][k]).float()[None, None] / 255
    from ispad_bench.data.supervised import GrayPreprocess

    expected = GrayPreprocess(Modality.LSM1.brightness_factor)(raw[0].expand(3, -1, -1))[0]
    assert (b["image"][0, 0] - expected).abs().max() < 1e-5


def test_device_augmentation_gives_the_same_batch(stream_root):
    worker = _epoch(_dm(stream_root, real_fraction=1, injection_p=0.5, stream_augmentation=True), limit=2)
    raw_dm = _dm(stream_root, real_fraction=1, injection_p=0.5, stream_augmentation=True, augment_on="device")
    sampler = StreamSampler(raw_dm.train_data, None, 1)
    keys = list(sampler)[:2]
    for key, ref in zip(keys, worker):
        raw = raw_dm.train_data[key]
        raw["stream"] = raw["stream"].double()  # forces the tensor (grid_sample) path, as on a GPU
        raw["real"] = raw["real"].double()
        done = finish_batch(raw)
        assert done["source"] == ref["source"]
        assert (done["image"].float() - ref["image"]).abs().mean() < 2e-3


def test_image_batch_for_anomalib(stream_root):
    dm = _dm(stream_root, real_fraction=1)
    loader = dm.train_dataloader()
    batch = dm.on_after_batch_transfer(next(iter(loader)), 0)
    assert batch.image.shape == (16, 3, 256, 256) and batch.gt_label.dtype == torch.bool
    assert torch.equal(batch.image[:, 0], batch.image[:, 2])
    assert batch.gt_mask is None  # read_masks defaults to False
    masked = _dm(stream_root, real_fraction=1, read_masks=True)
    b = masked.on_after_batch_transfer(next(iter(masked.train_dataloader())), 0)
    assert b.gt_mask.shape == (16, 256, 256)


def test_held_out_validation_is_never_trained_on(stream_root):
    dm = _dm(stream_root, real_fraction=0, val_split_mode="from_stream", val_split_ratio=0.1)
    val = {s for k in range(len(dm.val_data)) for s in dm.val_data[k]["source"]}
    train = {s for b in _epoch(dm) for s in b["source"]}
    assert val and not (val & train)
    assert len(val) + len(train) <= N_STREAM


# -- bad input ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"drop": "syn_stream"}, "syn_stream"),
        ({"drop": "ground_truth"}, "ground_truth"),
        ({"labels_len": N_STREAM - 5}, "lengths differ"),
        ({"image_shape": (128, 128)}, "shape"),
    ],
)
def test_bad_stream_fails_before_training(stream_root, kw, match):
    from ispad_bench.data.hdf5 import StreamFormatError

    path = stream_root / "LSM-1" / "supervised" / "stream.h5"
    path.unlink()
    _write_stream(path, **kw)
    with pytest.raises((StreamFormatError, FileNotFoundError), match=match):
        ISPADSupervised(root=stream_root, num_workers=0).setup()


def test_empty_real_pool_fails_before_training(stream_root):
    import shutil

    shutil.rmtree(stream_root / "LSM-1" / "supervised" / "real_defects" / "points")
    with pytest.raises(ValueError, match="points' pool is empty"):
        ISPADSupervised(root=stream_root, real_fraction="1/2", real_group="points", num_workers=0).setup()
    _dm(stream_root, real_fraction=0, real_group="points")  # fraction 0 needs no pool


def test_bad_arguments():
    for kw in ({"real_group": "lines"}, {"injection_p": 1.5}, {"val_split_mode": "from_test"},
               {"augment_on": "gpu"}, {"steps_per_epoch": 0}):
        with pytest.raises(ValueError):
            ISPADSupervised(root=".", **kw)


# -- model -------------------------------------------------------------------------------------
def test_cam_map_and_score_come_from_the_same_logits():
    from ispad_bench.models.mixed_supervised import MixedSupervisedModel

    torch.manual_seed(0)
    model = MixedSupervisedModel(pre_trained=False).eval()
    x = torch.rand(2, 3, 256, 256)
    with torch.no_grad():
        logits, local = model.logits_and_cam(x)
        plain = model.net(x)[:, 0]  # torchvision's own forward: avgpool -> fc
        out = model(x)
    assert local.shape == (2, 8, 8)  # stride-32 layer4 grid
    assert (logits - plain).abs().max() < 1e-4  # image logit = mean of the class-activation logits
    assert out.pred_score.shape == (2,) and torch.allclose(out.pred_score, torch.sigmoid(plain), atol=1e-5)
    assert out.anomaly_map.shape == (2, 256, 256) and out.anomaly_map.min() > 0 and out.anomaly_map.max() < 1
    model.train()
    assert model(x).shape == (2,)


def test_training_setup_follows_the_paper():
    from lightning.pytorch.callbacks import EarlyStopping

    from ispad_bench.metrics import ISPADEvaluator, RawScorePostProcessor
    from ispad_bench.models import MixedSupervised
    from ispad_bench.models.mixed_supervised.lightning_model import RestoreBestWeights

    m = MixedSupervised(pre_trained=False)
    cfg = m.configure_optimizers()
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.SGD) and 2.5e-5 <= group["lr"] <= 5e-5
    assert group["weight_decay"] == 1e-2 and group["momentum"] == 0.9
    assert isinstance(sched["scheduler"], torch.optim.lr_scheduler.CosineAnnealingWarmRestarts)
    assert (sched["scheduler"].T_0, sched["scheduler"].T_mult, sched["interval"]) == (7813, 2, "step")
    stops = [c for c in m.configure_callbacks() if isinstance(c, EarlyStopping)]
    assert len(stops) == 1 and stops[0].patience == 20 and stops[0].monitor == "val_loss" and stops[0].mode == "min"
    assert any(isinstance(c, RestoreBestWeights) for c in m.configure_callbacks())
    assert isinstance(m.evaluator, ISPADEvaluator) and isinstance(m.post_processor, RawScorePostProcessor)
    if not torch.cuda.is_available():
        assert m.trainer_arguments["precision"] == "32-true"
    assert MixedSupervised(pre_trained=False, precision="16-mixed").trainer_arguments["precision"] == "16-mixed"


def test_lowest_validation_loss_weights_are_restored():
    from types import SimpleNamespace

    from ispad_bench.models.mixed_supervised.lightning_model import RestoreBestWeights

    module = SimpleNamespace(model=torch.nn.Linear(2, 1))
    trainer = SimpleNamespace(sanity_checking=False, callback_metrics={}, current_epoch=0)
    cb = RestoreBestWeights()
    snapshots = []
    for epoch, loss in enumerate([0.5, 0.2, 0.4, 0.3]):
        with torch.no_grad():
            module.model.weight.fill_(epoch)
        trainer.current_epoch, trainer.callback_metrics["val_loss"] = epoch, torch.tensor(loss)
        cb.on_validation_end(trainer, module)
        snapshots.append(module.model.weight.clone())
    cb.on_fit_end(trainer, module)
    assert torch.equal(module.model.weight, snapshots[1])
    assert module.best_val["epoch"] == 1 and module.best_val["val_loss"] == pytest.approx(0.2)


def test_imagenet_weights_offline(tmp_path, monkeypatch):
    """Absent weights: one error naming the file, its place and `pre_trained: false`; present: loaded."""
    from torchvision.models import resnet18

    from ispad_bench.models.mixed_supervised import MixedSupervisedModel
    from ispad_bench.models.weights import MissingWeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    monkeypatch.setenv("ISPAD_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as err:
        MixedSupervisedModel(pre_trained=True)
    assert str(expected) in str(err.value) and "pre_trained: false" in str(err.value)
    # downloads allowed but no network (conftest blocks it): the same message, plus the failure
    monkeypatch.delenv("ISPAD_OFFLINE")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(MissingWeightsError, match="download failed") as err:
        MixedSupervisedModel(pre_trained=True)
    assert str(expected) in str(err.value)
    # a checkpoint in the torchvision cache is what gets loaded
    expected.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)
    reference = resnet18().state_dict()
    torch.save(reference, expected)
    model = MixedSupervisedModel(pre_trained=True)
    assert torch.equal(model.net.conv1.weight, reference["conv1.weight"])
    assert torch.equal(model.net.layer4[1].bn2.running_var, reference["layer4.1.bn2.running_var"])
    assert model.net.fc.out_features == 1


# -- anomalib train --config -------------------------------------------------------------------
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "supervised"


def _train_cli(config: Path, root: Path, out: Path, *extra: str):
    """What ``anomalib train --config`` runs, in-process, with tiny limits (64 px model input: plumbing only)."""
    from anomalib.cli import AnomalibCLI

    return AnomalibCLI(args=[
        "train", "--config", str(config), "--data.init_args.root", str(root), "--default_root_dir", str(out),
        "--data.init_args.num_workers", "0", "--data.init_args.train_batch_size", "4",
        "--data.init_args.eval_batch_size", "20", "--data.init_args.steps_per_epoch", "1",
        "--trainer.max_epochs", "2", "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false", "--model.init_args.pre_trained", "false",
        "--model.init_args.visualizer", "false", "--model.init_args.image_size", "64", *extra,
    ])


@pytest.mark.parametrize("slug", ["lsm1", "lsm2", "asm"])
def test_anomalib_train_config_on_generated_set(synth_root, tmp_path, slug):
    import json

    cli = _train_cli(CONFIGS / f"{slug}.yaml", synth_root, tmp_path,
                     "--data.init_args.real_fraction", "1/2", "--data.init_args.real_group", "area")
    dm, metrics = cli.datamodule, cli.engine.trainer.callback_metrics
    assert dm.modality.slug == slug and dm.real_fraction == Fraction(1, 2)
    run = next(tmp_path.glob("MixedSupervised/ISPADSupervised/*/v0"))
    record = json.loads((run / "real_defects.json").read_text())
    assert record["ids"] == dm.real_defect_ids and record["real_group"] == "area" and record["count"] >= 1
    assert (run / "weights" / "lightning" / "model.ckpt").is_file()  # the lowest-val_loss checkpoint
    n = len(dm.test_data)
    assert float(metrics["TN"] + metrics["FP"] + metrics["TP"] + metrics["FN"]) == n
    assert 0 <= float(metrics["image_AUROC"]) <= 1 and "pixel_AUROC" in metrics  # CAM maps feed pixel metrics


def test_cli_stops_before_training_without_weights(synth_root, tmp_path, monkeypatch):
    from ispad_bench.models.weights import MissingWeightsError

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ISPAD_OFFLINE", "1")
    with pytest.raises(MissingWeightsError, match="resnet18-f37072fd.pth"):
        _train_cli(CONFIGS / "lsm1.yaml", synth_root, tmp_path, "--model.init_args.pre_trained", "true")
    assert not list(tmp_path.glob("MixedSupervised/**/*.ckpt"))
