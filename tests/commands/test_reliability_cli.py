"""Hostile inputs through the front ends' main(argv), in-process: one line on stderr, exit code 2, inputs unchanged.

Downloads (404, connection refused, no network, a transfer cut short, a sha256 mismatch) in every CLI
against a local HTTP server on 127.0.0.1; broken architecture files; convert_checkpoint's flags and
output; crafted .pth/.ckpt/.npz files; train.py's flag checks; a JPEG cut in half.
"""
import hashlib
import http.server
import importlib
import importlib.util
import json
import pickle
import re
import socket
import struct
import sys
import threading
import urllib.error
from pathlib import Path

import cv2
import numpy as np
import pytest

from litehrnet.engine.config import DEMO_MODEL
from litehrnet.models import registry

ROOT = Path(__file__).resolve().parents[2]
PUBLISHED = "litehrnet_18_mpii_256x256"
PAYLOAD = b"\x00" * 4096


def _front_end(name):
    """main() of src/<name>.py or scripts/<name>.py."""
    if name == "convert_checkpoint":
        spec = importlib.util.spec_from_file_location("convert_checkpoint", ROOT / "scripts" / "convert_checkpoint.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.main
    return importlib.import_module(f"litehrnet.commands.{name}").main


def _digest(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths if Path(p).is_file()}


def _error_lines(capfd):
    """stderr lines, without MindSpore's own [WARNING] log lines (its [ERROR] lines are kept: they count) and
    without the download's progress bar (tqdm redraws it with carriage returns: '<file>:  50%|...')."""
    err = capfd.readouterr().err
    return [line for line in err.splitlines()
            if line.strip() and not line.startswith("[WARNING] ME(") and not re.search(r"\d%\|", line)]


def run_cli(name, argv, capfd, inputs=()):
    """Exit code and the stderr lines of `name`'s main(argv); the input files must come out unchanged."""
    before = _digest(inputs)
    capfd.readouterr()
    try:
        code = _front_end(name)([str(a) for a in argv])
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    lines = _error_lines(capfd)
    assert _digest(inputs) == before, "an input file was changed"
    return code, lines


def assert_one_line_error(code, lines, *needles):
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0] and "[ERROR]" not in lines[0]
    for needle in needles:
        assert str(needle) in lines[0], (needle, lines[0])


@pytest.fixture
def tiny(tmp_path):
    """A narrow architecture file (the demo model: quick to build) and a 64x64 image."""
    config = tmp_path / "inputs" / "tiny.json"
    config.parent.mkdir()
    config.write_text(json.dumps(DEMO_MODEL))
    image = tmp_path / "inputs" / "person.jpg"
    cv2.imwrite(str(image), (np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    return config, image


class Handler(http.server.BaseHTTPRequestHandler):
    """/cut/<name>: announces 4096 bytes and sends half; /pub/<name>: 4096 zero bytes; else 404."""

    def do_GET(self):
        if not self.path.startswith(("/cut/", "/pub/")):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD[: len(PAYLOAD) // 2] if self.path.startswith("/cut/") else PAYLOAD)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def _free_port():
    with socket.socket() as sock:  # free a moment ago: nothing listens there now
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _argv(cli, config, image, weights, out):
    """Arguments that make `cli` load `weights` (a URL or published name) first of all heavy work."""
    if cli == "infer":
        return ["--model_type", config, "--checkpoint", weights, "--infer_data_root", image,
                "--out_data_root", out, "--target_res", "64x64", "--mode", "pynative", "--no_progress"]
    if cli == "eval":
        return ["--model_type", config, "--checkpoint", weights, "--ann_file", out / "none.json",
                "--img_dir", image.parent, "--target_res", "64x64", "--mode", "pynative", "--output_path", out]
    if cli == "export":
        return ["--model_type", config, "--checkpoint", weights, "--target_res", "64x64", "--output", out / "m"]
    if cli == "train":
        return ["--dataset", "demo", "--model_type", config, "--pretrained", weights, "--checkpoint_path", out]
    return ["--model_type", config, "--input", weights, "--output", out / "c.ckpt"]


CLIS = ["infer", "eval", "export", "train", "convert_checkpoint"]
FAILURES = ["http404", "refused", "offline", "cut_short", "sha256"]


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("cli", CLIS)
def test_download_failure_is_one_line_and_exit_2(cli, failure, tiny, server, tmp_path, monkeypatch, capfd):
    config, image = tiny
    ckpts, out = tmp_path / "ckpts", tmp_path / "out"
    monkeypatch.setenv("LITEHRNET_CKPT_DIR", str(ckpts))
    name = "weights.ckpt"
    url = {"http404": f"{server}/missing/{name}", "refused": f"http://127.0.0.1:{_free_port()}/{name}",
           "offline": f"http://download.invalid/{name}", "cut_short": f"{server}/cut/{name}"}.get(failure)
    weights = url
    if failure == "offline":
        def no_network(*args, **kwargs):
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
        monkeypatch.setattr("urllib.request.urlopen", no_network)
    if failure == "sha256":  # the published file is not the one its sum describes
        monkeypatch.setattr(registry, "BASE_URL", f"{server}/pub/")
        entry = registry.PUBLISHED[PUBLISHED]
        monkeypatch.setitem(registry.PUBLISHED, PUBLISHED,
                            registry.PublishedCheckpoint(**{**entry.__dict__, "sha256": "ab" * 32}))
        weights, url = PUBLISHED, f"{server}/pub/{PUBLISHED}.ckpt"
    code, lines = run_cli(cli, _argv(cli, config, image, weights, out), capfd,
                          inputs=[config, image])
    assert_one_line_error(code, lines, url, "ckpts")
    line = lines[0]
    cache_path = ckpts / f"{PUBLISHED}.ckpt" if failure == "sha256" else None
    if cache_path is not None:
        assert str(cache_path) in line and "sha256 mismatch" in line
    if failure == "offline":
        assert "by hand" in line and "Temporary failure in name resolution" in line
    if failure == "cut_short":
        assert "2048 of 4096 bytes" in line
    if failure == "http404":
        assert "404" in line
    assert not list(ckpts.rglob("*.ckpt")) and not list(ckpts.rglob("*.part*"))  # nothing half-written kept
    if cli == "train":
        assert not (out / "demo_data").exists()  # refused before the demo set was generated


# --- architecture files --------------------------------------------------------------------------------

@pytest.mark.parametrize("cli", ["infer", "train", "export"])
@pytest.mark.parametrize("kind", ["yaml", "json"])
def test_config_syntax_error_names_the_file(cli, kind, tiny, tmp_path, capfd):
    _, image = tiny
    bad = tmp_path / "inputs" / f"broken.{kind}"
    bad.write_text("stages: [\n  {num_modules: 1\n" if kind == "yaml" else '{"stages": [1, 2,, 3]}')
    out = tmp_path / "out"
    argv = {"infer": ["--model_type", bad, "--infer_data_root", image, "--out_data_root", out, "--no_progress"],
            "train": ["--dataset", "demo", "--model_type", bad, "--checkpoint_path", out],
            "export": ["--model_type", bad, "--checkpoint", image, "--output", out / "m"]}[cli]
    code, lines = run_cli(cli, argv, capfd, inputs=[bad, image])
    assert_one_line_error(code, lines, bad, f"not valid {kind.upper()}", "line")
    if cli == "train":
        assert not out.exists()


# --- convert_checkpoint.py -------------------------------------------------------------------------------

@pytest.fixture
def tiny_ckpt(tiny, tmp_path):
    """A checkpoint of the tiny architecture."""
    import litehrnet
    config, _ = tiny
    net = litehrnet.create_model(str(config), num_joints=17, conv_impl="native")
    path = tmp_path / "inputs" / "tiny.ckpt"
    litehrnet.save_checkpoint(net, str(path))
    return config, path


@pytest.mark.parametrize("target_res", ["abc", "100x64"])
def test_convert_checks_target_res_before_writing(target_res, tiny_ckpt, tmp_path, capfd):
    config, ckpt = tiny_ckpt
    out = tmp_path / "converted.ckpt"
    code, lines = run_cli("convert_checkpoint", ["--model_type", config, "--input", ckpt, "--output", out,
                                                 "--verify", "--target_res", target_res],
                          capfd, inputs=[config, ckpt])
    assert_one_line_error(code, lines, "100x64" if target_res == "100x64" else "--target_res")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]


def test_convert_refuses_unwritable_outputs(tiny_ckpt, tmp_path, capfd):
    config, ckpt = tiny_ckpt
    folder = tmp_path / "a_folder"
    folder.mkdir()
    readonly = tmp_path / "readonly.ckpt"
    readonly.write_bytes(b"keep me")
    readonly.chmod(0o444)
    under_a_file = tmp_path / "inputs" / "tiny.json" / "c.ckpt"
    cases = [(folder, "is a directory"), (readonly, "read-only"), (under_a_file, "not writable")]
    for output, reason in cases:
        code, lines = run_cli("convert_checkpoint", ["--model_type", config, "--input", ckpt, "--output", output],
                              capfd, inputs=[config, ckpt, readonly])
        assert_one_line_error(code, lines, output, reason)
    assert list(folder.iterdir()) == [] and readonly.read_bytes() == b"keep me"


# --- crafted checkpoint files ------------------------------------------------------------------------------

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


CRAFTED = {
    "storage_2^60": _legacy_pth(_pickled_state(4, (4,), (1,)), 1 << 60, b"\0" * 16),
    "zero_strides": _legacy_pth(_pickled_state(4, (1 << 20, 1 << 20), (0, 0)), 4, b"\0" * 16),
    "bytes8_2^40": pickle.dumps(0x1950A86A20F9469CFC6C, 2) + b"\x80\x04\x8e" + struct.pack("<Q", 1 << 40) + b"x" * 20,
    "bytearray": pickle.dumps(0x1950A86A20F9469CFC6C, 2)
    + b"\x80\x02cbuiltins\nbytearray\n\x8a\x06" + (1 << 44).to_bytes(6, "little") + b"\x85R.",
}


@pytest.mark.parametrize("case", sorted(CRAFTED))
def test_crafted_legacy_pth_is_bounded_by_the_file_size(case, tiny, tmp_path, capfd):
    config, image = tiny
    bad = tmp_path / "inputs" / "crafted.pth"
    bad.write_bytes(CRAFTED[case])
    assert bad.stat().st_size < 256
    code, lines = run_cli("infer", ["--model_type", config, "--checkpoint", bad, "--infer_data_root", image,
                                    "--out_data_root", tmp_path / "out", "--no_progress"],
                          capfd, inputs=[bad, image])
    assert_one_line_error(code, lines, bad)
    assert "MemoryError" not in lines[0]


def test_flipped_byte_ckpt_is_reported_as_corrupt(tiny_ckpt, tmp_path, capfd):
    config, ckpt = tiny_ckpt
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "inputs" / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    code, lines = run_cli("convert_checkpoint", ["--model_type", config, "--input", bad, "--output",
                                                 tmp_path / "c.ckpt"], capfd, inputs=[bad])
    assert_one_line_error(code, lines, bad, "corrupt")  # one line: no MindSpore [ERROR] line either
    assert "permission" not in lines[0]
    assert not (tmp_path / "c.ckpt").exists()


def test_npz_with_object_arrays_names_the_file(tiny, tmp_path, capfd):
    config, image = tiny
    bad = tmp_path / "inputs" / "objects.npz"
    np.savez(bad, w=np.array([{"a": 1}], dtype=object))
    code, lines = run_cli("export", ["--model_type", config, "--checkpoint", bad, "--target_res", "64x64",
                                     "--output", tmp_path / "m"], capfd, inputs=[bad])
    assert_one_line_error(code, lines, bad, "object arrays")


# --- train.py checks every flag first -----------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["model_type", "pretrained", "resume"])
def test_train_checks_flags_before_generating_demo_data(flag, tmp_path, capfd):
    out = tmp_path / "run"
    value = {"model_type": "litehrnet_99", "pretrained": tmp_path / "missing.ckpt",
             "resume": tmp_path / "missing_last.ckpt"}[flag]
    code, lines = run_cli("train", ["--dataset", "demo", f"--{flag}", value, "--checkpoint_path", out],
                          capfd)
    assert_one_line_error(code, lines, value)
    assert not out.exists()  # no demo data, no run folder


# --- a JPEG cut in half ------------------------------------------------------------------------------------

def test_truncated_jpeg_is_warned_about_by_name(tiny, tmp_path, capfd, caplog):
    config, image = tiny
    folder = tmp_path / "images"
    folder.mkdir()
    whole = image.read_bytes()
    (folder / "whole.jpg").write_bytes(whole)
    (folder / "half.jpg").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    code, lines = run_cli("infer", ["--model_type", config, "--infer_data_root", folder, "--out_data_root", out,
                                    "--target_res", "64x64", "--mode", "pynative", "--no_progress"],
                          capfd, inputs=list(folder.iterdir()))
    assert code == 0
    # A logging warning: on the console through logging's last-resort handler (pytest captures it instead).
    named = [r.getMessage() for r in caplog.records if "truncated JPEG" in r.getMessage()]
    assert len(named) == 1 and str(folder / "half.jpg") in named[0]
    assert not any("whole.jpg" in r.getMessage() for r in caplog.records)
    assert (out / "half.jpg").is_file() and (out / "whole.jpg").is_file()  # still processed


def test_jpeg_end_marker_check():
    from litehrnet.data.images import jpeg_is_truncated
    image = (np.random.default_rng(1).random((40, 56, 3)) * 255).astype(np.uint8)
    for params in ([], [cv2.IMWRITE_JPEG_PROGRESSIVE, 1], [cv2.IMWRITE_JPEG_RST_INTERVAL, 1]):
        data = cv2.imencode(".jpg", image, params)[1].tobytes()
        assert not jpeg_is_truncated(data) and not jpeg_is_truncated(data + b"trailing data")
        assert all(jpeg_is_truncated(data[:n]) for n in (3, 100, len(data) // 2, len(data) - 1))
    assert not jpeg_is_truncated(cv2.imencode(".png", image)[1].tobytes())  # not a JPEG
