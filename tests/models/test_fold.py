"""Eval-mode BatchNorm folding on the fast path: same outputs as the BatchNorm operators, nothing checkpointed,
training untouched, new weights followed."""
import ctypes
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn
from conftest import ROOT

import litehrnet
from litehrnet.models import fold, kernel_build
from litehrnet.models.layers import ConvModule, conv_implementation
from litehrnet.models.weights import load_weights

LITE = {"stem_channels": 16, "stages": [
    {"num_modules": 1, "num_branches": 2, "num_blocks": 1, "num_channels": [8, 16], "module_type": "lite"},
    {"num_modules": 1, "num_branches": 3, "num_blocks": 1, "num_channels": [8, 16, 32], "module_type": "naive"},
]}
HRNET = dict(family="hrnet", stem_channels=8, stem_convs=2, stages=[
    dict(num_modules=1, num_branches=1, num_blocks=1, num_channels=[4], block="bottleneck"),
    dict(num_modules=1, num_branches=2, num_blocks=1, num_channels=[4, 8]),
    dict(num_modules=1, num_branches=3, num_blocks=1, num_channels=[4, 8, 16]),
], head=dict(type="full_resolution", channels=6))
CONFIGS = {"litehrnet": LITE, "hrnet": HRNET}


def _build(config, folding, monkeypatch, impl="fast"):
    monkeypatch.setenv("LITEHRNET_FOLD_BN", "1" if folding else "0")
    return litehrnet.create_model(config, num_joints=3, conv_impl=impl)


def _random_weights(net, seed=0):
    """Non-trivial weights and BN statistics (name -> array), so that value checks mean something."""
    rng = np.random.default_rng(seed)
    weights = {}
    for p in net.get_parameters():
        if p.name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, p.shape)
        elif p.name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, p.shape)
        else:
            fan_in = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else 10
            value = rng.standard_normal(p.shape) / np.sqrt(fan_in)
        weights[p.name] = value.astype(np.float32)
    return weights


def _image(n=2, seed=1):
    return Tensor(np.random.default_rng(seed).standard_normal((n, 3, 64, 64)).astype(np.float32))


def _rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def _batchnorm_calls(net):
    """A counter of BatchNorm2d forward calls (PYNATIVE forward hooks)."""
    calls = [0]

    def hook(cell, inputs, output):
        calls[0] += 1

    for _, cell in net.cells_and_names():
        if isinstance(cell, nn.BatchNorm2d):
            cell.register_forward_hook(hook)
    return calls


def _state(net):
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


@pytest.mark.parametrize("backend", ["auto", "matmul"])
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_folded_eval_equals_the_batchnorm_operators_and_runs_none(family, backend, monkeypatch):
    """C++ kernels ('auto' where they build) or MindSpore ops only ('matmul'): BatchNorm-free, same values."""
    config = CONFIGS[family]
    native = _build(config, False, monkeypatch, impl="native")
    monkeypatch.setenv("LITEHRNET_FAST_CONV_BACKEND", backend)
    folded = _build(config, True, monkeypatch)
    weights = _random_weights(native)
    load_weights(native, weights)
    load_weights(folded, weights)
    native.set_train(False)
    folded.set_train(False)
    calls = _batchnorm_calls(folded)
    x = _image()
    want = native(x).asnumpy()
    got = folded(x).asnumpy()
    assert calls[0] == 0  # every BatchNorm of the network is folded away in eval mode
    assert _rel(got, want) < 1e-5
    folded.set_train(True)
    folded(x)
    assert calls[0] > 10  # ... and back in training mode


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_parameters_and_checkpoints_are_unchanged_by_folding(family, monkeypatch, tmp_path):
    config = CONFIGS[family]
    plain = _build(config, False, monkeypatch)
    net = _build(config, True, monkeypatch)
    load_weights(net, _random_weights(net))
    shapes = {name: tuple(p.shape) for name, p in plain.parameters_dict().items()}
    before = _state(net)
    ms.save_checkpoint(net, str(tmp_path / "before.ckpt"))
    net.set_train(False)
    net(_image(n=1))
    assert {name: tuple(p.shape) for name, p in net.parameters_dict().items()} == shapes
    assert [p.name for p in net.trainable_params()] == [p.name for p in plain.trainable_params()]
    ms.save_checkpoint(net, str(tmp_path / "after.ckpt"))
    saved = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(tmp_path / "after.ckpt")).items()}
    first = {k: v.asnumpy() for k, v in ms.load_checkpoint(str(tmp_path / "before.ckpt")).items()}
    assert sorted(saved) == sorted(first) == sorted(before)
    for name, value in before.items():
        assert np.array_equal(saved[name], value) and np.array_equal(first[name], value), name


@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_train_eval_train_is_bit_identical_to_a_network_never_folded(family, monkeypatch):
    config = CONFIGS[family]
    never = _build(config, False, monkeypatch)
    net = _build(config, True, monkeypatch)
    weights = _random_weights(net, seed=3)
    load_weights(never, weights)
    load_weights(net, weights)
    x = _image(seed=4)
    outputs = {}
    for tag, cell in (("never", never), ("folded", net)):
        cell.set_train(True)
        first = cell(x).asnumpy()
        if tag == "folded":
            cell.set_train(False)
            cell(x)
            cell.set_train(True)
        outputs[tag] = (first, cell(x).asnumpy(), _state(cell))
    (a1, a2, a_state), (b1, b2, b_state) = outputs["never"], outputs["folded"]
    assert np.array_equal(a1, b1) and np.array_equal(a2, b2)
    assert sorted(a_state) == sorted(b_state)
    stats = [k for k in a_state if "moving_" in k]
    assert stats and any(not np.array_equal(a_state[k], weights[k]) for k in stats)  # training moved them
    for name in a_state:
        assert np.array_equal(a_state[name], b_state[name]), name


def test_new_weights_after_folding_take_effect(monkeypatch):
    """Loading, set_train(False) after writing weights, and refold() all re-derive the folded weights."""
    reference = _build(LITE, False, monkeypatch, impl="native")
    net = _build(LITE, True, monkeypatch)
    x = _image(n=1)
    old, new = _random_weights(net, seed=5), _random_weights(net, seed=6)
    load_weights(net, old)
    net.set_train(False)
    y_old = net(x).asnumpy()

    def expected(weights):
        load_weights(reference, weights)
        reference.set_train(False)
        return reference(x).asnumpy()

    load_weights(net, new)  # the project's loader, network already in eval mode
    assert _rel(net(x).asnumpy(), expected(new)) < 1e-5
    assert _rel(y_old, expected(old)) < 1e-5 and _rel(expected(new), y_old) > 1e-2

    for name, p in net.parameters_dict().items():  # MindSpore's own writes, then set_train(False)
        p.set_data(Tensor(old[name]))
    net.set_train(False)
    assert _rel(net(x).asnumpy(), expected(old)) < 1e-5

    ms.load_param_into_net(net, {k: ms.Parameter(Tensor(v), name=k) for k, v in new.items()})
    fold.refold(net)  # or refold() directly
    assert _rel(net(x).asnumpy(), expected(new)) < 1e-5


def test_folding_is_off_on_the_native_path_and_with_the_switch(monkeypatch):
    for impl, folding in (("native", True), ("fast", False)):
        net = _build(LITE, folding, monkeypatch, impl=impl)
        assert not any(getattr(cell, "_folds", ()) for _, cell in net.cells_and_names())
    net = _build(LITE, True, monkeypatch)
    assert sum(len(getattr(cell, "_folds", ())) for _, cell in net.cells_and_names()) > 20


def test_float16_input_runs_the_folded_path_in_float32(monkeypatch):
    monkeypatch.setenv("LITEHRNET_FOLD_BN", "1")
    with conv_implementation("fast"):
        cell = ConvModule(6, 6, 3, groups=6, act=None)
    cell.bn.moving_mean.set_data(Tensor(np.linspace(-1, 1, 6).astype(np.float32)))
    cell.set_train(False)
    x = np.random.default_rng(0).standard_normal((1, 6, 8, 8)).astype(np.float32)
    want = cell.bn(cell.conv(Tensor(x))).asnumpy()
    got = cell(Tensor(x.astype(np.float16)))
    assert got.dtype == ms.float16
    assert np.abs(got.asnumpy().astype(np.float32) - want).max() < 1e-2 * np.abs(want).max()


_GRAPH_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import mindspore as ms
    import litehrnet
    from litehrnet.models.weights import load_weights

    ms.set_context(mode=ms.GRAPH_MODE)
    config = json.loads(sys.argv[1])
    rng = np.random.default_rng(0)
    ms.set_context(mode=ms.PYNATIVE_MODE)
    reference = litehrnet.create_model(config, num_joints=3, conv_impl="native")
    ms.set_context(mode=ms.GRAPH_MODE)
    net = litehrnet.create_model(config, num_joints=3, conv_impl="fast")
    x = ms.Tensor(rng.standard_normal((1, 3, 64, 64)).astype(np.float32))

    def weights(seed):
        r = np.random.default_rng(seed)
        out = {}
        for p in net.get_parameters():
            fan = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else 10
            v = r.uniform(0.5, 2.0, p.shape) if p.name.endswith(("moving_variance", "gamma")) else \\
                r.standard_normal(p.shape) / np.sqrt(fan)
            out[p.name] = v.astype(np.float32)
        return out

    errors = []
    for seed in (1, 2):  # the second set reaches the compiled graph without recompiling
        w = weights(seed)
        load_weights(net, w)
        net.set_train(False)
        got = net(x).asnumpy()
        ms.set_context(mode=ms.PYNATIVE_MODE)
        load_weights(reference, w)
        reference.set_train(False)
        want = reference(x).asnumpy()
        ms.set_context(mode=ms.GRAPH_MODE)
        errors.append(float(np.abs(got - want).max() / np.abs(want).max()))
    print("GRAPH", json.dumps(errors))
""")


@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(CONFIGS))
def test_graph_mode_folded_eval_follows_new_weights(family):
    """GRAPH mode (its own process): folded weights are graph inputs, refreshed at set_train(False)."""
    env = dict(os.environ, LITEHRNET_FOLD_BN="1",
               PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(ROOT, "src"), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _GRAPH_SCRIPT, json.dumps(CONFIGS[family])], capture_output=True,
                          text=True, env=env, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    errors = json.loads(proc.stdout.split("GRAPH", 1)[1])
    assert len(errors) == 2 and max(errors) < 1e-5, errors


def test_the_fold_kernels_are_in_the_checked_library():
    path = kernel_build.kernel_library()
    if path is None:
        pytest.skip(f"C++ kernels unavailable: {kernel_build.kernel_library_error()}")
    lib = ctypes.CDLL(path)
    assert all(hasattr(lib, name) for name in kernel_build._FOLD_KERNEL_NAMES)
