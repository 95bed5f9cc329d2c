"""Fast CPU 3x3 convolutions with the parameters of ``nn.Conv2d`` (the 'fast' conv implementation).

MindSpore 2.10 on CPU runs every 3x3 ``nn.Conv2d`` (depthwise or dense, any padding mode, GRAPH or
PYNATIVE) through oneDNN's reference kernel, which dominates Lite-HRNet's run time. ``fast_conv2d``
returns drop-in cells that compute exactly the same function, own the same ``weight`` (and ``bias``)
Parameters with the same shapes and initialisation, and support autodiff:

* ``aot`` backend (default when it builds): small C++ kernels (``fast_kernels.cc`` beside this file,
  built and checked by ``kernel_build.py``) run as ``ops.Custom(func_type="aot")`` operators with
  their own backward kernels, on a persistent worker pool. Depthwise 3x3 (stride 1 or 2) is computed
  directly; a dense 3x3 conv (the stem) is im2col (C++) followed by a MatMul. The library is checked
  against numpy with ctypes before it is used; when g++ is missing, the build or the check fails, or
  ``LITEHRNET_FAST_CONV_BACKEND=matmul`` is set, the ``matmul`` backend is used instead.
* ``matmul`` backend (pure MindSpore ops, no compiler): the 3x3 window is gathered with fixed 0/1
  shift/selection matrices built with numpy from the static input shape, and the weight enters through
  a banded matrix built in the graph, so gradients reach it: depthwise
  ``Y = sum_di (S_di @ X) @ B_di`` and dense ``Y = Wmat @ im2col(X)``, im2col = ``S @ X @ T``.

The same library fuses nearest upsampling with the add / multiply that consumes it
(:func:`upsample_ops`, used by ``layers.add_upsampled`` / ``mul_upsampled`` / ``scale_channels``), and
holds the eval-only kernels of the folded path (:func:`fold_ops`, used by ``fold.py``: depthwise conv +
bias (+ ReLU), bias + ReLU / sigmoid). Every cell's ``conv_f32(x, weight)`` is its convolution without
bias for float32 input and a given weight (the folded path passes the folded weight).

1x1 convolutions (already a fast MatMul in MindSpore) and any other kernel size or grouping return
``None`` so that ``layers.conv2d`` keeps ``nn.Conv2d``. Float32 is computed natively by the kernels;
other dtypes are cast to float32 and back.

Environment: ``LITEHRNET_FAST_CONV_BACKEND`` = ``auto`` (default) | ``aot`` | ``matmul``;
``LITEHRNET_FAST_CONV_CACHE`` = directory for the compiled library (default
``~/.cache/litehrnet_mindspore``, else the temp directory); ``LITEHRNET_CONV_THREADS`` = threads the
C++ kernels may use (default: the CPUs this process may run on).

The Custom operators cannot be exported (MindIR/ONNX); export with the 'native' implementation, whose
checkpoints are interchangeable with these cells'.
"""
import functools

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal, initializer

from .kernel_build import BACKENDS, kernel_library, resolve_backend  # noqa: F401 (BACKENDS: the choices)

# ----------------------------------------------------------------------------------------------
# Custom operators (one set per library and stride, shared by all cells)
# ----------------------------------------------------------------------------------------------

def _out_size(n, stride):
    """Output length of a 3x3, padding 1 conv; unknown (dynamic, -1) lengths stay unknown."""
    return -1 if n is None or n < 0 else (n - 1) // stride + 1


def _same_dtype(*dtypes):
    return dtypes[0]


def _custom_op(lib, name, out_shape, bprop=None):
    """The kernel ``name`` of library ``lib`` as a float32 Custom operator (``bprop``: its backward)."""
    return ops.Custom(f"{lib}:{name}", out_shape=out_shape, out_dtype=_same_dtype, func_type="aot", bprop=bprop)


@functools.lru_cache(maxsize=None)
def _aot_ops(lib, stride):
    """(depthwise conv, im2col) Custom operators for ``stride``, each with its C++ backward."""
    def custom(name, out_shape, bprop=None):
        return _custom_op(lib, f"{name}S{stride}", out_shape, bprop)

    dw_grad_input = custom("DwBwdInput", lambda g, k, x: list(x))
    dw_grad_weight = custom("DwBwdWeight", lambda x, g: [x[1], 1, 3, 3])

    def dw_bprop(x, k, out, dout):
        return dw_grad_input(dout, k, x), dw_grad_weight(x, dout)

    depthwise = custom("DwFwd", lambda x, k: [x[0], x[1], _out_size(x[2], stride), _out_size(x[3], stride)],
                       dw_bprop)
    col2im = custom("Col2Im", lambda g, x: list(x))

    def im2col_bprop(x, out, dout):
        return (col2im(dout, x),)

    im2col = custom("Im2Col", lambda x: [x[0], x[1] * 9, _out_size(x[2], stride) * _out_size(x[3], stride)],
                    im2col_bprop)
    return depthwise, im2col


@functools.lru_cache(maxsize=None)
def _upsample_aot_ops(lib):
    """(add, mul) Custom operators y + up(z) and y * up(z), up = nearest upsampling by integer factors."""
    def like_y(y, z):
        return list(y)

    add_grad = _custom_op(lib, "UpAddGrad", lambda g, z: list(z))
    mul_grad = _custom_op(lib, "UpMulGrad", lambda g, y, z: list(z))
    mul_plain = _custom_op(lib, "UpMul", like_y)

    def add_bprop(y, z, out, dout):
        return dout, add_grad(dout, z)

    def mul_bprop(y, z, out, dout):
        return mul_plain(dout, z), mul_grad(dout, y, z)

    return _custom_op(lib, "UpAdd", like_y, add_bprop), _custom_op(lib, "UpMul", like_y, mul_bprop)


@functools.lru_cache(maxsize=None)
def _fold_aot_ops(lib):
    """The folded eval path's operators (no backward): ({(stride, act): depthwise + bias + act}, {act: bias + act}).

    act is None (no activation; depthwise only) or 'relu'; the bias kernels are for 'relu', 'sigmoid' and
    'residual_relu' (relu(y + b + r), the end of a residual block).
    """
    def like_first(y, b):
        return list(y)

    def depthwise(stride, act):
        def shape(x, k, b):
            return [x[0], x[1], _out_size(x[2], stride), _out_size(x[3], stride)]
        return _custom_op(lib, f"DwBias{'Relu' if act else ''}S{stride}", shape)

    def like_y(y, b, r):
        return list(y)

    dw = {(s, act): depthwise(s, act) for s in (1, 2) for act in (None, "relu")}
    return dw, {"relu": _custom_op(lib, "BiasRelu", like_first), "sigmoid": _custom_op(lib, "BiasSigmoid", like_first),
                "residual_relu": _custom_op(lib, "BiasResidualRelu", like_y)}


def fold_ops(backend=None):
    """The folded eval path's C++ operators (see _fold_aot_ops), or None (matmul backend: MindSpore ops)."""
    if resolve_backend(backend) != "aot":
        return None
    return _fold_aot_ops(kernel_library())


def upsample_ops(backend=None):
    """(add, mul) fused nearest-upsample-and-combine operators of the C++ backend, or None (matmul backend)."""
    if resolve_backend(backend) != "aot":
        return None
    return _upsample_aot_ops(kernel_library())


# ----------------------------------------------------------------------------------------------
# Constant window matrices for the matmul backend
# ----------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=256)
def _row_taps(h, stride):
    """(3*Ho, H): row di*Ho + i selects input row stride*i + di - 1 (zero outside: the padding)."""
    ho = _out_size(h, stride)
    m = np.zeros((3 * ho, h), np.float32)
    for di in range(3):
        for i in range(ho):
            r = stride * i + di - 1
            if 0 <= r < h:
                m[di * ho + i, r] = 1.0
    return m


@functools.lru_cache(maxsize=256)
def _col_taps(w, stride):
    """(3, W, Wo): [dj, q, j] = 1 where input column q = stride*j + dj - 1 feeds output column j."""
    wo = _out_size(w, stride)
    m = np.zeros((3, w, wo), np.float32)
    for dj in range(3):
        for j in range(wo):
            q = stride * j + dj - 1
            if 0 <= q < w:
                m[dj, q, j] = 1.0
    return m


def _row_taps_tensor(h, stride):
    return Tensor(_row_taps(h, stride))


def _col_taps_tensor(w, stride):
    return Tensor(_col_taps(w, stride))


# ----------------------------------------------------------------------------------------------
# Cells
# ----------------------------------------------------------------------------------------------

class _Conv3x3(nn.Cell):
    """Holds nn.Conv2d's parameters (same names, shapes and init) and its descriptive attributes."""

    def __init__(self, in_channels, out_channels, stride, groups, has_bias):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = (3, 3)
        self.stride = (stride, stride)
        self.group = groups
        self.has_bias = has_bias
        self.s = stride
        self.weight = Parameter(initializer(Normal(0.001), (out_channels, in_channels // groups, 3, 3)),
                                name="weight")
        self.bias = Parameter(initializer("zeros", (out_channels,)), name="bias") if has_bias else None

    def extend_repr(self):
        return (f"input_channels={self.in_channels}, output_channels={self.out_channels}, kernel_size=(3, 3), "
                f"stride={self.stride}, pad_mode=pad, padding=1, group={self.group}, has_bias={self.has_bias}, "
                f"impl={type(self).__name__}")

    def construct(self, x):
        if x.dtype != mstype.float32:
            y = self.conv_f32(x.astype(mstype.float32), self.weight.astype(mstype.float32))
        else:
            y = self.conv_f32(x, self.weight)
        return self._output(y, x.dtype)

    def _output(self, y, dtype):
        if self.has_bias:
            bias = self.bias if self.bias.dtype == mstype.float32 else self.bias.astype(mstype.float32)
            y = ops.bias_add(y, bias)
        if dtype != mstype.float32:
            y = y.astype(dtype)
        return y


class DepthwiseConv3x3Aot(_Conv3x3):
    """Depthwise 3x3 conv, padding 1, stride 1 or 2: one C++ Custom operator (backward in C++ too)."""

    def __init__(self, channels, stride=1, has_bias=False, library=None):
        super().__init__(channels, channels, stride, channels, has_bias)
        self.conv_op = _aot_ops(library or kernel_library(), stride)[0]

    def conv_f32(self, xf, k):
        """The convolution of float32 x with float32 weight k, without bias."""
        return self.conv_op(xf, k)


class DenseConv3x3Aot(_Conv3x3):
    """Dense 3x3 conv, padding 1, stride 1 or 2: C++ im2col (backward col2im), then one MatMul."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False, library=None):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)
        self.im2col = _aot_ops(library or kernel_library(), stride)[1]

    def conv_f32(self, xf, k):
        """The convolution of float32 x with float32 weight k, without bias."""
        ho, wo = _out_size(xf.shape[2], self.s), _out_size(xf.shape[3], self.s)
        cols = self.im2col(xf)                                               # (N, Cin*9, Ho*Wo)
        if xf.shape[0] == 1 and not self.training:  # one image: a plain product, no broadcast weight copy
            cols = cols.reshape(cols.shape[1], cols.shape[2])
        y = ops.matmul(k.reshape(self.out_channels, -1), cols)               # (N, Cout, Ho*Wo)
        return y.reshape(xf.shape[0], self.out_channels, ho, wo)


class DepthwiseConv3x3MatMul(_Conv3x3):
    """Depthwise 3x3 conv with MatMuls only: Y = sum_di (S_di @ X) @ B_di, B_di banded from the weight."""

    def __init__(self, channels, stride=1, has_bias=False):
        super().__init__(channels, channels, stride, channels, has_bias)

    def conv_f32(self, xf, k):
        """The convolution of float32 x with float32 weight k, without bias."""
        n, c, h, w = xf.shape
        ho, wo = _out_size(h, self.s), _out_size(w, self.s)
        rows = _row_taps_tensor(h, self.s)                                   # (3Ho, H)
        cols = _col_taps_tensor(w, self.s)                                   # (3, W, Wo)
        band = ops.matmul(k.reshape(c * 3, 3), cols.reshape(3, w * wo))      # (C*3, W*Wo): B[c, di]
        u = ops.matmul(rows, xf).reshape(n, c, 3, ho, w)                      # rows of tap di
        return ops.matmul(u, band.reshape(c, 3, w, wo)).sum(axis=2)


class DenseConv3x3MatMul(_Conv3x3):
    """Dense 3x3 conv with MatMuls only: im2col = S @ X @ T (0/1 matrices), then Wmat @ im2col."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)

    def conv_f32(self, xf, k):
        """The convolution of float32 x with float32 weight k, without bias."""
        n, c, h, w = xf.shape
        ho, wo = _out_size(h, self.s), _out_size(w, self.s)
        rows = _row_taps_tensor(h, self.s)                                   # (3Ho, H)
        cols = _col_taps_tensor(w, self.s).transpose(1, 0, 2).reshape(w, 3 * wo)  # (W, 3Wo)
        taps = ops.matmul(rows, ops.matmul(xf, cols))                        # (N, C, 3Ho, 3Wo)
        taps = taps.reshape(n, c, 3, ho, 3, wo).transpose(0, 1, 2, 4, 3, 5).reshape(n, c * 9, ho * wo)
        return ops.matmul(k.reshape(self.out_channels, -1), taps).reshape(n, self.out_channels, ho, wo)


def fast_conv2d(in_channels, out_channels, kernel_size, stride=1, groups=1, has_bias=False, backend=None):
    """A fast cell computing ``nn.Conv2d(in, out, k, stride, pad k//2, group=groups)``, or None to keep nn.Conv2d.

    Covered: 3x3 kernels with stride 1 or 2, either depthwise (groups == in == out) or dense (groups 1).
    ``backend``: 'auto' (C++ kernels when they build, else matmul), 'aot' or 'matmul'; default from
    the environment variable LITEHRNET_FAST_CONV_BACKEND, else 'auto'.
    """
    if kernel_size != 3 or stride not in (1, 2):
        return None
    depthwise = groups == in_channels == out_channels
    if not depthwise and groups != 1:
        return None
    if resolve_backend(backend) == "aot":
        if depthwise:
            return DepthwiseConv3x3Aot(in_channels, stride, has_bias)
        return DenseConv3x3Aot(in_channels, out_channels, stride, has_bias)
    if depthwise:
        return DepthwiseConv3x3MatMul(in_channels, stride, has_bias)
    return DenseConv3x3MatMul(in_channels, out_channels, stride, has_bias)
