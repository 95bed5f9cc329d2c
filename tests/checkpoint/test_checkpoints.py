"""Checkpoint reading (every format, by content), strict loading, atomic saving, conversion."""
import json
import os

import numpy as np
import pytest
import mindspore as ms

import litehrnet
from litehrnet.checkpoint import io as ckpt_io
from litehrnet.models.weights import HeadResetWarning, load_weights
from litehrnet.checkpoint.formats import demangle_seed_name, seed_path_to_project
from conftest import run_script, shared_path

SEED_TYPES = ["lite_18", "lite_30", "naive", "wider_naive"]
OFFICIAL_TAG = "litehrnet_18_coco_256x192_s0_1x3x256x192"


def _rel(a, ref):
    return float(np.abs(a - ref).max() / np.abs(ref).max())


def _eval_net(model_type, path, **kw):
    net = litehrnet.create_model(model_type, conv_impl="native", pretrained=str(path), **kw)
    net.set_train(False)
    return net


@pytest.mark.parametrize("seed_type", SEED_TYPES)
def test_earlier_port_bare_checkpoints_reproduce_its_outputs(seed_type):
    io = np.load(shared_path("fixtures", "seed", f"{seed_type}_io.npz"))
    net = _eval_net(seed_type, shared_path("fixtures", "seed", f"{seed_type}.ckpt"))
    for key in (k for k in io.files if k.startswith("input_")):
        out = net(ms.Tensor(io[key])).asnumpy()
        assert _rel(out, io["output_" + key[len("input_"):]]) < 1e-5


def test_earlier_port_training_checkpoint_with_adam_state():
    path = shared_path("fixtures", "seed", "lite_18_trainstyle.ckpt")
    weights, scheme, state = ckpt_io.read_checkpoint(path)
    assert scheme == "seed-train"
    assert {"global_step", "learning_rate", "beta1_power", "beta2_power"} <= set(state)
    assert any(k.startswith("moment1.") for k in state) and not any(k.startswith("moment") for k in weights)
    io = np.load(shared_path("fixtures", "seed", "lite_18_io.npz"))
    net = _eval_net("lite_18", path)
    assert _rel(net(ms.Tensor(io["input_256x192"])).asnumpy(), io["output_256x192"]) < 1e-5


@pytest.mark.parametrize("name", [f"params_{t}{m}.json" for t in SEED_TYPES for m in ("", "_mpii")])
def test_every_seed_name_maps_onto_the_network(name):
    """Mangled names demangle to the earlier port's true paths, which map 1:1 onto ours."""
    spec = json.loads(shared_path("fixtures", "seed", name).read_text())
    joints = 16 if "mpii" in name else 17
    net = litehrnet.create_model(spec["model_type"].replace("_mpii", ""), num_joints=joints, conv_impl="native")
    for p in spec["params"]:
        assert demangle_seed_name(p["name"]) == p["path"]
    mapped = [seed_path_to_project(p["path"]) for p in spec["params"]]
    assert sorted(mapped) == sorted(p.name for p in net.get_parameters())


def test_official_pth_is_read_without_torch_and_matches_the_official_output():
    pth = shared_path("fixtures", "official", f"{OFFICIAL_TAG}.pth")
    io = np.load(shared_path("fixtures", "official", f"{OFFICIAL_TAG}_io.npz"))
    weights, scheme, _ = ckpt_io.read_checkpoint(pth)
    assert scheme == "official"
    net = _eval_net("litehrnet_18", pth)
    assert _rel(net(ms.Tensor(io["input"])).asnumpy(), io["output"]) < 1e-4
    import sys
    assert "torch" not in sys.modules


def test_wrong_architecture_is_named():
    net = litehrnet.create_model("litehrnet_18", conv_impl="native")
    with pytest.raises(litehrnet.CheckpointError) as e:
        litehrnet.load_checkpoint(net, str(shared_path("fixtures", "seed", "lite_30.ckpt")))
    msg = str(e.value)
    assert "lite_30.ckpt" in msg and "the file holds a litehrnet_30" in msg and "you built a litehrnet_18" in msg
    assert "\n" not in msg


def _official_weights():
    weights, _, _ = ckpt_io.read_checkpoint(shared_path("fixtures", "official", f"{OFFICIAL_TAG}_params.npz"))
    return weights


def test_missing_and_unexpected_tensors_are_errors_naming_them(tmp_path):
    weights = _official_weights()
    net = litehrnet.create_model("litehrnet_18", conv_impl="native")
    missing = dict(weights)
    del missing["backbone.stem.conv1.bn.gamma"]
    with pytest.raises(litehrnet.CheckpointError, match=r"1 missing \(backbone\.stem\.conv1\.bn\.gamma\)"):
        load_weights(net, missing, source="x")
    extra = dict(weights, **{"backbone.extra.weight": np.zeros(3, np.float32)})
    with pytest.raises(litehrnet.CheckpointError, match=r"1 unexpected \(backbone\.extra\.weight\)"):
        load_weights(net, extra, source="x")
    before = net.backbone.stem.conv1.conv.weight.asnumpy().copy()
    # a failed load changes nothing
    assert np.array_equal(before, net.backbone.stem.conv1.conv.weight.asnumpy())


def test_joint_count_mismatch_fails_unless_head_reset_is_asked_for():
    path = shared_path("fixtures", "official", f"{OFFICIAL_TAG}_params.npz")
    net = litehrnet.create_model("litehrnet_18", num_joints=16, conv_impl="native")
    fresh_head = net.keypoint_head.final_layer.weight.asnumpy().copy()
    with pytest.raises(litehrnet.CheckpointError, match="wrongly shaped"):
        litehrnet.load_checkpoint(net, str(path))
    with pytest.warns(HeadResetWarning, match="re-initialised"):  # library code warns, never prints
        litehrnet.load_checkpoint(net, str(path), reset_head=True)
    weights = _official_weights()
    assert np.array_equal(net.keypoint_head.final_layer.weight.asnumpy(), fresh_head)
    assert np.array_equal(net.backbone.stem.conv1.conv.weight.asnumpy(), weights["backbone.stem.conv1.conv.weight"])


def test_save_roundtrip_is_exact_and_atomic(tmp_path, monkeypatch):
    net = litehrnet.create_model("naive_litehrnet_18", conv_impl="native")
    path = tmp_path / "model.ckpt"
    litehrnet.save_checkpoint(net, str(path))
    assert oct(os.stat(path).st_mode & 0o777) == "0o644"
    again = litehrnet.create_model("naive_litehrnet_18", conv_impl="native")
    litehrnet.load_checkpoint(again, str(path))
    for a, b in zip(net.get_parameters(), again.get_parameters()):
        assert a.name == b.name and np.array_equal(a.asnumpy(), b.asnumpy())
    good = path.read_bytes()

    def crash(*args, **kwargs):
        with open(args[1], "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt("killed while writing")
    monkeypatch.setattr(ckpt_io.ms, "save_checkpoint", crash)
    with pytest.raises(KeyboardInterrupt):
        litehrnet.save_checkpoint(net, str(path))
    assert path.read_bytes() == good  # the previous checkpoint survives intact
    assert sorted(os.listdir(tmp_path)) == ["model.ckpt"]  # and no temporary file is left


def test_damaged_files_give_one_line_errors(tmp_path):
    net = litehrnet.create_model("naive_litehrnet_18", conv_impl="native")
    path = tmp_path / "good.ckpt"
    litehrnet.save_checkpoint(net, str(path))
    data = path.read_bytes()
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(data[: len(data) // 2])
    flipped = tmp_path / "flipped.ckpt"
    flipped.write_bytes(data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    missing = tmp_path / "missing.ckpt"
    for bad in (truncated, flipped, garbage, missing):
        with pytest.raises(litehrnet.CheckpointError) as e:
            litehrnet.load_checkpoint(net, str(bad))
        assert str(bad) in str(e.value) and "\n" not in str(e.value)


def test_convert_script_turns_pth_into_ckpt_and_verifies(tmp_path):
    pth = shared_path("fixtures", "official", f"{OFFICIAL_TAG}.pth")
    out = tmp_path / "converted.ckpt"
    proc = run_script(["scripts/convert_checkpoint.py", "--model_type", "litehrnet_18", "--input", pth,
                       "--output", out, "--verify", "--target_res", "128x96"])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "official names" in proc.stdout and "= 0" in proc.stdout
    weights, scheme, _ = ckpt_io.read_checkpoint(out)
    assert scheme == "project"
    ref = _official_weights()
    assert set(weights) == set(ref) and all(np.array_equal(weights[k], ref[k]) for k in ref)
    proc = run_script(["scripts/convert_checkpoint.py", "--model_type", "litehrnet_30", "--input", pth,
                       "--output", tmp_path / "x.ckpt"])
    assert proc.returncode == 2 and "you built a litehrnet_30" in proc.stderr
    assert "Traceback" not in proc.stderr
