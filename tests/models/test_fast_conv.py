"""The fast CPU 3x3 convolutions equal nn.Conv2d: outputs, input and weight gradients, parameters."""
import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mindspore as ms
from mindspore import Tensor, nn
from mindspore.common.initializer import Normal
from conftest import ROOT

from litehrnet.models import fast_conv, kernel_build
from litehrnet.models.layers import ConvModule, conv_implementation

AOT_MISSING = None if kernel_build.kernel_library() is not None else (kernel_build.kernel_library_error() or
                                                                      "unavailable")
BACKENDS = [pytest.param("aot", marks=pytest.mark.skipif(AOT_MISSING is not None,
                                                          reason=f"C++ kernels unavailable: {AOT_MISSING}")),
            "matmul"]

# (batch, channels, H, W, stride, bias): odd/even sizes, both strides, 1x1 planes, threaded sizes
DEPTHWISE = [(1, 4, 8, 6, 1, False), (3, 5, 7, 9, 1, True), (1, 4, 8, 6, 2, False), (3, 6, 9, 7, 2, True),
             (1, 3, 1, 1, 1, False), (3, 2, 2, 3, 2, False), (2, 16, 40, 36, 1, False), (2, 16, 41, 37, 2, True)]
# (batch, in, out, H, W, stride, bias): the stem conv (3 -> 32, stride 2) and a stride-1 dense conv
DENSE = [(1, 3, 32, 16, 12, 2, False), (3, 3, 8, 11, 9, 2, True), (2, 4, 6, 7, 8, 1, True),
         # HRNet's dense convs: a branch block (stride 1) and a transition / fuse step (stride 2), threaded sizes
         (2, 32, 32, 32, 24, 1, False), (2, 32, 64, 32, 24, 2, False)]


def _reference(cin, cout, stride, groups, bias):
    return nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, group=groups, has_bias=bias,
                     weight_init=Normal(0.001), bias_init="zeros")


def _outputs(net, x, r):
    """Output, and the gradients of sum(out * r) w.r.t. the input and every parameter."""
    def loss(inp):
        return (net(inp) * r).sum()
    grad_x, grad_params = ms.grad(loss, grad_position=0, weights=net.trainable_params())(x)
    return net(x).asnumpy(), grad_x.asnumpy(), [g.asnumpy() for g in grad_params]


def _assert_same(fast, ref, x_shape, seed=0):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal(ref.weight.shape).astype(np.float32)
    assert tuple(fast.weight.shape) == tuple(ref.weight.shape)
    ref.weight.set_data(Tensor(weight))
    fast.weight.set_data(Tensor(weight))
    if ref.has_bias:
        bias = rng.standard_normal(ref.bias.shape).astype(np.float32)
        ref.bias.set_data(Tensor(bias))
        fast.bias.set_data(Tensor(bias))
    x = Tensor(rng.standard_normal(x_shape).astype(np.float32))
    r = Tensor(rng.standard_normal(ref(x).shape).astype(np.float32))
    y_ref, dx_ref, dp_ref = _outputs(ref, x, r)
    y, dx, dp = _outputs(fast, x, r)
    assert y.shape == y_ref.shape

    def rel(a, b):
        return np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)

    assert rel(y, y_ref) < 1e-5
    assert rel(dx, dx_ref) < 1e-4
    assert len(dp) == len(dp_ref)
    for got, want in zip(dp, dp_ref):
        assert rel(got, want) < 1e-4


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,c,h,w,stride,bias", DEPTHWISE)
def test_depthwise_matches_conv2d(backend, n, c, h, w, stride, bias):
    fast = fast_conv.fast_conv2d(c, c, 3, stride, c, bias, backend=backend)
    assert backend.lower() in type(fast).__name__.lower()
    _assert_same(fast, _reference(c, c, stride, c, bias), (n, c, h, w))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("n,cin,cout,h,w,stride,bias", DENSE)
def test_dense_matches_conv2d(backend, n, cin, cout, h, w, stride, bias):
    fast = fast_conv.fast_conv2d(cin, cout, 3, stride, 1, bias, backend=backend)
    assert backend.lower() in type(fast).__name__.lower()
    _assert_same(fast, _reference(cin, cout, stride, 1, bias), (n, cin, h, w))


@pytest.mark.parametrize("backend", BACKENDS)
def test_float16_input_is_computed_in_float32(backend):
    fast = fast_conv.fast_conv2d(4, 4, 3, 2, 4, False, backend=backend)
    fast.weight.set_data(Tensor(np.random.default_rng(1).standard_normal((4, 1, 3, 3)).astype(np.float32)))
    x = np.random.default_rng(2).standard_normal((1, 4, 6, 5)).astype(np.float32)
    y16 = fast(Tensor(x.astype(np.float16)))
    assert y16.dtype == ms.float16
    y32 = fast(Tensor(x.astype(np.float16).astype(np.float32))).asnumpy()
    np.testing.assert_allclose(y16.asnumpy().astype(np.float32), y32, rtol=2e-3, atol=2e-3)


def test_unsupported_convs_fall_back_to_conv2d():
    assert fast_conv.fast_conv2d(16, 32, 1, 1, 1, False) is None       # 1x1: already a fast MatMul
    assert fast_conv.fast_conv2d(8, 16, 3, 1, 2, False) is None        # grouped, not depthwise
    assert fast_conv.fast_conv2d(8, 16, 3, 1, 8, False) is None        # channel multiplier
    assert fast_conv.fast_conv2d(8, 8, 5, 1, 8, False) is None         # other kernel sizes
    assert fast_conv.fast_conv2d(8, 8, 3, 3, 8, False) is None         # other strides
    with pytest.raises(ValueError):
        fast_conv.fast_conv2d(8, 8, 3, 1, 8, False, backend="cuda")


def test_without_kernels_the_matmul_backend_is_used(monkeypatch):
    """No compiler or a failed self-check: 'auto' degrades to the matmul cells, 'aot' says why it can't."""
    monkeypatch.setattr(kernel_build, "kernel_library", lambda: None)
    monkeypatch.setattr(kernel_build, "kernel_library_error", lambda: "no C++ compiler (g++) found")
    monkeypatch.delenv("LITEHRNET_FAST_CONV_BACKEND", raising=False)
    assert isinstance(fast_conv.fast_conv2d(8, 8, 3, 1, 8, False), fast_conv.DepthwiseConv3x3MatMul)
    assert isinstance(fast_conv.fast_conv2d(3, 32, 3, 2, 1, False), fast_conv.DenseConv3x3MatMul)
    with pytest.raises(RuntimeError, match="no C"):
        fast_conv.fast_conv2d(8, 8, 3, 1, 8, False, backend="aot")
    monkeypatch.setenv("LITEHRNET_FAST_CONV_BACKEND", "matmul")
    assert isinstance(fast_conv.fast_conv2d(8, 8, 3, 2, 8, False), fast_conv.DepthwiseConv3x3MatMul)


@pytest.mark.parametrize("backend", BACKENDS)
def test_parameters_match_conv2d(backend):
    dw = fast_conv.fast_conv2d(320, 320, 3, 1, 320, True, backend=backend)
    dense = fast_conv.fast_conv2d(3, 32, 3, 2, 1, False, backend=backend)
    assert [p.name for p in dw.get_parameters()] == ["weight", "bias"]
    assert [p.name for p in dense.get_parameters()] == ["weight"]
    assert tuple(dw.weight.shape) == (320, 1, 3, 3) and tuple(dense.weight.shape) == (32, 3, 3, 3)
    assert not dw.bias.asnumpy().any()
    std = dw.weight.asnumpy().std()
    assert 0.0009 < std < 0.0011 and abs(dw.weight.asnumpy().mean()) < 1e-4


def test_conv_module_names_are_interchangeable():
    """A fast ConvModule has the native one's parameter names and shapes (checkpoints load both ways)."""
    def params(impl, *args, **kwargs):
        with conv_implementation(impl):
            cell = ConvModule(*args, **kwargs)
        return {name: tuple(p.shape) for name, p in cell.parameters_and_names()}

    for args, kwargs in (((16, 16, 3), {"stride": 2, "groups": 16, "act": None}), ((3, 32, 3), {"stride": 2}),
                         ((8, 8, 3), {"groups": 8, "norm": False})):
        native, fast = params("native", *args, **kwargs), params("fast", *args, **kwargs)
        assert native == fast and "conv.weight" in fast


_GRAPH_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor, nn
    from litehrnet.models import fast_conv, kernel_build

    ms.set_context(mode=ms.GRAPH_MODE)
    backends = ["matmul"] + (["aot"] if kernel_build.kernel_library() else [])
    rng = np.random.default_rng(0)
    cases = [(3, 6, 6, 9, 8, 1, 6, False), (1, 5, 5, 8, 7, 2, 5, True), (2, 3, 8, 12, 10, 2, 1, True)]
    for backend in backends:
        for n, cin, cout, h, w, stride, groups, bias in cases:
            ref = nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, group=groups, has_bias=bias)
            fast = fast_conv.fast_conv2d(cin, cout, 3, stride, groups, bias, backend=backend)
            for name in ["weight"] + (["bias"] if bias else []):
                value = Tensor(rng.standard_normal(getattr(ref, name).shape).astype(np.float32))
                getattr(ref, name).set_data(value)
                getattr(fast, name).set_data(value)
            x = Tensor(rng.standard_normal((n, cin, h, w)).astype(np.float32))
            results = []
            for net in (ref, fast):
                grads = ms.grad(net, grad_position=0, weights=net.trainable_params())(x)
                results.append([net(x).asnumpy(), grads[0].asnumpy()] + [g.asnumpy() for g in grads[1]])
            for i, (got, want) in enumerate(zip(results[1], results[0])):
                err = np.abs(got - want).max() / np.abs(want).max()
                assert err < (1e-5 if i == 0 else 1e-4), (backend, n, cin, h, w, stride, i, err)
    print("GRAPH OK", backends)
""")


def test_graph_mode_in_subprocess():
    """GRAPH mode compiles many graphs, which is safer in a process of its own."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [os.path.join(ROOT, "src"),
                                                                    os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-c", _GRAPH_SCRIPT], capture_output=True, text=True, env=env,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "GRAPH OK" in proc.stdout
    if AOT_MISSING is None:
        assert "'aot'" in proc.stdout


def _fn_outputs(fn, args, r):
    """fn(*args) and the gradients of sum(fn(*args) * r) w.r.t. every argument."""
    grads = ms.grad(lambda *a: (fn(*a) * r).sum(), grad_position=tuple(range(len(args))))(*args)
    return fn(*args).asnumpy(), [g.asnumpy() for g in grads]


# (big, small) shapes: the fuse layers' x2 / x4 upsampling, odd sizes, and whole-channel scaling
UPSAMPLE = [((2, 3, 8, 6), (2, 3, 4, 3)), ((1, 5, 12, 20), (1, 5, 3, 5)), ((2, 4, 7, 9), (2, 4, 1, 1)),
            ((2, 16, 64, 48), (2, 16, 8, 6))]


@pytest.mark.skipif(AOT_MISSING is not None, reason=f"C++ kernels unavailable: {AOT_MISSING}")
@pytest.mark.parametrize("big,small", UPSAMPLE)
def test_fused_upsample_ops_match_resize_then_combine(big, small):
    """y + up(z) and y * up(z) in one C++ pass: values and both gradients equal resize-then-op in numpy."""
    add, mul = fast_conv.upsample_ops("aot")
    rng = np.random.default_rng(1)
    y, r = (rng.standard_normal(big).astype(np.float32) for _ in range(2))
    z = rng.standard_normal(small).astype(np.float32)
    fh, fw = big[2] // small[2], big[3] // small[3]
    up = z.repeat(fh, axis=2).repeat(fw, axis=3)

    def block_sum(a):
        return a.reshape(*small[:2], small[2], fh, small[3], fw).sum(axis=(3, 5))

    out, (dy, dz) = _fn_outputs(add, (Tensor(y), Tensor(z)), Tensor(r))
    np.testing.assert_array_equal(out, y + up)  # one float addition per element: bit-identical
    np.testing.assert_array_equal(dy, r)
    np.testing.assert_allclose(dz, block_sum(r), rtol=1e-5, atol=1e-5)
    out, (dy, dz) = _fn_outputs(mul, (Tensor(y), Tensor(z)), Tensor(r))
    np.testing.assert_array_equal(out, y * up)
    np.testing.assert_array_equal(dy, r * up)
    np.testing.assert_allclose(dz, block_sum(r * y), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(AOT_MISSING is not None, reason=f"C++ kernels unavailable: {AOT_MISSING}")
def test_fused_upsample_ops_refuse_shapes_that_are_not_an_integer_upsampling():
    add, _ = fast_conv.upsample_ops("aot")
    with pytest.raises(RuntimeError):
        add(Tensor(np.zeros((1, 2, 5, 6), np.float32)), Tensor(np.zeros((1, 2, 2, 3), np.float32))).asnumpy()


def test_concat_shuffle_equals_concat_then_channel_shuffle():
    from litehrnet.models.layers import concat_shuffle, split_halves
    rng = np.random.default_rng(2)
    a, b = (rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(2))
    cat = np.concatenate([a, b], axis=1)
    shuffled = cat.reshape(2, 2, 3, 4, 5).transpose(0, 2, 1, 3, 4).reshape(2, 6, 4, 5)  # ShuffleNet, groups 2
    np.testing.assert_array_equal(concat_shuffle(Tensor(a), Tensor(b)).asnumpy(), shuffled)
    first, second = split_halves(Tensor(cat))
    np.testing.assert_array_equal(first.asnumpy(), a)
    np.testing.assert_array_equal(second.asnumpy(), b)


@pytest.mark.skipif(not (sys.platform.startswith("linux") and (os.environ.get("CXX") or shutil.which("g++"))),
                    reason="needs Linux and a C++ compiler")
def test_kernels_build_and_pass_their_self_check_where_a_compiler_exists():
    """A kernel that disagrees with numpy is never used (matmul fallback); here that must not happen."""
    assert AOT_MISSING is None, AOT_MISSING
