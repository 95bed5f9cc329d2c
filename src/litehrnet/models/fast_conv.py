"""Fast CPU 3x3 convolutions with the parameters of ``nn.Conv2d`` (the 'fast' conv implementation).

MindSpore 2.10 on CPU runs every 3x3 ``nn.Conv2d`` (depthwise or dense, any padding mode, GRAPH or
PYNATIVE) through oneDNN's reference kernel, which dominates Lite-HRNet's run time. ``fast_conv2d``
returns drop-in cells that compute exactly the same function, own the same ``weight`` (and ``bias``)
Parameters with the same shapes and initialisation, and support autodiff:

* ``aot`` backend (default when it builds): small C++ kernels (``fast_kernels.cc`` beside this file),
  compiled at run time with g++ into a per-user cache and run as ``ops.Custom(func_type="aot")``
  operators with their own backward kernels, on a persistent worker pool. Depthwise 3x3 (stride 1 or 2) is computed directly; a dense 3x3 conv (the
  stem) is im2col (C++) followed by a MatMul. The library is checked against numpy with ctypes
  before it is used; when g++ is missing, the build or the check fails, or
  ``LITEHRNET_FAST_CONV_BACKEND=matmul`` is set, the ``matmul`` backend is used instead.
* ``matmul`` backend (pure MindSpore ops, no compiler): the 3x3 window is gathered with fixed 0/1
  shift/selection matrices built with numpy from the static input shape, and the weight enters through
  a banded matrix built in the graph, so gradients reach it: depthwise
  ``Y = sum_di (S_di @ X) @ B_di`` and dense ``Y = Wmat @ im2col(X)``, im2col = ``S @ X @ T``.

The same library fuses nearest upsampling with the add / multiply that consumes it
(:func:`upsample_ops`, used by ``layers.add_upsampled`` / ``mul_upsampled`` / ``scale_channels``).

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
import ctypes
import functools
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal, initializer

_LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "aot", "matmul")
_BACKEND_ENV = "LITEHRNET_FAST_CONV_BACKEND"
_CACHE_ENV = "LITEHRNET_FAST_CONV_CACHE"

# The kernels (C++ beside this file), compiled at run time (see kernel_library()).
_CPP_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fast_kernels.cc")


# ----------------------------------------------------------------------------------------------
# Building and checking the kernel library
# ----------------------------------------------------------------------------------------------

_KERNEL_NAMES = tuple(f"{op}S{s}" for op in ("DwFwd", "DwBwdInput", "DwBwdWeight", "Im2Col", "Col2Im")
                      for s in (1, 2)) + ("UpAdd", "UpMul", "UpAddGrad", "UpMulGrad")
_CXX_FLAG_SETS = (("-O3", "-march=native"), ("-O3",))
_library = {}
_library_lock = threading.Lock()


def _cpu_signature():
    """What -march=native depends on, so a shared cache never hands a library to another CPU."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return platform.processor() + platform.machine()


def _cache_dirs():
    """Candidate directories for the library, most specific first."""
    if os.environ.get(_CACHE_ENV):
        yield os.environ[_CACHE_ENV]
    if os.environ.get("MS_CUSTOM_AOT_WHITE_LIST"):  # MindSpore only loads Custom libraries from below it
        yield os.path.join(os.environ["MS_CUSTOM_AOT_WHITE_LIST"], "litehrnet_mindspore")
    home = os.path.expanduser("~")
    if home != "~":
        yield os.path.join(home, ".cache", "litehrnet_mindspore")
    uid = os.getuid() if hasattr(os, "getuid") else 0
    yield os.path.join(tempfile.gettempdir(), f"litehrnet_mindspore_{uid}")


@functools.lru_cache(maxsize=None)
def _cpp_source():
    with open(_CPP_PATH, encoding="utf-8") as f:
        return f.read()


class _CompileError(RuntimeError):
    """The compiler rejected the source with the given flags."""


def _compile(cxx, flags, path):
    """Compile into a private temporary name, then rename: concurrent builders never see half a file."""
    tag = f"{os.getpid()}_{threading.get_ident()}"
    src, tmp = f"{path}.{tag}.cc", f"{path}.{tag}.tmp"
    try:
        with open(src, "w", encoding="utf-8") as f:
            f.write(_cpp_source())
        cmd = [cxx, *flags, "-std=c++17", "-shared", "-fPIC", "-pthread", "-o", tmp, src]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        if proc.returncode != 0:
            raise _CompileError(f"{' '.join(cmd)} failed: {proc.stderr.strip()[-1000:]}")
        os.replace(tmp, path)
    finally:
        for leftover in (src, tmp):
            if os.path.exists(leftover):
                os.remove(leftover)


def _call_kernel(lib, name, inputs, out_shape):
    """Run one kernel through the Custom-op calling convention with numpy arrays (for the self-check)."""
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in inputs] + [np.full(out_shape, np.nan, np.float32)]
    n = len(arrays)
    i64p = ctypes.POINTER(ctypes.c_int64)
    shape_bufs = [(ctypes.c_int64 * a.ndim)(*a.shape) for a in arrays]
    fn = getattr(lib, name)
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_int),
                   ctypes.POINTER(i64p), ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p, ctypes.c_void_p]
    status = fn(n, (ctypes.c_void_p * n)(*[a.ctypes.data for a in arrays]),
                (ctypes.c_int * n)(*[a.ndim for a in arrays]),
                (i64p * n)(*[ctypes.cast(s, i64p) for s in shape_bufs]),
                (ctypes.c_char_p * n)(*([b"float32"] * n)), None, None)
    if status != 0:
        raise RuntimeError(f"{name} returned {status}")
    return arrays[-1]


def _windows(x, stride):
    """numpy reference: the 9 strided 3x3 taps of x padded by 1, as a (.., 3, 3, Ho, Wo) view list."""
    h, w = x.shape[-2:]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    xp = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(1, 1), (1, 1)])
    return [[xp[..., di:di + stride * (ho - 1) + 1:stride, dj:dj + stride * (wo - 1) + 1:stride] for dj in range(3)]
            for di in range(3)], xp.shape


def _self_check(path):
    """Compare every kernel with numpy on a few shapes (odd/even, both strides, multi-threaded sizes)."""
    lib = ctypes.CDLL(path)
    missing = [name for name in _KERNEL_NAMES if not hasattr(lib, name)]
    if missing:
        raise RuntimeError(f"kernels missing from the library: {missing}")
    rng = np.random.default_rng(0)
    for (n, c, h, w) in ((2, 3, 5, 6), (1, 2, 1, 1), (2, 8, 40, 37)):
        for s in (1, 2):
            x = rng.standard_normal((n, c, h, w)).astype(np.float32)
            k = rng.standard_normal((c, 1, 3, 3)).astype(np.float32)
            taps, pshape = _windows(x.astype(np.float64), s)
            ho, wo = taps[0][0].shape[-2:]
            g = rng.standard_normal((n, c, ho, wo)).astype(np.float32)
            y = sum(k[None, :, 0, di, dj, None, None] * taps[di][dj] for di in range(3) for dj in range(3))
            gp = np.zeros(pshape)
            for di in range(3):
                for dj in range(3):
                    tap = (..., slice(di, di + s * (ho - 1) + 1, s), slice(dj, dj + s * (wo - 1) + 1, s))
                    gp[tap] += k[None, :, 0, di, dj, None, None] * g
            dx = gp[..., 1:h + 1, 1:w + 1]
            dk = np.array([[(g * taps[di][dj]).sum(axis=(0, 2, 3)) for dj in range(3)] for di in range(3)])
            dk = dk.transpose(2, 0, 1)[:, None]
            cols = np.stack([taps[di][dj] for di in range(3) for dj in range(3)], axis=2).reshape(n, c * 9, ho * wo)
            gcols = rng.standard_normal(cols.shape).astype(np.float32)
            gp = np.zeros(pshape)
            g9 = gcols.reshape(n, c, 3, 3, ho, wo)
            for di in range(3):
                for dj in range(3):
                    gp[..., di:di + s * (ho - 1) + 1:s, dj:dj + s * (wo - 1) + 1:s] += g9[:, :, di, dj]
            checks = (
                (f"DwFwdS{s}", (x, k), y),
                (f"DwBwdInputS{s}", (g, k, x), dx),
                (f"DwBwdWeightS{s}", (x, g), dk),
                (f"Im2ColS{s}", (x,), cols),
                (f"Col2ImS{s}", (gcols, x), gp[..., 1:h + 1, 1:w + 1]),
            )
            for name, inputs, ref in checks + _upsample_checks(rng, n, c, h, w, factor=s + 1):
                out = _call_kernel(lib, name, inputs, ref.shape)
                if not np.allclose(out, ref, rtol=1e-4, atol=1e-4 * (1.0 + np.abs(ref).max())):
                    raise RuntimeError(f"{name} disagrees with numpy on {(n, c, h, w)}")


def _upsample_checks(rng, n, c, h, w, factor):
    """(kernel, inputs, numpy answer) of the fused nearest-upsampling kernels, z of shape (n, c, h, w)."""
    z = rng.standard_normal((n, c, h, w)).astype(np.float32)
    y, g = rng.standard_normal((2, n, c, h * factor, w * factor)).astype(np.float32)
    up = z.repeat(factor, axis=2).repeat(factor, axis=3)

    def block_sum(a):
        return a.reshape(n, c, h, factor, w, factor).sum(axis=(3, 5), dtype=np.float64)

    s = rng.standard_normal((n, c, 1, 1)).astype(np.float32)  # whole-channel scaling: factors (H, W)
    return (("UpAdd", (y, z), y + up), ("UpMul", (y, z), y * up),
            ("UpAddGrad", (g, z), block_sum(g)), ("UpMulGrad", (g, y, z), block_sum(g * y)),
            ("UpMul", (y, s), y * s), ("UpMulGrad", (g, y, s), (g * y).sum(axis=(2, 3), keepdims=True)))


def kernel_library():
    """Path of the compiled and checked kernel library, or None (with the reason logged) if unavailable."""
    with _library_lock:
        if "path" not in _library:
            _library["path"], _library["error"] = _build_library()
            if _library["path"] is None:
                _LOG.warning("fast_conv: C++ kernels unavailable (%s); using the matmul formulation",
                             _library["error"])
        return _library["path"]


def _build_library():
    """(path, None) for a compiled library that passed the self-check, else (None, the reasons)."""
    if platform.system() != "Linux":
        return None, "MindSpore Custom aot operators need Linux"
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("c++")
    if not cxx:
        return None, "no C++ compiler (g++) found"
    white_list = os.environ.get("MS_CUSTOM_AOT_WHITE_LIST")
    errors = []
    for flags in _CXX_FLAG_SETS:
        key = hashlib.sha256("\0".join([_cpp_source(), cxx, *flags, _cpu_signature()]).encode()).hexdigest()[:16]
        for directory in _cache_dirs():
            path = os.path.join(os.path.abspath(directory), f"fast_conv_{key}.so")
            if white_list and os.path.commonpath([os.path.realpath(path), os.path.realpath(white_list)]) \
                    != os.path.realpath(white_list):
                errors.append(f"{path} is outside MS_CUSTOM_AOT_WHITE_LIST")
                continue
            try:
                if not os.path.exists(path):
                    os.makedirs(directory, exist_ok=True)
                    _compile(cxx, flags, path)
                _self_check(path)
                return path, None
            except _CompileError as exc:
                errors.append(str(exc))
                break  # these flags are rejected: try the next set, not another directory
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                errors.append(f"{path}: {exc}")
    return None, "; ".join(errors)


def _resolve_backend(backend=None):
    backend = backend or os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"fast conv backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "matmul":
        return "matmul"
    if kernel_library() is not None:
        return "aot"
    if backend == "aot":
        raise RuntimeError(f"fast conv backend 'aot' requested but unavailable: {_library['error']}")
    return "matmul"


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


def upsample_ops(backend=None):
    """(add, mul) fused nearest-upsample-and-combine operators of the C++ backend, or None (matmul backend)."""
    if _resolve_backend(backend) != "aot":
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

    def _inputs(self, x):
        """(x, weight) in float32, and the output size (Ho, Wo) of x."""
        ho, wo = _out_size(x.shape[2], self.s), _out_size(x.shape[3], self.s)
        if x.dtype != mstype.float32:
            return x.astype(mstype.float32), self.weight.astype(mstype.float32), ho, wo
        return x, self.weight, ho, wo

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

    def construct(self, x):
        xf, k, _, _ = self._inputs(x)
        return self._output(self.conv_op(xf, k), x.dtype)


class DenseConv3x3Aot(_Conv3x3):
    """Dense 3x3 conv, padding 1, stride 1 or 2: C++ im2col (backward col2im), then one MatMul."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False, library=None):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)
        self.im2col = _aot_ops(library or kernel_library(), stride)[1]

    def construct(self, x):
        xf, k, ho, wo = self._inputs(x)
        cols = self.im2col(xf)                                               # (N, Cin*9, Ho*Wo)
        y = ops.matmul(k.reshape(self.out_channels, -1), cols)               # (N, Cout, Ho*Wo)
        y = y.reshape(x.shape[0], self.out_channels, ho, wo)
        return self._output(y, x.dtype)


class DepthwiseConv3x3MatMul(_Conv3x3):
    """Depthwise 3x3 conv with MatMuls only: Y = sum_di (S_di @ X) @ B_di, B_di banded from the weight."""

    def __init__(self, channels, stride=1, has_bias=False):
        super().__init__(channels, channels, stride, channels, has_bias)

    def construct(self, x):
        n, c, h, w = x.shape
        xf, k, ho, wo = self._inputs(x)
        rows = _row_taps_tensor(h, self.s)                                   # (3Ho, H)
        cols = _col_taps_tensor(w, self.s)                                   # (3, W, Wo)
        band = ops.matmul(k.reshape(c * 3, 3), cols.reshape(3, w * wo))      # (C*3, W*Wo): B[c, di]
        u = ops.matmul(rows, xf).reshape(n, c, 3, ho, w)                      # rows of tap di
        y = ops.matmul(u, band.reshape(c, 3, w, wo)).sum(axis=2)
        return self._output(y, x.dtype)


class DenseConv3x3MatMul(_Conv3x3):
    """Dense 3x3 conv with MatMuls only: im2col = S @ X @ T (0/1 matrices), then Wmat @ im2col."""

    def __init__(self, in_channels, out_channels, stride=1, has_bias=False):
        super().__init__(in_channels, out_channels, stride, 1, has_bias)

    def construct(self, x):
        n, c, h, w = x.shape
        xf, k, ho, wo = self._inputs(x)
        rows = _row_taps_tensor(h, self.s)                                   # (3Ho, H)
        cols = _col_taps_tensor(w, self.s).transpose(1, 0, 2).reshape(w, 3 * wo)  # (W, 3Wo)
        taps = ops.matmul(rows, ops.matmul(xf, cols))                        # (N, C, 3Ho, 3Wo)
        taps = taps.reshape(n, c, 3, ho, 3, wo).transpose(0, 1, 2, 4, 3, 5).reshape(n, c * 9, ho * wo)
        y = ops.matmul(k.reshape(self.out_channels, -1), taps).reshape(n, self.out_channels, ho, wo)
        return self._output(y, x.dtype)


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
    if _resolve_backend(backend) == "aot":
        if depthwise:
            return DepthwiseConv3x3Aot(in_channels, stride, has_bias)
        return DenseConv3x3Aot(in_channels, out_channels, stride, has_bias)
    if depthwise:
        return DepthwiseConv3x3MatMul(in_channels, stride, has_bias)
    return DenseConv3x3MatMul(in_channels, out_channels, stride, has_bias)
