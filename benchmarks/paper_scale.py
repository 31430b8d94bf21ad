"""Paper-scale rehearsal: each paper config's control flow at the paper's counts, through the real engine.

Generated splits of the paper's sizes (Table 7: reduced training splits of 500 / 401 / 500 patches, test
splits of 1565 / 478 / 1990), the configs' real batch sizes, epoch caps, evaluation schedules, step limits
and early stopping, with the smallest models the configs allow (random weights, tiny inputs where geometry
is not what is checked) and, where a run would take days, fewer epochs (column ``shortened``). Per job it
prints what ran (batches per epoch, optimiser steps, evaluations, epoch selected and tested, LR changes,
early-stopping rule, images seen) beside the values derived from the official code / Anomalib's engine
(docs/methods.md, "Paper-scale rehearsal"), and exits 1 on any mismatch.

    python benchmarks/paper_scale.py                      # every method x modality (~minutes per job on 2 cores)
    python benchmarks/paper_scale.py --methods glass,ddad --modalities LSM-2
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
AREA, POINTS = "squeegee_stroke", "pinhole"  # one defect folder per group (data/groups.py)
PIXELS = 32  # written image size: the models resize; the counts, not the pixels, are rehearsed


def split_sizes(modality: str) -> dict[str, int]:
    """Table 7 counts: reduced training split (<= 500, §3.2.1) and the test split per group."""
    from ispad_bench.data.layout import REDUCED_MAX
    from ispad_bench.data.modality import Modality

    s = Modality.parse(modality).splits
    return {"train": min(REDUCED_MAX, s.unsup_train_good), "good": s.test_good, "area": s.test_area,
            "points": s.test_points}


def write_split(root: Path, modality: str, seed: int = 0) -> dict[str, int]:
    """An MVTec-layout folder with the paper's counts (random textures, one square defect per mask)."""
    from ispad_bench.data.modality import Modality

    sizes, rng = split_sizes(modality), np.random.default_rng(seed)
    base = root / Modality.parse(modality).value
    rgb = Modality.parse(modality).channels == 3

    def save(path: Path, array: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.repeat(array[..., None], 3, -1) if rgb else array).save(path)

    for i in range(sizes["train"]):
        save(base / "train_reduced" / "good" / f"{i:04d}.png", rng.integers(0, 255, (PIXELS, PIXELS), np.uint8))
    for i in range(sizes["good"]):
        save(base / "test" / "good" / f"{i:04d}.png", rng.integers(0, 255, (PIXELS, PIXELS), np.uint8))
    for folder, n in ((AREA, sizes["area"]), (POINTS, sizes["points"])):
        for i in range(n):
            image = rng.integers(0, 255, (PIXELS, PIXELS), np.uint8)
            mask = np.zeros((PIXELS, PIXELS), np.uint8)
            y, x = rng.integers(0, PIXELS - 8, 2)
            mask[y : y + 8, x : x + 8] = 255
            image[mask > 0] = 255
            save(base / "test" / folder / f"{i:04d}.png", image)
            save(base / "ground_truth" / folder / f"{i:04d}_mask.png", mask)
    return sizes


# Per method: the overrides that make the model small and the run short, and what is shortened.
COMMON = ["--data.init_args.num_workers", "0", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
          "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
          "--model.init_args.visualizer", "false"]
SETUPS = {
    "glass": (["--model.init_args.image_size", "32", "--model.init_args.pre_trained", "false",
               "--model.init_args.backbone", "resnet18", "--model.init_args.pretrain_embed_dim", "64",
               "--model.init_args.target_embed_dim", "64", "--model.init_args.discriminator_hidden", "32",
               "--trainer.max_epochs", "3"], {"max_epochs": 3}),
    "ddad": (["--data.init_args.image_size", "32", "--model.init_args.image_size", "32",
              "--model.init_args.unet_base_channels", "32", "--model.init_args.unet_attention_resolutions", "[8]",
              "--model.init_args.feature_backbone", "resnet18", "--model.init_args.pre_trained", "false",
              "--model.init_args.map_crop", "null", "--model.init_args.test_start", "25",
              "--model.init_args.diffusion_steps", "3", "--model.init_args.test_checkpoint", "2"],
             {"diffusion_epochs": 3, "test_checkpoint": 2}),
    "efficient_ad": (["--model.init_args.model_size", "small", "--model.init_args.teacher_out_channels", "16",
                      "--model.init_args.pre_trained", "false", "--model.init_args.imagenet_dir", "{train_dir}",
                      "--trainer.max_epochs", "1"], {"max_epochs": 1}),
    "uflow": (["--model.init_args.backbone", "resnet18", "--model.init_args.image_size", "64",
               "--model.init_args.pre_trained", "false", "--trainer.max_epochs", "2"], {"max_epochs": 2}),
}


def expected(method: str, sizes: dict[str, int], short: dict) -> dict:
    """What the official code / Anomalib's engine does at these counts (docs/methods.md cites the lines)."""
    n = sizes["train"]
    if method == "glass":  # glass.py _train_discriminator: break once samples > limit (392) at batch 8
        batches = min(-(-n // 8), 392 // 8 + 1)
        epochs = short["max_epochs"]
        return {"batches_per_epoch": [batches], "evaluations": epochs, "epochs": epochs,
                "images_seen": epochs * batches * 8, "tested": "selected", "early_stopping": None}
    if method == "ddad":  # train.py drop_last; checkpoint N saved at step 0 of epoch N; DA_batch_size 16
        b = n // 8
        e, chp = short["diffusion_epochs"], short["test_checkpoint"]
        return {"batches_per_epoch": [b], "evaluations": 0, "diffusion_steps": e * b, "tested_step": (chp - 1) * b + 1,
                "da_steps": 4 * (b * 8 // 16), "epochs": e + 4, "early_stopping": None,
                "full_counts": {"steps_to_checkpoint_2000": 1999 * b + 1, "phase1_steps": 3000 * b}}
    if method == "efficient_ad":  # Anomalib engine at batch 1; StepLR(0.95 max_steps) stepped per epoch: no change
        epochs = short["max_epochs"]
        return {"batches_per_epoch": [n], "evaluations": epochs, "epochs": epochs, "images_seen": epochs * n,
                "early_stopping": ("pixel_AUROC", 30), "lr_values": 1,
                "full_counts": {"epoch_reaching_max_steps": -(-70000 // n), "lr_step_size_epochs": 66500}}
    if method == "uflow":  # Anomalib engine: every batch of 32, an evaluation per epoch, EarlyStopping(pixel_AUROC, 30)
        epochs = short["max_epochs"]
        return {"batches_per_epoch": [-(-n // 32)], "evaluations": epochs, "epochs": epochs,
                "images_seen": epochs * n, "early_stopping": ("pixel_AUROC", 30)}
    raise KeyError(method)


def rehearse(method: str, modality: str, root: Path, work: Path) -> dict:
    """Train one paper config at the paper's counts; returns the measured values beside the expected ones."""
    from anomalib.cli import AnomalibCLI

    from ispad_bench.data.modality import Modality
    from ispad_bench.sweep.procedure import EpochTracker

    sizes = split_sizes(modality)
    overrides, short = SETUPS[method]
    want = expected(method, sizes, short)
    full_counts = want.pop("full_counts", None)
    train_dir = root / Modality.parse(modality).value / "train_reduced"  # EfficientAD's Imagenette stand-in
    overrides = [o.replace("{train_dir}", str(train_dir)) for o in overrides]
    config = CONFIGS / method / f"{Modality.parse(modality).slug}.yaml"
    t0 = time.perf_counter()
    cli = AnomalibCLI(args=["train", "--config", str(config), "--data.init_args.root", str(root), *COMMON, *overrides,
                            "--trainer.callbacks+=ispad_bench.sweep.procedure.EpochTracker",
                            "--default_root_dir", str(work / f"{method}-{modality}")])
    model, trainer = cli.engine.model, cli.engine.trainer
    (tracker,) = [c for c in trainer.callbacks if isinstance(c, EpochTracker)]
    m = tracker.measured()
    proc = model.procedure() if hasattr(model, "procedure") else {}
    got = {"batches_per_epoch": m["batches_per_epoch"], "evaluations": m["evaluations"], "epochs": m["epochs"],
           "early_stopping": tracker.stopping[0] if tracker.stopping else None}
    if method == "efficient_ad":
        got.update(images_seen=m["images_seen"], lr_values=len({tuple(c["lr"]) for c in m["lr_changes"]}))
        info = {"tested_epoch": m["tested_epoch"], "full_counts": full_counts}
    elif method == "uflow":
        got["images_seen"] = m["images_seen"]
        info = {"tested_epoch": m["tested_epoch"]}
    elif method == "glass":
        got["images_seen"] = m["images_seen"]
        got["tested"] = "selected" if m["tested_epoch"] == proc["selected_epoch"] and proc["restored"] else (
            f"epoch {m['tested_epoch']}")
        info = {"selected_epoch": proc["selected_epoch"], "tested_epoch": m["tested_epoch"]}
    else:
        got.update(diffusion_steps=proc["diffusion_optimizer_steps"], tested_step=proc["tested_step"],
                   da_steps=proc["da_optimizer_steps"])
        info = {"full_counts": full_counts}
    return {"method": method, "modality": modality, "train": sizes["train"], "test": sum(sizes.values()) - sizes["train"],
            "shortened": short, "expected": want, "measured": got, "lr_changes": m["lr_changes"],
            "optimizer_steps": m["optimizer_steps"], "seconds": round(time.perf_counter() - t0, 1),
            "mismatches": sorted(k for k in want if want[k] != got.get(k)), **info}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="glass,ddad,uflow", help="efficient_ad runs too, but is not yet checked on CPU")
    parser.add_argument("--modalities", default="LSM-1,LSM-2,ASM")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root, work = Path(tmp) / "data", Path(tmp) / "runs"
        modalities = args.modalities.split(",")
        for modality in modalities:
            write_split(root, modality)
        for method in args.methods.split(","):
            for modality in modalities:
                row = rehearse(method, modality, root, work)
                rows.append(row)
                flag = "OK" if not row["mismatches"] else "MISMATCH " + ",".join(row["mismatches"])
                print(f"{method:8s} {modality:5s} train {row['train']:4d} test {row['test']:4d}  {flag}  ({row['seconds']} s)")
                for key, want in row["expected"].items():
                    print(f"    {key:18s} expected {want!s:22s} measured {row['measured'].get(key)!s}")
                print(f"    LR changes {row['lr_changes']}; optimiser steps {row['optimizer_steps']}; "
                      + ", ".join(f"{k} {v}" for k, v in row.items() if k in ("selected_epoch", "tested_epoch", "full_counts")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if r["mismatches"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} jobs ran as the official code / engine would")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
