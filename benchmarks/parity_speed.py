"""Ours beside the official GLASS and DDAD code: one training step and one test batch each.

    python benchmarks/parity_speed.py --glass PATH/TO/GLASS --ddad PATH/TO/DDAD [--size 256 --batch 8]

Both sides run in this process on identical inputs with the same threads and seeded random weights
(``parity/common.py``; nothing is downloaded), interleaved (ours, official, ours, ...), each after one
untimed warm-up call; the table gives the fastest of ``--repeat`` timed calls and the ratio ours/official
(goal ≤ 1). What is timed:

* GLASS step: LAS for the batch + one discriminator/adaptor update with GAS. Official: the dataset's
  ``__getitem__`` for each image (reads the image and a texture file, Perlin mask with imgaug, texture
  augmentation, blend) + ``_train_discriminator`` on that batch. Ours: ``GlassISPAD.training_step`` (LAS
  from the same texture files inside the step; the training images arrive as tensors). Both in the main
  process (the official code can move LAS to loader workers; so can nothing in ours, it runs in the step).
* GLASS test batch: official ``_predict``; ours ``GlassISPADModel`` in eval mode (scores + smoothed maps).
* DDAD diffusion step: official ``train.trainer`` for one batch; ours ``DdadModel.diffusion_step``.
* DDAD domain-adaptation step: official ``domain_adaptation(fine_tune=True)`` for one batch (extractors
  prebuilt, checkpoint writes skipped); ours ``DdadModel.domain_adaptation_step``.
* DDAD test batch: official ``Reconstruction`` + ``heat_map`` (the ``ddad.py`` loop body); ours
  ``DdadModel.forward`` (default: per-image seeded noise).

Needs the official code's imports (imgaug for GLASS; see ``parity/make_fixtures.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent / "parity"))
from common import check_official, import_official, seeded_  # noqa: E402
from make_fixtures import OneBatchLoader, Recorder, ddad_config, patched  # noqa: E402


def race(name: str, ours: Callable[[], object], official: Callable[[], object], repeat: int, warmup: int) -> dict:
    """Interleaved timing; min and median seconds per call of each side."""
    times: dict[str, list[float]] = {"ours": [], "official": []}
    for i in range(warmup + repeat):
        for side, fn in (("ours", ours), ("official", official)):
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[side].append(time.perf_counter() - start)
    row = {"what": name, **{f"{side}_min_s": min(t) for side, t in times.items()},
           **{f"{side}_median_s": statistics.median(t) for side, t in times.items()}}
    row["ratio"] = row["ours_min_s"] / row["official_min_s"]
    print(f"{name:32s} ours {row['ours_min_s']:8.3f} s   official {row['official_min_s']:8.3f} s   "
          f"ours/official {row['ratio']:.2f}", flush=True)
    return row


def glass_rows(root: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    from PIL import Image

    from ispad_bench.models.glass.lightning_model import GlassISPAD

    size, batch = args.size, args.batch
    rng = np.random.default_rng(0)
    (tmp / "mvtec/obj/train/good").mkdir(parents=True)
    for i in range(batch):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp / f"mvtec/obj/train/good/{i:03d}.png")
    for c in ("a", "b"):
        (tmp / "dtd/images" / c).mkdir(parents=True)
        for i in range(2):  # DTD-like JPEGs (DTD images are 300-640 px)
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)).save(tmp / f"dtd/images/{c}/{i}.jpg")
    mods = import_official(root, "glass", ["glass", "perlin", "datasets.mvtec"])
    dataset = mods["datasets.mvtec"].MVTecDataset(str(tmp / "mvtec"), anomaly_source_path=str(tmp / "dtd/images"),
                                                  classname="obj", resize=size, imagesize=size)
    backbone = seeded_(torchvision.models.wide_resnet50_2(weights=None), 1)
    net = mods["glass"].GLASS(torch.device("cpu"))
    net.load(backbone=backbone, layers_to_extract_from=["layer2", "layer3"], device=torch.device("cpu"),
             input_shape=(3, size, size), pretrain_embed_dimension=1536, target_embed_dimension=1536, patchsize=3,
             meta_epochs=1, dsc_layers=2, dsc_hidden=1024, pre_proj=1, mining=1, noise=0.015, radius=0.75, p=0.5,
             lr=1e-4, svd=0, step=20, limit=392)
    net.svd, net.logger = 0, Recorder()
    net.c = torch.zeros((size // 8) ** 2, 1536)  # only logged under manifold GAS

    module = GlassISPAD(image_size=size, pre_trained=False, texture_dir=str(tmp / "dtd"), evaluator=False,
                        visualizer=False)
    seeded_(module.model.forward_modules["feature_aggregator"].feature_extractor, 1)
    opts = module.configure_optimizers()
    module.optimizers, module.log = (lambda: opts), (lambda *a, **k: None)
    module.manual_backward = lambda loss: loss.backward()
    images = torch.stack([dataset[i]["image"] for i in range(batch)])
    batch_obj = type("Batch", (), {"image": images})()

    def official_step() -> None:
        data = torch.utils.data.default_collate([dataset[i] for i in range(batch)])
        net._train_discriminator([data], 0, Recorder(), "")

    def ours_step() -> None:
        module.train()
        module.training_step(batch_obj, 0)

    def ours_test() -> None:
        module.eval()
        with torch.no_grad():
            module.model(images)

    return [race(f"GLASS step (LAS+GAS), batch {batch}", ours_step, official_step, args.repeat, args.warmup),
            race(f"GLASS test batch {batch}", ours_test, lambda: net._predict(images), args.repeat, args.warmup)]


def ddad_rows(root: str, args: argparse.Namespace, tmp: Path) -> list[dict]:
    from ispad_bench.models.ddad.torch_model import DdadModel

    size, batch = args.size, args.batch
    mods = import_official(root, "ddad", ["unet", "reconstruction", "anomaly_map", "feature_extractor", "resnet",
                                          "train", "loss"])
    cfg = ddad_config(tmp)
    cfg.data.image_size = size
    cfg.model.epochs, cfg.model.feature_extractor = 1, "wide_resnet101_2"
    unet = seeded_(mods["unet"].UNetModel(size, 64, dropout=0.0, n_heads=4, in_channels=3), 5)
    extractors = [seeded_(mods["resnet"].wide_resnet101_2(pretrained=False), 6) for _ in range(2)]
    model = DdadModel(image_size=size, pre_trained=False)
    seeded_(model.unet, 5)
    seeded_(model.feature_extractor, 6)
    seeded_(model.frozen_extractor, 6)
    opt_unet, opt_fe = model.make_optimizers(1e-4, 0.05, 1e-4)
    images01 = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(7))
    x = images01 * 2 - 1

    def official_diffusion() -> None:
        with patched(mods["train"], "Dataset_maker", lambda **kw: None), \
                patched(torch.utils.data, "DataLoader", lambda *a, **kw: OneBatchLoader(x, 0)):
            mods["train"].trainer(unet, "obj", cfg)

    def official_da() -> None:
        built = iter(extractors)
        fe_mod = mods["feature_extractor"]
        with patched(fe_mod, "wide_resnet101_2", lambda pretrained: next(built)), \
                patched(fe_mod, "Dataset_maker", lambda **kw: None), patched(torch, "save", lambda *a, **k: None), \
                patched(torch.utils.data, "DataLoader", lambda *a, **kw: OneBatchLoader(x, 0)):
            fe_mod.domain_adaptation(unet, cfg, fine_tune=True)

    def official_test() -> None:
        with torch.no_grad():
            recon = mods["reconstruction"].Reconstruction(unet, cfg)(x, x, cfg.model.w)[-1]
            mods["anomaly_map"].heat_map(recon, x, extractors[0].eval(), cfg)

    def ours_diffusion() -> None:
        model.train()
        model.diffusion_step(images01, opt_unet)

    def ours_da() -> None:
        model.train()
        model.domain_adaptation_step(images01, opt_fe)

    def ours_test() -> None:
        model.eval()
        model(images01)

    return [race(f"DDAD diffusion step, batch {batch}", ours_diffusion, official_diffusion, args.repeat, args.warmup),
            race(f"DDAD domain-adaptation step, batch {batch}", ours_da, official_da, args.repeat, args.warmup),
            race(f"DDAD test batch {batch}", ours_test, official_test, args.repeat, args.warmup)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--glass", help="checkout of github.com/cqylunlun/GLASS at f788d56")
    parser.add_argument("--ddad", help="checkout of github.com/arimousa/DDAD at 4323a15")
    parser.add_argument("--size", type=int, default=256, help="input size (paper: 256)")
    parser.add_argument("--batch", type=int, default=8, help="training and test batch (paper: 8)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeat", type=int, default=1, help="timed calls per side (the table shows the fastest)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls per side first")
    parser.add_argument("--force", action="store_true", help="accept official checkouts at other commits")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    if not (args.glass or args.ddad):
        parser.error("give --glass and/or --ddad")
    torch.set_num_threads(args.threads)
    print(f"size {args.size}, batch {args.batch}, {args.threads} threads, CPU, fastest of {args.repeat} "
          f"after {args.warmup} warm-up; load average at start {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # the official code writes relative paths
        try:
            for name, fn in (("glass", glass_rows), ("ddad", ddad_rows)):
                root = getattr(args, name)
                if root:
                    check_official(root, name, args.force)
                    (Path(tmp) / name).mkdir()
                    rows += fn(root, args, Path(tmp) / name)
        finally:
            os.chdir(cwd)
    print(f"load average at end {os.getloadavg()[0]:.1f}")
    if args.json:
        with contextlib.suppress(FileExistsError):
            args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
