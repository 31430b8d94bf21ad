"""DDAD: UNet as the official code, schedule, conditioned reconstruction, normalisation modes,
checkpoints and offline weights, and the three paper configs through ``anomalib train``."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

from ispad_bench.models.ddad import SUPPORTED_SIZES, Ddad, DdadModel, DdadUNet, FeatureExtractor, LinearSchedule
from ispad_bench.models.ddad.torch_model import center_crop
from ispad_bench.models.weights import MissingWeightsError, torchvision_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "ddad"
MODALITIES = {"lsm1": "LSM-1", "lsm2": "LSM-2", "asm": "ASM"}
# parameters of the official UNetModel(size, 64, dropout=0.0, n_heads=4, in_channels=3) (arimousa/DDAD
# unet.py, counted by instantiating it); equal counts + equal state-dict keys/shapes = same network
OFFICIAL_PARAMS = {32: 23_013_955, 64: 24_248_515, 128: 25_018_179, 256: 32_952_707}
TINY = {"image_size": 32, "base_channels": 32, "attention_resolutions": (8, 4), "feature_backbone": "resnet18",
        "pre_trained": False, "start": 100, "skip": 25}


pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_model(**overrides) -> DdadModel:
    """A small DDAD with a non-trivial UNet (the official init zeroes the output layers, so eps = 0)."""
    torch.manual_seed(0)
    model = DdadModel(**{**TINY, **overrides}).eval()
    with torch.no_grad():
        for param in model.unet.parameters():
            param.normal_(0, 0.02)
    return model


# ---- UNet -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("size", SUPPORTED_SIZES)
def test_unet_output_has_the_input_shape(size):
    unet = DdadUNet(size, in_channels=3, base_channels=32).eval()
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        assert unet(x, torch.tensor([5.0])).shape == x.shape


def test_unet_matches_the_official_architecture():
    """Official channel multipliers per size and attention at 32/16/8: parameter counts as official."""
    for size, count in OFFICIAL_PARAMS.items():
        unet = DdadUNet(size)
        assert sum(p.numel() for p in unet.parameters()) == count, size
    attn = [name for name, m in DdadUNet(256).named_modules() if type(m).__name__ == "SelfAttention"]
    # 256 px: levels at 256..8 px; attention in the 32/16/8 px levels (2 down + 3 up blocks each) + middle
    assert len(attn) == 3 * (2 + 3) + 1
    assert DdadUNet(224).channel_mults == DdadUNet(256).channel_mults == (1, 1, 2, 2, 4, 4)


def test_unsupported_sizes_are_rejected_clearly():
    with pytest.raises(ValueError, match=r"unsupported image_size 100.*supported sizes are \[32, 64, 128, 224, 256\]"):
        DdadUNet(100)
    with pytest.raises(ValueError, match="unsupported image_size 512"):
        DdadModel(image_size=512, pre_trained=False, feature_backbone="resnet18")
    unet = DdadUNet(256, base_channels=32)
    with pytest.raises(ValueError, match=r"divisible by 32, got \(240, 240\)"):
        unet(torch.zeros(1, 3, 240, 240), torch.tensor([1.0]))
    with pytest.raises(ValueError, match="multiple of 32"):
        DdadUNet(64, base_channels=48)


# ---- schedule and losses -------------------------------------------------------------------------------
def test_schedule_is_the_official_linear_ddpm_schedule():
    sched = LinearSchedule()
    assert sched.betas[0].item() == pytest.approx(1e-4) and sched.betas[-1].item() == pytest.approx(0.02)
    assert sched.alpha_bar(-1).item() == 1.0  # official reconstruction indexes alpha_bar(t + 1) with a 0 prepended
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    for t in (0, 24, 249, 250, 999):
        assert sched.alpha_bar(t).item() == pytest.approx(torch.prod(1 - betas[: t + 1]).item(), rel=1e-5)


def test_diffusion_loss_is_the_summed_eps_error():
    model = _tiny_model()
    images = torch.rand(2, 3, 32, 32)
    torch.manual_seed(3)
    loss = model.diffusion_loss(images)
    torch.manual_seed(3)  # the same draws, by hand
    t = torch.randint(0, 1000, (2,))
    noise = torch.randn(2, 3, 32, 32)
    a = model.schedule.alpha_bar(t).view(-1, 1, 1, 1)
    with torch.no_grad():
        pred = model.unet(a.sqrt() * (images * 2 - 1) + (1 - a).sqrt() * noise, t.float())
    assert loss.item() == pytest.approx((noise - pred).square().sum(dim=(1, 2, 3)).mean().item(), rel=1e-5)


# ---- reconstruction ------------------------------------------------------------------------------------
def test_reconstruction_is_deterministic_for_a_seed():
    model = _tiny_model()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    first = model.reconstruct(x, x, 3.0, generators=model.eval_generators(2))
    again = model.reconstruct(x, x, 3.0, generators=model.eval_generators(2))
    assert torch.equal(first, again)
    model.seed = 1
    other = model.reconstruct(x, x, 3.0, generators=model.eval_generators(2))
    assert (other - first).abs().mean() > 1e-3  # the seed matters (eta = 1 draws fresh noise)


def test_large_w_pulls_the_reconstruction_toward_the_target():
    model = _tiny_model()
    g = torch.Generator().manual_seed(0)
    x, target = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1, torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
    dist = [(model.reconstruct(x, target, w, generators=model.eval_generators(4)) - target).abs().mean().item()
            for w in (0.0, 3.0, 10.0, 30.0)]
    assert dist == sorted(dist, reverse=True), dist
    assert dist[-1] < 0.25 * dist[0], dist


# ---- anomaly map and normalisation -----------------------------------------------------------------------
def test_map_is_feature_plus_scaled_pixel_distance_blurred_and_score_is_its_max():
    from kornia.filters import gaussian_blur2d

    model = _tiny_model(normalization="batch")
    g = torch.Generator().manual_seed(0)
    recon, target = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1, torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        amap = model.anomaly_map(recon, target)
        d_f = model.feature_distance(recon, target)
    d_p = (recon - target).abs().mean(dim=1, keepdim=True)
    expected = gaussian_blur2d(d_f + d_f.max() / d_p.max() * d_p, (33, 33), (4.0, 4.0))  # sigma 4, kernel 33
    torch.testing.assert_close(amap, expected)
    assert amap.shape == (3, 1, 32, 32)
    with torch.no_grad():
        assert model.anomaly_map(target, target).abs().max() < 1e-5  # perfect reconstruction: empty map
        out = _tiny_model(map_crop=24)(torch.rand(2, 3, 32, 32))
    assert out.anomaly_map.shape == (2, 1, 24, 24)
    torch.testing.assert_close(out.pred_score, out.anomaly_map.amax(dim=(1, 2, 3)))
    assert torch.equal(center_crop(torch.arange(16.0).view(4, 4), 2), torch.tensor([[5.0, 6.0], [9.0, 10.0]]))


def test_per_image_normalisation_is_batch_independent_and_batch_mode_is_not():
    images = torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model = _tiny_model(normalization="per_image")
    with torch.no_grad():
        batch8 = model(images).pred_score
        batch1 = torch.cat([model(images[i : i + 1]).pred_score for i in range(8)])
        model.normalization = "batch"  # official: maxima over the whole batch
        batch8_official = model(images).pred_score
        single_official = model(images[:1]).pred_score
    # identical up to float rounding of batched kernels (~1e-7 here), far below the batch-mode shift
    torch.testing.assert_close(batch8, batch1, rtol=1e-4, atol=1e-6)
    assert (batch8_official - batch1).abs().max() > 1e-4
    torch.testing.assert_close(single_official, batch1[:1])  # one image: both modes agree
    with pytest.raises(ValueError, match="normalization must be one of"):
        DdadModel(**{**TINY, "normalization": "global"})


# ---- domain adaptation -----------------------------------------------------------------------------------
def test_domain_adaptation_moves_the_extractor_not_its_frozen_copy():
    model = _tiny_model()
    model.train()
    assert not model.frozen_extractor.training and not any(p.requires_grad for p in model.frozen_extractor.parameters())
    frozen = {k: v.clone() for k, v in model.frozen_extractor.state_dict().items()}
    before = model.feature_extractor.layer1[0].conv1.weight.clone()
    unet = {k: v.clone() for k, v in model.unet.state_dict().items()}
    _, opt = model.make_optimizers()
    images = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    losses = [model.domain_adaptation_step(images, opt).item() for _ in range(2)]
    assert all(math.isfinite(v) and v > 0 for v in losses)
    assert not torch.equal(before, model.feature_extractor.layer1[0].conv1.weight)
    assert all(torch.equal(v, model.frozen_extractor.state_dict()[k]) for k, v in frozen.items())
    assert all(torch.equal(v, model.unet.state_dict()[k]) for k, v in unet.items())  # phase 2 leaves the UNet
    with pytest.raises(ValueError, match="at least 2 images"):
        model.domain_adaptation_loss(images[:1])


def test_diffusion_step_updates_only_the_unet():
    model = _tiny_model()
    model.train()
    opt, _ = model.make_optimizers(lr=1e-3)
    fe = {k: v.clone() for k, v in model.feature_extractor.state_dict().items()}
    weight = model.unet.out[2].weight.clone()
    loss = model.diffusion_step(torch.rand(2, 3, 32, 32), opt)
    assert math.isfinite(loss.item()) and not loss.requires_grad
    assert not torch.equal(weight, model.unet.out[2].weight)
    assert all(torch.equal(v, model.feature_extractor.state_dict()[k]) for k, v in fe.items())


# ---- checkpoints, weights, import ----------------------------------------------------------------------
def test_official_checkpoints_load_with_dataparallel_prefixes_and_no_extension(tmp_path):
    donor = _tiny_model()
    unet_file, feat_file = tmp_path / "2000", tmp_path / "feat4"  # official names: epoch / feat<epoch>
    torch.save({f"module.{k}": v for k, v in donor.unet.state_dict().items()}, unet_file)
    full = torchvision.models.resnet18(weights=None).state_dict()  # official extractors keep layer4 and fc
    torch.save({f"module.{k}": v for k, v in full.items()}, feat_file)
    model = Ddad(image_size=32, unet_base_channels=32, unet_attention_resolutions=(8, 4), feature_backbone="resnet18",
                 pre_trained=False, unet_checkpoint=str(unet_file), feature_checkpoint=str(feat_file))
    for k, v in donor.unet.state_dict().items():
        assert torch.equal(v, model.model.unet.state_dict()[k]), k
    assert torch.equal(full["layer3.1.conv2.weight"], model.model.feature_extractor.layer3[1].conv2.weight)
    with pytest.raises(ValueError, match=f"{unet_file}.*does not fit"):
        Ddad(image_size=64, unet_base_channels=32, feature_backbone="resnet18", pre_trained=False,
             unet_checkpoint=str(unet_file))
    with pytest.raises(FileNotFoundError, match="DDAD checkpoint not found"):
        Ddad(image_size=32, unet_base_channels=32, feature_backbone="resnet18", pre_trained=False,
             unet_checkpoint=str(tmp_path / "missing"))


def test_feature_weights_offline_clear_error_then_loaded_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("ISPAD_OFFLINE", "1")
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    path = torchvision_checkpoint(weights)
    with pytest.raises(MissingWeightsError) as err:
        FeatureExtractor("resnet18", pre_trained=True)
    assert str(path) in str(err.value) and "pre_trained: false" in str(err.value)
    state = torchvision.models.resnet18(weights=None).state_dict()  # random weights in the cache layout
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    fe = FeatureExtractor("resnet18", pre_trained=True)
    assert torch.equal(fe.conv1.weight, state["conv1.weight"]) and torch.equal(fe.layer2[0].bn1.running_mean,
                                                                               state["layer2.0.bn1.running_mean"])
    assert FeatureExtractor("resnet18", pre_trained=False).conv1.weight.shape == state["conv1.weight"].shape


def test_ddad_never_downloads_unasked_and_fails_at_setup(tmp_path, monkeypatch):
    """Online or not, missing weights give one clear error when the engine sets the model up."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("ISPAD_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_download(*args, **kwargs):
        raise AssertionError("DDAD tried to download weights without download: true")

    monkeypatch.setattr(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.__class__, "get_state_dict", no_download)
    module = Ddad(image_size=32, unet_base_channels=32, feature_backbone="resnet18", pre_trained=True)
    path = torchvision_checkpoint(torchvision.models.ResNet18_Weights.IMAGENET1K_V1)
    with pytest.raises(MissingWeightsError, match="pre_trained: false") as err:
        module.setup("fit")
    assert str(path) in str(err.value)


def test_import_has_no_side_effects(monkeypatch):
    """The official code sets CUDA_VISIBLE_DEVICES at import; this port must not touch the process.

    The package is imported afresh in this process (its dependencies are already loaded, so only
    its own module code runs) and the original modules are put back afterwards.
    """
    import importlib
    import os

    for name in [n for n in sys.modules if n.startswith("ispad_bench.models")]:
        monkeypatch.delitem(sys.modules, name)  # restored at teardown
    env, rng = dict(os.environ), torch.get_rng_state()
    fresh = importlib.import_module("ispad_bench.models.ddad")
    assert fresh.Ddad is not Ddad  # really re-executed
    assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())
    assert torch.equal(torch.get_rng_state(), rng) and not torch.cuda.is_initialized()


# ---- configs through anomalib train ---------------------------------------------------------------------
@pytest.mark.parametrize("slug", list(MODALITIES))
def test_config_encodes_the_paper_settings(slug):
    cfg = yaml.safe_load((CONFIGS / f"{slug}.yaml").read_text())
    args, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    assert cfg["model"]["class_path"] == "ispad_bench.models.ddad.Ddad"
    assert data["modality"] == MODALITIES[slug] and data["train_split"] == "reduced"
    assert data["train_batch_size"] == data["eval_batch_size"] == 8  # §4.3.6
    # official train.py/main.py as the authors ran it (§4.3.5): 3000 epochs, checkpoint 2000, official loaders
    assert (args["diffusion_steps"], args["diffusion_unit"], args["test_checkpoint"]) == (3000, "epochs", 2000)
    assert (args["drop_last"], args["da_batch_size"]) == (True, 16)
    assert 5e-5 <= args["lr"] <= 1e-4  # §4.3.6
    assert (args["w"], args["w_da"], args["da_epochs"]) == (3.0, 3.0, 4)  # §4.3.5
    assert (args["test_start"], args["skip"], args["eta"]) == (250, 25, 1.0)  # §4.3.6
    assert args["map_crop"] == (None if slug == "lsm2" else 224)  # §4.3.5
    assert (args["image_size"], args["unet_base_channels"], args["feature_backbone"]) == (256, 64, "wide_resnet101_2")
    assert args["normalization"] == "batch"
    assert args["post_processor"]["class_path"] == "ispad_bench.metrics.RawScorePostProcessor"
    assert args["evaluator"]["class_path"] == "ispad_bench.metrics.ISPADEvaluator"
    Ddad(**{**{k: v for k, v in args.items() if k not in ("post_processor", "evaluator")},
            "image_size": 32, "unet_base_channels": 32, "feature_backbone": "resnet18", "pre_trained": False})
    with pytest.raises(ValueError, match="diffusion_unit must be"):
        Ddad(image_size=32, unet_base_channels=32, feature_backbone="resnet18", pre_trained=False,
             diffusion_unit="iterations")


# per modality: normalisation mode, diffusion length and unit, DA epochs (each run checks a different corner);
# every run has 2 training batches per epoch, so 1 diffusion epoch = 2 steps
RUNS = {"lsm1": ("batch", 3, "steps", 1), "lsm2": ("per_image", 1, "epochs", 2), "asm": ("batch", 0, "steps", 1)}
REPORTED = ("image_AUROC", "pixel_AUROC", "MCC", "recall", "precision", "FPR", "PRO", "AUPRO", "threshold")


@pytest.mark.parametrize("slug", list(MODALITIES))
def test_config_runs_both_phases_then_test_in_one_train_call(slug, synth_root, tmp_path, monkeypatch, capsys):
    from anomalib.cli import AnomalibCLI

    monkeypatch.chdir(tmp_path)
    normalization, length, unit, da_epochs = RUNS[slug]
    steps = length * (2 if unit == "epochs" else 1)
    overrides = [
        "--data.init_args.root", str(synth_root), "--data.init_args.num_workers", "0",
        "--data.init_args.image_size", "32", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
        "--trainer.limit_train_batches", "2",
        "--model.init_args.image_size", "32", "--model.init_args.unet_base_channels", "32",
        "--model.init_args.unet_attention_resolutions", "[8, 4]", "--model.init_args.feature_backbone", "resnet18",
        "--model.init_args.pre_trained", "false", "--model.init_args.diffusion_steps", str(length),
        "--model.init_args.diffusion_unit", unit, "--model.init_args.test_checkpoint", "null",
        "--model.init_args.da_batch_size", "null" if slug == "lsm2" else "16",
        "--model.init_args.da_epochs", str(da_epochs), "--model.init_args.test_start", "50",
        "--model.init_args.normalization", normalization, "--model.init_args.visualizer", "false",
        "--default_root_dir", str(tmp_path / "results"),
    ]
    if slug != "lsm2":
        overrides += ["--model.init_args.map_crop", "28"]
    cli = AnomalibCLI(args=["train", "--config", str(CONFIGS / f"{slug}.yaml"), *overrides])
    metrics = {k: float(v) for k, v in cli.engine.trainer.callback_metrics.items()}
    for key in REPORTED:
        assert key in metrics and math.isfinite(metrics[key]), (key, sorted(metrics))
    assert metrics["TP"] + metrics["FN"] == metrics["n_area"] + metrics["n_points"] > 0
    assert metrics["TN"] + metrics["FP"] == metrics["n_good"] > 0
    assert ("ddad_norm_batch_size" in metrics) == (normalization == "batch")  # official mode records the batch size

    module = cli.engine.model
    assert (int(module.diffusion_steps_done), int(module.da_steps_done)) == (steps, 2 * da_epochs)
    out = capsys.readouterr().out
    assert ("DDAD phase 1 done" in out) == (steps > 0) and "DDAD phase 2 done" in out
    folder = next((tmp_path / "results").rglob("weights/lightning"))
    assert (folder / "ddad_phase1.ckpt").is_file() == (steps > 0)
    info = torch.load(folder / "ddad_phase2.ckpt", map_location="cpu", weights_only=False)["ddad"]
    assert info["completed_phases"] == [1, 2] and info["da_steps_done"] == 2 * da_epochs
    if steps:
        info = torch.load(folder / "ddad_phase1.ckpt", map_location="cpu", weights_only=False)
        assert info["ddad"]["completed_phases"] == [1] and int(info["state_dict"]["diffusion_steps_done"]) == steps


# ---- official training length: epochs + test_checkpoint (main.py load_chp) ----------------------------
def test_epochs_with_test_checkpoint_tests_the_named_checkpoint(tmp_path):
    """3 diffusion epochs of 2 batches, checkpoint 2: official train.py saves file ``2`` after the first step of
    epoch 2, so the weights after step (2 - 1) x 2 + 1 = 3 are the ones kept for test."""
    from anomalib.data import ImageBatch
    from lightning.pytorch import Callback, Trainer

    class Snapshots(Callback):
        def __init__(self) -> None:
            self.states: dict[int, dict[str, torch.Tensor]] = {}

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            done = int(pl_module.diffusion_steps_done)
            self.states.setdefault(done, {k: v.clone() for k, v in pl_module.model.unet.state_dict().items()})

    torch.manual_seed(0)
    batches = [ImageBatch(image=torch.rand(2, 3, 32, 32)) for _ in range(2)]
    model = Ddad(image_size=32, unet_base_channels=32, unet_attention_resolutions=(8, 4), feature_backbone="resnet18",
                 pre_trained=False, diffusion_steps=3, diffusion_unit="epochs", test_checkpoint=2, da_epochs=0,
                 save_phase_checkpoints=False, evaluator=False, visualizer=False)
    snaps = Snapshots()
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[snaps], default_root_dir=tmp_path, max_epochs=-1,
                      limit_val_batches=0, num_sanity_val_steps=0)
    trainer.fit(model, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    assert int(model.diffusion_steps_done) == 6  # the whole official length was trained
    final = model.model.unet.state_dict()
    assert all(torch.equal(final[k], v) for k, v in snaps.states[3].items())  # checkpoint 2 = step 3 is tested
    assert not all(torch.equal(final[k], v) for k, v in snaps.states[4].items())
    proc = model.procedure()
    assert proc["tested"] == "UNet checkpoint 2 of 3 epochs (step 3)" and proc["tested_step"] == proc["tested_step_planned"] == 3
    with pytest.raises(ValueError, match="test_checkpoint"):
        Ddad(image_size=32, unet_base_channels=32, feature_backbone="resnet18", pre_trained=False,
             diffusion_steps=3, test_checkpoint=4)
