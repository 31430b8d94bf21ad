"""Stage 1 of ``data build``: read and validate a source folder of full acquisitions.

The source layout (docs/data.md, "Build a dataset from your own line"), per modality folder::

    <source>/<modality>/
      good/*.png                          fault-free acquisitions
      defective/<class>/*.png             defective acquisitions, one folder per defect class
      masks/<class>/<stem>_mask.png       pixel masks (MVTec naming; any non-zero value is defect)
      defects.csv                         weak labels: file, x, y[, group] (a position per defect)
      roi/<stem>_roi.png                  region of interest (non-zero = inside; default: whole image)

Everything that can be checked without decoding the acquisitions is checked here (sizes from the
file headers, labels inside their image, ROIs not empty, masks beside an image), so a bad input
stops the build before any patch is written, with one line naming the file and the problem.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ispad_bench.data.layout import GOOD_DIR, GROUPS, IMAGE_SUFFIXES, MASK_SUFFIX, list_images
from ispad_bench.data.modality import Modality
from ispad_bench.errors import InputError

DEFECTIVE_DIR, MASKS_DIR, ROI_DIR, LABELS_FILE = "defective", "masks", "roi", "defects.csv"
ROI_SUFFIX = "_roi"


class SourceError(InputError, ValueError):
    """A source file or folder that ``data build`` cannot use; the message names it and the problem."""


@dataclass(frozen=True)
class Label:
    """A weak label (defects.csv): a defect position in image pixels, and optionally its group."""

    x: float
    y: float
    group: str | None = None


@dataclass(frozen=True)
class Acquisition:
    """One full acquisition of the source folder and what labels it."""

    path: Path
    rel: str  # path relative to the modality's source folder (``good/plate1.png``): the manifest's source
    ident: str  # unique, file-name safe (``good-plate1``): the prefix of its patch names
    defect_class: str | None  # None for a fault-free acquisition
    size: tuple[int, int]  # (width, height) from the header
    mask: Path | None = None
    roi: Path | None = None
    labels: tuple[Label, ...] = field(default=())

    @property
    def defective(self) -> bool:
        return self.defect_class is not None


@dataclass(frozen=True)
class ModalitySource:
    """The validated acquisitions of one modality folder."""

    modality: Modality
    folder: Path
    acquisitions: tuple[Acquisition, ...]

    def classes(self) -> list[str]:
        return sorted({a.defect_class for a in self.acquisitions if a.defect_class})

    def files(self) -> list[Path]:
        """Every source file the build reads (images, masks, ROIs, the labels file): the fingerprint's inputs."""
        out = [self.folder / LABELS_FILE] if (self.folder / LABELS_FILE).is_file() else []
        for a in self.acquisitions:
            out += [p for p in (a.path, a.mask, a.roi) if p is not None]
        return out


def open_image_header(path: Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding it; :class:`SourceError` when unreadable."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # acquisitions are large by design (fields of view up to 10^6 mm^2)
    try:
        with Image.open(path) as img:
            return img.size
    except Exception as err:
        raise SourceError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err


def read_binary(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W) bool, True where the file is non-zero (masks, ROIs); checks the size against ``size``."""
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            img.load()
            array = np.asarray(img)
    except Exception as err:
        raise SourceError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    if array.ndim == 3:
        array = array.max(axis=-1)
    if size is not None and (array.shape[1], array.shape[0]) != tuple(size):
        raise SourceError(f"{path}: size {array.shape[1]}x{array.shape[0]} differs from its image's {size[0]}x{size[1]}")
    return array != 0


def read_pixels(path: Path, channels: int) -> np.ndarray:
    """An acquisition as uint8 (H, W) for 1 channel or (H, W, 3) for 3; 16-bit scaled to 8 bits."""
    from PIL import Image

    from ispad_bench.data.images import read_gray8

    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as img:
            mode = img.mode
            if channels == 3 and mode in ("RGB", "RGBA", "P", "CMYK", "YCbCr"):
                img.load()
                return np.asarray(img.convert("RGB"))
            if channels == 1 and mode == "L":  # the common case, without read_gray8's float rescale
                img.load()
                return np.asarray(img)
    except Exception as err:
        raise SourceError(f"{path}: unreadable image ({type(err).__name__}: {err})") from err
    gray = read_gray8(path)  # names the file on any decoding error; 16-bit rescaled
    return gray if channels == 1 else np.repeat(gray[..., None], 3, axis=2)


def _ident(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in stem.replace("/", "-"))
    return safe


def _read_labels(folder: Path) -> dict[str, list[Label]]:
    """defects.csv rows by the file they name (its path relative to ``folder``, or its file name)."""
    path = folder / LABELS_FILE
    if not path.is_file():
        return {}
    out: dict[str, list[Label]] = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = {"file", "x", "y"} - set(reader.fieldnames or [])
        if missing:
            raise SourceError(f"{path}: needs the columns file, x, y[, group] (missing {', '.join(sorted(missing))})")
        for line, row in enumerate(reader, start=2):
            try:
                x, y = float(row["x"]), float(row["y"])
            except (TypeError, ValueError):
                raise SourceError(f"{path}:{line}: x and y must be numbers, got {row['x']!r}, {row['y']!r}") from None
            group = (row.get("group") or "").strip() or None
            if group is not None and group not in GROUPS:
                raise SourceError(f"{path}:{line}: group {group!r} is not one of {', '.join(GROUPS)}")
            out.setdefault((row["file"] or "").strip(), []).append(Label(x, y, group))
    return out


def _images(folder: Path) -> list[Path]:
    return list_images(folder) if folder.is_dir() else []


def read_modality(folder: Path, modality: Modality) -> ModalitySource:
    """Every acquisition of one modality source folder, validated (no pixel of an acquisition decoded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise SourceError(f"{folder}: source folder does not exist")
    found: list[tuple[Path, str | None]] = [(p, None) for p in _images(folder / GOOD_DIR)]
    defective = folder / DEFECTIVE_DIR
    classes = sorted(p.name for p in defective.iterdir() if p.is_dir()) if defective.is_dir() else []
    for name in classes:
        if name == GOOD_DIR:
            raise SourceError(f"{defective / name}: a defect class cannot be named '{GOOD_DIR}'")
        found += [(p, name) for p in _images(defective / name)]
    if not found:
        raise SourceError(f"{folder}: no acquisitions (expected {GOOD_DIR}/*.png and/or {DEFECTIVE_DIR}/<class>/*.png)")
    labels = _read_labels(folder)
    by_name: dict[str, list[str]] = {}
    for path, _ in found:
        by_name.setdefault(path.name, []).append(path.relative_to(folder).as_posix())
    acquisitions, idents = [], {}
    for path, cls in found:
        rel = path.relative_to(folder).as_posix()
        size = open_image_header(path)
        mask = folder / MASKS_DIR / cls / f"{path.stem}{MASK_SUFFIX}.png" if cls else None
        mask = mask if mask is not None and mask.is_file() else None
        roi = folder / ROI_DIR / f"{path.stem}{ROI_SUFFIX}.png"
        roi = roi if roi.is_file() else None
        rows = labels.pop(rel, []) + (labels.pop(path.name, []) if len(by_name[path.name]) == 1 else [])
        for label in rows:
            if not (0 <= label.x < size[0] and 0 <= label.y < size[1]):
                raise SourceError(f"{folder / LABELS_FILE}: defect label ({label.x:g}, {label.y:g}) lies outside "
                                  f"{rel} ({size[0]}x{size[1]})")
        for extra, what in ((mask, "mask"), (roi, "ROI")):
            if extra is not None and open_image_header(extra) != size:
                w, h = open_image_header(extra)
                raise SourceError(f"{extra}: {what} is {w}x{h}, its image {rel} is {size[0]}x{size[1]}")
        if roi is not None and not read_binary(roi).any():
            raise SourceError(f"{roi}: empty region of interest (all zero)")
        if cls and mask is None and not rows:
            raise SourceError(f"{path}: defective acquisition without a mask ({folder / MASKS_DIR / cls / (path.stem + MASK_SUFFIX + '.png')}) "
                              f"and without a row in {folder / LABELS_FILE}")
        ident = _ident(rel)
        if ident in idents:
            raise SourceError(f"{path}: its patch names would clash with {idents[ident]} (rename one of them)")
        idents[ident] = path
        acquisitions.append(Acquisition(path, rel, ident, cls, size, mask, roi, tuple(rows)))
    if labels:
        name = next(iter(labels))
        raise SourceError(f"{folder / LABELS_FILE}: file {name!r} is not an acquisition under {folder} "
                          f"(give its path, e.g. {DEFECTIVE_DIR}/<class>/<name>.png)")
    _orphans(folder, {a.mask for a in acquisitions} | {a.roi for a in acquisitions})
    return ModalitySource(modality, folder, tuple(acquisitions))


def _orphans(folder: Path, used: set[Path | None]) -> None:
    """A mask or ROI that belongs to no acquisition is a naming mistake: refuse it rather than ignore it."""
    for sub in (folder / MASKS_DIR, folder / ROI_DIR):
        if not sub.is_dir():
            continue
        for path in sorted(p for p in sub.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            if path not in used:
                raise SourceError(f"{path}: no acquisition of that name (masks: {MASKS_DIR}/<class>/<stem>{MASK_SUFFIX}.png "
                                  f"beside {DEFECTIVE_DIR}/<class>/<stem>.png; ROIs: {ROI_DIR}/<stem>{ROI_SUFFIX}.png)")


def modality_folders(source: Path, modality: str | None) -> list[tuple[Modality, Path]]:
    """(modality, folder) pairs of a source root: its modality-named subfolders, or ``source`` itself
    when it holds ``good/`` or ``defective/`` (then ``--modality`` says which modality it is)."""
    source = Path(source)
    if not source.is_dir():
        raise SourceError(f"{source}: source folder does not exist")
    if (source / GOOD_DIR).is_dir() or (source / DEFECTIVE_DIR).is_dir():
        if modality is None:
            raise SourceError(f"{source}: holds acquisitions directly; pass --modality (LSM-1, LSM-2 or ASM)")
        return [(Modality.parse(modality), source)]
    found = []
    for sub in sorted(p for p in source.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            mod = Modality.parse(sub.name)
        except ValueError:
            if modality is not None and sub.name == modality:
                raise SourceError(f"{sub}: pass the ISP-AD modality it is imaged with (--modality LSM-1, LSM-2 or ASM) "
                                  f"and --source {sub}") from None
            continue
        if modality is None or mod is Modality.parse(modality):
            found.append((mod, sub))
    if not found:
        want = f" for {Modality.parse(modality).value}" if modality else ""
        raise SourceError(f"{source}: no modality folder{want} (expected e.g. {source / 'ASM'}/good/*.png)")
    return found


def file_digest(path: Path) -> str:
    """BLAKE2b of a file's bytes, read in blocks (the fingerprint's view of a source file)."""
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
