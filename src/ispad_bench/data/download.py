"""``ispad-bench data download``: fetch ISP-AD from its Zenodo record (doi 10.5281/zenodo.14911043).

Lists the record's files through the Zenodo API, downloads each into ``<root>/.download/`` with a
progress bar, resumes partial downloads with HTTP Range requests, verifies each file with the checksum
algorithm the record names (``md5:``, ``sha256:``, ...; one retry after a mismatch), extracts archives
after checking every member (no absolute paths, no ``..``, no links leaving the root) and their total
size (at most 256 GiB and 100x the archive, overridable: a decompression bomb is refused), and finally
runs ``data check``. Only the standard library does the I/O.
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
    checksum: str | None  # "<algorithm>:<hex digest>" as the record names it (a bare digest is md5, Zenodo's)
    url: str

    @property
    def algorithm(self) -> str:
        return (self.checksum or "md5:").split(":", 1)[0]

    @property
    def digest(self) -> str | None:
        return self.checksum.split(":", 1)[1] if self.checksum else None


def parse_checksum(value: object, where: str) -> str | None:
    """A record's checksum as ``algorithm:hex`` (bare hex: md5); an unknown algorithm or junk is an error."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise DownloadError(f"{where}: 'checksum' is {value!r} ({type(value).__name__}), expected e.g. 'md5:<hex>'")
    algorithm, _, digest = value.rpartition(":") if ":" in value else ("md5", ":", value)
    algorithm = algorithm.lower()
    if algorithm not in hashlib.algorithms_available:
        raise DownloadError(f"{where}: checksum algorithm {algorithm!r} is not one hashlib knows")
    if not digest or any(c not in "0123456789abcdefABCDEF" for c in digest):
        raise DownloadError(f"{where}: checksum {value!r} is not a hex digest")
    return f"{algorithm}:{digest.lower()}"


def record_files(record: object) -> list[RemoteFile]:
    """Files of a Zenodo record JSON; handles the current (``links.content``) and legacy (``links.self``) shapes.
    A malformed record (wrong types anywhere) is one :class:`DownloadError` naming the field."""
    if not isinstance(record, dict):
        raise DownloadError(f"the record is a JSON {type(record).__name__}, expected an object with 'files'")
    files = record.get("files", [])
    if isinstance(files, dict):  # InvenioRDM may nest them: {"entries": [...] | {name: {...}}}
        files = files.get("entries", [])
        files = list(files.values()) if isinstance(files, dict) else files
    if not isinstance(files, list):
        raise DownloadError(f"the record's 'files' is a {type(files).__name__}, expected a list of file entries")
    out = []
    for i, entry in enumerate(files):
        if not isinstance(entry, dict):
            raise DownloadError(f"record file entry #{i} is a {type(entry).__name__}, expected an object")
        key = entry.get("key") or entry.get("filename")
        links = entry.get("links", {})
        links = links if isinstance(links, dict) else {}
        url = links.get("content") or links.get("download") or links.get("self")
        if not key or not url:
            raise DownloadError(f"record entry without a file name or download link: {entry}")
        if not isinstance(key, str) or not isinstance(url, str):
            raise DownloadError(f"record file entry #{i}: file name {key!r} and link {url!r} must be strings")
        size = entry.get("size", entry.get("filesize"))
        if size is not None and (isinstance(size, bool) or not isinstance(size, int | float) or size < 0
                                 or size != int(size)):
            raise DownloadError(f"record file {key!r}: 'size' is {size!r}, expected a number of bytes")
        checksum = parse_checksum(entry.get("checksum"), f"record file {key!r}")
        out.append(RemoteFile(key, int(size) if size is not None else None, checksum, _check_url(url)))
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
    """Download and verify one file into ``cache`` with the record's own checksum algorithm (resumed, one retry
    after a mismatch)."""
    name = _safe_name(remote.key)
    final, part = cache / name, cache / f"{name}.part"
    algorithm, want = remote.algorithm, remote.digest
    if final.exists() and (want is None or file_digest(final, algorithm) == want):
        return final
    for attempt in (1, 2):
        _fetch(remote, part, progress)
        got = file_digest(part, algorithm)
        if remote.size is not None and part.stat().st_size != remote.size:
            size = part.stat().st_size
            part.unlink()
            raise DownloadError(f"{remote.key}: {size} bytes downloaded, the record says {remote.size}; "
                                "the partial file was deleted")
        if want is None or got == want:
            os.replace(part, final)
            return final
        part.unlink()
        if attempt == 2:
            raise DownloadError(
                f"{remote.key}: {algorithm} mismatch after retry (expected {want}, got {got}); "
                "the partial file was deleted"
            )
        progress.console.print(f"{remote.key}: {algorithm} mismatch (expected {want}, got {got}); downloading again")
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


MAX_EXTRACT_GIB = 256.0  # ISP-AD's record is tens of GB; above this an archive is refused (overridable)
MAX_RATIO = 100.0  # extracted / archive bytes: PNG and HDF5 barely compress; a zip bomb is 1000x and more
RATIO_FLOOR = 64 * 2**20  # the ratio applies above 64 MiB extracted (tiny text archives compress far more)


def check_extract_size(archive: Path, total: int, max_gib: float = MAX_EXTRACT_GIB, max_ratio: float = MAX_RATIO) -> None:
    """Refuse an archive whose members add up to more than ``max_gib`` GiB, or to more than ``max_ratio`` x its own
    size once above 64 MiB."""
    size = max(1, archive.stat().st_size)
    if total > max_gib * 2**30 or (total > RATIO_FLOOR and total / size > max_ratio):
        raise DownloadError(
            f"{archive.name}: would extract {total:,} bytes, {total / size:,.0f}x its {size:,} (limits: "
            f"{max_gib:g} GiB, {max_ratio:g}x); nothing extracted. A decompression bomb? If the archive is "
            "trusted, raise the limits (data download --max-extract-gib / --max-ratio)")


def extract(archive: Path, dest: Path, max_gib: float = MAX_EXTRACT_GIB, max_ratio: float = MAX_RATIO) -> None:
    """Extract a zip or tar archive into ``dest`` after validating every member and the total size
    (:func:`check_extract_size`); a damaged archive (bad CRC, truncated member, junk) is a
    :class:`DownloadError` naming it."""
    try:
        _extract(archive, dest, max_gib, max_ratio)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError, ValueError) as err:
        raise DownloadError(f"{archive.name}: damaged archive ({type(err).__name__}: {err}); "
                            "delete it and run the command again") from err


def _extract(archive: Path, dest: Path, max_gib: float, max_ratio: float) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            check_extract_size(archive, sum(i.file_size for i in zf.infolist()), max_gib, max_ratio)
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
            check_extract_size(archive, sum(m.size for m in members if m.isfile()), max_gib, max_ratio)
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


def main_download(root: str | Path, record: str = "14911043", api_url: str = "https://zenodo.org/api/records",
                  max_gib: float = MAX_EXTRACT_GIB, max_ratio: float = MAX_RATIO) -> int:
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
                if done.exists() and done.read_text() in {remote.checksum or "", remote.digest or ""}:
                    continue  # (markers of earlier versions hold the bare md5)
                if remote.checksum is None:
                    progress.console.print(f"[bold yellow]warning: the record gives no checksum for {remote.key}: "
                                           f"{'only its size is' if remote.size is not None else 'NOT'} verified[/]")
                path = download_file(remote, cache, progress)
                if path.name.lower().endswith(ARCHIVE_SUFFIXES) and not _is_archive(path):
                    raise DownloadError(f"{path}: named like an archive but is not a readable zip/tar file "
                                        "(truncated or junk); not extracted, not marked done")
                if _is_archive(path):
                    progress.console.print(f"extracting {path.name}")
                    extract(path, root, max_gib, max_ratio)
                    path.unlink()  # the archives are large; the .done marker remembers this one
                else:
                    os.replace(path, root / path.name)
                done.write_text(remote.checksum or "")
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
