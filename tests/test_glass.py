"""GLASS: official LAS statistics, GAS projection, training steps, offline textures/weights."""

from __future__ import annotations

import collections

import pytest
import torch
from torchvision.io import write_jpeg

from ispad_bench.models.glass.las import (
    TEXTURE_AUGMENTATIONS,
    LocalAnomalySynthesis,
    MaskMode,
    augment_texture,
    blend,
    draw_mask,
    sample_beta,
)
from ispad_bench.models.glass.textures import FolderTextures, ProceduralTextures, texture_source

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def masks():
    g = torch.Generator().manual_seed(1)
    return [draw_mask(64, 64, g) for _ in range(450)]


def test_mask_modes_are_drawn_one_third_each(masks):
    drawn = collections.Counter(mode for m in masks for mode in m.modes)
    total = sum(drawn.values())
    for mode in MaskMode:  # binomial sd at n~500, p=1/3 is ~0.018: allow ~4 sd
        assert abs(drawn[mode] / total - 1 / 3) < 0.07, (mode, drawn)


def test_masks_are_non_empty_and_only_empty_draws_are_redrawn(masks):
    for m in masks:
        assert m.mask_l.max() == 1 and m.mask_s.max() == 1
        assert set(m.mask_l.unique().tolist()) <= {0.0, 1.0}
        assert m.mask_s.shape == (8, 8)  # 8x max-pool of 64 px
        # patch label = max over its 8x8 cell
        assert torch.equal(m.mask_s, m.mask_l.reshape(8, 8, 8, 8).amax(dim=(1, 3)))
    redrawn = [m for m in masks if len(m.modes) > 1]
    assert redrawn, "with intersections some draws must be empty and redrawn"
    # union ⊇ single ⊇ intersection: mean coverage must be ordered that way
    cover = {mode: [m.mask_l.mean().item() for m in masks if m.mode == mode] for mode in MaskMode}
    mean = {mode: sum(v) / len(v) for mode, v in cover.items()}
    assert mean[MaskMode.UNION] > mean[MaskMode.SINGLE] > mean[MaskMode.INTERSECTION]


def test_beta_is_clipped_normal():
    g = torch.Generator().manual_seed(0)
    betas = torch.tensor([sample_beta(g) for _ in range(20000)])
    assert betas.min() >= 0.2 and betas.max() <= 0.8
    assert abs(betas.mean().item() - 0.5) < 0.003
    assert abs(betas.std().item() - 0.0986) < 0.003  # N(0.5, 0.1) clipped at ±3σ
    assert (betas == 0.2).any() or (betas == 0.8).any()  # the clip is reached at n=20000 (p≈0.27 % per draw)


def test_blend_official_formula_and_normalisation_invariance():
    g = torch.Generator().manual_seed(0)
    image, texture = torch.rand(1, 3, 16, 16, generator=g), torch.rand(1, 3, 16, 16, generator=g)
    mask = (torch.rand(1, 1, 16, 16, generator=g) > 0.5).float()
    out = blend(image, texture, mask, 0.3)
    inside = mask.expand_as(image).bool()
    assert torch.allclose(out[inside], (0.3 * image + 0.7 * texture)[inside])
    assert torch.equal(out[~inside], image[~inside])
    normalised = blend((image - MEAN) / STD, (texture - MEAN) / STD, mask, 0.3)
    assert torch.allclose(normalised, (out - MEAN) / STD, atol=1e-5)


def test_three_distinct_texture_augmentations_uniformly_chosen():
    g = torch.Generator().manual_seed(0)
    texture = ProceduralTextures(count=1, size=32)[0]
    counts = collections.Counter()
    for _ in range(600):
        out, chosen = augment_texture(texture, g)
        assert len(set(chosen)) == 3 and out.shape == texture.shape and out.dtype == torch.uint8
        counts.update(chosen)
    assert set(counts) == set(TEXTURE_AUGMENTATIONS)
    for name, n in counts.items():  # each is picked with p = 3/9
        assert abs(n / 600 - 1 / 3) < 0.08, (name, n)


def test_las_is_seeded_and_changes_only_masked_pixels():
    images = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3)) - MEAN) / STD
    a, mask_a = LocalAnomalySynthesis(ProceduralTextures(count=8, size=48), seed=5)(images, MEAN, STD)
    b, mask_b = LocalAnomalySynthesis(ProceduralTextures(count=8, size=48), seed=5)(images, MEAN, STD)
    c, _ = LocalAnomalySynthesis(ProceduralTextures(count=8, size=48), seed=6)(images, MEAN, STD)
    assert torch.equal(a, b) and torch.equal(mask_a, mask_b)
    assert not torch.equal(a, c)
    assert mask_a.shape == (2, 1, 32, 32) and (mask_a.flatten(1).amax(1) == 1).all()
    outside = (mask_a == 0).expand_as(images)
    assert torch.equal(a[outside], images[outside])
    assert not torch.allclose(a[~outside], images[~outside])


def test_procedural_textures_are_deterministic_and_varied():
    textures = ProceduralTextures(count=14, size=64, seed=2)
    assert torch.equal(textures[3], ProceduralTextures(count=14, size=64, seed=2)[3])
    stack = torch.stack([textures[i] for i in range(14)]).float()
    assert stack.shape == (14, 3, 64, 64)
    assert stack.std(dim=(1, 2, 3)).min() > 5  # every texture has structure
    assert (stack[:7] - stack[7:]).abs().mean() > 10  # same kinds, different draws


def test_folder_textures_dtd_layout(tmp_path):
    for category in ("banded", "dotted"):
        (tmp_path / "images" / category).mkdir(parents=True)
        for i in range(2):
            write_jpeg(torch.randint(0, 255, (3, 40, 50), dtype=torch.uint8), str(tmp_path / "images" / category / f"{i}.jpg"))
    source = texture_source(tmp_path)
    assert isinstance(source, FolderTextures) and len(source) == 4
    assert source[0].shape == (3, 40, 50)
    las = LocalAnomalySynthesis(source, seed=0)
    out, _ = las(torch.zeros(1, 3, 32, 32), MEAN, STD)
    assert out.shape == (1, 3, 32, 32)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no textures"):
        FolderTextures(tmp_path / "empty")
    assert isinstance(texture_source(None), ProceduralTextures)


def test_truncated_projection_keeps_distance_in_range():
    from ispad_bench.models.glass.torch_model import truncated_projection

    g = torch.Generator().manual_seed(0)
    anchor = torch.randn(300, 16, generator=g)
    offsets = torch.randn(300, 16, generator=g)
    offsets = offsets / offsets.norm(dim=1, keepdim=True) * torch.linspace(0.01, 3.0, 300)[:, None]
    projected = truncated_projection(anchor + offsets, anchor, 0.5)
    dist = (projected - anchor).norm(dim=1)
    assert dist.min() >= 0.5 - 1e-5 and dist.max() <= 1.0 + 1e-5
    inside = (offsets.norm(dim=1) >= 0.5) & (offsets.norm(dim=1) <= 1.0)
    assert torch.allclose(projected[inside], (anchor + offsets)[inside], atol=1e-6)  # untouched in range
    cosine = torch.nn.functional.cosine_similarity(projected - anchor, offsets)
    assert cosine.min() > 0.9999  # direction kept


@pytest.fixture(scope="module")
def glass():
    from ispad_bench.models import GlassISPAD

    return GlassISPAD(image_size=32, pre_trained=False, lr=1e-4, seed=0)


def test_training_steps_are_finite_reduce_the_loss_and_keep_the_backbone_frozen(glass):
    model = glass.model
    model.train()
    backbone = [p.clone() for p in model.forward_modules["feature_aggregator"].parameters()]
    disc = [p.clone() for p in model.discriminator.parameters()]
    optimizers = glass.configure_optimizers()
    images = (torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) - MEAN) / STD
    losses = []
    for _ in range(6):
        model.las.generator.manual_seed(0)  # the same synthetic anomalies each step
        torch.manual_seed(0)  # the same GAS noise
        for opt in optimizers:
            opt.zero_grad()
        out = model(images)
        assert all(torch.isfinite(v) for v in out.values()), out
        assert 0 < out["anomalous_patch_fraction"] < 1
        out["loss"].backward()
        for opt in reversed(optimizers):
            opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < losses[0], losses
    assert all(torch.equal(a, b) for a, b in zip(backbone, model.forward_modules["feature_aggregator"].parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(disc, model.discriminator.parameters()))
    model.eval()
    pred = model(images)
    assert pred.pred_score.shape == (2,) and pred.anomaly_map.shape == (2, 32, 32)
    # image score = max patch score; the map is a smoothed upsampling of the same patch scores
    assert torch.all(pred.pred_score >= pred.anomaly_map.flatten(1).amax(1) - 1e-6)


def test_symmetric_smoothing_matches_scipy_reflect():
    ndimage = pytest.importorskip("scipy.ndimage")
    from ispad_bench.models.glass.torch_model import SymmetricRescaleSegmentor

    scores = torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    seg = SymmetricRescaleSegmentor(target_size=(40, 40)).double()
    ours = seg.convert_to_segmentation(scores)[0]
    up = torch.nn.functional.interpolate(scores[:, None], size=(40, 40), mode="bilinear", align_corners=False)[0, 0]
    ref = ndimage.gaussian_filter(up.numpy(), sigma=4)  # official: default mode "reflect", truncate 4
    assert torch.allclose(ours, torch.from_numpy(ref), atol=1e-10)


def test_missing_backbone_weights_fail_before_building(monkeypatch, tmp_path):
    import huggingface_hub.constants as hf_constants

    from ispad_bench.models import GlassISPAD
    from ispad_bench.models.weights import MissingWeightsError

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = GlassISPAD(image_size=32)  # built with random weights, no download attempted (network guard)
    with pytest.raises(MissingWeightsError, match=r"(?s)wide_resnet50_2\.tv_in1k.*download: true.*pre_trained: false"):
        model.setup("fit")  # what the engine calls before the first step


def _write_hf_cache(cache, tag: str) -> dict[str, torch.Tensor]:
    """Random weights of timm model ``tag`` in the Hugging Face cache layout that timm reads."""
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(tag.split(".")[0], pretrained=False)
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=g) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    repo, revision = cache / f"models--timm--{tag}", "0" * 40
    (repo / "snapshots" / revision).mkdir(parents=True)
    save_file(state, str(repo / "snapshots" / revision / "model.safetensors"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    return state


def test_pretrained_backbone_loads_from_the_local_cache_with_no_network_attempt(monkeypatch, tmp_path):
    """Online mode and a cached file: the weights come from the file and no connection is even tried."""
    import socket

    import huggingface_hub.constants as hf_constants

    from ispad_bench.models import GlassISPAD

    attempts = []
    guarded_connect, guarded_lookup = socket.socket.connect, socket.getaddrinfo  # conftest's network guard

    def connect(sock, address):
        attempts.append(address)  # recorded even if a library swallows the guard's error
        return guarded_connect(sock, address)

    def lookup(host, *args, **kwargs):
        attempts.append(host)
        return guarded_lookup(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", False)  # timm would ask the hub if it were called
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    state = _write_hf_cache(tmp_path, "resnet10t.c3_in1k")
    glass = GlassISPAD(image_size=32, backbone="resnet10t.c3_in1k", pre_trained=True)
    loaded = glass.model.forward_modules["feature_aggregator"].feature_extractor.state_dict()
    # BatchNorm running statistics are not compared: the official load-time dry run moves them (official_dry_run)
    common = [k for k in loaded if k in state and "num_batches" not in k and "running_" not in k]
    assert len(common) > 20 and all(torch.equal(loaded[k], state[k]) for k in common)
    assert not attempts


def test_bad_settings_raise_clear_errors(tmp_path):
    from ispad_bench.models.glass.torch_model import GlassISPADModel

    with pytest.raises(ValueError, match="gas must be one of"):
        GlassISPADModel(gas="sphere", pre_trained=False)
    with pytest.raises(FileNotFoundError, match="not a directory"):
        texture_source(tmp_path / "missing")
    with pytest.raises(ValueError, match="at least 8 px"):
        draw_mask(4, 4, torch.Generator())
