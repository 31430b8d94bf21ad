"""Parity of our GLASS and DDAD with the official code.

The references in ``tests/fixtures/parity/*.npz`` are outputs of the official code (cqylunlun/GLASS
f788d56, arimousa/DDAD 4323a15), made by ``benchmarks/parity/make_fixtures.py`` on CPU at small sizes
with seeded random weights (``benchmarks/parity/common.py``). Here our code runs on the same inputs and
weights, through its default code path with the documented switches set to the official behaviour
(DDAD ``seed=None``: global-RNG test noise; the DA batch is the official one). Tolerance 1e-5 relative
(plus a small absolute floor for values near 0) unless a test says why it needs more.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("parity_common", ROOT / "benchmarks" / "parity" / "common.py")
common = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("parity_common", common)
_spec.loader.exec_module(common)


def load(name: str) -> dict[str, np.ndarray]:
    with np.load(common.FIXTURES / f"{name}.npz") as data:
        return {k: data[k] for k in data.files}


def settings(ref: dict[str, np.ndarray]) -> dict:
    return json.loads(str(ref["meta"]))["settings"]


def check(quantity: str, ours: torch.Tensor | np.ndarray | float, ref: np.ndarray | float,
          rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Assert ``|ours − ref| ≤ atol + rtol·|ref|`` elementwise; the message names the quantity and the max difference."""
    ours = np.asarray(ours.detach() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    assert ours.shape == ref.shape, f"{quantity}: shape {ours.shape} != official {ref.shape}"
    diff = np.abs(ours - ref)
    bad = diff > atol + rtol * np.abs(ref)
    assert not bad.any(), (
        f"{quantity}: max |diff| {diff.max():.3g} (max relative {(diff / np.maximum(np.abs(ref), 1e-30)).max():.3g}), "
        f"{int(bad.sum())} of {bad.size} values outside atol {atol:g} + rtol {rtol:g}"
    )


def check_adam(quantity: str, ours, ref, rtol: float, atol: float, travel: float, share: float = 0.01) -> None:
    """:func:`check` for Adam-trained weights: Adam divides each gradient by its own magnitude, so an
    entry whose gradient is at the rounding level steps ±lr either way, and another CPU's kernels may
    flip it. At most ``share`` of the entries may so differ, each by at most 2·``travel`` (lr·steps)."""
    ours = np.asarray(ours.detach() if isinstance(ours, torch.Tensor) else ours, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    diff = np.abs(ours - ref)
    loose = diff > atol + rtol * np.abs(ref)
    assert loose.mean() <= share, f"{quantity}: {int(loose.sum())} of {loose.size} entries off (> {share:.0%})"
    check(quantity, ours, ref, rtol=rtol, atol=max(atol, 2 * travel) if loose.any() else atol)


def check_state(prefix: str, state: dict[str, torch.Tensor], ref: dict[str, np.ndarray], rtol: float, atol: float,
                travel: float | None = None) -> int:
    """Compare a state dict with its compact fixture form (full tensors, or sample + sum + norm);
    with ``travel`` (lr·steps), entries as :func:`check_adam`."""
    seen = 0

    def compare(quantity, ours, expected):
        if travel is not None and "running_" in quantity:  # BN statistics of features those entries feed
            return check(quantity, ours, expected, max(rtol, 1e-3), atol)
        if travel is None or np.ndim(expected) == 0:
            return check(quantity, ours, expected, rtol, atol)
        return check_adam(quantity, ours, expected, rtol, atol, travel)

    for key, t in state.items():
        if not t.is_floating_point():
            continue
        flat = t.detach().double().flatten()
        if f"{prefix}{key}" in ref:
            compare(f"{prefix}{key}", t, ref[f"{prefix}{key}"])
        else:
            compare(f"{prefix}{key} (sampled entries)", flat[common.sample_indices(flat.numel())], ref[f"{prefix}{key}#sample"])
            compare(f"{prefix}{key} (L2 norm)", float(flat.norm()), ref[f"{prefix}{key}#norm"])
        seen += 1
    return seen


def test_fixtures_are_small_and_from_the_official_commits():
    sizes = [p.stat().st_size for p in common.FIXTURES.glob("*.npz")]
    assert len(sizes) == 2 and sum(sizes) < 2_000_000, sizes
    for name in ("glass", "ddad"):
        info = json.loads(str(load(name)["meta"]))
        assert info["commit"] == common.OFFICIAL[name]["commit"] and info["differs"] == [], info


# ---------------------------------------------------------------------------------------------- GLASS
@pytest.fixture(scope="module")
def glass_ref():
    return load("glass")


def test_glass_perlin_field(glass_ref):
    """Unrotated Perlin field (official ``rand_perlin_2d_np``, float64) on the same lattice and angles."""
    from ispad_bench.models.glass.las import perlin_noise

    size = settings(glass_ref)["image_size"]
    for k, seed in enumerate(settings(glass_ref)["las_seeds"]):
        g = torch.Generator().manual_seed(seed)
        res_y = 2 ** int(torch.randint(0, 6, (1,), generator=g))
        res_x = 2 ** int(torch.randint(0, 6, (1,), generator=g))
        check(f"Perlin field (seed {seed}, lattice {res_y}x{res_x})", perlin_noise(size, size, res_y, res_x, g),
              glass_ref[f"las/field{k}"], rtol=0, atol=2e-6)


def test_glass_perlin_mask(glass_ref):
    """Thresholded rotated fields and the combined LAS masks on the same draws.

    Rotation is imgaug ``Affine`` (official) vs torchvision ``rotate`` (ours): same angle, bilinear,
    zero fill, but the two libraries place the rotation centre and sample differently by a fraction
    of a pixel, so pixels on the 0.5 contour can flip. Tolerated: ≤ 2 % of the pixels of a field,
    and the same redraw count; everything else about the mask (scales, angles, threshold, union /
    intersection / single, max-pooling to the patch grid) is exact.
    """
    from ispad_bench.models.glass.las import draw_mask, perlin_threshold

    size = settings(glass_ref)["image_size"]
    for k, seed in enumerate(settings(glass_ref)["las_seeds"]):
        thr = perlin_threshold(size, size, torch.Generator().manual_seed(seed)).numpy()
        flipped = float((thr != glass_ref[f"las/thr{k}"]).mean())
        assert flipped <= 0.02, f"thresholded Perlin field (seed {seed}): {flipped:.2%} of pixels differ (> 2 %)"
        mask = draw_mask(size, size, torch.Generator().manual_seed(seed))
        assert len(mask.modes) - 1 == int(glass_ref[f"las/redraws{k}"]), f"LAS mask (seed {seed}): redraw count differs"
        flipped = float((mask.mask_l.numpy() != glass_ref[f"las/mask_l{k}"]).mean())
        assert flipped <= 0.02, f"LAS mask (seed {seed}): {flipped:.2%} of pixels differ (> 2 %)"
        flipped = float((mask.mask_s.numpy() != glass_ref[f"las/mask_s{k}"]).mean())
        assert flipped <= 0.05, f"LAS patch mask (seed {seed}): {flipped:.2%} of patches differ (> 5 %)"


def test_glass_las_blend(glass_ref, monkeypatch):
    """LAS output on fixed image, texture, mask and β = official ``MVTecDataset.__getitem__`` (incl. β clipping)."""
    from ispad_bench.models.glass import las as las_module
    from ispad_bench.models.glass.las import LasMask, LocalAnomalySynthesis
    from ispad_bench.models.glass.textures import ProceduralTextures

    masks = iter(torch.from_numpy(glass_ref["las/mask"]))
    betas = iter(float(b) for b in (0.43, 0.93))  # the draws the fixture fed the official code
    monkeypatch.setattr(las_module, "draw_mask", lambda *a, **k: LasMask(next(masks), torch.zeros(1), ()))
    monkeypatch.setattr(las_module, "sample_beta", lambda g, mean, std: min(max(next(betas), 0.2), 0.8))
    las = LocalAnomalySynthesis(ProceduralTextures(count=1, size=64))
    las.texture = lambda h, w: torch.from_numpy(glass_ref["las/texture01"])
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    aug, mask = las(torch.from_numpy(glass_ref["las/image"]), mean, std)
    check("LAS mask", mask[:, 0], glass_ref["las/mask"], rtol=0, atol=0)
    check("LAS image", aug, glass_ref["las/aug"], atol=1e-6)


def _glass_model(ref: dict[str, np.ndarray]):
    from ispad_bench.models.glass.lightning_model import GlassISPAD
    from ispad_bench.models.glass.torch_model import official_dry_run

    cfg = settings(ref)
    module = GlassISPAD(image_size=cfg["image_size"], pre_trained=False, pretrain_embed_dim=cfg["embed_dim"],
                        target_embed_dim=cfg["embed_dim"], discriminator_hidden=cfg["hidden"], lr=cfg["lr"],
                        gas="manifold", evaluator=False, visualizer=False)
    backbone = module.model.forward_modules["feature_aggregator"].feature_extractor
    common.seeded_(backbone, cfg["backbone_seed"])  # replaces the random weights ...
    official_dry_run(backbone, (cfg["image_size"], cfg["image_size"]))  # ... so redo what construction did to them
    check("seeded backbone weights (digest)", common.weights_digest(backbone), ref["backbone_digest"], rtol=1e-9)  # BN stats of the dry run: CPU-kernel rounding
    for name, part in (("projection", module.model.projection), ("discriminator", module.model.discriminator)):
        part.load_state_dict({k: torch.from_numpy(ref[f"init/{name}.{k}"]) for k in part.state_dict()
                              if f"init/{name}.{k}" in ref}, strict=False)
    return module


def test_glass_training_and_scores(glass_ref, one_thread):
    """3 training steps (LAS images given, GAS, BCE + focal, both optimisers), then test scores and maps.

    Step 1: the true features, the GAS result after 20 ascent steps, the LAS scores and the losses; all
    steps: losses; after 3 steps: every adaptor/discriminator parameter; then image scores and the
    smoothed maps of 4 test images, with our trained heads and with the official ones. Tolerances for
    trained values are explained where they are checked (Adam amplifies rounding noise of gradients
    that are zero in exact arithmetic).
    """
    cfg = settings(glass_ref)
    module = _glass_model(glass_ref)
    model = module.model
    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = model.discriminator.register_forward_hook(lambda m, a, o: calls.append((a[0].detach().clone(), o.detach())))
    opts = module.configure_optimizers()
    module.optimizers = lambda: opts
    module.manual_backward = lambda loss: loss.backward()
    module.log = lambda *a, **k: None
    losses = []
    training_losses = model.training_losses
    model.training_losses = lambda *a: losses.append(training_losses(*a)) or losses[-1]
    module.train()
    torch.manual_seed(cfg["noise_seed"])
    for i, item in enumerate(common.glass_batches()):
        mask_l = torch.from_numpy(glass_ref[f"train/mask_l{i}"]).float()
        aug = item["image"] * (1 - mask_l) + item["aug"] * mask_l
        model.las = lambda images, mean, std, _a=aug, _m=mask_l: (_a, _m)
        module.training_step(type("Batch", (), {"image": item["image"]})(), i)
        if i == 0:
            n = len(calls[0][0]) // 2
            step1 = {"true": calls[0][0][:n], "gaus": calls[20][0][n:], "fake_scores": calls[21][1]}
    hook.remove()
    # float32 conv/matmul outputs: elementwise within 1e-5 of the largest value (another CPU's kernels
    # round differently; values near zero carry the absolute rounding of their neighbours' scale)
    for quantity, ours, key in (("true features", step1["true"], "step1/true_feats"),
                                ("GAS features after 20 ascent steps", step1["gaus"], "step1/gaus_feats"),
                                ("discriminator scores of LAS features", step1["fake_scores"], "step1/fake_scores")):
        check(f"GLASS step 1: {quantity}", ours, glass_ref[key], atol=1e-5 * float(np.abs(glass_ref[key]).max()))
    check("GLASS step 1: BCE loss of true features", losses[0]["true_loss"], glass_ref["step1/true_loss"])
    check("GLASS step 1: BCE loss of GAS features", losses[0]["gaus_loss"], glass_ref["step1/gaus_loss"])
    check("GLASS focal loss per step", torch.stack([x["focal_loss"] for x in losses]), glass_ref["focal_loss"], rtol=1e-4)
    check("GLASS loss per step", torch.stack([x["loss"] for x in losses]), glass_ref["loss"], rtol=1e-4)
    # Biases feeding the discriminator's BatchNorm (train mode: batch statistics), the adaptor's and the
    # first discriminator layer's, shift every feature alike, which BatchNorm removes: their gradients are
    # float rounding noise (|g| ≤ 1e-6 against a median 2e-2 for the adaptor weights), which Adam turns
    # into steps of ±lr on either side. They are held only to |Δ| ≤ 2·lr·steps, and so is the running
    # mean of that BatchNorm, which averages the discriminator bias in. Every other parameter: within
    # 1 % of the farthest Adam can move it in these steps (lr·steps), plus 1e-5 relative.
    noisy = {"projection": ("layers.0fc.bias",), "discriminator": ("body.block1.0.bias", "body.block1.1.running_mean")}
    for name, part, lr in (("projection", model.projection, cfg["lr"]), ("discriminator", model.discriminator, 2 * cfg["lr"])):
        state = part.state_dict()
        travel = lr * cfg["train_steps"]
        for key in noisy[name]:
            check(f"trained/{name}.{key} (follows a rounding-noise gradient)", state.pop(key),
                  glass_ref[f"trained/{name}.{key}"], rtol=0, atol=2 * travel)
        check_state(f"trained/{name}.", state, glass_ref, rtol=1e-5, atol=0.01 * travel, travel=travel)
    module.eval()
    with torch.no_grad():
        pred = model(common.glass_test_images())
    # after our own 3 steps the noise-driven biases above shift the scores by up to ~5e-4 relative
    check("GLASS image scores (our training)", pred.pred_score, glass_ref["test/score"], rtol=2e-3)
    check("GLASS smoothed anomaly maps (our training)", pred.anomaly_map, glass_ref["test/map"], rtol=2e-3, atol=1e-6)
    # with the official trained adaptor and discriminator, scoring itself is held to 1e-5
    for name, part in (("projection", model.projection), ("discriminator", model.discriminator)):
        part.load_state_dict({k: torch.from_numpy(glass_ref[f"trained/{name}.{k}"]) for k in part.state_dict()
                              if f"trained/{name}.{k}" in glass_ref}, strict=False)
    with torch.no_grad():
        pred = model(common.glass_test_images())
    check("GLASS image scores (official weights)", pred.pred_score, glass_ref["test/score"])
    check("GLASS smoothed anomaly maps (official weights)", pred.anomaly_map, glass_ref["test/map"], atol=1e-7)


# ----------------------------------------------------------------------------------------------- DDAD
@pytest.fixture(scope="module")
def ddad_ref():
    return load("ddad")


def _ddad_model(ref: dict[str, np.ndarray]):
    """Our DdadModel at the fixture's settings with the seeded weights; ``seed=None`` = official test noise."""
    from ispad_bench.models.ddad.torch_model import DdadModel

    cfg = settings(ref)
    model = DdadModel(image_size=cfg["image_size"], base_channels=cfg["base_channels"], heads=cfg["heads"],
                      attention_resolutions=tuple(cfg["attention"]),
                      feature_backbone=cfg["backbone"], pre_trained=False, w=cfg["w"], w_da=cfg["w_da"],
                      start=cfg["start"], skip=cfg["skip"], eta=cfg["eta"], v=cfg["v"], normalization="batch",
                      seed=None, map_crop=None)
    common.seeded_(model.unet, cfg["unet_seed"])
    common.seeded_(model.feature_extractor, cfg["extractor_seed"])
    common.seeded_(model.frozen_extractor, cfg["extractor_seed"])
    check("seeded UNet weights (digest)", common.weights_digest(model.unet), ref["unet_digest"], rtol=1e-12)
    check("seeded extractor weights (digest)", common.weights_digest(model.feature_extractor), ref["extractor_digest"],
          rtol=1e-12)
    return model


def test_ddad_unet_reconstruction_and_map(ddad_ref, one_thread):
    """UNet ε on fixed (x, t); conditioned DDIM from t = 250 in steps of 25 (same global-RNG noise); the map
    on the official reconstruction; and the whole test forward (scores and maps)."""
    cfg = settings(ddad_ref)
    model = _ddad_model(ddad_ref).eval()
    with torch.no_grad():
        eps = model.unet(torch.from_numpy(ddad_ref["unet/x"]), torch.from_numpy(ddad_ref["unet/t"]))
    check("DDAD UNet output ε", eps, ddad_ref["unet/eps"], atol=1e-5 * float(np.abs(ddad_ref["unet/eps"]).max()))
    images01 = torch.from_numpy(ddad_ref["images01"])
    x = images01 * 2 - 1
    torch.manual_seed(cfg["noise_seed"])
    check("DDAD conditioned DDIM reconstruction", model.reconstruct(x, x, cfg["w"]), ddad_ref["recon"], atol=1e-5)
    with torch.no_grad():
        amap = model.anomaly_map(torch.from_numpy(ddad_ref["recon"]), x)
    # maps: 1e-5 of the map's range (the Gaussian sums 33² products; values near 0 get no 1e-5 relative)
    map_atol = 1e-5 * float(np.abs(ddad_ref["map"]).max())
    check("DDAD anomaly map (official reconstruction)", amap, ddad_ref["map"], atol=map_atol)
    torch.manual_seed(cfg["noise_seed"])
    pred = model(images01)
    check("DDAD image scores (test forward)", pred.pred_score, ddad_ref["score"])
    check("DDAD anomaly maps (test forward)", pred.anomaly_map, ddad_ref["map"], atol=map_atol)


def test_ddad_diffusion_steps(ddad_ref, one_thread):
    """3 diffusion steps (Adam, weight decay 0.05; t then ε from the global RNG): losses and UNet parameters.

    Parameters: within 1 % of the farthest Adam moves a weight in 3 steps (3·lr) plus 1e-5 relative, but
    within 2·3·lr where the gradient is zero in exact arithmetic: at 32 channels GroupNorm(32) has one
    channel per group, so the conv bias and the time-embedding projection feeding it only shift whole
    channels, which the norm removes; Adam normalises the rounding noise left to ±lr on either side.
    """
    cfg = settings(ddad_ref)
    model = _ddad_model(ddad_ref)
    model.unet.train()
    optimizer, _ = model.make_optimizers(lr=cfg["lr"], weight_decay=0.05)
    images01 = torch.from_numpy(ddad_ref["images01"])
    torch.manual_seed(cfg["noise_seed"] + 1)
    losses = torch.stack([model.diffusion_step(images01, optimizer) for _ in range(cfg["diffusion_steps"])])
    check("DDAD diffusion loss per step", losses, ddad_ref["diffusion/loss"], rtol=1e-5)
    travel = cfg["lr"] * cfg["diffusion_steps"]
    state = model.unet.state_dict()
    invisible = {k: state.pop(k) for k in list(state) if ("in_layers.2.bias" in k or "embed_layers.1." in k)
                 and state[k].shape[0] == 32}
    # the key part of each attention's qkv bias adds q·b to every logit of a query alike, which the
    # softmax removes: its gradient is rounding noise too (Adam: ±lr steps), held to 2·lr·steps
    for k in [k for k in state if k.endswith("to_qkv.bias")]:
        heads = model.unet.get_submodule(k.removesuffix(".to_qkv.bias")).heads  # per head: query, key, value
        bias = state.pop(k).detach().reshape(heads, 3, -1)
        ref_bias = ddad_ref[f"diffusion/unet.{k}"].reshape(heads, 3, -1)
        check(f"diffusion/unet.{k} (query, value parts)", bias[:, ::2], ref_bias[:, ::2], rtol=1e-5, atol=0.01 * travel)
        check(f"diffusion/unet.{k} (key part: rounding-noise gradient)", bias[:, 1], ref_bias[:, 1],
              rtol=0, atol=2 * travel)
    assert check_state("diffusion/unet.", invisible, ddad_ref, rtol=0, atol=2 * travel) >= 10
    assert check_state("diffusion/unet.", state, ddad_ref, rtol=1e-5, atol=0.01 * travel) > 100


def test_ddad_domain_adaptation_step(ddad_ref, one_thread):
    """One domain-adaptation step on the official DA batch (2 targets + 2 inputs; reconstruction with w_DA,
    AdamW lr 1e-4 on the extractor in train mode): loss, and the extractor's parameters and BN statistics."""
    cfg = settings(ddad_ref)
    model = _ddad_model(ddad_ref)
    _, optimizer = model.make_optimizers(da_lr=1e-4)
    torch.manual_seed(cfg["noise_seed"] + 2)
    loss = model.domain_adaptation_step(torch.from_numpy(ddad_ref["images01"]), optimizer)
    check("DDAD domain-adaptation loss", loss, ddad_ref["da/loss"][0])
    assert check_state("da/extractor.", model.feature_extractor.state_dict(), ddad_ref, rtol=1e-5, atol=1e-6) > 50
