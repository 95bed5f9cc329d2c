"""Shared test helpers: where the reference fixtures live, and a PYNATIVE default for unit tests."""
import os
import pickle
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SRC = ROOT / "src"  # on sys.path through pyproject's pythonpath; subprocesses get it as PYTHONPATH


def shared_path(*parts):
    """A path inside ../shared, or skip the test with the reason when the reference folder is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"reference fixture {path} is absent (../shared sits beside the project only in CI "
                    f"and developer checkouts)")
    return path


@pytest.fixture(autouse=True)
def _pynative():
    """Unit tests build many networks: PYNATIVE avoids one graph compile per network.

    The previous mode is restored, so a test that switches to GRAPH mode in-process leaks nothing.
    """
    import mindspore as ms
    previous = ms.get_context("mode")
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    yield
    ms.set_context(mode=previous)


def run_script(args, timeout=600, env=None):
    """Run a project script with the venv's Python in a subprocess; returns CompletedProcess."""
    import subprocess
    path = os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p)
    full_env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=path)
    full_env.update(env or {})
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


# --- annotation files -----------------------------------------------------------------------------------------

def coco_person(ann_id, image_id, k, cat=1, **extra):
    """One COCO keypoint annotation with k visible joints inside a 40x50 box."""
    kpts = []
    for j in range(k):
        kpts += [10.0 + j, 20.0 + j, 2]
    return dict(dict(id=ann_id, image_id=image_id, category_id=cat, bbox=[5.0, 10.0, 40.0, 50.0], keypoints=kpts,
                     num_keypoints=k, area=2000.0, iscrowd=0), **extra)


def coco_annotations(names, n=2, categories=None):
    """A clean COCO-format keypoint file (as a dict): n 64x80 images '1.jpg', ... with one person each."""
    cats = categories or [dict(id=1, name='person', keypoints=list(names), skeleton=[])]
    return dict(images=[dict(id=i + 1, file_name=f'{i + 1}.jpg', width=64, height=80) for i in range(n)],
                annotations=[coco_person(i + 1, i + 1, len(names)) for i in range(n)], categories=cats)


# --- hostile inputs through the front ends, in-process (tests/commands) -------------------------------------

def make_tiny_inputs(folder):
    """folder/tiny.json, a narrow architecture file (the demo model: quick to build), and folder/person.jpg,
    a 64x64 image; returns both paths."""
    import json
    import cv2
    import numpy as np
    from litehrnet.engine.config import DEMO_MODEL
    folder.mkdir(parents=True, exist_ok=True)
    config, image = folder / "tiny.json", folder / "person.jpg"
    config.write_text(json.dumps(DEMO_MODEL))
    cv2.imwrite(str(image), (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    return config, image


def make_tiny_ckpt(config, path, num_joints=17):
    """A checkpoint of the architecture file `config` (random weights) at `path`."""
    import litehrnet
    litehrnet.save_checkpoint(litehrnet.create_model(str(config), num_joints=num_joints, conv_impl="native"),
                              str(path))
    return path


@pytest.fixture
def tiny_inputs(tmp_path):
    """tmp_path/inputs/: a narrow architecture file (the demo model: quick to build) and a 64x64 image."""
    return make_tiny_inputs(tmp_path / "inputs")


@pytest.fixture
def tiny_ckpt(tiny_inputs):
    """(architecture file, a 17-joint checkpoint of it) in tmp_path/inputs/."""
    config, image = tiny_inputs
    return config, make_tiny_ckpt(config, image.parent / "tiny.ckpt")


# --- crafted legacy .pth files: each declares far more data than its < 256 bytes hold ------------------------

def _pickled_state(numel, size, stride):
    """{'w': torch._utils._rebuild_tensor_v2(<FloatStorage '0' of numel>, 0, size, stride)} in protocol 2."""
    rebuild = (b"ctorch._utils\n_rebuild_tensor_v2\n(" b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\n"
               b"X\x01\x00\x00\x000X\x03\x00\x00\x00cpu\x8a\x08" + struct.pack("<q", numel) + b"tQ" + b"K\x00"
               + pickle.dumps(tuple(size), 2)[2:-1] + pickle.dumps(tuple(stride), 2)[2:-1] + b"\x89NtR")
    return b"\x80\x02}X\x01\x00\x00\x00w" + rebuild + b"s."


def _legacy_pth(state, storage_bytes_header, tail=b""):
    p = lambda obj: pickle.dumps(obj, 2)  # noqa: E731
    return (p(0x1950A86A20F9469CFC6C) + p(1001) + p({"little_endian": True}) + state + p(["0"])
            + struct.pack("<q", storage_bytes_header) + tail)


CRAFTED_PTH = {
    "storage_2^60": _legacy_pth(_pickled_state(4, (4,), (1,)), 1 << 60, b"\0" * 16),
    "zero_strides": _legacy_pth(_pickled_state(4, (1 << 20, 1 << 20), (0, 0)), 4, b"\0" * 16),
    "bytes8_2^40": pickle.dumps(0x1950A86A20F9469CFC6C, 2) + b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 20,
    "bytearray": pickle.dumps(0x1950A86A20F9469CFC6C, 2)
    + b"\x80\x02cbuiltins\nbytearray\n\x8a\x06" + (1 << 44).to_bytes(6, "little") + b"\x85R.",
}


DOWNLOAD_PAYLOAD = b"\x00" * 4096


@pytest.fixture
def http_server():
    """A server on 127.0.0.1 for the test's duration: /cut/<name> announces 4096 bytes and sends half,
    /pub/<name> sends 4096 zero bytes, anything else is a 404. Yields the base URL."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if not self.path.startswith(("/cut/", "/pub/")):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(DOWNLOAD_PAYLOAD)))
            self.end_headers()
            cut = self.path.startswith("/cut/")
            self.wfile.write(DOWNLOAD_PAYLOAD[: len(DOWNLOAD_PAYLOAD) // 2] if cut else DOWNLOAD_PAYLOAD)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def free_port():
    """A port on 127.0.0.1 that was free a moment ago: nothing listens there now (connection refused)."""
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class CliHarness:
    """Runs a front end's main(argv) in-process (src/{train,eval,infer,export}.py's commands, or
    scripts/convert_checkpoint.py) and checks what every run must hold: the input files unchanged
    (sha256 before and after) and no traceback on stdout or stderr."""

    def __init__(self, capfd):
        self.capfd = capfd

    @staticmethod
    def front_end(name):
        import importlib
        import importlib.util
        if name == "convert_checkpoint":
            spec = importlib.util.spec_from_file_location("convert_checkpoint",
                                                          ROOT / "scripts" / "convert_checkpoint.py")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module.main
        return importlib.import_module(f"litehrnet.commands.{name}").main

    @staticmethod
    def digest(paths):
        import hashlib
        files = [p for root in map(Path, paths) for p in ([root] if root.is_file() else sorted(root.rglob("*")))]
        return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files if p.is_file()}

    def run(self, name, argv, inputs=()):
        """(exit code, stderr lines, stdout) of `name`'s main(argv). stderr lines leave out MindSpore's own
        [WARNING] log lines (its [ERROR] lines are kept: they count) and the download's progress bar."""
        import re
        before = self.digest(inputs)
        self.capfd.readouterr()
        try:
            code = self.front_end(name)([str(a) for a in argv])
        except SystemExit as e:  # argparse's usage errors
            code = e.code
        captured = self.capfd.readouterr()
        assert "Traceback" not in captured.err and "Traceback" not in captured.out, captured.err[-3000:]
        assert self.digest(inputs) == before, "an input file was changed"
        lines = [line for line in captured.err.splitlines()
                 if line.strip() and not line.startswith("[WARNING] ME(") and not re.search(r"\d%\|", line)]
        return code, lines, captured.out

    @staticmethod
    def one_line(code, lines, *needles, expected_code=2):
        """Exit code 2 (or `expected_code`) and exactly one stderr line holding each of `needles`."""
        assert code == expected_code, lines
        assert len(lines) == 1, lines
        assert "[ERROR]" not in lines[0]
        for needle in needles:
            assert str(needle) in lines[0], (needle, lines[0])
        return lines[0]


@pytest.fixture
def harness(capfd):
    return CliHarness(capfd)
