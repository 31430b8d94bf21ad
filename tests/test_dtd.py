"""``data textures``: DTD download against a server on 127.0.0.1 (SHA-256, resume, safe extraction) and its use."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from http.server import BaseHTTPRequestHandler

import pytest
import torch
from torchvision.io import encode_jpeg

from ispad_bench.cli import main as cli_main
from ispad_bench.data.dtd import DTD_SHA256, DTD_URL, count_textures, main_textures
from ispad_bench.models.glass.textures import FolderTextures, ProceduralTextures, source_name, texture_source


class Files(BaseHTTPRequestHandler):
    """Serves ``/<name>`` with Range support; logs (path, Range header)."""

    files: dict[str, bytes] = {}
    log: list[tuple[str, str | None]] = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        data = type(self).files.get(self.path.lstrip("/"))
        if data is None:
            self.send_response(404)
            self.end_headers()
            return
        start = 0
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(match.group(1))
        type(self).log.append((self.path, self.headers.get("Range")))
        if start >= len(data) and start:
            self.send_response(416)
            self.end_headers()
            return
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(local_http):
    Files.files, Files.log = {}, []
    return local_http(Files)


def _archive(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _jpeg(seed: int) -> bytes:
    g = torch.Generator().manual_seed(seed)
    return bytes(encode_jpeg(torch.randint(0, 255, (3, 24, 32), dtype=torch.uint8, generator=g)).numpy())


@pytest.fixture
def dtd_archive() -> bytes:
    members = {f"dtd/images/{cat}/{cat}_{i:04d}.jpg": _jpeg(k * 10 + i)
               for k, cat in enumerate(("banded", "dotted")) for i in range(2)}
    members["dtd/labels/labels_joint_anno.txt"] = b"banded/banded_0000.jpg banded\n"
    return _archive(members)


def test_download_verify_extract_and_glass_reads_it(server, dtd_archive, tmp_path, capsys):
    Files.files = {"dtd-r1.0.1.tar.gz": dtd_archive}
    url, digest = f"{server}/dtd-r1.0.1.tar.gz", hashlib.sha256(dtd_archive).hexdigest()
    root = tmp_path / "dtd"
    assert main_textures(root, url=url, digest=digest) == 0
    assert count_textures(root) == 4 and (root / "labels" / "labels_joint_anno.txt").is_file()
    assert not list((root / ".download").glob("*.tar.gz"))  # the archive is removed once installed
    textures = texture_source(root, fallback=True)
    assert isinstance(textures, FolderTextures) and len(textures) == 4 and source_name(textures) == "dtd"
    assert textures[0].shape == (3, 24, 32)
    requests = len(Files.log)
    assert main_textures(root, url=url, digest=digest) == 0  # already there: no new request
    assert len(Files.log) == requests and "already" in capsys.readouterr().out


def test_partial_download_is_resumed_with_a_range_request(server, dtd_archive, tmp_path):
    Files.files = {"dtd-r1.0.1.tar.gz": dtd_archive}
    cache = tmp_path / "dtd" / ".download"
    cache.mkdir(parents=True)
    half = len(dtd_archive) // 2
    (cache / "dtd-r1.0.1.tar.gz.part").write_bytes(dtd_archive[:half])
    code = main_textures(tmp_path / "dtd", url=f"{server}/dtd-r1.0.1.tar.gz",
                         digest=hashlib.sha256(dtd_archive).hexdigest())
    assert code == 0 and Files.log == [("/dtd-r1.0.1.tar.gz", f"bytes={half}-")]
    assert count_textures(tmp_path / "dtd") == 4


def test_checksum_mismatch_and_unsafe_archive_install_nothing(server, dtd_archive, tmp_path, capsys):
    Files.files = {"dtd-r1.0.1.tar.gz": dtd_archive, "evil.tar.gz": _archive({"dtd/../../escape.txt": b"x"})}
    assert main_textures(tmp_path / "a", url=f"{server}/dtd-r1.0.1.tar.gz", digest="0" * 64) == 1
    assert "SHA-256 mismatch after retry" in capsys.readouterr().out and len(Files.log) == 2  # one retry
    assert count_textures(tmp_path / "a") == 0 and not list((tmp_path / "a" / ".download").glob("*.tar.gz"))
    evil = Files.files["evil.tar.gz"]
    assert main_textures(tmp_path / "b", url=f"{server}/evil.tar.gz", digest=hashlib.sha256(evil).hexdigest()) == 1
    assert "unsafe archive" in capsys.readouterr().out
    assert not (tmp_path / "escape.txt").exists() and count_textures(tmp_path / "b") == 0


def test_cli_and_pinned_checksum_is_anomalibs(server, dtd_archive, tmp_path, monkeypatch):
    from anomalib.models.image.glass.lightning_model import DTD_DOWNLOAD_INFO

    assert (DTD_DOWNLOAD_INFO.url, DTD_DOWNLOAD_INFO.hashsum) == (DTD_URL, DTD_SHA256)
    Files.files = {"dtd-r1.0.1.tar.gz": dtd_archive}
    monkeypatch.setattr(main_textures, "__defaults__", (f"{server}/dtd-r1.0.1.tar.gz",
                                                         hashlib.sha256(dtd_archive).hexdigest()))
    assert cli_main(["data", "textures", "--root", str(tmp_path / "dtd")]) == 0
    assert count_textures(tmp_path / "dtd") == 4


def test_missing_texture_dir_falls_back_to_generated_with_a_warning(tmp_path):
    with pytest.warns(RuntimeWarning, match="generated textures"):
        textures = texture_source(tmp_path / "absent", fallback=True)
    assert isinstance(textures, ProceduralTextures) and source_name(textures) == "generated"
    with pytest.raises(FileNotFoundError):
        texture_source(tmp_path / "absent")
