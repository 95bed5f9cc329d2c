"""Hostile inputs through the front ends' main(argv), in-process: one line on stderr, exit code 2, inputs unchanged.

Downloads (404, connection refused, no network, a transfer cut short, a sha256 mismatch) in every CLI
against a local HTTP server on 127.0.0.1; broken architecture files; convert_checkpoint's flags and
output; crafted .pth/.ckpt/.npz files; train.py's flag checks; a JPEG cut in half.
"""
import json
import socket
import urllib.error

import cv2
import numpy as np
import pytest

from conftest import CRAFTED_PTH, free_port
from litehrnet.models import registry

PUBLISHED = "litehrnet_18_mpii_256x256"


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
def test_download_failure_is_one_line_and_exit_2(cli, failure, tiny_inputs, http_server, tmp_path, monkeypatch,
                                                   harness):
    config, image = tiny_inputs
    ckpts, out = tmp_path / "ckpts", tmp_path / "out"
    monkeypatch.setenv("LITEHRNET_CKPT_DIR", str(ckpts))
    name = "weights.ckpt"
    url = {"http404": f"{http_server}/missing/{name}", "refused": f"http://127.0.0.1:{free_port()}/{name}",
           "offline": f"http://download.invalid/{name}", "cut_short": f"{http_server}/cut/{name}"}.get(failure)
    weights = url
    if failure == "offline":
        def no_network(*args, **kwargs):
            raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))
        monkeypatch.setattr("urllib.request.urlopen", no_network)
    if failure == "sha256":  # the published file is not the one its sum describes
        monkeypatch.setattr(registry, "BASE_URL", f"{http_server}/pub/")
        entry = registry.PUBLISHED[PUBLISHED]
        monkeypatch.setitem(registry.PUBLISHED, PUBLISHED,
                            registry.PublishedCheckpoint(**{**entry.__dict__, "sha256": "ab" * 32}))
        weights, url = PUBLISHED, f"{http_server}/pub/{PUBLISHED}.ckpt"
    code, lines, _ = harness.run(cli, _argv(cli, config, image, weights, out), inputs=[config, image])
    harness.one_line(code, lines, url, "ckpts")
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
def test_config_syntax_error_names_the_file(cli, kind, tiny_inputs, tmp_path, harness):
    _, image = tiny_inputs
    bad = tmp_path / "inputs" / f"broken.{kind}"
    bad.write_text("stages: [\n  {num_modules: 1\n" if kind == "yaml" else '{"stages": [1, 2,, 3]}')
    out = tmp_path / "out"
    argv = {"infer": ["--model_type", bad, "--infer_data_root", image, "--out_data_root", out, "--no_progress"],
            "train": ["--dataset", "demo", "--model_type", bad, "--checkpoint_path", out],
            "export": ["--model_type", bad, "--checkpoint", image, "--output", out / "m"]}[cli]
    code, lines, _ = harness.run(cli, argv, inputs=[bad, image])
    harness.one_line(code, lines, bad, f"not valid {kind.upper()}", "line")
    if cli == "train":
        assert not out.exists()


# --- convert_checkpoint.py -------------------------------------------------------------------------------

@pytest.mark.parametrize("target_res", ["abc", "100x64"])
def test_convert_checks_target_res_before_writing(target_res, tiny_ckpt, tmp_path, harness):
    config, ckpt = tiny_ckpt
    out = tmp_path / "converted.ckpt"
    code, lines, _ = harness.run("convert_checkpoint", ["--model_type", config, "--input", ckpt, "--output", out,
                                                 "--verify", "--target_res", target_res],
                                    inputs=[config, ckpt])
    harness.one_line(code, lines, "100x64" if target_res == "100x64" else "--target_res")
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["inputs"]


def test_convert_refuses_unwritable_outputs(tiny_ckpt, tmp_path, harness):
    config, ckpt = tiny_ckpt
    folder = tmp_path / "a_folder"
    folder.mkdir()
    readonly = tmp_path / "readonly.ckpt"
    readonly.write_bytes(b"keep me")
    readonly.chmod(0o444)
    under_a_file = tmp_path / "inputs" / "tiny.json" / "c.ckpt"
    cases = [(folder, "is a directory"), (readonly, "read-only"), (under_a_file, "not writable")]
    for output, reason in cases:
        code, lines, _ = harness.run("convert_checkpoint", ["--model_type", config, "--input", ckpt, "--output", output],
                                       inputs=[config, ckpt, readonly])
        harness.one_line(code, lines, output, reason)
    assert list(folder.iterdir()) == [] and readonly.read_bytes() == b"keep me"


# --- crafted checkpoint files ------------------------------------------------------------------------------

@pytest.mark.parametrize("case", sorted(CRAFTED_PTH))
def test_crafted_legacy_pth_is_bounded_by_the_file_size(case, tiny_inputs, tmp_path, harness):
    config, image = tiny_inputs
    bad = tmp_path / "inputs" / "crafted.pth"
    bad.write_bytes(CRAFTED_PTH[case])
    assert bad.stat().st_size < 256
    code, lines, _ = harness.run("infer", ["--model_type", config, "--checkpoint", bad, "--infer_data_root", image,
                                    "--out_data_root", tmp_path / "out", "--no_progress"],
                                    inputs=[bad, image])
    harness.one_line(code, lines, bad)
    assert "MemoryError" not in lines[0]


def test_flipped_byte_ckpt_is_reported_as_corrupt(tiny_ckpt, tmp_path, harness):
    config, ckpt = tiny_ckpt
    data = bytearray(ckpt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "inputs" / "flipped.ckpt"
    bad.write_bytes(bytes(data))
    code, lines, _ = harness.run("convert_checkpoint", ["--model_type", config, "--input", bad, "--output",
                                                 tmp_path / "c.ckpt"], inputs=[bad])
    harness.one_line(code, lines, bad, "corrupt")  # one line: no MindSpore [ERROR] line either
    assert "permission" not in lines[0]
    assert not (tmp_path / "c.ckpt").exists()


def test_npz_with_object_arrays_names_the_file(tiny_inputs, tmp_path, harness):
    config, image = tiny_inputs
    bad = tmp_path / "inputs" / "objects.npz"
    np.savez(bad, w=np.array([{"a": 1}], dtype=object))
    code, lines, _ = harness.run("export", ["--model_type", config, "--checkpoint", bad, "--target_res", "64x64",
                                     "--output", tmp_path / "m"], inputs=[bad])
    harness.one_line(code, lines, bad, "object arrays")


# --- train.py checks every flag first -----------------------------------------------------------------------

@pytest.mark.parametrize("flag", ["model_type", "pretrained", "resume"])
def test_train_checks_flags_before_generating_demo_data(flag, tmp_path, harness):
    out = tmp_path / "run"
    value = {"model_type": "litehrnet_99", "pretrained": tmp_path / "missing.ckpt",
             "resume": tmp_path / "missing_last.ckpt"}[flag]
    code, lines, _ = harness.run("train", ["--dataset", "demo", f"--{flag}", value, "--checkpoint_path", out])
    harness.one_line(code, lines, value)
    assert not out.exists()  # no demo data, no run folder


# --- a JPEG cut in half ------------------------------------------------------------------------------------

def test_truncated_jpeg_is_warned_about_by_name(tiny_inputs, tmp_path, harness, caplog):
    config, image = tiny_inputs
    folder = tmp_path / "images"
    folder.mkdir()
    whole = image.read_bytes()
    (folder / "whole.jpg").write_bytes(whole)
    (folder / "half.jpg").write_bytes(whole[: len(whole) // 2])
    out = tmp_path / "out"
    code, lines, _ = harness.run("infer", ["--model_type", config, "--infer_data_root", folder, "--out_data_root",
                                           out, "--target_res", "64x64", "--mode", "pynative", "--no_progress"],
                                 inputs=[folder])
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
