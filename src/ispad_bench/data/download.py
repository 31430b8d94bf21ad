"""``ispad-bench data download``: fetch ISP-AD from its Zenodo record (doi 10.5281/zenodo.14911043).

Lists the record's files through the Zenodo API, downloads each into ``<root>/.download/`` with a
progress bar, resumes partial downloads with HTTP Range requests, verifies md5 (one retry after a
mismatch), extracts archives after checking every member (no absolute paths, no ``..``, no links
leaving the root), and finally runs ``data check``. Only the standard library does the I/O.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

CACHE_DIR = ".download"
CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(RuntimeError):
    """A download, checksum or extraction failed; the message says which file and why."""


@dataclass(frozen=True)
class RemoteFile:
    key: str
    size: int | None
    md5: str | None
    url: str


def record_files(record: dict) -> list[RemoteFile]:
    """Files of a Zenodo record JSON; handles the current (``links.content``) and legacy (``links.self``) shapes."""
    files = record.get("files", [])
    if isinstance(files, dict):  # InvenioRDM may nest them: {"entries": [...] | {name: {...}}}
        files = files.get("entries", [])
        files = list(files.values()) if isinstance(files, dict) else files
    out = []
    for entry in files:
        key = entry.get("key") or entry.get("filename")
        links = entry.get("links", {})
        url = links.get("content") or links.get("download") or links.get("self")
        if not key or not url:
            raise DownloadError(f"record entry without a file name or download link: {entry}")
        checksum = entry.get("checksum") or ""
        md5 = checksum.split(":", 1)[1] if checksum.startswith("md5:") else (checksum or None)
        size = entry.get("size", entry.get("filesize"))
        out.append(RemoteFile(key, int(size) if size is not None else None, md5, _check_url(url)))
    if not out:
        raise DownloadError("the record lists no files")
    return out


ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _check_url(url: str) -> str:
    """Only https downloads (plain http to this machine, for tests): a record must never make us copy
    ``file:///...`` or another scheme's content into the root."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme == "https" or (parsed.scheme == "http" and parsed.hostname in _LOCAL_HOSTS):
        return url
    raise DownloadError(f"refusing download link {url!r}: only https links are accepted")


def _safe_name(key: str) -> str:
    parts = PurePosixPath(key).parts
    if not parts or key.startswith(("/", "\\")) or ".." in parts or len(parts) != 1:
        raise DownloadError(f"refusing record file name {key!r} (not a plain file name)")
    return key


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in chunks (md5 for Zenodo records, sha256 for DTD and weights)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(remote: RemoteFile, part: Path, progress) -> None:
    """Download ``remote`` into ``part``, continuing an existing partial file with a Range request."""
    have = part.stat().st_size if part.exists() else 0
    if remote.size is not None and have > remote.size:
        part.unlink()
        have = 0
    if remote.size is not None and have == remote.size:
        return
    request = urllib.request.Request(remote.url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            if have and response.status != 206:  # server ignored the Range: start again
                have = 0
            total = remote.size or (have + int(response.headers.get("Content-Length", 0))) or None
            task = progress.add_task(remote.key, total=total, completed=have)
            with open(part, "ab" if have else "wb") as f:
                while chunk := response.read(CHUNK):
                    f.write(chunk)
                    progress.advance(task, len(chunk))
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # range not satisfiable: the part is already complete
            return
        raise DownloadError(f"{remote.url}: HTTP {err.code} {err.reason}") from err
    except (urllib.error.URLError, OSError) as err:
        raise DownloadError(f"{remote.url}: {err} (run the command again to resume {part})") from err


def download_file(remote: RemoteFile, cache: Path, progress) -> Path:
    """Download and md5-verify one file into ``cache`` (resumed, one retry after a mismatch)."""
    name = _safe_name(remote.key)
    final, part = cache / name, cache / f"{name}.part"
    if final.exists() and (remote.md5 is None or file_digest(final) == remote.md5):
        return final
    for attempt in (1, 2):
        _fetch(remote, part, progress)
        got = file_digest(part)
        if remote.size is not None and part.stat().st_size != remote.size:
            size = part.stat().st_size
            part.unlink()
            raise DownloadError(f"{remote.key}: {size} bytes downloaded, the record says {remote.size}; "
                                "the partial file was deleted")
        if remote.md5 is None or got == remote.md5:
            os.replace(part, final)
            return final
        part.unlink()
        if attempt == 2:
            raise DownloadError(
                f"{remote.key}: md5 mismatch after retry (expected {remote.md5}, got {got}); "
                "the partial file was deleted"
            )
        progress.console.print(f"{remote.key}: md5 mismatch (expected {remote.md5}, got {got}); downloading again")
    raise AssertionError("unreachable")


def _inside(root: Path, target: Path) -> bool:
    root, target = os.path.realpath(root), os.path.realpath(target)
    return target == root or target.startswith(root + os.sep)


def _check_member(name: str, dest: Path, link: str | None = None, hard: bool = False) -> str | None:
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or name.startswith(("/", "\\")) or (path.parts and ":" in path.parts[0]):
        return f"{name}: absolute path"
    if ".." in path.parts:
        return f"{name}: '..' component"
    if link is not None:
        base = dest if hard else dest / path.parent
        if PurePosixPath(link).is_absolute() or not _inside(dest, base / link):
            return f"{name}: link to {link} points outside the extraction folder"
    return None


def _is_zip_symlink(info: zipfile.ZipInfo) -> bool:
    return (info.external_attr >> 16) & 0o170000 == 0o120000


def extract(archive: Path, dest: Path) -> None:
    """Extract a zip or tar archive into ``dest`` after validating every member; a damaged archive
    (bad CRC, truncated member, junk) is a :class:`DownloadError` naming it."""
    try:
        _extract(archive, dest)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, ValueError) as err:
        raise DownloadError(f"{archive.name}: damaged archive ({type(err).__name__}: {err}); "
                            "delete it and run the command again") from err


def _extract(archive: Path, dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            problems = [
                _check_member(i.filename, dest, zf.read(i).decode(errors="replace") if _is_zip_symlink(i) else None)
                for i in zf.infolist()
            ]
            if bad := [p for p in problems if p]:
                raise DownloadError(f"{archive.name}: unsafe archive, nothing extracted: " + "; ".join(bad))
            if broken := zf.testzip():  # CRC of every member before anything is written
                raise DownloadError(f"{archive.name}: damaged archive (bad CRC in {broken}), nothing extracted")
            zf.extractall(dest)  # zipfile writes links as plain files, never follows them
        return
    if tarfile.is_tarfile(archive):
        with tarfile.open(archive) as tf:
            members = tf.getmembers()
            bad = []
            for m in members:
                if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
                    bad.append(f"{m.name}: special file (device/fifo)")
                    continue
                problem = _check_member(m.name, dest, m.linkname if (m.issym() or m.islnk()) else None, m.islnk())
                if problem:
                    bad.append(problem)
            if bad:
                raise DownloadError(f"{archive.name}: unsafe archive, nothing extracted: " + "; ".join(bad))
            tf.extractall(dest, filter="data")  # the stdlib's own guard as a second layer
        return
    raise DownloadError(f"{archive}: not a zip or tar archive")


def _is_archive(path: Path) -> bool:
    return zipfile.is_zipfile(path) or tarfile.is_tarfile(path)


def fetch_record(api_url: str, record: str) -> dict:
    url = f"{api_url.rstrip('/')}/{record}"
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return json.load(response)
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as err:
        raise DownloadError(f"cannot read the record {url}: {err}") from err


def main_download(root: str | Path, record: str = "14911043", api_url: str = "https://zenodo.org/api/records") -> int:
    """Download, verify and extract every file of the record into ``root``, then check it; exit code."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from ispad_bench.data.check import main_check

    root = Path(root)
    cache = root / CACHE_DIR
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    try:
        try:
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise DownloadError(f"cannot write into {root}: {err.strerror or err}") from err
        files = record_files(fetch_record(api_url, record))
        with Progress(*columns) as progress:
            for remote in files:
                done = cache / f"{_safe_name(remote.key)}.done"  # finished on an earlier run
                if done.exists() and done.read_text() == (remote.md5 or ""):
                    continue
                if remote.md5 is None:
                    progress.console.print(f"[bold yellow]warning: the record gives no checksum for {remote.key}: "
                                           f"{'only its size is' if remote.size is not None else 'NOT'} verified[/]")
                path = download_file(remote, cache, progress)
                if path.name.lower().endswith(ARCHIVE_SUFFIXES) and not _is_archive(path):
                    raise DownloadError(f"{path}: named like an archive but is not a readable zip/tar file "
                                        "(truncated or junk); not extracted, not marked done")
                if _is_archive(path):
                    progress.console.print(f"extracting {path.name}")
                    extract(path, root)
                    path.unlink()  # the archives are large; the .done marker remembers this one
                else:
                    os.replace(path, root / path.name)
                done.write_text(remote.md5 or "")
    except DownloadError as err:
        print(f"error: {err}")
        return 1
    except OSError as err:  # disk full, permissions while moving/extracting: one line, not a traceback
        print(f"error: {err.filename or root}: {err.strerror or err}")
        return 1
    configs = config_files(root)
    if configs:  # §4.3.5: the authors' configuration files are published with the dataset
        shown = ", ".join(str(p.relative_to(root)) for p in configs[:5]) + (" ..." if len(configs) > 5 else "")
        print(f"the record holds {len(configs)} configuration file(s) ({shown}); compare them with the harness's "
              f"configs: ispad-bench configs compare {root}")
    return main_check(root)


CONFIG_SUFFIXES = (".yaml", ".yml", ".sh", ".json")


def config_files(root: Path) -> list[Path]:
    """Configuration-like files in a downloaded record (YAML, shell scripts, JSON), outside the download cache."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CONFIG_SUFFIXES
                  and CACHE_DIR not in p.relative_to(root).parts)
