"""On-disk format of ISP-AD's supervised part, and its discovery.

The paper (§3.2.2, appendix after Table 8) stores supervised training data as single-channel
8-bit patches in HDF5 and names two datasets: ``syn_stream`` (image-level labels of the
balanced fault-free / synthetic-defect stream) and ``ground_truth`` (pixel masks). The name
of the image dataset and the file names are not published (the paper gives none), so :func:`discover_stream`
lists every dataset in a file, matches them to the three roles and validates them; any mismatch
is a :class:`StreamFormatError` that prints what was expected and the file's actual keys,
shapes and dtypes.

Real defects (§3.2, §3.2.1) are 512x512 single-channel patches of groups ``area`` and ``points``,
read either from ``supervised/real_defects/{area,points}/<id>.png`` or from an HDF5 file under
``supervised/`` whose dataset names contain ``area`` / ``points``; :func:`real_defect_pools`
gives both as :class:`RealDefectPool` objects with ``ids``, ``group`` and ``load(i)``.

This module only imports numpy and h5py (no torch), so loaders can call it cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from ispad_bench.data.layout import GROUPS, REAL_DEFECTS_DIR, SUPERVISED_DIR
from ispad_bench.data.modality import PATCH_SIZE, REAL_DEFECT_SIZE
from ispad_bench.errors import InputError

LABELS_NAME = "syn_stream"  # paper appendix: image-level labels of the stream
MASKS_NAME = "ground_truth"  # paper appendix: pixel-level masks
IMAGE_NAMES = ("images", "image", "imgs", "data", "patches", "patch", "x")  # accepted, best first
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
_LABEL_CHECK_CHUNK = 1 << 20


class StreamFormatError(InputError, ValueError):
    """An HDF5 file does not hold the expected supervised datasets; the message lists its contents."""


@dataclass(frozen=True)
class StreamLayout:
    """Where the roles of a supervised stream live inside one HDF5 file.

    ``image_shape`` is the stored per-item shape: ``(256, 256)`` or ``(256, 256, 1)``.
    """

    path: Path
    images_key: str
    labels_key: str
    masks_key: str
    length: int
    image_shape: tuple[int, ...]


@dataclass(frozen=True)
class _Entry:
    key: str
    shape: tuple[int, ...]
    dtype: np.dtype

    @property
    def basename(self) -> str:
        return self.key.rsplit("/", 1)[-1].lower()

    def __str__(self) -> str:
        return f"{self.key} {self.shape} {self.dtype}"


def open_hdf5(path: str | Path) -> h5py.File:
    """``h5py.File(path, "r")``, or a one-line :class:`StreamFormatError` naming the file when it is
    truncated, not HDF5 at all, or unreadable (h5py's bare ``OSError`` does not say which file)."""
    try:
        return h5py.File(path, "r")
    except FileNotFoundError:
        raise
    except OSError as err:
        reason = " ".join(str(err).split())
        if "truncated file" in reason:
            reason = "truncated: " + reason
        raise StreamFormatError(f"{path}: not a readable HDF5 file ({reason})") from err


def _datasets(path: Path) -> list[_Entry]:
    entries: list[_Entry] = []
    with open_hdf5(path) as f:

        def visit(name: str, obj) -> None:
            if isinstance(obj, h5py.Dataset):
                entries.append(_Entry(name, tuple(obj.shape), obj.dtype))

        f.visititems(visit)
    return sorted(entries, key=lambda e: e.key)


def _listing(entries: list[_Entry]) -> str:
    if not entries:
        return "  (no datasets)"
    return "\n".join(f"  {e}" for e in entries)


def describe(path: str | Path) -> str:
    """Every dataset of an HDF5 file, one ``key shape dtype`` line each (for reports and errors)."""
    path = Path(path)
    return f"{path}:\n{_listing(_datasets(path))}"


def _is_patch_stack(e: _Entry, size: int) -> bool:
    return len(e.shape) in (3, 4) and e.shape[1:3] == (size, size) and (len(e.shape) == 3 or e.shape[3] == 1)


def _pick(entries: list[_Entry], exact: str, fuzzy: tuple[str, ...]) -> _Entry | None:
    hits = [e for e in entries if e.basename == exact]
    if not hits:
        hits = [e for e in entries if any(word in e.basename for word in fuzzy)]
    return hits[0] if len(hits) == 1 else None


def discover_stream(path: str | Path) -> StreamLayout:
    """Match the datasets of a supervised HDF5 stream to images / labels / masks and validate them.

    Expected (paper §3.2.2 and appendix): labels ``syn_stream`` uint (N,) with values in {0, 1},
    masks ``ground_truth`` uint8 (N, 256, 256), images uint8 (N, 256, 256) single channel under
    one of the names ``images/data/patches/x`` (or the only other patch stack in the file);
    ``(N, 256, 256, 1)`` is accepted for images and masks.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"HDF5 stream not found: {path}")
    try:
        entries = _datasets(path)
    except OSError as err:  # unreadable after opening
        raise StreamFormatError(f"{path}: not a readable HDF5 file ({' '.join(str(err).split())})") from err

    expected = (
        f"expected datasets: '{LABELS_NAME}' (N,) uint8 labels 0/1, '{MASKS_NAME}' (N,{PATCH_SIZE},{PATCH_SIZE}) "
        f"uint8 masks, and the images (N,{PATCH_SIZE},{PATCH_SIZE}) uint8 single-channel named one of "
        f"{'/'.join(IMAGE_NAMES)} (or the only other such dataset)"
    )

    def fail(problem: str) -> StreamFormatError:
        return StreamFormatError(f"{path}: {problem}\n{expected}\nfound:\n{_listing(entries)}")

    labels = _pick(entries, LABELS_NAME, (LABELS_NAME, "label"))
    if labels is None:
        raise fail(f"no unique labels dataset '{LABELS_NAME}'")
    masks = _pick(entries, MASKS_NAME, (MASKS_NAME, "mask"))
    if masks is None:
        raise fail(f"no unique masks dataset '{MASKS_NAME}'")
    rest = [e for e in entries if e.key not in (labels.key, masks.key) and len(e.shape) >= 3]
    named = [e for name in IMAGE_NAMES for e in rest if e.basename == name]
    images = named[0] if named else (rest[0] if len(rest) == 1 else None)
    if images is None:
        which = ", ".join(e.key for e in rest) or "none"
        raise fail(f"cannot tell which dataset holds the images (candidates: {which})")

    n = images.shape[0]
    if len(labels.shape) not in (1, 2) or (len(labels.shape) == 2 and labels.shape[1] != 1):
        raise fail(f"labels '{labels.key}' has shape {labels.shape}, expected ({n},)")
    for role, e in (("images", images), ("masks", masks)):
        if len(e.shape) == 4 and e.shape[3] == 3:
            raise fail(f"{role} '{e.key}' has 3 channels {e.shape}; supervised patches are single-channel")
        if not _is_patch_stack(e, PATCH_SIZE):
            raise fail(f"{role} '{e.key}' has shape {e.shape}, expected (N,{PATCH_SIZE},{PATCH_SIZE})")
        if e.dtype != np.uint8:
            raise fail(f"{role} '{e.key}' has dtype {e.dtype}, expected uint8")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        raise fail(f"labels '{labels.key}' has dtype {labels.dtype}, expected an integer type (0/1)")
    lengths = {images.key: n, labels.key: labels.shape[0], masks.key: masks.shape[0]}
    if len(set(lengths.values())) != 1:
        raise fail("lengths differ: " + ", ".join(f"{k}={v}" for k, v in lengths.items()))

    with h5py.File(path, "r") as f:  # 1 byte per item: cheap even for the ~200k-patch real streams
        ds = f[labels.key]
        for start in range(0, n, _LABEL_CHECK_CHUNK):
            values = np.unique(ds[start : start + _LABEL_CHECK_CHUNK])
            bad = values[(values != 0) & (values != 1)]
            if bad.size:
                raise fail(f"labels '{labels.key}' hold values {bad[:5].tolist()}, expected only 0 and 1")

    return StreamLayout(path, images.key, labels.key, masks.key, n, images.shape[1:])


def hdf5_files(modality_dir: str | Path) -> list[Path]:
    """All HDF5 files directly under ``<modality>/supervised/`` (sorted)."""
    folder = Path(modality_dir) / SUPERVISED_DIR
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in HDF5_SUFFIXES)


def explain_missing_stream(files: list[Path]) -> None:
    """Raise the precise :class:`StreamFormatError` when none of ``files`` is a readable stream:
    an unreadable file names itself; a lone non-real-defect file gets :func:`discover_stream`'s
    message (which dataset is missing). Returns when it has nothing more precise to say."""
    candidates = []
    for path in files:
        entries = _datasets(path)  # raises for a truncated / non-HDF5 file, naming it
        if not _real_defect_keys(entries) or _has_stream_labels(entries):
            candidates.append(path)
    if len(candidates) == 1:
        discover_stream(candidates[0])


def _real_defect_keys(entries: list[_Entry]) -> dict[str, list[_Entry]]:
    found: dict[str, list[_Entry]] = {}
    for group in GROUPS:
        hits = [e for e in entries if group in e.basename and len(e.shape) >= 3]
        if hits:
            found[group] = hits
    return found


def _has_stream_labels(entries: list[_Entry]) -> bool:
    return any(LABELS_NAME in e.basename for e in entries)


def is_stream_file(path: str | Path) -> bool:
    """True for an HDF5 file holding a supervised stream (a ``syn_stream`` labels dataset)."""
    return _has_stream_labels(_datasets(Path(path)))


def is_real_defect_file(path: str | Path) -> bool:
    """True for an HDF5 file holding real-defect stacks (names with area/points, no ``syn_stream``)."""
    entries = _datasets(Path(path))
    return bool(_real_defect_keys(entries)) and not _has_stream_labels(entries)


class RealDefectPool:
    """The real-defect patches of one group (§3.2, Table 7), from PNG files or an HDF5 dataset.

    ``ids[i]`` names patch ``i`` (the PNG stem, or ``<dataset>[i]``); ``load(i)`` returns it as a
    (512, 512) uint8 array.
    """

    def __init__(self, group: str, files: list[Path] | None = None, h5: tuple[Path, str] | None = None):
        if (files is None) == (h5 is None):
            raise ValueError("RealDefectPool needs either files or an (hdf5 path, dataset key)")
        self.group = group
        self.files = files
        self.h5 = h5
        if files is not None:
            self.ids = [p.stem for p in files]
        else:
            with h5py.File(h5[0], "r") as f:
                count = f[h5[1]].shape[0]
            self.ids = [f"{h5[1]}[{i}]" for i in range(count)]

    @property
    def source(self) -> Path:
        return self.files[0].parent if self.files else self.h5[0]  # type: ignore[index]

    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"RealDefectPool(group={self.group!r}, n={len(self)}, source={str(self.source)!r})"

    def load(self, i: int) -> np.ndarray:
        if self.files is not None:
            from ispad_bench.data.images import read_gray8

            array = read_gray8(self.files[i])  # 16-bit scaled to 8 bits (was: wrapped modulo 256)
        else:
            path, key = self.h5  # type: ignore[misc]
            with h5py.File(path, "r") as f:
                array = f[key][i]
        array = np.asarray(array).squeeze()
        if array.shape != (REAL_DEFECT_SIZE, REAL_DEFECT_SIZE):
            raise StreamFormatError(
                f"real defect {self.ids[i]} in {self.source}: shape {array.shape}, "
                f"expected ({REAL_DEFECT_SIZE}, {REAL_DEFECT_SIZE}) single channel"
            )
        return array.astype(np.uint8, copy=False)


def discover_real_defects(modality_dir: str | Path) -> dict[str, list[Path]]:
    """PNG real-defect patches: group -> sorted files of ``supervised/real_defects/<group>/``.

    Groups without a folder are absent. For data stored as HDF5 use :func:`real_defect_pools`.
    """
    root = Path(modality_dir) / SUPERVISED_DIR / REAL_DEFECTS_DIR
    found = {}
    for group in GROUPS:
        folder = root / group
        if folder.is_dir():
            found[group] = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png")
    return found


def real_defect_pools(modality_dir: str | Path) -> dict[str, RealDefectPool]:
    """Real-defect pools per group, from the PNG folders or else from an HDF5 file under ``supervised/``.

    Raises :class:`StreamFormatError` when an HDF5 group dataset is not a (M,512,512[,1]) uint8 stack,
    or when a group is stored in more than one HDF5 dataset (ambiguous).
    """
    pools = {g: RealDefectPool(g, files=files) for g, files in discover_real_defects(modality_dir).items() if files}
    for path in hdf5_files(modality_dir):
        entries = _datasets(path)
        if _has_stream_labels(entries):
            continue  # a stream file, not real defects
        for group, hits in _real_defect_keys(entries).items():
            if group in pools:
                continue
            if len(hits) > 1:
                raise StreamFormatError(
                    f"{path}: several datasets could hold the '{group}' real defects: "
                    f"{', '.join(e.key for e in hits)}\nfound:\n{_listing(entries)}"
                )
            e = hits[0]
            if not _is_patch_stack(e, REAL_DEFECT_SIZE) or e.dtype != np.uint8:
                raise StreamFormatError(
                    f"{path}: real defects '{e.key}' are {e.shape} {e.dtype}, expected "
                    f"(M,{REAL_DEFECT_SIZE},{REAL_DEFECT_SIZE}) uint8 single channel\nfound:\n{_listing(entries)}"
                )
            pools[group] = RealDefectPool(group, h5=(path, e.key))
    return dict(sorted(pools.items()))
