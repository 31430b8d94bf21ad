"""Speed and memory of ``ispad-bench data build`` (issue 21), ours beside a baseline in one run.

1. **Extraction + PNG writing** (stage 3): patches/s of a build without stream over generated
   acquisitions (``--acquisitions`` of ``--tiles`` x ``--tiles`` generator scenes, 768 px each), with
   1 and ``--workers`` threads, beside the same number of plain ``PIL.Image.save`` calls of 256x256
   patches (default PNG settings, one thread: the bound the issue names; goal >= 0.8x of it).
2. **Stream writing** (stage 5): patches/s of the whole stream stage (sampling, Table 8 warp,
   synthetic defect, chunked gzip HDF5), and the HDF5 part alone: the same arrays written in our
   layout (32-patch chunks, gzip 1, chunk-wise writes) beside raw h5py (one contiguous uncompressed
   dataset per array, written at once).
3. **Peak memory** of a stream build at two sizes (``--stream-sizes``), each in a fresh process
   (``ru_maxrss``; the acquisitions' memory maps count once they are touched): bounded means the
   two figures are close although the sizes differ.

Usage::

    python benchmarks/build_speed.py                                  # ~2 min on 2 cores
    python benchmarks/build_speed.py --stream-sizes 2000 100000        # the issue's 100k figure (~10+ min)

Figures depend on the disk and the page cache (files just written are in RAM) and on the load of
the machine, which is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from ispad_bench.data.modality import Modality
from ispad_bench.data.synth.patterns import render, sample_scene, to_uint8

SCENE = 768


def write_acquisitions(folder: Path, count: int, tiles: int, seed: int = 0) -> int:
    """``count`` fault-free ASM acquisitions of tiles x tiles generator scenes (no defects: every window
    is written); returns the number of windows each one gives."""
    from ispad_bench.data.build.windows import window_count

    (folder / "good").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        rows = [np.concatenate([to_uint8(render(sample_scene(Modality.ASM, np.random.default_rng([seed, i, r, c]), SCENE)))
                                for c in range(tiles)], axis=1) for r in range(tiles)]
        Image.fromarray(np.concatenate(rows, axis=0)).save(folder / "good" / f"plate{i:02d}.png", compress_level=1)
    return window_count(tiles * SCENE) ** 2


def bench_extraction(source: Path, out: Path, workers: int) -> tuple[int, float]:
    from ispad_bench.data.build import BuildParams, build

    start = time.perf_counter()
    (result,) = build(source, out, params=BuildParams(stream_patches=0, workers=workers, test_share=0.5), verbose=False)
    seconds = time.perf_counter() - start
    written = result.counts["train"] + result.counts["test_good"]
    return written, seconds


def bench_pil(n: int, folder: Path, seed: int = 0, **save) -> float:
    """The baseline: ``n`` plain ``Image.save`` of 256x256 gray patches (default PNG settings unless ``save``)."""
    folder.mkdir(parents=True, exist_ok=True)
    big = to_uint8(render(sample_scene(Modality.ASM, np.random.default_rng(seed), SCENE)))
    start = time.perf_counter()
    for k in range(n):
        y, x = (k * 37) % (SCENE - 256), (k * 53) % (SCENE - 256)
        Image.fromarray(np.ascontiguousarray(big[y:y + 256, x:x + 256])).save(folder / f"{k:06d}.png", **save)
    return time.perf_counter() - start


def bench_stream(source: Path, out: Path, n: int, workers: int) -> dict:
    import h5py

    from ispad_bench.data.build import BuildParams, build
    from ispad_bench.data.build.stream import CHUNK, COMPRESSION, deflate_chunk
    from ispad_bench.data.synth.generate import run_ordered

    start = time.perf_counter()
    (result,) = build(source, out, params=BuildParams(stream_patches=n, workers=workers, reduced=10), verbose=False)
    total = time.perf_counter() - start
    path = result.target / "supervised" / "stream.h5"
    with h5py.File(path) as f:
        images, masks, labels = f["images"][()], f["ground_truth"][()], f["syn_stream"][()]
    timings = {}
    for name in ("ours", "raw"):
        target = out / f"{name}.h5"
        start = time.perf_counter()
        with h5py.File(target, "w") as f:
            if name == "raw":
                f.create_dataset("images", data=images)
                f.create_dataset("ground_truth", data=masks)
                f.create_dataset("syn_stream", data=labels)
            else:  # as write_stream: chunks deflated on the worker threads, handed to HDF5 whole
                kw = {"chunks": (CHUNK, 256, 256), **COMPRESSION}
                di = f.create_dataset("images", images.shape, np.uint8, **kw)
                dm = f.create_dataset("ground_truth", masks.shape, np.uint8, **kw)
                f.create_dataset("syn_stream", data=labels)
                starts = range(0, len(labels), CHUNK)
                jobs = [(lambda s=s: (deflate_chunk(images[s:s + CHUNK], CHUNK), deflate_chunk(masks[s:s + CHUNK], CHUNK)))
                        for s in starts]
                for s, (img, msk) in zip(starts, run_ordered(jobs, workers)):
                    di.id.write_direct_chunk((s, 0, 0), img)
                    dm.id.write_direct_chunk((s, 0, 0), msk)
        timings[name] = (time.perf_counter() - start, target.stat().st_size)
    return {"build_s": total, "hdf5": timings, "n": n}


MEMORY = """
import json, resource, sys
from ispad_bench.data.build import BuildParams, build
build(sys.argv[1], sys.argv[2], params=BuildParams(stream_patches=int(sys.argv[3]), workers=int(sys.argv[4]), reduced=10), verbose=False)
print(json.dumps({"maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak_memory(source: Path, out: Path, n: int, workers: int) -> tuple[float, float]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", MEMORY, str(source), str(out), str(n), str(workers)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])["maxrss_mib"], time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--acquisitions", type=int, default=4)
    parser.add_argument("--tiles", type=int, default=3, help="scenes per side of an acquisition (768 px each)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--stream", type=int, default=2000, help="stream patches for the writing comparison")
    parser.add_argument("--stream-sizes", type=int, nargs=2, default=(1000, 8000), help="two sizes for peak memory")
    parser.add_argument("--tmp", type=Path, default=None)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ispad-build-speed-", dir=args.tmp))
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.2f}, tmp {tmp}")
    source = tmp / "src" / "ASM"
    per = write_acquisitions(source, args.acquisitions, args.tiles)
    side = args.tiles * SCENE
    print(f"source: {args.acquisitions} ASM acquisitions of {side}x{side} px ({per} windows each)")

    print("\n1. extraction + PNG writing (windows written, train + test)")
    results = {}
    for w in sorted({1, args.workers}):
        n, s = bench_extraction(tmp / "src", tmp / f"out-w{w}", w)
        results[w] = n / s
        print(f"  data build, {w} thread(s):      {n:6d} patches in {s:6.2f} s = {n / s:7.1f} patches/s")
    from ispad_bench.data.build.extract import PNG_LEVEL

    s = bench_pil(n, tmp / "pil")
    print(f"  plain PIL.Image.save (1 thread): {n:6d} patches in {s:6.2f} s = {n / s:7.1f} patches/s")
    s1 = bench_pil(n, tmp / "pil1", compress_level=PNG_LEVEL)
    print(f"  PIL.Image.save, compress_level={PNG_LEVEL} (ours): {n:6d} patches in {s1:6.2f} s = {n / s1:7.1f} patches/s")
    for w, rate in results.items():
        print(f"  ratio ours/PIL, {w} thread(s): {rate / (n / s):.2f} (goal >= 0.8); "
              f"vs PIL at our PNG level {rate / (n / s1):.2f}")

    print(f"\n2. supervised stream, {args.stream} patches")
    r = bench_stream(tmp / "src", tmp / "out-stream", args.stream, args.workers)
    print(f"  whole build with stream: {r['build_s']:.1f} s (stream ~{args.stream / r['build_s']:.0f} patches/s incl. extraction)")
    for name, (sec, size) in r["hdf5"].items():
        label = f"ours (32-patch chunks, gzip 1, {args.workers} threads)" if name == "ours" else "raw h5py (contiguous, uncompressed)"
        print(f"  HDF5 writing, {label}: {sec:.2f} s = {args.stream / sec:8.0f} patches/s, {size / 2**20:.1f} MiB")

    print("\n3. peak memory of a stream build (fresh process each)")
    for n in args.stream_sizes:
        mib, sec = peak_memory(tmp / "src", tmp / f"out-mem-{n}", n, args.workers)
        print(f"  {n:7d} stream patches: peak RSS {mib:7.1f} MiB ({sec:.0f} s)")


if __name__ == "__main__":
    main()
