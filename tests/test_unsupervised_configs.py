"""The 9 paper configs (GLASS, EfficientAD-M, U-Flow × LSM-1, LSM-2, ASM) through ``anomalib train``, offline."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import torch
import yaml
from torchvision.io import write_png

from ispad_bench.metrics import ISPADScalar

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
METHODS = ("glass", "efficient_ad", "uflow")
MODALITIES = {"lsm1": "LSM-1", "lsm2": "LSM-2", "asm": "ASM"}
REPORTED = ("image_AUROC", "pixel_AUROC", "MCC", "recall", "precision", "FPR", "PRO", "AUPRO", "threshold")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """Empty anomalib/HF caches: nothing can come from this machine's caches either."""
    import huggingface_hub.constants as hf_constants

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


@pytest.fixture(scope="module")
def imagenette(tmp_path_factory):
    """A tiny local stand-in for Imagenette (ImageFolder layout, generated images)."""
    root = tmp_path_factory.mktemp("imagenette")
    g = torch.Generator().manual_seed(0)
    for cls in ("n01", "n02"):
        (root / cls).mkdir()
        for i in range(3):
            write_png(torch.randint(0, 256, (3, 96, 96), generator=g, dtype=torch.uint8), str(root / cls / f"{i}.png"))
    return root


@pytest.fixture(scope="module")
def synth_subset(synth_root, tmp_path_factory):
    """The generated set cut to 2 train, 2 good and 2 defective (area + points) test patches per modality.

    EfficientAD-M costs ~1.5 s per 256 px image on one CPU core, and passes the test set three times
    (map quantiles, validation, test): on the full 20-patch set one run would take minutes.
    """
    root = tmp_path_factory.mktemp("ispad-subset")
    for mod in MODALITIES.values():
        src, dst = synth_root / mod, root / mod
        keep = {"train_reduced/good": 2, "test/good": 2, "test/misalignment": 1, "test/pinhole": 1}
        for folder, count in keep.items():
            (dst / folder).mkdir(parents=True)
            for path in sorted((src / folder).glob("*.png"))[:count]:
                (dst / folder / path.name).symlink_to(path)
                defect = folder.split("/")[1]
                if folder.startswith("test/") and defect != "good":
                    mask = f"ground_truth/{defect}/{path.stem}_mask.png"
                    (dst / mask).parent.mkdir(parents=True, exist_ok=True)
                    (dst / mask).symlink_to(src / mask)
    return root


def _config(method: str, slug: str) -> dict:
    return yaml.safe_load((CONFIGS / method / f"{slug}.yaml").read_text())


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("slug", list(MODALITIES))
def test_config_encodes_the_paper_settings(method, slug):
    cfg = _config(method, slug)
    trainer, model, data = cfg["trainer"], cfg["model"], cfg["data"]
    assert data["class_path"] == "ispad_bench.data.ISPAD"
    assert data["init_args"]["modality"] == MODALITIES[slug] and data["init_args"]["train_split"] == "reduced"
    assert trainer["max_epochs"] == (160 if method == "glass" else 300)
    args = model["init_args"]
    assert args["post_processor"]["class_path"] == "ispad_bench.metrics.RawScorePostProcessor"
    evaluator = args["evaluator"]
    assert evaluator["class_path"] == "ispad_bench.metrics.ISPADEvaluator"
    names = [ISPADScalar(**v["init_args"]).name for v in evaluator["init_args"]["val_metrics"]]
    assert all(v["class_path"] == "ispad_bench.metrics.ISPADScalar" for v in evaluator["init_args"]["val_metrics"])
    if method == "glass":  # official selection (§4.3.5: official implementation): best image + pixel AUROC
        assert "callbacks" not in trainer and args["selection"] == "official" and args["eval_epochs"] == 1
        assert names == ["image_AUROC", "pixel_AUROC"] and args["patience"] == 30
    else:  # the engine rule (§4.3.5)
        stop = [c for c in trainer["callbacks"] if c["class_path"].endswith("EarlyStopping")][0]["init_args"]
        assert (stop["monitor"], stop["mode"], stop["patience"]) == ("pixel_AUROC", "max", 30)
        assert names == [stop["monitor"]]  # the exact pixel AUROC that early stopping monitors
    if method == "efficient_ad":  # Anomalib v1.x efficient_ad.yaml
        assert trainer["max_steps"] == 70000
    crop = data["init_args"].get("center_crop")
    if method == "glass":
        assert args["gas"] == "manifold" and data["init_args"]["train_batch_size"] == 8
        assert 1.25e-5 <= args["lr"] <= 5e-5 and args["backbone"] == "wide_resnet50_2.tv_in1k"
        assert (crop, args["image_size"]) == ((224, 224) if slug == "asm" else (None, 256))
    elif method == "efficient_ad":
        assert args["model_size"] == "medium" and args["image_size"] == 256 and crop is None  # kept 256 (§4.3.5)
        assert data["init_args"]["train_batch_size"] == 1
    else:
        assert args["image_size"] == 448 and args["backbone"] == "mcait"
        assert crop == (224 if slug == "asm" else None)


def _overrides(method: str, root: Path, imagenette: Path) -> list[str]:
    common = ["--data.init_args.root", str(root), "--data.init_args.num_workers", "0", "--trainer.max_steps", "2",
              "--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false"]
    if method == "glass":  # tiny input; frozen random WRN50; 2 images per batch
        return [*common, "--model.init_args.image_size", "32", "--model.init_args.pre_trained", "false",
                "--data.init_args.train_batch_size", "2"]
    if method == "efficient_ad":  # needs 256 px (autoencoder), ~8 s per step: 1 step; random teacher, local Imagenette
        return [*common, "--trainer.max_steps", "1", "--model.init_args.pre_trained", "false",
                "--model.init_args.imagenet_dir", str(imagenette)]
    # U-Flow: CaiT-M48 at 448 is too heavy here, a random ResNet-18 at 64 px runs the same flow code
    return [*common, "--model.init_args.backbone", "resnet18", "--model.init_args.image_size", "64",
            "--model.init_args.pre_trained", "false", "--data.init_args.train_batch_size", "4"]


def _train(config: Path, overrides: list[str], workdir: Path) -> dict[str, float]:
    from anomalib.cli import AnomalibCLI

    cli = AnomalibCLI(args=["train", "--config", str(config), *overrides, "--default_root_dir", str(workdir)])
    return {k: float(v) for k, v in cli.engine.trainer.callback_metrics.items()}


# EfficientAD's 256 px PDN costs ~33 s per config on 2 cores: under -m slow (the smoke sweep trains its
# three configs in the default run).
CASES = [pytest.param(m, s, id=f"{m}-{s}", marks=[pytest.mark.slow] if m == "efficient_ad" else [])
         for m in METHODS for s in MODALITIES]


@pytest.mark.parametrize(("method", "slug"), CASES)
def test_config_trains_and_reports_project_metrics(
    method, slug, synth_root, synth_subset, imagenette, offline_cache, monkeypatch
):
    monkeypatch.chdir(offline_cache)
    if method == "efficient_ad":  # large 256 px convolutions: worth a second thread (the fixture restores it)
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    root = synth_subset if method == "efficient_ad" else synth_root
    metrics = _train(CONFIGS / method / f"{slug}.yaml", _overrides(method, root, imagenette), offline_cache)
    for key in REPORTED:
        assert key in metrics, (key, sorted(metrics))
        assert math.isfinite(metrics[key]), (key, metrics[key])
    for key in ("image_AUROC", "pixel_AUROC", "MCC", "recall", "precision", "FPR", "PRO", "AUPRO"):
        assert -1 <= metrics[key] <= 1
    assert metrics["TP"] + metrics["FN"] == metrics["n_area"] + metrics["n_points"] > 0  # every defect counted
    assert metrics["TN"] + metrics["FP"] == metrics["n_good"] > 0


def test_efficient_ad_config_fails_before_training_without_downloads(synth_root, offline_cache, monkeypatch):
    """Without teacher and Imagenette: ONE clear error; a download attempt would hit the network guard instead."""
    from ispad_bench.models.weights import MissingWeightsError

    monkeypatch.chdir(offline_cache)
    args = ["--data.init_args.root", str(synth_root), "--data.init_args.num_workers", "0",
            "--trainer.accelerator", "cpu", "--trainer.logger", "false"]
    with pytest.raises(MissingWeightsError) as err:
        _train(CONFIGS / "efficient_ad" / "lsm1.yaml", args, offline_cache)
    text = str(err.value)
    assert "pretrained_teacher_medium.pth" in text and "pre_trained: false" in text
    assert "imagenette" in text and "imagenet_dir" in text and "download: true" in text


def test_glass_config_stops_before_training_without_weights(synth_root, offline_cache, monkeypatch):
    """`anomalib train` with no cached backbone: MissingWeightsError itself (not a config-parsing error), no step run."""
    from ispad_bench.models.weights import MissingWeightsError

    monkeypatch.chdir(offline_cache)
    args = ["--data.init_args.root", str(synth_root), "--data.init_args.num_workers", "0", "--trainer.accelerator",
            "cpu", "--trainer.logger", "false", "--model.init_args.image_size", "32"]
    with pytest.raises(MissingWeightsError, match=r"(?s)wide_resnet50_2\.tv_in1k.*pre_trained: false"):
        _train(CONFIGS / "glass" / "lsm1.yaml", args, offline_cache)
    assert not list(offline_cache.rglob("*.ckpt"))


def test_unguarded_anomalib_paths_would_download(offline_cache, monkeypatch):
    """The guards matter: Anomalib's own classes reach for the network in the same situation."""
    import timm
    from anomalib.models.image.efficient_ad import lightning_model as effad

    calls = []

    def record(*args, **kwargs):
        calls.append(args)
        raise RuntimeError("download attempted")

    monkeypatch.setattr(effad, "download_and_extract", record)
    with pytest.raises(RuntimeError, match="download attempted"):
        effad.EfficientAd(model_size="medium").prepare_pretrained_model()
    assert calls and "efficientad_pretrained_weights" in str(calls[0][1])

    from anomalib.models import Uflow

    requested = []
    real = timm.create_model

    def spy(*args, **kwargs):
        requested.append(kwargs.get("pretrained"))
        if kwargs.get("pretrained"):
            raise RuntimeError("pretrained weights requested")
        return real(*args, **kwargs)

    monkeypatch.setattr(timm, "create_model", spy)
    with pytest.raises(RuntimeError, match="pretrained weights requested"):
        Uflow(backbone="resnet18")
    assert True in requested


def test_uflow_checks_weights_before_building(offline_cache):
    from ispad_bench.models import UflowISPAD
    from ispad_bench.models.weights import MissingWeightsError

    model = UflowISPAD()  # random CaiTs, no download attempted
    with pytest.raises(MissingWeightsError, match=r"(?s)cait_m48_448.*cait_s24_224.*download: true.*pre_trained: false"):
        model.setup("fit")
    with pytest.raises(ValueError, match="needs image_size 448"):
        UflowISPAD(image_size=256, pre_trained=False)


def test_efficient_ad_loads_a_local_teacher(offline_cache, imagenette):
    """``teacher_weights`` + a local Imagenette folder: the pretrained path works with no download."""
    from ispad_bench.models import EfficientAdISPAD

    donor = EfficientAdISPAD(pre_trained=False, imagenet_dir=imagenette)
    path = offline_cache / "teacher_m.pth"
    torch.save(donor.model.teacher.state_dict(), path)
    model = EfficientAdISPAD(teacher_weights=str(path), imagenet_dir=imagenette)
    assert model.missing_resources() == []
    model.setup("fit")
    model.prepare_pretrained_model()
    for a, b in zip(donor.model.teacher.parameters(), model.model.teacher.parameters(), strict=True):
        assert torch.equal(a, b)
