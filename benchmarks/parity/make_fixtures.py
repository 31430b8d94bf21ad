"""Reference outputs of the official GLASS and DDAD code, for ``tests/test_parity.py``.

    python benchmarks/parity/make_fixtures.py --glass PATH/TO/GLASS --ddad PATH/TO/DDAD \\
        --out tests/fixtures/parity/

imports the official code from the checkouts given (never vendored; commits GLASS f788d56, DDAD
4323a15, checked by file hash, another refused unless ``--force``), runs it on CPU at small sizes
with seeded random weights (``common.seeded_``: nothing is downloaded) and writes ``glass.npz`` and
``ddad.npz``: inputs, initial head weights, outputs, and trained parameters (large tensors as a
fixed sample + sum + norm). Extra packages the official imports need: imgaug (GLASS ``perlin.py``;
``pip install --no-deps imgaug six`` suffices, NumPy 2's missing ``np.sctypes`` is restored for it),
kornia, matplotlib, torchmetrics (DDAD). TensorBoard is stubbed (``common.import_official``).

Where the official code draws randomness internally, the draw is patched at the call (here, never in
the official files) so both sides see the same numbers:

* GLASS ``perlin.py``: ``np.random.randint`` (lattice scales), ``np.random.rand`` (gradient angles),
  imgaug's ``Affine(rotate=(-90, 90))`` (angle) and ``torch.rand(1)`` (union/intersection/single) take
  the values our LAS draws from ``torch.Generator().manual_seed(seed)``, in its order.
* GLASS ``datasets/mvtec.py``: ``perlin_mask`` returns a fixed mask and ``np.random.normal`` a fixed β;
  the texture goes through the deterministic ``transform_img`` (``rand_aug=0``).
* GLASS ``_train_discriminator``: the GAS noise uses the global torch RNG, seeded before the run; the
  port draws the same numbers from the same seed (``randn_like`` × σ = ``torch.normal(0, σ)``).
* DDAD: the global torch RNG is seeded when the (patched) data loader is iterated, right before the
  loop body, so ``randint``/``randn_like`` in ``train.py``/``reconstruction.py`` match the port's.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    DDAD, FIXTURES, GLASS, OFFICIAL, check_official, compact_state, glass_batches, glass_test_images, import_official,
    seeded_, weights_digest,
)

IMAGENET_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
IMAGENET_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@contextlib.contextmanager
def patched(obj: object, name: str, value: object):
    """Temporarily replace ``obj.name``."""
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def meta(name: str, bad: list[str], **extra: object) -> np.ndarray:
    info = {"official": OFFICIAL[name]["repo"], "commit": OFFICIAL[name]["commit"], "differs": bad,
            "torch": torch.__version__, "numpy": np.__version__, **extra}
    return np.array(json.dumps(info))


# ------------------------------------------------------------------------------------------------- GLASS
class OurDraws:
    """Replays the draws of our LAS generator for the official ``perlin.py`` calls."""

    def __init__(self, seed: int) -> None:
        self.g = torch.Generator().manual_seed(seed)

    def randint(self, low: int, high: int) -> int:
        return int(torch.randint(low, high, (1,), generator=self.g))

    def rand(self, *shape: int) -> np.ndarray:
        return torch.rand(shape, generator=self.g).double().numpy()

    def angle(self) -> float:
        return -90.0 + 180.0 * float(torch.rand(1, generator=self.g))

    def torch_rand(self, *shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=self.g)


@contextlib.contextmanager
def replay_perlin(perlin: types.ModuleType, draws: OurDraws, fields: list | None = None):
    """Route the randomness of official ``perlin.py`` through ``draws``; record unrotated fields."""
    iaa = perlin.iaa

    class FixedAffine:
        def __init__(self, rotate: tuple[float, float]) -> None:
            assert tuple(rotate) == (-90, 90), rotate
            self.aug = iaa.Affine(rotate=draws.angle())

    class Seq:
        def __init__(self, children: list) -> None:
            self.aug = iaa.Sequential([c.aug for c in children])

        def __call__(self, image: np.ndarray) -> np.ndarray:
            return self.aug(image=image)

    fake_np = types.SimpleNamespace(**{k: getattr(np, k) for k in dir(np) if not k.startswith("__")})
    fake_np.random = types.SimpleNamespace(randint=draws.randint, rand=draws.rand)
    fake_torch = types.SimpleNamespace(rand=draws.torch_rand, from_numpy=torch.from_numpy, nn=torch.nn)
    real_field = perlin.rand_perlin_2d_np

    def field(*args, **kwargs):
        out = real_field(*args, **kwargs)
        if fields is not None:
            fields.append(out)
        return out

    with contextlib.ExitStack() as stack:
        stack.enter_context(patched(perlin, "np", fake_np))
        stack.enter_context(patched(perlin, "torch", fake_torch))
        stack.enter_context(patched(perlin, "iaa", types.SimpleNamespace(Sequential=Seq, Affine=FixedAffine)))
        stack.enter_context(patched(perlin, "rand_perlin_2d_np", field))
        yield


def glass_las(mods: dict, tmp: Path) -> dict[str, np.ndarray]:
    """Perlin fields, thresholded rotated fields, masks (official ``perlin.py``) and the blend
    (official ``MVTecDataset.__getitem__``) on fixed inputs."""
    perlin, mvtec = mods["perlin"], mods["datasets.mvtec"]
    size = GLASS["image_size"]
    out: dict[str, np.ndarray] = {}
    for k, seed in enumerate(GLASS["las_seeds"]):
        fields: list[np.ndarray] = []
        with replay_perlin(perlin, OurDraws(seed), fields):
            out[f"las/thr{k}"] = perlin.generate_thr((3, size, size), 0, 6).astype(np.float32)
        out[f"las/field{k}"] = fields[0].astype(np.float32)
        fields.clear()
        with replay_perlin(perlin, OurDraws(seed), fields):
            mask_s, mask_l = perlin.perlin_mask((3, size, size), size // 8, 0, 6, torch.tensor([1]), 1)
        out[f"las/mask_s{k}"] = np.asarray(mask_s, np.float32)
        out[f"las/mask_l{k}"] = np.asarray(mask_l, np.float32)
        out[f"las/redraws{k}"] = np.array(len(fields) // 2 - 1)

    # blend: a tiny on-disk MVTec/DTD layout read by the official dataset
    from PIL import Image

    rng = np.random.default_rng(GLASS["data_seed"])
    (tmp / "mvtec" / "obj" / "train" / "good").mkdir(parents=True)
    (tmp / "dtd" / "images" / "cat").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / "mvtec/obj/train/good/000.png")
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / "dtd/images/cat/t.png")
    (tmp / "dtd/images/cat/t.png").rename(tmp / "dtd/images/cat/t.jpg")  # PNG bytes, .jpg name: lossless
    dataset = mvtec.MVTecDataset(str(tmp / "mvtec"), anomaly_source_path=str(tmp / "dtd/images"), classname="obj",
                                 resize=size, imagesize=size, rand_aug=0)
    texture01 = torchvision.transforms.Compose(dataset.transform_img.transforms[:-1])(
        Image.open(tmp / "dtd/images/cat/t.jpg").convert("RGB"))
    images, augs, masks, betas = [], [], [], []
    for k, beta_draw in enumerate((0.43, 0.93)):  # the second is clipped to 0.8
        mask_l = torch.from_numpy(out[f"las/mask_l{k}"].astype(np.float64))
        fixed_mask = lambda *a, _m=mask_l.numpy(): (np.zeros((size // 8, size // 8)), _m)  # noqa: E731
        normal = types.SimpleNamespace(**{n: getattr(np.random, n) for n in ("choice", "rand", "randint")},
                                       normal=lambda loc, scale, _b=beta_draw: _b)
        fake_np = types.SimpleNamespace(**{n: getattr(np, n) for n in dir(np) if not n.startswith("__")})
        fake_np.random = normal
        with patched(mvtec, "perlin_mask", fixed_mask), patched(mvtec, "np", fake_np):
            item = dataset[0]
        images.append(item["image"])
        augs.append(item["aug"])
        masks.append(mask_l.float())
        betas.append(min(max(beta_draw, 0.2), 0.8))
    out["las/image"] = torch.stack(images).float().numpy()
    out["las/texture01"] = texture01.numpy()
    out["las/mask"] = torch.stack(masks).numpy()
    out["las/beta"] = np.array(betas, np.float32)
    out["las/aug"] = torch.stack(augs).float().numpy()
    return out


class Recorder:
    """Stands in for GLASS's TensorBoard wrapper and tqdm bar; keeps the logged scalars."""

    def __init__(self) -> None:
        self.scalars: dict[str, list[float]] = {}
        self.logger = self
        self.g_iter = 0

    def add_scalar(self, name: str, value: object, step: int) -> None:
        self.scalars.setdefault(name, []).append(float(value))

    def step(self) -> None:
        self.g_iter += 1

    def set_description_str(self, text: str) -> None:
        pass


def glass_official_model(mods: dict) -> torch.nn.Module:
    """Official GLASS at the parity settings: seeded WRN50-2 backbone, official head init (seeded)."""
    size = GLASS["image_size"]
    backbone = seeded_(torchvision.models.wide_resnet50_2(weights=None), GLASS["backbone_seed"])
    net = mods["glass"].GLASS(torch.device("cpu"))
    torch.manual_seed(GLASS["head_seed"])
    net.load(backbone=backbone, layers_to_extract_from=["layer2", "layer3"], device=torch.device("cpu"),
             input_shape=(3, size, size), pretrain_embed_dimension=GLASS["embed_dim"],
             target_embed_dimension=GLASS["embed_dim"], patchsize=3, meta_epochs=1, dsc_layers=2,
             dsc_hidden=GLASS["hidden"], pre_proj=1, mining=1, noise=0.015, radius=0.75, p=0.5, lr=GLASS["lr"],
             svd=0, step=20, limit=392)
    net.svd = 0  # manifold GAS (paper §4.3.5; official --distribution 2)
    net.logger = Recorder()
    return net


def glass_training(mods: dict) -> dict[str, np.ndarray]:
    """Official ``_train_discriminator`` for 3 batches: GAS result and losses of step 1, losses of every
    step, head parameters after the 3 steps, then ``_predict`` (image scores, smoothed maps)."""
    perlin = mods["perlin"]
    size, batch = GLASS["image_size"], GLASS["batch"]
    net = glass_official_model(mods)
    out = {f"init/{k}": v for k, v in compact_state(net.pre_projection.state_dict(), "projection.", 1 << 15).items()}
    out.update({f"init/{k}": v for k, v in compact_state(net.discriminator.state_dict(), "discriminator.", 1 << 15).items()})
    out["backbone_digest"] = np.array(weights_digest(net.backbone))

    data = glass_batches()
    seed = GLASS["mask_seed"]
    for i, item in enumerate(data):
        masks = []
        for _ in range(batch):
            with replay_perlin(perlin, OurDraws(seed)):
                masks.append(torch.from_numpy(perlin.perlin_mask((3, size, size), size // 8, 0, 6,
                                                                 torch.tensor([1]), 1)[1]).float())
            seed += 1
        mask_l = torch.stack(masks)[:, None]
        item["aug"] = item["image"] * (1 - mask_l) + item["aug"] * mask_l
        item["mask_s"] = torch.nn.functional.max_pool2d(mask_l, 8)[:, 0]
        out[f"train/mask_l{i}"] = mask_l.numpy().astype(bool)  # images: common.glass_batches()

    calls: list[tuple[torch.Tensor, torch.Tensor]] = []
    hook = net.discriminator.register_forward_hook(lambda m, a, o: calls.append((a[0].detach().clone(), o.detach())))
    bce_values: list[float] = []
    focal_values: list[float] = []
    real_bce = torch.nn.BCELoss

    class RecordingBCE(real_bce):
        def forward(self, x, y):
            value = super().forward(x, y)
            bce_values.append(float(value))
            return value

    net.c = torch.zeros(size // 8 * size // 8, GLASS["embed_dim"])  # centre: only logged under manifold GAS
    torch.manual_seed(GLASS["noise_seed"])
    with patched(torch.nn, "BCELoss", RecordingBCE):
        focal_hook = net.focal_loss.register_forward_hook(lambda m, a, o: focal_values.append(float(o)))
        net._train_discriminator(data, 0, Recorder(), "")
    hook.remove()
    focal_hook.remove()
    n = batch * (size // 8) ** 2
    out["step1/gaus_feats"] = calls[20][0][n:].numpy()  # input of the 21st discriminator call of step 1
    out["step1/true_feats"] = calls[0][0][:n].numpy()
    out["step1/fake_scores"] = calls[21][1].numpy()
    out["step1/true_loss"] = np.array(bce_values[40])
    out["step1/gaus_loss"] = np.array(bce_values[41])
    out["focal_loss"] = np.array(focal_values, np.float32)
    out["loss"] = np.array(net.logger.scalars["loss"], np.float32)
    out.update({f"trained/{k}": v for k, v in compact_state(net.pre_projection.state_dict(), "projection.", 1 << 15).items()})
    out.update({f"trained/{k}": v for k, v in compact_state(net.discriminator.state_dict(), "discriminator.", 1 << 15).items()})

    scores, maps = net._predict(glass_test_images())
    out["test/score"] = np.array(scores, np.float32)
    out["test/map"] = np.stack(maps).astype(np.float32)
    return out


def make_glass(root: str, force: bool, out_dir: Path) -> Path:
    bad = check_official(root, "glass", force)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the official modules write relative paths (results/, ...); keep them out of the repo
        try:
            mods = import_official(root, "glass", ["glass", "perlin", "datasets.mvtec"])
            arrays = {**glass_las(mods, Path(tmp)), **glass_training(mods)}
        finally:
            os.chdir(cwd)
    path = out_dir / "glass.npz"
    np.savez_compressed(path, meta=meta("glass", bad, settings=GLASS), **arrays)
    return path


# -------------------------------------------------------------------------------------------------- DDAD
def ddad_config(tmp: Path) -> types.SimpleNamespace:
    ns = types.SimpleNamespace
    return ns(
        data=ns(image_size=DDAD["image_size"], batch_size=DDAD["batch"], DA_batch_size=DDAD["batch"],
                data_dir=str(tmp), category="obj"),
        model=ns(device="cpu", beta_start=1e-4, beta_end=0.02, trajectory_steps=1000, test_trajectoy_steps=DDAD["start"],
                 skip=DDAD["skip"], eta=DDAD["eta"], v=DDAD["v"], w=DDAD["w"], w_DA=DDAD["w_da"], DLlambda=0.1,
                 learning_rate=DDAD["lr"], weight_decay=0.05, epochs=DDAD["diffusion_steps"], save_model=False,
                 checkpoint_dir="checkpoints", num_workers=0, DA_epochs=1, feature_extractor="resnet50"),
    )


class OneBatchLoader:
    """Stands in for the official ``DataLoader`` (no shuffle, one batch); seeds the global RNG once,
    when first iterated, i.e. right before the official loop body draws."""

    def __init__(self, batch: torch.Tensor, seed: int) -> None:
        self.batch, self.seed, self.seeded = batch, seed, False

    def __iter__(self):
        if not self.seeded:
            torch.manual_seed(self.seed)
            self.seeded = True
        yield (self.batch,)


def make_ddad(root: str, force: bool, out_dir: Path) -> Path:
    bad = check_official(root, "ddad", force)
    size, batch = DDAD["image_size"], DDAD["batch"]
    out: dict[str, np.ndarray] = {}
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            mods = import_official(root, "ddad", ["unet", "reconstruction", "anomaly_map", "feature_extractor",
                                                  "resnet", "train", "loss"])
            cfg = ddad_config(Path(tmp))
            (Path(tmp) / "checkpoints" / "obj").mkdir(parents=True)

            def official_unet() -> torch.nn.Module:
                net = mods["unet"].UNetModel(size, DDAD["base_channels"], dropout=0.0, n_heads=DDAD["heads"], in_channels=3,
                                             attention_resolutions=",".join(map(str, DDAD["attention"])))
                return seeded_(net, DDAD["unet_seed"])

            def official_extractor(pretrained: bool = False) -> torch.nn.Module:
                return seeded_(mods["resnet"].resnet18(pretrained=False), DDAD["extractor_seed"])

            images01 = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(DDAD["data_seed"]))
            x = images01 * 2 - 1  # official Dataset_maker: ToTensor, then t * 2 - 1
            out["images01"] = images01.numpy()
            unet = official_unet().eval()
            out["unet_digest"] = np.array(weights_digest(unet))
            fe = official_extractor()
            out["extractor_digest"] = np.array(weights_digest(fe))

            # UNet output
            noisy = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(DDAD["data_seed"] + 1))
            t = torch.tensor([0.0, 10.0, 500.0, 999.0])
            with torch.no_grad():
                out["unet/x"], out["unet/t"], out["unet/eps"] = noisy.numpy(), t.numpy(), unet(noisy, t).numpy()

            # conditioned DDIM reconstruction of each image toward itself (test), then the map
            torch.manual_seed(DDAD["noise_seed"])
            recon = mods["reconstruction"].Reconstruction(unet, cfg)(x, x, DDAD["w"])[-1]
            out["recon"] = recon.numpy()
            with torch.no_grad():
                amap = mods["anomaly_map"].heat_map(recon, x, fe, cfg)
            out["map"] = amap.numpy()
            out["score"] = amap.amax(dim=(1, 2, 3)).numpy()  # ddad.py: torch.max(pred) per image

            # 3 diffusion steps (train.trainer: Adam, weight decay 0.05, t then eps from the global RNG)
            losses: list[float] = []
            real_get_loss = mods["train"].get_loss

            def get_loss(*args):
                value = real_get_loss(*args)
                losses.append(float(value))
                return value

            trained = official_unet().train()
            loader = OneBatchLoader(x, DDAD["noise_seed"] + 1)
            with patched(mods["train"], "Dataset_maker", lambda **kw: None), \
                    patched(mods["train"], "get_loss", get_loss), \
                    patched(torch.utils.data, "DataLoader", lambda *a, **kw: loader):
                mods["train"].trainer(trained, "obj", cfg)
            out["diffusion/loss"] = np.array(losses, np.float32)
            out.update({f"diffusion/{k}": v for k, v in compact_state(trained.state_dict(), "unet.").items()})

            # 1 domain-adaptation step (feature_extractor.domain_adaptation, fine_tune=True, one batch)
            da_losses: list[float] = []
            real_loss = mods["feature_extractor"].loss_fucntion

            def da_loss(*args):
                value = real_loss(*args)
                da_losses.append(float(value))
                return value

            loader = OneBatchLoader(x, DDAD["noise_seed"] + 2)
            fe_mod = mods["feature_extractor"]
            with patched(fe_mod, "resnet50", official_extractor), patched(fe_mod, "Dataset_maker", lambda **kw: None), \
                    patched(fe_mod, "loss_fucntion", da_loss), \
                    patched(torch.utils.data, "DataLoader", lambda *a, **kw: loader):
                adapted = fe_mod.domain_adaptation(official_unet(), cfg, fine_tune=True).module
            out["da/loss"] = np.array(da_losses, np.float32)
            state = {k: v for k, v in adapted.state_dict().items() if not k.startswith(("layer4.", "fc."))}
            out.update({f"da/{k}": v for k, v in compact_state(state, "extractor.").items()})
        finally:
            os.chdir(cwd)
    path = out_dir / "ddad.npz"
    np.savez_compressed(path, meta=meta("ddad", bad, settings=DDAD), **out)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glass", help="checkout of github.com/cqylunlun/GLASS at f788d56")
    parser.add_argument("--ddad", help="checkout of github.com/arimousa/DDAD at 4323a15")
    parser.add_argument("--out", type=Path, default=FIXTURES)
    parser.add_argument("--force", action="store_true", help="accept a checkout at another commit")
    args = parser.parse_args(argv)
    if not (args.glass or args.ddad):
        parser.error("give --glass and/or --ddad")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)  # reproducible float summation order on CPU
    if args.glass:
        print(f"wrote {make_glass(args.glass, args.force, args.out)}")
    if args.ddad:
        print(f"wrote {make_ddad(args.ddad, args.force, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
