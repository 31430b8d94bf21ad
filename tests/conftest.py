"""Shared fixtures. Every test runs offline: any connection outside 127.0.0.1 fails the test."""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
from http.server import ThreadingHTTPServer

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

_real_connect = socket.socket.connect
_real_getaddrinfo = socket.getaddrinfo


class NetworkAccessError(RuntimeError):
    """Raised when code under test tries to reach the network."""


def _is_local(host) -> bool:
    if host in ("localhost", "", None):
        return True
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False


def _guarded_connect(self, address):
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
        raise NetworkAccessError(f"test tried to open a network connection to {address!r}")
    return _real_connect(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if not _is_local(host):
        raise NetworkAccessError(f"test tried to resolve {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Block every non-loopback connection and DNS lookup (tests must never download)."""
    monkeypatch.setattr(socket.socket, "connect", _guarded_connect)
    monkeypatch.setattr(socket, "getaddrinfo", _guarded_getaddrinfo)


@pytest.fixture
def local_http():
    """``serve(handler) -> "http://127.0.0.1:<port>"``: a threaded loopback server per call, shut at teardown
    (the downloaders are tested against it, never the network)."""
    servers = []

    def serve(handler) -> str:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_port}"

    yield serve
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def one_thread():
    """One torch thread for tiny models: intra-op threads only add synchronisation cost on a shared CPU."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory):
    """A 20-patch generated ISP-AD-like dataset (all modalities), shared by the session."""
    from ispad_bench.data.synth import generate

    root = tmp_path_factory.mktemp("ispad-synth")
    generate(root, patches=20, seed=0)
    return root


def write_tiny_tree(root, modalities=("LSM-1", "LSM-2", "ASM"), train=6, reduced=4, good=3, defects=None, stream=4):
    """A minimal valid ISP-AD tree written with PIL/h5py (exact, known counts; independent of the generator).

    LSM images carry their index in pixel (0, 0); ASM images have 8-px dark/bright left/right
    borders so crops can be checked. Defect masks hold one 255 square.
    """
    from pathlib import Path

    import h5py
    import numpy as np
    from PIL import Image

    defects = defects or {"pinhole": 2, "squeegee_stroke": 1}
    rng = np.random.default_rng(0)
    root = Path(root)

    def patch(mod, value):
        img = rng.integers(60, 200, (256, 256), dtype=np.uint8)
        img[0, 0] = value
        if mod == "ASM":
            img[:, :8], img[:, -8:] = 0, 255
            return Image.fromarray(img, "L")
        return Image.fromarray(np.stack([img, img // 2, img // 3], -1), "RGB")

    for mod in modalities:
        base = root / mod
        for folder, n in (("train/good", train), ("train_reduced/good", reduced), ("test/good", good)):
            (base / folder).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                patch(mod, i).save(base / folder / f"{i:03d}.png")
        for defect, n in defects.items():
            (base / "test" / defect).mkdir(parents=True, exist_ok=True)
            (base / "ground_truth" / defect).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                patch(mod, 100 + i).save(base / "test" / defect / f"{i:03d}.png")
                mask = np.zeros((256, 256), np.uint8)
                mask[100 + i : 120 + i, 50:70] = 255
                Image.fromarray(mask, "L").save(base / "ground_truth" / defect / f"{i:03d}_mask.png")
        sup = base / "supervised"
        for group in ("area", "points"):
            (sup / "real_defects" / group).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8), "L").save(
                sup / "real_defects" / group / f"{group}_000.png"
            )
        with h5py.File(sup / "stream.h5", "w") as f:
            f["images"] = rng.integers(0, 255, (stream, 256, 256), dtype=np.uint8)
            f["syn_stream"] = (np.arange(stream) % 2).astype(np.uint8)
            masks = np.zeros((stream, 256, 256), np.uint8)
            masks[1::2, 10:20, 10:20] = 255
            f["ground_truth"] = masks
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    """``write_tiny_tree`` for all modalities, shared read-only by the session (copy it to break it)."""
    return write_tiny_tree(tmp_path_factory.mktemp("ispad-tiny"))
