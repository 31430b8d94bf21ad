"""Patches/s that the supervised training loader delivers to the model (docs/supervised.md).

One run, side by side, on the same generated HDF5 stream, for the default path and with
``stream_augmentation`` (Table 8 on every stream patch):

* ``ISPADSupervised`` — the project's datamodule: per-batch reads from the file (or chunk-aligned shuffle
  windows), real-defect injection (``real_fraction 1``, ``injection_p`` 1/32: Table 8 augmentation and the
  512->256 centre crop of the injected real defects), §4.2 preprocessing, one ``ImageBatch`` per step;
* ``naive h5py`` — a plain map-style ``Dataset`` whose ``__getitem__`` reads ONE patch with h5py
  (per-worker handle), applies the same injection draw and preprocessing, and a standard
  ``DataLoader`` (``shuffle=True``, default collate) stacks them;
* ``h5py read only`` — the plain read alone: 32 random patches per batch, one ``ds[i]`` each, no
  processing, in the main process (what reading costs before any work is done).

Then the scaling ratio (patches/s with the most workers over 0 workers) of each path. Timed: everything
from the loader's iterator to an ``ImageBatch`` on the CPU (read + augment + inject + collate); the first
``--warmup`` batches (worker start, first window read) are timed separately. Besides wall-clock
patches/s each row gives the CPU time it used (main process and workers, µs per patch) and how many
cores other processes used meanwhile (from ``/proc/stat``): on a shared machine the wall figures fall
with that load, the CPU time much less. The stream is written once with the project's generator
(``ispad-bench data synth``) into ``--cache`` and reused (same parameters -> kept).

Usage::

    python benchmarks/stream_speed.py                          # 20k-patch LSM-1 stream, workers 0 and 2, both paths
    python benchmarks/stream_speed.py --batches 100 --workers 0 2 4 --modes augmented
    python benchmarks/stream_speed.py --patches 2000 --batches 20    # quick check

Figures depend on the page cache (a stream that was just written is in RAM) and on the machine's
load, which is printed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ispad_bench.data.augment import augment, preprocess, sample_params
from ispad_bench.data.hdf5 import discover_stream
from ispad_bench.data.modality import PATCH_SIZE, Modality
from ispad_bench.data.supervised import ISPADSupervised, to_image_batch
from ispad_bench.data.synth import generate

DEFAULT_CACHE = Path(tempfile.gettempdir()) / "ispad-bench-stream-speed"


class NaiveStream(Dataset):
    """Baseline: one h5py read per item, then the datamodule's injection draw and preprocessing."""

    def __init__(self, path: Path, modality: Modality, real: torch.Tensor, injection_p: float, seed: int,
                 stream_augmentation: bool):
        layout = discover_stream(path)
        self.path, self.images_key, self.length = layout.path, layout.images_key, layout.length
        with h5py.File(path, "r") as f:
            self.labels = np.asarray(f[layout.labels_key][:]).reshape(-1).astype(np.bool_)
        self.modality, self.real, self.p, self.seed = modality, real, injection_p, seed
        self.stream_augmentation = stream_augmentation
        self._file, self._pid = None, None

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict:
        if self._file is None or self._pid != os.getpid():  # h5py handles must not cross a fork
            self._file, self._pid = h5py.File(self.path, "r"), os.getpid()
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(i))
        aug = self.modality.augmentation
        label, source = bool(self.labels[i]), f"stream:{i}"
        if len(self.real) and torch.rand(1, generator=gen).item() < self.p:
            c = int(torch.randint(len(self.real), (1,), generator=gen))
            x = augment(self.real[c : c + 1].float().div_(255), sample_params(1, aug, gen), out_size=PATCH_SIZE)
            label, source = True, f"real:{c}"
        else:
            x = torch.from_numpy(self._file[self.images_key][i]).view(1, 1, PATCH_SIZE, PATCH_SIZE).float().div_(255)
            if self.stream_augmentation:
                x = augment(x, sample_params(1, aug, gen))
        return {"image": preprocess(x, self.modality.brightness_factor)[0], "label": label, "source": source}


def naive_batches(loader: DataLoader):
    for b in loader:
        yield to_image_batch({"image": b["image"], "gt_label": b["label"], "gt_mask": None, "source": b["source"]})


def datamodule_batches(dm: ISPADSupervised, loader: DataLoader):
    for b in loader:
        yield dm.on_after_batch_transfer(b)


def _jiffies(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # no /proc (not Linux) or the process ended
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime
    return total


def _busy_jiffies() -> int:
    try:
        cpu = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    except OSError:
        return 0
    values = [int(v) for v in cpu]
    return sum(values[:8]) - values[3] - values[4]  # all but idle and iowait


def measure(batches, n_batches: int, warmup: int) -> dict:
    """Time ``warmup`` then ``n_batches`` batches of an iterator of ``ImageBatch``es; CPU time of this
    process and its workers, and the cores other processes used, over the timed span."""
    t0 = time.perf_counter()
    t_warm = t0  # end of the warm-up batches: the timed span starts here
    it = iter(batches)
    counted = patches = injected = 0
    ours0 = busy0 = 0
    pids = [os.getpid()]
    for k, batch in enumerate(it):
        assert batch.image.shape[-2:] == (PATCH_SIZE, PATCH_SIZE) and batch.image.dtype == torch.float32
        if k < warmup:
            if k == warmup - 1:
                pids = [os.getpid()] + [p.pid for p in multiprocessing.active_children()]
                ours0, busy0 = _jiffies(pids), _busy_jiffies()
            t_warm = time.perf_counter()
            continue
        patches += len(batch.image)
        injected += sum(str(s).startswith("real:") for s in batch.image_path)
        counted += 1
        if counted == n_batches:
            break
    t1 = time.perf_counter()
    ours, busy = _jiffies(pids) - ours0, _busy_jiffies() - busy0
    del it
    steady = t1 - t_warm
    hz = os.sysconf("SC_CLK_TCK")
    return {"batches": counted, "patches": patches, "seconds": steady, "warmup_s": t_warm - t0,
            "patches_per_s": patches / steady if steady > 0 else float("nan"), "injected": injected,
            "cpu_us_per_patch": ours / hz / max(patches, 1) * 1e6,
            "other_cores": max(0.0, (busy - ours) / hz / steady) if steady > 0 else float("nan")}


def read_only(path: Path, n_batches: int, batch_size: int, seed: int) -> dict:
    """Plain h5py: ``batch_size`` random patches per batch, one ``ds[i]`` each, nothing else."""
    layout = discover_stream(path)
    rng = np.random.default_rng(seed)
    with h5py.File(path, "r") as f:
        ds = f[layout.images_key]
        c0, busy0, t0 = _jiffies([os.getpid()]), _busy_jiffies(), time.perf_counter()
        for _ in range(n_batches):
            batch = [ds[int(i)] for i in rng.integers(0, layout.length, batch_size)]
            assert len(batch) == batch_size
        dt = time.perf_counter() - t0
        ours, busy = _jiffies([os.getpid()]) - c0, _busy_jiffies() - busy0
    hz, patches = os.sysconf("SC_CLK_TCK"), n_batches * batch_size
    return {"batches": n_batches, "patches": patches, "seconds": dt, "warmup_s": 0.0, "patches_per_s": patches / dt,
            "injected": 0, "cpu_us_per_patch": ours / hz / patches * 1e6, "other_cores": max(0.0, (busy - ours) / hz / dt)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patches", type=int, default=20000, help="stream size to generate (>= 20000 for the issue's figure)")
    ap.add_argument("--modality", default="LSM-1")
    ap.add_argument("--batches", type=int, default=150, help="timed batches per configuration")
    ap.add_argument("--warmup", type=int, default=5, help="untimed first batches (worker start, first window)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--real-fraction", default="1")
    ap.add_argument("--injection-p", type=float, default=1 / 32)
    ap.add_argument("--modes", nargs="+", choices=("default", "augmented"), default=["default", "augmented"],
                    help="default path and/or stream_augmentation (Table 8 on every stream patch)")
    ap.add_argument("--stream-augmentation", action="store_true", help="same as --modes augmented")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the generated stream is kept")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-naive", action="store_true")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)
    if args.stream_augmentation:
        args.modes = ["augmented"]

    modality = Modality.parse(args.modality)
    root = args.cache / f"{modality.slug}-n{args.patches}-s{args.seed}"
    t = time.perf_counter()
    generate(root, patches=10, seed=args.seed, modalities=[modality], stream_patches=args.patches, verbose=False)
    print(f"stream: {root} ({args.patches} patches; ready in {time.perf_counter() - t:.1f} s)")
    print(f"load average {os.getloadavg()[0]:.2f} / {os.getloadavg()[1]:.2f} / {os.getloadavg()[2]:.2f}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    rows = []
    path = None
    for mode in args.modes:
        augmented = mode == "augmented"
        for workers in args.workers:
            torch.manual_seed(args.seed)
            dm = ISPADSupervised(root=root, modality=modality.value, real_fraction=args.real_fraction,
                                 injection_p=args.injection_p, train_batch_size=args.batch_size, num_workers=workers,
                                 stream_augmentation=augmented, seed=args.seed)
            dm.setup("fit")
            path = dm.stream_path()
            r = measure(datamodule_batches(dm, dm.train_dataloader()), args.batches, args.warmup)
            rows.append({"loader": "ISPADSupervised", "mode": mode, "workers": workers, **r})
            print(_line(rows[-1]), flush=True)
            if args.skip_naive:
                continue
            real = dm.train_data.real
            torch.manual_seed(args.seed)
            naive = NaiveStream(path, modality, real, args.injection_p if len(real) else 0.0, args.seed, augmented)
            loader = DataLoader(naive, batch_size=args.batch_size, shuffle=True, num_workers=workers,
                                generator=torch.Generator().manual_seed(args.seed))
            r = measure(naive_batches(loader), args.batches, args.warmup)
            rows.append({"loader": "naive h5py", "mode": mode, "workers": workers, **r})
            print(_line(rows[-1]), flush=True)
            del dm, loader
    if path is not None:
        rows.append({"loader": "h5py read only", "mode": "-", "workers": 0,
                     **read_only(path, args.batches, args.batch_size, args.seed)})
        print(_line(rows[-1]), flush=True)
    lo, hi = min(args.workers), max(args.workers)
    for mode in args.modes:
        for loader_name in ("ISPADSupervised", "naive h5py"):
            by = {r["workers"]: r["patches_per_s"] for r in rows if r["loader"] == loader_name and r["mode"] == mode}
            if lo != hi and lo in by and hi in by:
                print(f"scaling {loader_name:<16} {mode:<9}: workers {hi} / workers {lo} = {by[hi] / by[lo]:.2f}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=1))
    return 0


def _line(r: dict) -> str:
    return (f"{r['loader']:<16} {r['mode']:<9} workers {r['workers']}: {r['patches_per_s']:8.0f} patches/s "
            f"({r['patches']} patches in {r['seconds']:.2f} s after {r['warmup_s']:.2f} s warm-up; {r['injected']} injected; "
            f"CPU {r['cpu_us_per_patch']:.0f} us/patch; other processes {r['other_cores']:.1f} cores)")


if __name__ == "__main__":
    sys.exit(main())
