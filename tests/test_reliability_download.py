"""``data download`` against a hostile or broken record (docs/reliability.md): a read-only root,
``file://`` links, files without checksum, junk and damaged archives. One line each, nothing marked done."""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from http.server import BaseHTTPRequestHandler

import pytest

from ispad_bench.data.download import main_download


class Record(BaseHTTPRequestHandler):
    """``/api/records/1`` -> ``entries`` (``{base}`` replaced by this server); ``/files/<key>`` -> ``files``."""

    entries: list[dict] = []
    files: dict[str, bytes] = {}

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/api/records/"):
            base = f"http://127.0.0.1:{self.server.server_port}"
            body = json.dumps({"files": self.entries}).replace("{base}", base).encode()
        else:
            body = self.files[self.path.rsplit("/", 1)[-1]]
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def api(local_http):
    Record.entries, Record.files = [], {}
    return local_http(Record) + "/api/records"


def _serve(key: str, data: bytes, md5: bool = True, size: bool = True) -> None:
    entry = {"key": key, "links": {"content": "{base}/files/" + key}}
    if md5:
        entry["checksum"] = "md5:" + hashlib.md5(data).hexdigest()
    if size:
        entry["size"] = len(data)
    Record.entries.append(entry)
    Record.files[key] = data


def _one_line_error(capsys) -> str:
    out = capsys.readouterr().out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in out, out
    return errors[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_root_is_one_line(api, tmp_path, capsys):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    try:
        assert main_download(root, record="1", api_url=api) == 1  # was: a 22-line PermissionError traceback
    finally:
        root.chmod(0o755)
    assert _one_line_error(capsys).startswith(f"error: cannot write into {root}: Permission denied")


def test_unwritable_root_is_one_line(api, tmp_path, capsys):
    blocker = tmp_path / "file"  # works as root too: a file where the root folder should be
    blocker.write_text("x")
    assert main_download(blocker / "data", record="1", api_url=api) == 1
    assert _one_line_error(capsys).startswith(f"error: cannot write into {blocker / 'data'}: ")


def test_file_link_in_record_is_refused(api, tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("private")
    Record.entries = [{"key": "secret.txt", "size": 7, "links": {"content": secret.as_uri()}}]
    assert main_download(tmp_path / "data", record="1", api_url=api) == 1
    assert _one_line_error(capsys) == f"error: refusing download link '{secret.as_uri()}': only https links are accepted"
    assert not (tmp_path / "data" / "secret.txt").exists()


def test_file_without_checksum_warns_and_checks_size(api, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ispad_bench.data.check.main_check", lambda root: 0)
    _serve("notes.txt", b"hello", md5=False)
    assert main_download(tmp_path, record="1", api_url=api) == 0
    assert "no checksum for notes.txt: only its size is verified" in capsys.readouterr().out

    Record.entries = []
    _serve("more.txt", b"hello", md5=False)
    Record.entries[0]["size"] = 9  # the server sends fewer bytes than the record promises
    assert main_download(tmp_path, record="1", api_url=api) == 1
    assert "more.txt: 5 bytes downloaded, the record says 9" in _one_line_error(capsys)
    assert not (tmp_path / "more.txt").exists() and not (tmp_path / ".download" / "more.txt.done").exists()


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("LSM-1/readme.txt", "patch data " * 2000)
    return buf.getvalue()


@pytest.mark.parametrize("damage", ["junk", "truncated", "bad_crc"])
def test_damaged_archive_is_an_error_and_not_marked_done(api, tmp_path, capsys, damage):
    data = _zip()
    if damage == "junk":
        data = b"<html>not found</html>"
    elif damage == "truncated":
        data = data[: len(data) // 2]
    else:
        at = data.index(b"LSM-1/readme.txt") + 40  # inside the compressed member
        data = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    _serve("LSM-1.zip", data)  # md5 and size match what the server sends
    assert main_download(tmp_path, record="1", api_url=api) == 1  # was: moved into the root and marked done
    line = _one_line_error(capsys)
    assert "LSM-1.zip" in line and ("not a readable zip/tar" in line or "damaged archive" in line), line
    assert not (tmp_path / ".download" / "LSM-1.zip.done").exists() and not (tmp_path / "LSM-1.zip").exists()


@pytest.mark.parametrize(("record", "reason"), [
    ({"files": "a.zip"}, "the record's 'files' is a str, expected a list of file entries"),
    ([{"key": "a.zip"}], "the record is a JSON list, expected an object with 'files'"),
    ({"files": ["a.zip"]}, "record file entry #0 is a str, expected an object"),
    ({"files": [{"key": "a.zip", "size": "big", "links": {"content": "https://x/a"}}]},
     "record file 'a.zip': 'size' is 'big', expected a number of bytes"),
    ({"files": [{"key": 5, "links": {"content": "https://x/a"}}]}, "file name 5 and link 'https://x/a' must be strings"),
    ({"files": [{"key": "a", "checksum": "crc99:ab", "links": {"content": "https://x/a"}}]},
     "checksum algorithm 'crc99' is not one hashlib knows"),
])
def test_malformed_record_is_one_line(record, reason):
    """Was a traceback (AttributeError / TypeError / ValueError) for each."""
    from ispad_bench.data.download import DownloadError, record_files

    with pytest.raises(DownloadError) as info:
        record_files(record)
    assert reason in str(info.value)


def test_sha256_checksum_is_verified_by_its_name(api, tmp_path, capsys):
    """Was reported as an 'md5 mismatch' and the good file deleted."""
    data = b"plain file"
    _serve("notes.txt", data)
    Record.entries[0]["checksum"] = "sha256:" + hashlib.sha256(data).hexdigest()
    main_download(tmp_path / "root", record="1", api_url=api)
    assert (tmp_path / "root" / "notes.txt").read_bytes() == data
    capsys.readouterr()
    Record.entries[0]["checksum"] = "sha256:" + "0" * 64
    Record.entries[0]["key"] = "other.txt"
    Record.files["other.txt"] = data
    Record.entries[0]["links"]["content"] = "{base}/files/other.txt"
    assert main_download(tmp_path / "root", record="1", api_url=api) == 1
    assert "other.txt: sha256 mismatch after retry (expected 000" in _one_line_error(capsys)


def test_zip_bomb_is_refused_before_extraction_and_the_limit_can_be_raised(api, tmp_path, capsys):
    """1 MB -> 1 GiB extracted without a limit before; now refused over 100x (above 64 MiB) or 256 GiB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("LSM-1/zeros.bin", bytes(80 * 2**20))  # 80 MiB of zeros: ~80 KB compressed
    _serve("LSM-1.zip", buf.getvalue())
    root = tmp_path / "root"
    assert main_download(root, record="1", api_url=api) == 1
    line = _one_line_error(capsys)
    assert "LSM-1.zip: would extract 83,886,080 bytes" in line and "nothing extracted" in line
    assert not (root / "LSM-1").exists() and not list((root / ".download").glob("*.done"))
    main_download(root, record="1", api_url=api, max_ratio=2000)  # trusted: extracts (then data check runs)
    assert (root / "LSM-1" / "zeros.bin").stat().st_size == 80 * 2**20
