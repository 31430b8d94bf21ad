"""``ispad-bench data synth``: write a miniature ISP-AD-like dataset in the real layout.

For each modality (LSM-1, LSM-2, ASM) both parts of ISP-AD (§3.2, §3.2.1, Table 7) are generated in the
layout of ``data/layout.py``: the unsupervised MVTec-scheme folders (``train``,
``train_reduced``, ``test/<defect>``, ``ground_truth``) and the supervised part (a balanced
HDF5 stream of single-channel patches with random-walk synthetic defects, and 512x512 real-defect
patches). What ``patches`` (N) means is documented in :func:`plan` and ``docs/synth.md``.

Every file is a function of ``(seed, modality, part, index)`` only, so the same seed gives
byte-identical files. Each modality is written into a hidden temporary folder that is renamed
into place when complete: a killed run leaves no half-written modality behind.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from ispad_bench.data import layout
from ispad_bench.data.synth.defects import AREA_TYPES, DEFECT_TYPES, POINT_TYPES, check_strength, defect_patch, synthesize_defect
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE, Modality
from ispad_bench.data.synth.patterns import render, sample_scene, to_gray, to_uint8, warm_up

GENERATOR = "ispad-bench synth v1"  # bump when the output of a given seed changes
STREAM_FILE = "stream.h5"
STREAM_CHUNK = 32  # patches per HDF5 chunk: the streaming loader reads whole chunks
OVERLOOKED_RATE = 0.03  # §3.2: 2-5 % of the unscreened fault-free stream carry overlooked defects
MIN_PATCHES = 10
_PNG_LEVEL = 1  # fast zlib level: files ~15 % larger than level 6, written ~3x faster
_TMP_PREFIX = ".synth-"
_PART = {"train": 1, "test_good": 2, "stream": 3, "stream_labels": 4, "reduced": 5, "real": 6, "test": 10}


@dataclass(frozen=True)
class Plan:
    """How many patches of each kind one modality gets (see :func:`plan`)."""

    modality: str
    test: dict[str, int]  # folder under test/ -> count ("good" and one folder per defect type)
    train: int
    train_reduced: int
    stream: int
    stream_defects: int
    real: dict[str, int]  # group -> count

    @property
    def total(self) -> int:
        return sum(self.test.values()) + self.train + self.stream + sum(self.real.values())


def plan(modality: Modality | str, patches: int, stream_patches: int | None = None, real_defects: int | None = None) -> Plan:
    """Patch counts for one modality; ``patches`` (N) is the size of its test split.

    * test: N patches; the defect share of each group follows the modality's Table 7 test split
      (e.g. LSM-1: 49 area + 46 points of 1565), spread evenly over the group's defect types,
      with at least one patch per type (so N=20 still has 3 area + 4 point defects); the rest is
      ``test/good``.
    * train: ``max(N, good * r)`` with r = Table 7 unsupervised train / test good (LSM-1 2.5,
      LSM-2 1.05, ASM 0.26); ``train_reduced`` is a seeded subset of at most 500 of them (§3.2.1).
    * supervised stream: ``stream_patches`` or 4N, exactly half with synthetic defects.
    * real defects per group: ``real_defects`` or the Table 7 count scaled like the test split,
      at least 4.
    """
    modality = Modality.parse(modality)
    if patches < MIN_PATCHES:
        raise ValueError(f"patches must be >= {MIN_PATCHES} (one patch per defect type plus good ones), got {patches}")
    s = modality.splits
    total = s.test_good + s.test_area + s.test_points
    per_area = max(1, round(patches * s.test_area / total / len(AREA_TYPES)))
    per_point = max(1, round(patches * s.test_points / total / len(POINT_TYPES)))
    test = {t: per_area for t in AREA_TYPES} | {t: per_point for t in POINT_TYPES}
    good = patches - sum(test.values())
    test = {layout.GOOD_DIR: good} | test
    train = max(patches, round(good * s.unsup_train_good / s.test_good))
    stream = 4 * patches if stream_patches is None else int(stream_patches)
    if stream < 2:
        raise ValueError(f"stream_patches must be >= 2, got {stream}")
    real = {
        "area": max(4, round(s.sup_train_real_area * patches / total)),
        "points": max(4, round(s.sup_train_real_points * patches / total)),
    }
    if real_defects is not None:
        if real_defects < 1:
            raise ValueError(f"real_defects must be >= 1 per group (an empty group folder is invalid), got {real_defects}")
        real = {group: int(real_defects) for group in real}
    return Plan(modality.value, test, train, min(train, layout.REDUCED_MAX), stream, stream // 2, real)


# ----------------------------------------------------------------------------- items
def _rng(seed: int, modality: Modality, part: str, index: int, sub: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, list(Modality).index(modality), _PART[part] + sub, index])


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=_PNG_LEVEL)
    return buf.getvalue()


def _good(modality: Modality, rng: np.random.Generator, size: int = PATCH_SIZE) -> np.ndarray:
    return to_uint8(render(sample_scene(modality, rng, size)))


def _stream_item(modality: Modality, rng: np.random.Generator, label: int, overlooked: bool, strength: float = 1.0):
    """One single-channel stream patch, its mask, and whether it hides an unlabelled defect."""
    zero = np.zeros((PATCH_SIZE, PATCH_SIZE), np.uint8)
    if overlooked:  # unscreened fault-free patch with a real-looking point defect, label 0 (§3.2)
        kind = POINT_TYPES[int(rng.integers(len(POINT_TYPES)))]
        return to_gray(defect_patch(kind, modality, rng, strength=strength)[0]), zero
    scene = sample_scene(modality, rng, PATCH_SIZE, gray=True)
    image = to_uint8(render(scene, gray=True))
    if not label:
        return image, zero
    valid = np.ones_like(image, bool)
    valid[:, : scene.borders[0]] = False  # masked ASM borders stay black
    valid[:, PATCH_SIZE - scene.borders[1] :] = False
    return synthesize_defect(image, rng, valid=valid, strength=strength)


# ----------------------------------------------------------------------------- writing
def run_ordered(jobs: list, workers: int):
    """Results of ``jobs`` (zero-argument callables) in order, on ``workers`` threads.

    Threads, not processes: numpy, the PNG encoder and zlib release the GIL, and there is no
    fork of a process that may hold torch/OpenMP state. Each job owns its random generator, so
    the output does not depend on ``workers``.
    """
    if workers <= 1:
        return (job() for job in jobs)
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(workers)

    def ordered():
        with pool:
            window = [pool.submit(job) for job in jobs[: 4 * workers]]
            for k in range(len(jobs)):
                result = window.pop(0).result()
                if k + 4 * workers < len(jobs):  # bounded look-ahead keeps memory flat
                    window.append(pool.submit(jobs[k + 4 * workers]))
                yield result

    return ordered()


def _write_modality(base: Path, modality: Modality, p: Plan, seed: int, tick, workers: int, strength: float) -> None:
    width = max(5, len(str(max(p.train, p.stream, *p.test.values()))))
    name = f"{{:0{width}d}}"
    jobs = []  # each returns [(relative paths, PNG bytes), ...]

    def good(rel: list[str], part: str, i: int):
        return lambda: [(rel, _png(_good(modality, _rng(seed, modality, part, i))))]

    reduced = set(_rng(seed, modality, "reduced", 0).permutation(p.train)[: p.train_reduced].tolist())
    for i in range(p.train):
        rel = f"{layout.GOOD_DIR}/{name.format(i)}.png"
        dirs = [layout.TRAIN_DIRS["full"]] + ([layout.TRAIN_DIRS["reduced"]] if i in reduced else [])
        jobs.append(good([f"{d}/{rel}" for d in dirs], "train", i))
    for i in range(p.test[layout.GOOD_DIR]):
        jobs.append(good([f"{layout.TEST_DIR}/{layout.GOOD_DIR}/{name.format(i)}.png"], "test_good", i))

    def defect(kind: str, k: int, i: int):
        def job():
            image, mask = defect_patch(kind, modality, _rng(seed, modality, "test", i, sub=k), strength=strength)
            stem = name.format(i)
            return [
                ([f"{layout.TEST_DIR}/{kind}/{stem}.png"], _png(image)),
                ([f"{layout.MASK_DIR}/{kind}/{stem}{layout.MASK_SUFFIX}.png"], _png(mask)),
            ]

        return job

    jobs += [defect(kind, k, i) for k, kind in enumerate(DEFECT_TYPES) for i in range(p.test[kind])]

    def real(group: str, kind: str, g: int, i: int):
        def job():
            rng = _rng(seed, modality, "real", i, sub=g)
            image, _ = defect_patch(kind, modality, rng, REAL_DEFECT_SIZE, centered=True, with_mask=False, strength=strength)
            return [([f"{layout.SUPERVISED_DIR}/{layout.REAL_DEFECTS_DIR}/{group}/{i:04d}_{kind}.png"], _png(to_gray(image)))]

        return job

    for g, (group, kinds) in enumerate((("area", AREA_TYPES), ("points", POINT_TYPES))):
        jobs += [real(group, kinds[i % len(kinds)], g, i) for i in range(p.real[group])]

    for files in run_ordered(jobs, workers):
        for rels, data in files:
            for rel in rels:
                path = base / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        tick()
    _write_stream(base / layout.SUPERVISED_DIR / STREAM_FILE, modality, p, seed, tick, workers, strength)


def _write_stream(path: Path, modality: Modality, p: Plan, seed: int, tick, workers: int, strength: float) -> None:
    """The balanced supervised stream (§3.2, §3.2.2): images, ``syn_stream`` labels, ``ground_truth`` masks."""
    n = p.stream
    order = _rng(seed, modality, "stream_labels", 0).permutation(n)
    labels = np.zeros(n, np.uint8)
    labels[order[: p.stream_defects]] = 1
    good = order[p.stream_defects :]
    overlooked = np.sort(good[: round(OVERLOOKED_RATE * len(good))])
    hidden = np.zeros(n, bool)
    hidden[overlooked] = True
    chunk = min(STREAM_CHUNK, n)
    shape = (n, PATCH_SIZE, PATCH_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    jobs = [
        (lambda i=i: _stream_item(modality, _rng(seed, modality, "stream", i), int(labels[i]), bool(hidden[i]), strength))
        for i in range(n)
    ]
    with h5py.File(path, "w") as f:
        images = f.create_dataset("images", shape, np.uint8, chunks=(chunk, PATCH_SIZE, PATCH_SIZE), track_times=False)
        f.create_dataset("syn_stream", data=labels, track_times=False)
        masks = f.create_dataset(
            "ground_truth", shape, np.uint8, chunks=(chunk, PATCH_SIZE, PATCH_SIZE),
            compression="gzip", compression_opts=1, track_times=False,  # masks are mostly zeros
        )
        block_images = np.zeros((chunk, PATCH_SIZE, PATCH_SIZE), np.uint8)
        block_masks = np.zeros_like(block_images)
        for i, (image, mask) in enumerate(run_ordered(jobs, workers)):
            block_images[i % chunk], block_masks[i % chunk] = image, mask
            if i % chunk == chunk - 1 or i == n - 1:  # write whole chunks at once
                start, k = i - i % chunk, i % chunk + 1
                images[start : start + k] = block_images[:k]
                masks[start : start + k] = block_masks[:k]
            tick()
        f.attrs["generator"] = GENERATOR
        f.attrs["modality"] = modality.value
        f.attrs["overlooked_defects"] = overlooked.astype(np.int64)  # label-0 patches that hide a defect
        for key, value in _params(p, seed, strength).items():
            f.attrs[key] = value


def _params(p: Plan, seed: int, strength: float) -> dict[str, int | float]:
    return {
        "seed": int(seed), "patches": int(sum(p.test.values())), "stream_patches": int(p.stream),
        "real_area": int(p.real["area"]), "real_points": int(p.real["points"]), "defect_strength": float(strength),
    }


def recorded(folder: Path) -> dict | None:
    """Generator parameters recorded in an existing modality folder, or None if not ours/readable."""
    try:
        with h5py.File(folder / layout.SUPERVISED_DIR / STREAM_FILE, "r") as f:
            if f.attrs.get("generator") != GENERATOR:
                return None
            counts = {k: int(f.attrs[k]) for k in ("seed", "patches", "stream_patches", "real_area", "real_points")}
            return counts | {"defect_strength": float(f.attrs.get("defect_strength", 1.0))}
    except (OSError, KeyError):
        return None


# ----------------------------------------------------------------------------- entry point
def generate(
    root: str | Path,
    patches: int = 200,
    seed: int = 0,
    modalities=None,
    *,
    stream_patches: int | None = None,
    real_defects: int | None = None,
    defect_strength: float = 1.0,
    overwrite: bool = False,
    workers: int | None = None,
    verbose: bool = True,
) -> Path:
    """Write the generated ISP-AD-like dataset under ``root`` and return ``root``.

    ``patches`` (N) is the test-split size per modality; train, stream and real-defect counts
    derive from it (:func:`plan`); ``stream_patches`` sets the supervised stream size directly
    (e.g. 20000 for a benchmark), ``real_defects`` the number of real-defect patches per group.
    ``modalities`` defaults to all three. ``defect_strength`` scales how visible every defect is
    (test split, stream, real defects; 1 = ISP-AD-like small and faint, the default; e.g. 3 gives
    defects a from-scratch model learns within a few hundred CPU steps, for pipeline checks).

    An existing modality folder generated with the same parameters is kept (nothing is
    rewritten); any other existing non-empty folder is an error unless ``overwrite=True``,
    which replaces it (the new folder is complete before the old one is removed).
    ``workers`` threads render in parallel (default: up to 2, the CPUs available); the output is
    the same for any number of workers.
    """
    root = Path(root)
    chosen = [Modality.parse(m) for m in (modalities or list(Modality))]
    plans = {m: plan(m, patches, stream_patches, real_defects) for m in dict.fromkeys(chosen)}
    defect_strength = check_strength(defect_strength)
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    if workers is None:
        workers = min(2, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)
    for modality, p in plans.items():
        target = root / modality.value
        if target.exists() and any(target.iterdir()):
            previous = recorded(target)
            if not overwrite and previous == _params(p, seed, defect_strength):
                _say(verbose, f"{modality.value}: already generated with {previous}, kept ({target})")
                continue
            if not overwrite:
                what = f"generated with {previous}" if previous else "not written by this generator"
                raise FileExistsError(
                    f"{target} exists and is {what}; wanted {_params(p, seed, defect_strength)}. "
                    "Pass overwrite=True (CLI: --overwrite) to replace it, or choose another --root."
                )
        started = time.perf_counter()
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{modality.value}-{os.getpid()}-", dir=root))
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the dataset should not be
        try:
            with _Progress(verbose, modality.value, p.total) as tick:
                warm_up(modality)
                _write_modality(tmp, modality, p, seed, tick, workers, defect_strength)
            from ispad_bench.data.build.crops import write_real_ids  # the supervised loader's shuffle (anomalib)

            write_real_ids(tmp)  # supervised/real_ids.json: the smoke profile's real_ids_file
            _swap_in(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        counts = ", ".join(f"{v} {k}" for k, v in p.test.items())
        _say(
            verbose,
            f"{modality.value}: test {counts}; train {p.train} (reduced {p.train_reduced}); "
            f"stream {p.stream} ({p.stream_defects} synthetic defects); real defects "
            f"{p.real['area']} area / {p.real['points']} points  [{time.perf_counter() - started:.1f} s]",
        )
    return root


def _remove_stale(root: Path) -> None:
    """Delete temporary folders of killed runs (their process no longer exists on this host)."""
    for folder in root.glob(f"{_TMP_PREFIX}*"):
        try:
            pid = int(folder.name.split("-")[-2])
            os.kill(pid, 0)  # raises if no such process
        except (ValueError, IndexError):
            continue  # not ours
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:
            continue  # alive, another user's


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _swap_in(tmp: Path, target: Path) -> None:
    """Move a finished folder into place; an old one is removed only after the new one is in."""
    old = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{target.name}-{os.getpid()}-", dir=target.parent))
        os.replace(target, old / target.name)
    os.replace(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _say(verbose: bool, line: str) -> None:
    if verbose:
        from rich.console import Console

        Console(stderr=True, highlight=False).print(line)


class _Progress:
    """A rich progress bar for large runs (>= 1000 files), else silent; yields a ``tick()``."""

    def __init__(self, verbose: bool, label: str, total: int):
        self.bar = None
        if verbose and total >= 1000:
            from rich.progress import Progress

            self.bar = Progress(transient=True)
            self.task = self.bar.add_task(f"{label}", total=total)

    def __enter__(self):
        if self.bar is None:
            return lambda: None
        self.bar.__enter__()
        return lambda: self.bar.advance(self.task)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.__exit__(*exc)
        return False


# ----------------------------------------------------------------------------- preview
