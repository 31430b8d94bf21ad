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

import h5py
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
AREA, POINTS = "squeegee_stroke", "pinhole"  # one defect folder per group (data/groups.py)
PIXELS = 32  # written image size: the models resize; the counts, not the pixels, are rehearsed


def split_sizes(modality: str) -> dict[str, int]:
    """Table 7 counts: reduced training split (<= 500, §3.2.1), the test split per group, the supervised stream."""
    from ispad_bench.data.layout import REDUCED_MAX
    from ispad_bench.data.modality import Modality

    s = Modality.parse(modality).splits
    return {"train": min(REDUCED_MAX, s.unsup_train_good), "good": s.test_good, "area": s.test_area,
            "points": s.test_points, "stream": s.sup_train_good + s.sup_train_synthetic,
            "stream_defects": s.sup_train_synthetic}


def write_split(root: Path, modality: str, seed: int = 0, test: dict[str, int] | None = None) -> dict[str, int]:
    """An MVTec-layout folder with the paper's counts (random textures, one square defect per mask).

    ``test`` replaces the test counts (EfficientAD's rows: its validation length is not part of its control flow).
    """
    from ispad_bench.data.modality import Modality

    sizes, rng = {**split_sizes(modality), **(test or {})}, np.random.default_rng(seed)
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


def write_stream(root: Path, modality: str, seed: int = 0) -> int:
    """The supervised HDF5 stream at Table 7's length (fault-free + synthetic-defect patches, seeded labels).

    Its images are a virtual dataset that repeats 2048 distinct random 256x256 patches (~128 MB on disk instead
    of ~13 GB; constant patches would make BatchNorm's batch variance 0 and training diverge); the reader,
    windows, batches and labels are the real ones. Returns the stream length.
    """
    from ispad_bench.data.hdf5 import LABELS_NAME, MASKS_NAME
    from ispad_bench.data.layout import SUPERVISED_DIR
    from ispad_bench.data.modality import PATCH_SIZE, Modality

    sizes, rng = split_sizes(modality), np.random.default_rng(seed)
    n, k, shape = sizes["stream"], SHUFFLE_WINDOW, (PATCH_SIZE, PATCH_SIZE)
    labels = np.zeros(n, np.uint8)
    labels[rng.permutation(n)[: sizes["stream_defects"]]] = 1
    path = root / Modality.parse(modality).value / SUPERVISED_DIR / "stream.h5"
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("distinct", data=rng.integers(0, 256, (k, *shape), np.uint8))
        layout = h5py.VirtualLayout((n, *shape), np.uint8)
        for start in range(0, n, k):
            stop = min(n, start + k)
            layout[start:stop] = h5py.VirtualSource(".", "distinct", shape=(k, *shape))[: stop - start]
        f.create_virtual_dataset("images", layout)
        f.create_dataset(MASKS_NAME, (n, *shape), np.uint8, chunks=(32, *shape), fillvalue=0, compression="gzip")
        f.create_dataset(LABELS_NAME, data=labels)
    return n


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
                      "--data.init_args.eval_batch_size", "8", "--trainer.max_steps", "{max_steps}"], {}),
    "uflow": (["--model.init_args.backbone", "resnet18", "--model.init_args.image_size", "64",
               "--model.init_args.pre_trained", "false", "--trainer.max_epochs", "2"], {"max_epochs": 2}),
    "supervised": (["--model.init_args.pre_trained", "false", "--model.init_args.image_size", "16",
                    "--trainer.max_epochs", "{max_epochs}"], {}),
}
EFFICIENT_AD_TEST = {"good": 16, "area": 2, "points": 2}  # its validation length is not part of its control flow
MAX_STEPS, T_0, STREAM_BATCH, SHUFFLE_WINDOW = 70000, 7813, 32, 2048  # configs (efficient_ad, supervised)


def stream_batches(n: int) -> int:
    """Batches in one pass over an n-patch stream: 2048-patch shuffle windows, each cut into whole batches of 32."""
    full, tail = divmod(n, SHUFFLE_WINDOW)
    return full * (SHUFFLE_WINDOW // STREAM_BATCH) + tail // STREAM_BATCH


def shortening(method: str, sizes: dict[str, int]) -> dict:
    """How a row is shortened, chosen so that the run reaches the same branches as at full length."""
    n = sizes["train"]
    if method == "efficient_ad":  # the step limit ends training as 70,000 does: at an epoch end (n | 70,000: one
        rest = MAX_STEPS % n      # epoch), or r batches into the epoch after a full one
        return {"max_steps": n + rest if rest else n}
    if method == "supervised":  # epochs until the first warm restart of the LR (T_0 steps) has happened
        return {"max_epochs": T_0 // stream_batches(sizes["stream"]) + 1}
    return SETUPS[method][1]


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
    if method == "efficient_ad":  # batch 1; Lightning ends at max_steps without validating a partial epoch
        steps = short["max_steps"]
        full, rest = divmod(steps, n)
        epochs = full + (rest > 0)
        return {"batches_per_epoch": sorted({n, rest or n}), "evaluations": full, "epochs": epochs,
                "images_seen": steps, "optimizer_steps": steps, "tested_epoch": epochs - 1,
                "early_stopping": ("pixel_AUROC", 30), "lr_values": 1,
                "full_counts": {"epochs": -(-MAX_STEPS // n), "evaluations": MAX_STEPS // n,
                                "last_epoch_batches": MAX_STEPS % n or n, "lr_step_size_epochs": int(0.95 * MAX_STEPS)}}
    if method == "uflow":  # Anomalib engine: every batch of 32, an evaluation per epoch, EarlyStopping(pixel_AUROC, 30)
        epochs = short["max_epochs"]
        return {"batches_per_epoch": [-(-n // 32)], "evaluations": epochs, "epochs": epochs,
                "images_seen": epochs * n, "early_stopping": ("pixel_AUROC", 30)}
    if method == "supervised":  # one pass over the stream per epoch; CosineAnnealingWarmRestarts stepped per batch
        b, epochs = stream_batches(sizes["stream"]), short["max_epochs"]
        restarts, t, period = [], T_0, T_0
        while t < epochs * b:
            restarts.append(t)
            period *= 2
            t += period
        return {"batches_per_epoch": [b], "evaluations": epochs, "epochs": epochs, "images_seen": epochs * b * 32,
                "optimizer_steps": epochs * b, "lr_restarts": restarts, "early_stopping": ("val_loss", 20),
                "checkpoint_monitor": "val_loss", "tested": "lowest val_loss",
                "full_counts": {"stream": sizes["stream"], "batches_per_epoch": b, "first_restart_epoch": T_0 / b}}
    raise KeyError(method)


def prepare(method: str, modalities: list[str], tmp: Path) -> Path:
    """The data root a method's rows read (written once per method family)."""
    root = tmp / ("data-efficient_ad" if method == "efficient_ad" else "data")
    for modality in modalities:
        from ispad_bench.data.modality import Modality

        base = root / Modality.parse(modality).value
        if not (base / "test").is_dir():
            write_split(root, modality, test=EFFICIENT_AD_TEST if method == "efficient_ad" else None)
        if method == "supervised" and not (base / "supervised").is_dir():
            write_stream(root, modality)
    return root


def rehearse(method: str, modality: str, root: Path, work: Path) -> dict:
    """Train one paper config at the paper's counts; returns the measured values beside the expected ones."""
    from anomalib.cli import AnomalibCLI

    from ispad_bench.data.modality import Modality
    from ispad_bench.sweep.procedure import EpochTracker

    sizes = split_sizes(modality)
    short = shortening(method, sizes)
    want = expected(method, sizes, short)
    full_counts = want.pop("full_counts", None)
    train_dir = root / Modality.parse(modality).value / "train_reduced"  # EfficientAD's Imagenette stand-in
    overrides = [o.format(train_dir=train_dir, **short) for o in SETUPS[method][0]]
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
           "early_stopping": tracker.stopping[0] if tracker.stopping else None, "images_seen": m["images_seen"],
           "optimizer_steps": m["optimizer_steps"], "tested_epoch": m["tested_epoch"], "lr_restarts": m["lr_restarts"],
           "checkpoint_monitor": tracker.checkpoint_monitor,
           "lr_values": len({tuple(c["lr"]) for c in m["lr_changes"]})}
    info = {"tested_epoch": m["tested_epoch"], "full_counts": full_counts}
    if method == "glass":
        got["tested"] = "selected" if m["tested_epoch"] == proc["selected_epoch"] and proc["restored"] else (
            f"epoch {m['tested_epoch']}")
        info["selected_epoch"] = proc["selected_epoch"]
    elif method == "ddad":
        got.update(diffusion_steps=proc["diffusion_optimizer_steps"], tested_step=proc["tested_step"],
                   da_steps=proc["da_optimizer_steps"])
    elif method == "supervised":
        best = getattr(model, "best_val", {}).get("epoch")
        got["tested"] = "lowest val_loss" if best is not None and m["tested_epoch"] == best else f"epoch {m['tested_epoch']}"
        info["selected_epoch"] = best
    test = {k: sizes[k] for k in ("good", "area", "points")}
    test.update(EFFICIENT_AD_TEST if method == "efficient_ad" else {})
    return {"method": method, "modality": modality, "train": sizes["train"], "test": sum(test.values()),
            "stream": sizes["stream"] if method == "supervised" else None,
            "shortened": short, "expected": want, "measured": {k: got.get(k) for k in want}, "lr_changes": m["lr_changes"],
            "seconds": round(time.perf_counter() - t0, 1),
            "mismatches": sorted(k for k in want if want[k] != got.get(k)), **info}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="glass,ddad,uflow,supervised",
                        help="also efficient_ad: its 256 px PDN costs ~25 min per row on 2 CPU cores")
    parser.add_argument("--modalities", default="LSM-1,LSM-2,ASM")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work, modalities = Path(tmp) / "runs", args.modalities.split(",")
        for method in args.methods.split(","):
            root = prepare(method, modalities, Path(tmp))
            for modality in modalities:
                row = rehearse(method, modality, root, work)
                rows.append(row)
                flag = "OK" if not row["mismatches"] else "MISMATCH " + ",".join(row["mismatches"])
                stream = f" stream {row['stream']}" if row["stream"] else ""
                print(f"{method:12s} {modality:5s} train {row['train']:4d} test {row['test']:4d}{stream}  {flag}  "
                      f"({row['seconds']} s, shortened {row['shortened']})", flush=True)
                for key, want in row["expected"].items():
                    print(f"    {key:18s} expected {want!s:22s} measured {row['measured'].get(key)!s}")
                print(f"    LR at epoch starts {row['lr_changes'][:4]}; "
                      + ", ".join(f"{k} {v}" for k, v in row.items() if k in ("selected_epoch", "tested_epoch", "full_counts")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    bad = [r for r in rows if r["mismatches"]]
    print(f"{len(rows) - len(bad)} of {len(rows)} jobs ran as the official code / engine would")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
