"""Provenance, fingerprint and resume of ``data build``.

* **Fingerprint**: SHA-256 of the builder version, every parameter, and each source file's relative
  path and BLAKE2b content hash. Same sources + parameters + seed -> same fingerprint -> the same bytes.
* **Where a build lives while it runs**: ``<out>/.build-<modality>-<fingerprint[:16]>/``, renamed to
  ``<out>/<modality>/`` when complete, so the dataset folder is either absent or whole (the
  loaders and ``data check`` never see a half-written build). Inside it, ``.journal/<ident>.json``
  is written (atomically) after all patches of an acquisition are on disk: a rerun of an
  interrupted build skips journaled acquisitions and redoes the others (their files are rewritten
  with the same bytes); the stream is rewritten whole.
* **Done**: ``<modality>/build.json`` (fingerprint, parameters, counts). A rerun with the same
  fingerprint keeps the folder; a folder holding anything else is refused.
* **Manifest**: ``<modality>/manifest.csv.gz``, one row per written patch: ``path, source, x, y,
  transform, seed`` (``transform``: ``none``, ``pad=top,bottom,left,right``, the crop of a real
  defect, or the stream's augmentation parameters and ``defect=0|1``); gzip with a zero timestamp.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import shutil
from pathlib import Path

from ispad_bench.data.build.sources import ModalitySource, SourceError, file_digest
from ispad_bench.files import read_json, write_json

BUILDER = "ispad-bench data build v1"  # bump when the output of given inputs changes
BUILD_FILE, MANIFEST_FILE = "build.json", "manifest.csv.gz"
JOURNAL_DIR, CACHE_DIR = ".journal", ".cache"
TMP_PREFIX = ".build-"
COLUMNS = ("path", "source", "x", "y", "transform", "seed")


def fingerprint(source: ModalitySource, params: dict) -> str:
    """SHA-256 over the builder version, ``params`` and every source file's (relative path, content hash)."""
    files = sorted((p.relative_to(source.folder).as_posix(), file_digest(p)) for p in source.files())
    text = json.dumps({"builder": BUILDER, "modality": source.modality.value, "params": params, "files": files},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def workdir(out: Path, modality: str, fp: str) -> Path:
    return Path(out) / f"{TMP_PREFIX}{modality}-{fp[:16]}"


def check_target(target: Path, fp: str) -> bool:
    """True when ``target`` holds the finished build ``fp`` (nothing to do); raises when it holds anything
    else; False when it is absent or empty."""
    if not target.exists() or (target.is_dir() and not any(target.iterdir())):
        return False
    record = read_json(target / BUILD_FILE)
    if record is None:
        raise SourceError(f"{target}: exists and was not written by 'data build' (no {BUILD_FILE}); "
                          "choose another --out or remove it")
    if record.get("fingerprint") != fp:
        raise SourceError(f"{target}: holds a different build (fingerprint {str(record.get('fingerprint'))[:16]}, "
                          f"this one {fp[:16]}: other sources or parameters); choose another --out or remove it")
    return True


def remove_stale(out: Path, modality: str, keep: Path) -> None:
    """Delete the work folders of interrupted builds of ``modality`` with other fingerprints (never read)."""
    for folder in Path(out).glob(f"{TMP_PREFIX}{modality}-*"):
        if folder != keep and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)


def journal_path(work: Path, ident: str) -> Path:
    return work / JOURNAL_DIR / f"{ident}.json"


def read_journal(work: Path, ident: str) -> dict | None:
    return read_json(journal_path(work, ident))


def write_journal(work: Path, ident: str, entry: dict) -> None:
    write_json(journal_path(work, ident), entry)


def manifest_bytes(rows) -> bytes:
    """The manifest as gzip'd CSV with a fixed timestamp (same rows -> same bytes)."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(rows)
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", fileobj=buf, mode="wb", mtime=0, compresslevel=6) as f:
        f.write(text.getvalue().encode())
    return buf.getvalue()


class ManifestWriter:
    """The manifest written as rows come (the stream's rows are never all in memory), renamed into place on
    :meth:`close`; the bytes equal :func:`manifest_bytes` of the same rows."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.tmp = self.folder / f".{MANIFEST_FILE}.tmp"
        self.raw = open(self.tmp, "wb")  # noqa: SIM115 (closed by close(), which the builder calls in a finally)
        self.gz = gzip.GzipFile(filename="", fileobj=self.raw, mode="wb", mtime=0, compresslevel=6)
        self.text = io.TextIOWrapper(self.gz, encoding="utf-8", newline="")
        self.writer = csv.writer(self.text, lineterminator="\n")
        self.writer.writerow(COLUMNS)

    def write(self, rows) -> None:
        self.writer.writerows(rows)

    def close(self) -> None:
        self.text.close()  # closes the gzip stream (writes its trailer), not the raw file
        self.raw.flush()
        os.fsync(self.raw.fileno())
        self.raw.close()
        os.replace(self.tmp, self.folder / MANIFEST_FILE)


def read_manifest(folder: Path) -> list[dict]:
    """Every row of a built modality's manifest (tests, tracing a patch back to its source)."""
    with gzip.open(Path(folder) / MANIFEST_FILE, "rt", newline="") as f:
        return list(csv.DictReader(f))


def finish(work: Path, target: Path, record: dict) -> None:
    """Write ``build.json``, drop the journal and cache, and move the finished folder into place."""
    shutil.rmtree(work / JOURNAL_DIR, ignore_errors=True)
    shutil.rmtree(work / CACHE_DIR, ignore_errors=True)
    write_json(work / BUILD_FILE, record)
    if target.exists():  # an empty folder (check_target refused anything else)
        target.rmdir()
    work.rename(target)
