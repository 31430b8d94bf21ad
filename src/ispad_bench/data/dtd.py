"""``ispad-bench data textures``: the Describable Textures Dataset (DTD) that official GLASS blends in LAS.

Downloads the official DTD release archive (Cimpoi et al., University of Oxford VGG), verifies its
SHA-256 (the value Anomalib pins for its GLASS/DRAEM), and extracts it into ``root`` so that
``root/images/<category>/*.jpg`` is the layout GLASS's ``texture_dir`` reads. Download, resume
(HTTP Range), progress bar and safe extraction are the Zenodo downloader's (:mod:`.download`).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ispad_bench.data.download import CACHE_DIR, DownloadError, RemoteFile, download_file, extract, file_digest

DTD_URL = "https://www.robots.ox.ac.uk/~vgg/data/dtd/download/dtd-r1.0.1.tar.gz"
# SHA-256 of dtd-r1.0.1.tar.gz as pinned by anomalib (DTD_DOWNLOAD_INFO of its GLASS and DRAEM models)
DTD_SHA256 = "e42855a52a4950a3b59612834602aa253914755c95b0cff9ead6d07395f8e205"
DONE_MARKER = "dtd.done"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def count_textures(root: Path) -> int:
    """Texture files in DTD layout below ``root`` (``images/<category>/*``)."""
    base = Path(root) / "images"
    return sum(1 for p in base.glob("*/*") if p.suffix.lower() in IMAGE_SUFFIXES) if base.is_dir() else 0


def fetch_verified(url: str, digest: str, cache: Path, progress) -> Path:
    """Download ``url`` into ``cache`` (resumed) and check its SHA-256; one fresh retry after a mismatch."""
    name = url.rstrip("/").rsplit("/", 1)[-1]
    remote = RemoteFile(name, None, None, url)
    for attempt in (1, 2):
        path = download_file(remote, cache, progress)
        got = file_digest(path, "sha256")
        if got == digest:
            return path
        path.unlink()
        if attempt == 2:
            raise DownloadError(f"{name}: SHA-256 mismatch after retry (expected {digest}, got {got}); file deleted")
        progress.console.print(f"{name}: SHA-256 mismatch (expected {digest}, got {got}); downloading again")
    raise AssertionError("unreachable")


def install(archive: Path, root: Path) -> None:
    """Extract ``archive`` (checked member by member) and move its ``dtd/`` contents to ``root``."""
    staging = root / CACHE_DIR / "dtd-extract"
    shutil.rmtree(staging, ignore_errors=True)
    extract(archive, staging)
    top = staging / "dtd" if (staging / "dtd").is_dir() else staging
    if not (top / "images").is_dir():
        raise DownloadError(f"{archive.name}: no images/ folder in the archive (not the DTD release?)")
    for child in top.iterdir():
        target = root / child.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(child, target)
    shutil.rmtree(staging, ignore_errors=True)


def main_textures(root: str | Path, url: str = DTD_URL, digest: str = DTD_SHA256) -> int:
    """Download, verify and install DTD into ``root``; exit code (0: textures ready)."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    root = Path(root)
    cache = root / CACHE_DIR
    cache.mkdir(parents=True, exist_ok=True)
    marker = cache / DONE_MARKER
    if marker.is_file() and marker.read_text() == digest and count_textures(root):
        print(f"DTD already in {root}: {count_textures(root)} textures (texture_dir: {root})")
        return 0
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        with Progress(*columns) as progress:
            archive = fetch_verified(url, digest, cache, progress)
            progress.console.print(f"extracting {archive.name}")
            install(archive, root)
        archive.unlink()
    except DownloadError as err:
        print(f"error: {err}")
        return 1
    marker.write_text(digest)
    print(f"DTD ready: {count_textures(root)} textures in {root}/images (GLASS texture_dir: {root})")
    return 0


__all__ = ["DTD_SHA256", "DTD_URL", "count_textures", "fetch_verified", "install", "main_textures"]
