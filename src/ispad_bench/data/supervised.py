"""``ISPADSupervised``: the paper's mixed-supervised training data (§3.2, §4.1-4.2, §5.2) for Anomalib.

Training: the balanced HDF5 stream of fault-free and synthetic-defect patches (``syn_stream``
labels, ``ground_truth`` masks), read lazily and chunk-aware (``data/stream.py``); each patch is
replaced with probability ``injection_p`` (1/32, §4.2) by an augmented real defect from a pool of
``real_fraction`` of group ``real_group``. Test (and, as in the paper, validation) is the ISP-AD
test split of the same modality, read by ``ISPADDataset``. The §4.2 preprocessing (LSM-1
brightness x1.5, Gaussian kernel 3 / sigma 1) is applied identically to training and test patches;
RGB test patches are first converted to one channel with BT.601 luma (the supervised HDF5
patches are single-channel, §3.2.2), and every patch reaches the model as 3 equal channels.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import zlib
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np
import torch
from anomalib.data import AnomalibDataModule
from anomalib.data.dataclasses import ImageBatch
from anomalib.data.utils import Split, TestSplitMode, ValSplitMode
from torch.utils.data import DataLoader
from torchvision import tv_tensors
from torchvision.transforms import v2

from ispad_bench.data.augment import AFFINE_P, preprocess, to_gray
from ispad_bench.data.datamodule import ISPADDataset, geometry
from ispad_bench.data.hdf5 import (
    LABELS_NAME,
    StreamFormatError,
    discover_stream,
    explain_missing_stream,
    hdf5_files,
    is_stream_file,
    real_defect_pools,
)
from ispad_bench.data.layout import DEFECT_GROUPS, GROUPS, modality_dir
from ispad_bench.data.modality import REAL_DEFECT_SIZE, Modality
from ispad_bench.data.real_ids import listed_ids
from ispad_bench.data.ring import BatchRing, hand_back
from ispad_bench.data.stream import (
    HeldOutStream,
    StreamBatches,
    StreamConfig,
    StreamSampler,
    block_length,
    finish_batch,
    init_worker,
    keep_batch,
)
from ispad_bench.errors import BadArgument, MissingDataError

logger = logging.getLogger(__name__)

FRACTIONS = (Fraction(0), Fraction(1, 16), Fraction(1, 8), Fraction(1, 4), Fraction(1, 2), Fraction(1))  # §5.2
REAL_GROUPS = ("points", "area", "mixed")
VAL_MODES = ("same_as_test", "from_stream")
RECORD_NAME = "real_defects.json"


def parse_fraction(value: float | str) -> Fraction:
    """``0.0625``, ``"1/16"`` -> ``Fraction(1, 16)``; anything outside §5.2's set is an error."""
    try:
        frac = Fraction(str(value).strip()).limit_denominator(64)
    except (ValueError, ZeroDivisionError) as err:
        raise BadArgument(f"real_fraction {value!r} is not a number") from err
    if frac not in FRACTIONS or not math.isclose(float(frac), float(Fraction(str(value).strip())), abs_tol=1e-9):
        allowed = ", ".join(str(f) for f in FRACTIONS)
        raise BadArgument(f"real_fraction must be one of {allowed} (§5.2), got {value!r}")
    return frac


def shuffled_pool(pool_ids: dict[str, list[str]], seed: int) -> list[tuple[str, int]]:
    """All real defects (both groups) as (group, pool index) in ONE seeded shuffle (§5.2).

    Sorted by ``(group, id)`` before shuffling, so the order does not depend on how files are listed.
    """
    items = sorted(((g, i) for g in GROUPS for i in range(len(pool_ids.get(g, [])))),
                   key=lambda gi: (gi[0], pool_ids[gi[0]][gi[1]]))
    rng = np.random.default_rng([seed, zlib.crc32(b"ispad-real-defects")])
    return [items[k] for k in rng.permutation(len(items))]


def real_count(total: int, fraction: float | str) -> int:
    """Real defects used at ``fraction`` of a pool of ``total``: ``floor(f * total)``, at least 1 for f > 0.

    The floor reproduces Tables 2-3 (LSM-1, 172 defects: 10, 21, 43, 86, 172; ASM, 146: 9, 18, 36, 73, 146).
    """
    frac = parse_fraction(fraction)
    return 0 if frac == 0 or total == 0 else max(1, math.floor(frac * total))


def select_real(pool_ids: dict[str, list[str]], group: str, fraction: float | str, seed: int) -> list[tuple[str, int]]:
    """The real defects used for ``fraction`` and ``group``, as (group, pool index) pairs, in shuffle order.

    §5.2: "following random shuffling of all available defects, fractions ... were extracted in an
    ordered manner": ``mixed`` takes the first :func:`real_count` of the one shuffle of both groups,
    so a smaller fraction is always a prefix of a larger one. ``points`` / ``area`` take the same
    NUMBER of defects (the paper's single-group rows use the mixed count: LSM-1 10, ASM 9 at 1/16)
    from that group only, in the same shuffle order (nested too), capped at the group's size.
    """
    frac = parse_fraction(fraction)
    if group not in REAL_GROUPS:
        raise BadArgument(f"real_group must be one of {REAL_GROUPS}, got {group!r}")
    if frac == 0:
        return []
    order = shuffled_pool(pool_ids, seed)
    count = real_count(len(order), frac)
    if group != "mixed":
        order = [gi for gi in order if gi[0] == group]
    if not order:
        which = "both real-defect pools are" if group == "mixed" else f"the '{group}' pool is"
        raise BadArgument(f"real_group={group!r} requested with real_fraction={frac} but {which} empty")
    return order[:count]


class GrayPreprocess(v2.Transform):
    """Test/validation images: BT.601 grayscale, §4.2 preprocessing, back to 3 equal channels. Masks pass."""

    def __init__(self, brightness_factor: float = 1.0):
        super().__init__()
        self.brightness_factor = brightness_factor

    def transform(self, inpt, params):
        if isinstance(inpt, tv_tensors.Mask) or not isinstance(inpt, torch.Tensor):
            return inpt
        x = inpt.as_subclass(torch.Tensor)
        x = x.float().div(255) if not x.is_floating_point() else x.float()
        y = preprocess(to_gray(x[None]), self.brightness_factor)[0].expand(3, -1, -1).contiguous()
        return tv_tensors.wrap(y, like=inpt) if isinstance(inpt, tv_tensors.Image) else y


class ISPADSupervised(AnomalibDataModule):
    """Mixed-supervised training stream of one ISP-AD modality; test = the ISP-AD test split.

    Args:
        root: dataset root (holding ``LSM-1/`` ...) or the modality folder.
        modality: ``LSM-1``, ``LSM-2`` or ``ASM``.
        real_fraction: fraction of the real-defect pool injected: 0, 1/16, 1/8, 1/4, 1/2, 1 (§5.2;
            ``"1/16"`` or ``0.0625``). 0 = cold start, purely synthetic.
        real_group: ``points``, ``area`` or ``mixed`` (both groups; see :func:`select_real`).
        injection_p: probability that a stream patch is replaced by an augmented real defect (§4.2: 1/32).
        real_seed: seed of the one shuffle per group that the fractions are prefixes of; kept apart
            from ``seed`` so training seeds can vary with a fixed defect selection.
        real_ids_file: published fraction lists (JSON or CSV, :mod:`.real_ids`): the listed ids of
            ``real_group`` at ``real_fraction`` replace the seeded shuffle; the run's record names the file.
        real_only: the real-only baseline of ref [35] (§5.2, §6): fault-free stream patches only, every
            synthetic-defect patch replaced by an augmented real defect (the selected pool oversampled
            to the stream's defect share); ``injection_p`` is then unused. Needs ``real_fraction`` > 0.
        steps_per_epoch: batches per epoch (the unit of validation and early stopping); default one
            pass over the stream's training patches.
        shuffle_buffer: patches per shuffle window (rounded up to whole read blocks); memory per
            worker ~ ``shuffle_buffer`` x 64 KiB (x2 with masks).
        stream_augmentation: re-apply Table 8 to stream patches. Off by default: the published
            stream was augmented at extraction (§3.2.3, §3.2.4 calls the extra PNGs its
            "unaugmented counterparts"); real defects are always augmented (§3.2).
        affine_p: share of patches given the random affine transform (§3.2.3: 80-95 %).
        read_masks: read the stream's ``ground_truth`` masks (off: the classifier does not use them, and
            they double the bytes read).
        augment_on: ``worker`` (CPU, in the DataLoader workers) or ``device`` (after the batch is
            moved to the accelerator; same random parameters, so the same patches up to float error).
        stream_file: the stream HDF5 (default: the one file under ``supervised/`` with ``syn_stream``).
        val_split_mode: ``same_as_test`` (paper: validation loss on the test split, an optimistic
            protocol) or ``from_stream`` (held-out ``val_split_ratio`` of the stream's blocks, never
            trained on; no real defects, no augmentation; no test data touches model selection).
        border_crop: columns cropped left and right of test patches (0: the classifier sees full patches).
        seed: order, injection and augmentation of the stream (deterministic per seed and epoch).
    """

    def __init__(
        self,
        root: str | Path = "datasets/ispad",
        modality: str = "LSM-1",
        real_fraction: float | str = 0.0,
        real_group: str = "mixed",
        injection_p: float = 1 / 32,
        real_seed: int = 0,
        real_ids_file: str | None = None,
        real_only: bool = False,
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 4,
        steps_per_epoch: int | None = None,
        shuffle_buffer: int = 2048,
        stream_augmentation: bool = False,
        affine_p: float = AFFINE_P,
        read_masks: bool = False,
        augment_on: str = "worker",
        stream_file: str | None = None,
        val_split_mode: str = "same_as_test",
        val_split_ratio: float = 0.01,
        border_crop: int = 0,
        defect_groups: dict[str, str] | None = None,
        seed: int = 0,
    ) -> None:
        self.modality = Modality.parse(modality)
        self.real_fraction = parse_fraction(real_fraction)
        if real_group not in REAL_GROUPS:
            raise BadArgument(f"real_group must be one of {REAL_GROUPS}, got {real_group!r}")
        if not 0 <= injection_p <= 1 or not 0 <= affine_p <= 1:
            raise BadArgument(f"injection_p and affine_p must lie in [0, 1], got {injection_p}, {affine_p}")
        if real_only and self.real_fraction == 0:
            raise BadArgument("real_only needs real defects: set real_fraction > 0 (ref [35]: all, real_fraction 1)")
        if val_split_mode not in VAL_MODES:
            raise BadArgument(f"val_split_mode must be one of {VAL_MODES}, got {val_split_mode!r}")
        if augment_on not in ("worker", "device"):
            raise BadArgument(f"augment_on must be 'worker' or 'device', got {augment_on!r}")
        if steps_per_epoch is not None and steps_per_epoch < 1:
            raise BadArgument(f"steps_per_epoch must be >= 1 or null, got {steps_per_epoch}")
        if train_batch_size < 1 or shuffle_buffer < train_batch_size:
            raise BadArgument(f"need 1 <= train_batch_size <= shuffle_buffer, got {train_batch_size}, {shuffle_buffer}")
        if not 0 < val_split_ratio < 1:
            raise BadArgument(f"val_split_ratio must lie in (0, 1), got {val_split_ratio}")
        test_tf = GrayPreprocess(self.modality.brightness_factor)
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            val_augmentations=test_tf,
            test_augmentations=test_tf,
            test_split_mode=TestSplitMode.FROM_DIR,
            val_split_mode=ValSplitMode.SAME_AS_TEST if val_split_mode == "same_as_test" else ValSplitMode.FROM_DIR,
            seed=seed,
        )
        self.root = Path(root)
        self.category = self.modality.value
        self.real_group, self.injection_p, self.real_seed = real_group, injection_p, real_seed
        self.real_ids_file, self.real_only = (str(real_ids_file) if real_ids_file else None), bool(real_only)
        self.steps_per_epoch, self.shuffle_buffer = steps_per_epoch, shuffle_buffer
        self.stream_augmentation, self.affine_p, self.read_masks = stream_augmentation, affine_p, read_masks
        self.augment_on, self.stream_file = augment_on, stream_file
        self.val_mode, self.val_split_ratio = val_split_mode, val_split_ratio
        self.border_crop, self.defect_groups = border_crop, dict(defect_groups or DEFECT_GROUPS)
        self.seed = seed
        self._real_ids: list[str] | None = None

    @property
    def name(self) -> str:
        return "ISPADSupervised"

    # -- discovery and validation (all before training starts) --------------------------------
    def stream_path(self) -> Path:
        if self.stream_file:
            return Path(self.stream_file)
        mod_dir = modality_dir(self.root, self.modality)
        streams = [p for p in hdf5_files(mod_dir) if _has_labels(p)]
        if not streams:  # say what is wrong with the file(s) rather than "pass stream_file"
            explain_missing_stream(hdf5_files(mod_dir))
        if len(streams) != 1:
            found = ", ".join(str(p) for p in hdf5_files(mod_dir)) or "no HDF5 files"
            raise MissingDataError(
                f"expected exactly one HDF5 stream with '{LABELS_NAME}' under {mod_dir / 'supervised'}, "
                f"found {found}; pass `stream_file` to choose one"
            )
        return streams[0]

    def _select_pool(self) -> tuple[torch.Tensor, list[str]]:
        mod_dir = modality_dir(self.root, self.modality)
        pools = real_defect_pools(mod_dir) if self.real_fraction else {}
        ids = {g: p.ids for g, p in pools.items()}
        try:
            if self.real_ids_file and self.real_fraction:  # published lists replace the seeded shuffle
                chosen = listed_ids(self.real_ids_file, self.modality.value, self.real_group, self.real_fraction, ids)
            else:
                chosen = select_real(ids, self.real_group, self.real_fraction, self.real_seed)
        except ValueError as err:
            raise BadArgument(f"{err} (real defects looked up under {mod_dir / 'supervised'})") from err
        real = torch.empty(len(chosen), 1, REAL_DEFECT_SIZE, REAL_DEFECT_SIZE, dtype=torch.uint8)
        for k, (g, i) in enumerate(chosen):
            real[k, 0].numpy()[:] = pools[g].load(i)
        return real, [f"{g}/{pools[g].ids[i]}" for g, i in chosen]

    @property
    def real_defect_ids(self) -> list[str]:
        """``<group>/<id>`` of every real defect injected in this run (available after ``setup``)."""
        if self._real_ids is None:
            _, self._real_ids = self._select_pool()
        return list(self._real_ids)

    def real_defect_record(self) -> dict:
        return {
            "modality": self.modality.value,
            "real_fraction": str(self.real_fraction),
            "real_group": self.real_group,
            "real_seed": self.real_seed,
            "injection_p": self.injection_p,
            "selection": f"file {self.real_ids_file}" if self.real_ids_file and self.real_fraction
            else f"seeded shuffle (real_seed {self.real_seed})",
            "real_only": self.real_only,
            "count": len(self.real_defect_ids),
            "ids": self.real_defect_ids,
        }

    # -- Anomalib setup --------------------------------------------------------------------------
    def _setup(self, _stage: str | None = None) -> None:
        layout = discover_stream(self.stream_path())
        with h5py.File(layout.path, "r") as f:
            ds = f[layout.images_key]
            chunks = ds.chunks
            labels = np.asarray(f[layout.labels_key][:]).reshape(-1).astype(np.uint8)
        real, self._real_ids = self._select_pool()
        block = block_length(chunks)
        n_blocks = -(-layout.length // block)
        blocks = np.arange(n_blocks)
        if self.val_mode == "from_stream":
            n_val = max(1, round(self.val_split_ratio * n_blocks))
            if n_val >= n_blocks:
                raise StreamFormatError(f"{layout.path}: {layout.length} patches are too few to hold out validation blocks")
            val_blocks = np.sort(np.random.default_rng([self.seed, 7]).choice(n_blocks, n_val, replace=False))
            blocks = np.setdiff1d(blocks, val_blocks)
            val_idx = (val_blocks[:, None] * block + np.arange(block)[None]).ravel()
            self.val_data = HeldOutStream(layout, self.modality, val_idx[val_idx < layout.length], labels,
                                          self.eval_batch_size, self.read_masks)
        window = max(block, -(-self.shuffle_buffer // block) * block)
        cfg = StreamConfig(layout, self.modality, blocks, block, window, self.train_batch_size, self.seed,
                           self.injection_p if len(real) else 0.0, self.stream_augmentation, self.affine_p,
                           self.read_masks, self.augment_on == "worker", self.real_only)
        self.train_data = StreamBatches(cfg, labels, real, self._real_ids)
        self.test_data = ISPADDataset(modality_dir(self.root, self.modality), self.modality, Split.TEST,
                                      defect_groups=self.defect_groups, geometry=geometry(self.border_crop))
        logger.info("%s stream %s: %d patches, block %d, window %d; %d real defects (%s, %s)", self.modality.value,
                    layout.path, layout.length, block, window, len(real), self.real_group, self.real_fraction)
        self._write_record()

    def _write_record(self) -> None:
        """Put the real-defect ids in the run's folder and the logged hyperparameters (tables cite them)."""
        record = self.real_defect_record()
        self.hparams.update({"real_defect_ids": record["ids"], "real_defect_count": record["count"]})
        trainer = getattr(self, "trainer", None)
        if trainer is None or not getattr(trainer, "default_root_dir", None):
            return
        out = Path(trainer.default_root_dir)
        out.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1)
        os.replace(tmp, out / RECORD_NAME)

    def _create_test_split(self) -> None:
        """The ISP-AD test split is complete as read; nothing to split."""

    def _create_val_split(self) -> None:
        if self.val_mode == "same_as_test":
            super()._create_val_split()

    # -- loaders -------------------------------------------------------------------------------
    def train_dataloader(self) -> DataLoader:
        sampler = StreamSampler(self.train_data, self.steps_per_epoch, self.num_workers)
        prefetch = 4 if self.num_workers > 0 else None
        # per worker: `prefetch` batches in flight, one held by Lightning's fetcher, one being released
        self.train_data.ring = BatchRing(self.num_workers, prefetch + 3) if self.num_workers > 0 else None
        return DataLoader(
            self.train_data,
            batch_size=None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=keep_batch,
            worker_init_fn=init_worker,
            persistent_workers=self.num_workers > 0,
            prefetch_factor=prefetch,
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_mode == "from_stream":
            return DataLoader(self.val_data, batch_size=None, num_workers=self.num_workers, collate_fn=keep_batch,
                              worker_init_fn=init_worker)
        return super().val_dataloader()

    def on_after_batch_transfer(self, batch, dataloader_idx: int = 0):
        """Stream batches (dicts) become Anomalib ``ImageBatch``es, augmented here if ``augment_on: device``.

        A batch that a worker wrote into its reusable shared buffers (``batch["slot"]``, :mod:`.ring`)
        hands them back here; the worker reuses them once nothing references them any more.
        """
        if isinstance(batch, dict) and ("stream" in batch or "image" in batch):
            done = finish_batch(batch)
            if batch.get("slot") is not None:
                hand_back(batch["slot"], [batch[k] for k in ("image", "stream") if isinstance(batch.get(k), torch.Tensor)])
            return to_image_batch(done)
        return batch


def to_image_batch(batch: dict) -> ImageBatch:
    """A finished stream batch as an Anomalib ``ImageBatch`` (3 equal channels; ``image_path`` = source)."""
    return ImageBatch(
        image=batch["image"].expand(-1, 3, -1, -1),
        gt_label=batch["gt_label"],
        gt_mask=batch["gt_mask"],
        image_path=batch["source"],
    )


def _has_labels(path: Path) -> bool:
    try:
        return is_stream_file(path)
    except (OSError, StreamFormatError):  # an unreadable file is not the stream; `data check` reports it
        return False
