"""``data download`` end to end against a Zenodo-like server on 127.0.0.1 (record JSON + archives)."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import zipfile
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from conftest import write_tiny_tree

from ispad_bench.data.download import DownloadError, extract, main_download, record_files


class Zenodo(BaseHTTPRequestHandler):
    """Serves ``/api/records/<id>`` and ``/files/<name>`` (with Range); can corrupt the first N downloads."""

    files: dict[str, bytes] = {}
    legacy: set[str] = set()  # files listed in the old shape (links.self is the download)
    corrupt = 0
    log: list[tuple[str, str | None, int]] = []  # (path, Range header, bytes sent)

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        cls = type(self)
        if self.path.startswith("/api/records/"):
            base = f"http://127.0.0.1:{self.server.server_port}"
            entries = []
            for key, data in cls.files.items():
                links = {"self": f"{base}/files/{key}"} if key in cls.legacy else {
                    "self": f"{base}/api/records/1/files/{key}", "content": f"{base}/files/{key}"}
                entries.append({"key": key, "size": len(data), "checksum": "md5:" + hashlib.md5(data).hexdigest(),
                                "links": links})
            return self._send(200, json.dumps({"id": 1, "files": entries}).encode(), "application/json")
        key = self.path.rsplit("/", 1)[-1]
        data = cls.files[key]
        if cls.corrupt:
            cls.corrupt -= 1
            data = bytes(b ^ 0xFF for b in data[:64]) + data[64:]
        start = 0
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(match.group(1))
        cls.log.append((self.path, self.headers.get("Range"), len(data) - start))
        self._send(206 if start else 200, data[start:], "application/octet-stream")

    def _send(self, status, body, kind):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server(local_http):
    Zenodo.files, Zenodo.legacy, Zenodo.corrupt, Zenodo.log = {}, set(), 0, []
    return local_http(Zenodo) + "/api/records"


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    """A zip of a tiny LSM-1 tree and a tar.gz of a tiny ASM tree."""
    src = write_tiny_tree(tmp_path_factory.mktemp("src"), modalities=("LSM-1", "ASM"), train=2, reduced=1, good=1,
                          defects={"dot": 1}, stream=2)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        for path in sorted((src / "LSM-1").rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        tf.add(src / "ASM", arcname="ASM")
    return {"LSM-1.zip": zbuf.getvalue(), "ASM.tar.gz": tbuf.getvalue()}


def test_end_to_end(server, archives, tmp_path, capsys):
    Zenodo.files = dict(archives)
    Zenodo.legacy = {"ASM.tar.gz"}
    root = tmp_path / "data"
    assert main_download(root, record="1", api_url=server) == 0
    out = capsys.readouterr().out
    assert "OK: no errors" in out
    assert (root / "LSM-1/test/dot/000.png").is_file() and (root / "ASM/supervised/stream.h5").is_file()
    assert sorted(p.name for p in (root / ".download").iterdir()) == ["ASM.tar.gz.done", "LSM-1.zip.done"]
    # a rerun downloads nothing
    Zenodo.log = []
    assert main_download(root, record="1", api_url=server) == 0
    assert Zenodo.log == []


def test_config_files_in_the_record_are_announced_with_the_compare_command(server, archives, tmp_path, capsys):
    Zenodo.files = {**archives, "run-glass-lsm1.sh": b"python main.py --lr 0.0001 --meta_epochs 160\n"}
    root = tmp_path / "data"
    assert main_download(root, record="1", api_url=server) == 0
    out = capsys.readouterr().out
    assert "the record holds 1 configuration file(s) (run-glass-lsm1.sh)" in out
    assert f"ispad-bench configs compare {root}" in out


def test_md5_mismatch_is_retried_once(server, archives, tmp_path, capsys):
    Zenodo.files = {"LSM-1.zip": archives["LSM-1.zip"]}
    Zenodo.corrupt = 1
    assert main_download(tmp_path, record="1", api_url=server) == 0
    assert len(Zenodo.log) == 2 and "md5 mismatch" in capsys.readouterr().out


def test_corrupt_download_fails_and_leaves_nothing(server, archives, tmp_path, capsys):
    Zenodo.files = {"LSM-1.zip": archives["LSM-1.zip"]}
    Zenodo.corrupt = 2
    assert main_download(tmp_path, record="1", api_url=server) == 1
    out = capsys.readouterr().out
    assert "error: LSM-1.zip: md5 mismatch after retry" in out
    assert list((tmp_path / ".download").iterdir()) == [] and not (tmp_path / "LSM-1").exists()


def test_resume_with_range(server, archives, tmp_path):
    data = archives["LSM-1.zip"]
    Zenodo.files = {"LSM-1.zip": data}
    half = len(data) // 2
    (tmp_path / ".download").mkdir()
    (tmp_path / ".download/LSM-1.zip.part").write_bytes(data[:half])
    assert main_download(tmp_path, record="1", api_url=server) == 0
    assert Zenodo.log == [("/files/LSM-1.zip", f"bytes={half}-", len(data) - half)]
    assert (tmp_path / "LSM-1/train/good/000.png").is_file()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_path_traversal_archive_is_rejected(server, tmp_path, capsys):
    Zenodo.files = {"evil.zip": _zip({"LSM-1/ok.txt": b"fine", "../../evil.txt": b"owned", "/abs.txt": b"x"})}
    root = tmp_path / "a" / "data"
    assert main_download(root, record="1", api_url=server) == 1
    out = capsys.readouterr().out
    assert "unsafe archive, nothing extracted" in out and "../../evil.txt: '..' component" in out
    assert "/abs.txt: absolute path" in out
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "a/evil.txt").exists()
    assert not (root / "LSM-1").exists()  # all or nothing


def _tar(tmp_path, add) -> Path:
    path = tmp_path / "t.tar"
    with tarfile.open(path, "w") as tf:
        add(tf)
    return path


def test_tar_links_leaving_the_root_are_rejected(tmp_path):
    def symlink(tf, name, target, kind=tarfile.SYMTYPE):
        info = tarfile.TarInfo(name)
        info.type, info.linkname = kind, target
        tf.addfile(info)

    dest = tmp_path / "dest"
    bad = _tar(tmp_path, lambda tf: symlink(tf, "LSM-1/link", "../../outside"))
    with pytest.raises(DownloadError, match=r"LSM-1/link: link to ../../outside points outside"):
        extract(bad, dest)
    bad = _tar(tmp_path, lambda tf: symlink(tf, "hard", "../x", tarfile.LNKTYPE))
    with pytest.raises(DownloadError, match="hard: link to ../x points outside"):
        extract(bad, dest)
    ok = _tar(tmp_path, lambda tf: symlink(tf, "LSM-1/a/link", "../b"))
    extract(ok, dest)
    assert (dest / "LSM-1/a/link").is_symlink()


def test_record_shapes():
    new = {"files": [{"key": "a.zip", "size": 3, "checksum": "md5:abc",
                      "links": {"self": "https://x/api/records/1/files/a.zip", "content": "https://x/a/content"}}]}
    legacy = {"files": [{"key": "a.zip", "size": 3, "checksum": "md5:abc", "links": {"self": "https://x/a"}}]}
    nested = {"files": {"entries": {"a.zip": {"key": "a.zip", "size": 3, "checksum": "md5:abc",
                                              "links": {"content": "https://x/c"}}}}}
    assert [f.url for f in record_files(new)] == ["https://x/a/content"]
    assert [(f.key, f.size, f.checksum, f.url) for f in record_files(legacy)] == [("a.zip", 3, "md5:abc", "https://x/a")]
    assert record_files(nested)[0].url == "https://x/c"
    with pytest.raises(DownloadError, match="lists no files"):
        record_files({"files": []})


def test_unsafe_record_file_name(server, tmp_path, capsys):
    Zenodo.files = {"..": b"x"}
    assert main_download(tmp_path, record="1", api_url=server) == 1
    assert "refusing record file name '..'" in capsys.readouterr().out


def test_unreachable_api_is_one_clear_error(tmp_path, capsys):
    assert main_download(tmp_path, record="1", api_url="http://127.0.0.1:9/api/records") == 1
    assert "error: cannot read the record http://127.0.0.1:9/api/records/1" in capsys.readouterr().out
