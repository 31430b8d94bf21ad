"""Weight files for offline nodes: what a model needs is observed while it is built; `weights
fetch` downloads into temporary caches from a server on 127.0.0.1 (torch hub URLs with resume and the
sha256 prefix, Anomalib archives with their sha256, Hugging Face files), `weights check` and the sweep's
pre-flight say what is missing."""

from __future__ import annotations

import hashlib
import io
import re
import zipfile
from http.server import BaseHTTPRequestHandler

import pytest
from rich.progress import Progress

from ispad_bench.cli import main
from ispad_bench.data.download import DownloadError
from ispad_bench.models.fetch import WeightFile, fetch, needed_files, url_file

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Files(BaseHTTPRequestHandler):
    """``/<name>`` with Range; ``/<org>/<repo>/resolve/<rev>/<file>`` the way the Hugging Face hub answers."""

    files: dict[str, bytes] = {}
    log: list[tuple[str, str, str | None]] = []

    def log_message(self, *args):
        pass

    def _lookup(self):
        path = re.sub(r"/resolve/[^/]+/", "/", self.path.split("?")[0])
        return self.files.get(path.lstrip("/"))

    def do_HEAD(self):
        self._answer(head=True)

    def do_GET(self):
        self._answer(head=False)

    def _answer(self, head: bool):
        type(self).log.append((self.command, self.path, self.headers.get("Range")))
        data = self._lookup()
        if data is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        start = 0
        if match := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
            start = int(match.group(1))
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", '"' + hashlib.sha256(data).hexdigest() + '"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if not head:
            self.wfile.write(body)


@pytest.fixture
def server(local_http):
    Files.files, Files.log = {}, []
    return local_http(Files)


@pytest.fixture
def caches(tmp_path, monkeypatch):
    """Empty torch hub, Hugging Face and Anomalib caches; the hub reachable (on 127.0.0.1 only)."""
    import huggingface_hub.constants as hf

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(hf, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(hf, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("ANOMALIB_CACHE_DIR", str(tmp_path / "anomalib"))
    monkeypatch.setenv("ISPAD_GENERATED_DIR", str(tmp_path / "generated"))
    return tmp_path


def test_needed_files_are_observed_while_building():
    from anomalib.models import Draem, EfficientAd, Padim, Stfpm

    (padim,), error = needed_files(Padim)
    assert error is None and (padim.kind, padim.name) == ("timm", "timm/resnet18.a1_in1k:model.safetensors")
    assert needed_files(Padim, {"pre_trained": False}) == ([], None)
    assert [f.name for f in needed_files(Stfpm)[0]] == [padim.name]  # no switch: its teacher always loads
    assert [f.name for f in needed_files(EfficientAd)[0]] == ["imagenette2.tgz", "efficientad_pretrained_weights.zip"]
    (dtd,), _ = needed_files(Draem, {"dtd_dir": "/nowhere/dtd"})
    assert dtd.kind == "anomalib" and str(dtd.path) == "/nowhere/dtd" and not dtd.present


def test_fetch_url_resumes_and_checks_the_sha256_prefix(server, caches):
    data = bytes(range(256)) * 4000
    name = f"net-{hashlib.sha256(data).hexdigest()[:8]}.pth"
    Files.files[name] = data
    wanted = url_file("torchvision", f"{server}/{name}")
    assert wanted.path.parent == caches / "torch" / "hub" / "checkpoints" and not wanted.present
    wanted.path.parent.mkdir(parents=True)
    (wanted.path.parent / f"{name}.part").write_bytes(data[:1000])  # an interrupted earlier download
    with Progress(disable=True) as progress:
        assert fetch(wanted, progress).read_bytes() == data
    assert Files.log[-1] == ("GET", f"/{name}", "bytes=1000-") and wanted.present

    bad = f"bad-{'0' * 8}.pth"
    Files.files[bad] = data
    with Progress(disable=True) as progress, pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(url_file("torchvision", f"{server}/{bad}"), progress)
    assert not (wanted.path.parent / bad).exists()


def test_fetch_anomalib_archive_is_verified_and_extracted(server, caches):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("teacher/weights.pth", b"w" * 100)
    Files.files["teacher.zip"] = buf.getvalue()
    folder = caches / "pre"
    file = WeightFile("anomalib", "teacher.zip", f"{server}/teacher.zip", folder,
                      hashlib.sha256(buf.getvalue()).hexdigest(), folder / "teacher")
    with Progress(disable=True) as progress:
        fetch(file, progress)
    assert (folder / "teacher" / "weights.pth").read_bytes() == b"w" * 100 and file.present


def test_weights_cli_and_sweep_preflight(server, caches, monkeypatch, capsys):
    """`weights check` says what is missing, the sweep refuses to start, `weights fetch` gets it from the hub."""
    monkeypatch.setenv("HF_ENDPOINT", server)
    assert main(["weights", "check", "--methods", "padim"]) == 1
    assert "missing  timm timm/resnet18.a1_in1k:model.safetensors" in capsys.readouterr().out
    # (the smoke profile would give padim random weights: sweep/tiny.py; the paper profile asks for its weights)
    assert main(["sweep", "--methods", "padim", "--profile", "paper", "--modalities", "LSM-1", "--seeds", "0",
                 "--out", str(caches / "runs")]) == 2
    err = capsys.readouterr().err.replace("\n", " ")
    assert "ispad-bench weights fetch --methods padim" in err and not (caches / "runs").exists()

    Files.files["timm/resnet18.a1_in1k/model.safetensors"] = b"safetensors bytes"
    assert main(["weights", "fetch", "--methods", "padim"]) == 0
    assert "padim: ok (1/1 present)" in capsys.readouterr().out
    assert main(["weights", "check", "--methods", "padim,vlm_ad"]) == 2  # refused methods are named
    assert main(["weights", "check", "--methods", "padim"]) == 0


def test_methods_listing_says_type_weights_random_switch_smoke_and_refusals(caches):
    from ispad_bench.sweep.cli import method_listing as rows
    from ispad_bench.sweep.profile import default_configs_dir

    listed = {r["method"]: r for r in rows(default_configs_dir(), "smoke",
                                           only=["supervised", "glass", "patchcore", "stfpm", "vlm_ad", "ai_vad"])}
    assert list(listed) == ["supervised", "glass", "patchcore", "stfpm", "vlm_ad", "ai_vad"]
    assert listed["supervised"]["learning_type"] == "mixed_supervised"  # not the engine's one_class
    glass = listed["glass"]
    assert glass["source"] == "paper config" and glass["random_weights"] == "yes"
    assert [(w["file"].split(":")[0], w["present"]) for w in glass["weights"]] == [("timm/wide_resnet50_2.tv_in1k", False)]
    assert listed["patchcore"]["source"] == "anomalib" and listed["patchcore"]["epochs"] == "1"
    assert listed["patchcore"]["smoke"] == "in profile" and listed["stfpm"]["smoke"] == "-"
    assert listed["stfpm"]["random_weights"].startswith("no switch: needs")  # no pre_trained argument
    assert "text prompts" in listed["vlm_ad"]["refused"] and "video" in listed["ai_vad"]["refused"]
