"""The fast CPU path's kernel build: compile fast_kernels.cc (+ fold_kernels.cc) with g++, cache the library, check it.

`kernel_library()` returns the path of a compiled library that passed a numpy self-check (built once
per machine, source and flags, into ``LITEHRNET_FAST_CONV_CACHE`` or ``~/.cache/litehrnet_mindspore``),
or None with the reason logged; `resolve_backend()` picks 'aot' (these kernels) or 'matmul' (pure
MindSpore). The kernels' persistent worker pool is the first section of fast_kernels.cc (threads:
``LITEHRNET_CONV_THREADS``). The operators and cells that use the library are in fast_conv.py.
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

_LOG = logging.getLogger(__name__)

BACKENDS = ("auto", "aot", "matmul")
_BACKEND_ENV = "LITEHRNET_FAST_CONV_BACKEND"
_CACHE_ENV = "LITEHRNET_FAST_CONV_CACHE"

# The kernels (C++ beside this file), compiled at run time as one translation unit (see kernel_library()):
# the eval-only kernels of the folded path use the pool and plane helpers of the training kernels.
_CPP_PATHS = tuple(os.path.join(os.path.dirname(os.path.abspath(__file__)), name)
                   for name in ("fast_kernels.cc", "fold_kernels.cc"))


_KERNEL_NAMES = tuple(f"{op}S{s}" for op in ("DwFwd", "DwBwdInput", "DwBwdWeight", "Im2Col", "Col2Im")
                      for s in (1, 2)) + ("UpAdd", "UpMul", "UpAddGrad", "UpMulGrad")
_FOLD_KERNEL_NAMES = ("BiasRelu", "BiasSigmoid", "BiasResidualRelu", "DwBiasS1", "DwBiasS2", "DwBiasReluS1", "DwBiasReluS2")
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
    texts = []
    for path in _CPP_PATHS:
        with open(path, encoding="utf-8") as f:
            texts.append(f"#line 1 \"{os.path.basename(path)}\"\n" + f.read())
    return "\n".join(texts)


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
    missing = [name for name in _KERNEL_NAMES + _FOLD_KERNEL_NAMES if not hasattr(lib, name)]
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
            checks += _fold_checks(rng, x, k, y, s)
            for name, inputs, ref in checks + _upsample_checks(rng, n, c, h, w, factor=s + 1):
                out = _call_kernel(lib, name, inputs, ref.shape)
                if not np.allclose(out, ref, rtol=1e-4, atol=1e-4 * (1.0 + np.abs(ref).max())):
                    raise RuntimeError(f"{name} disagrees with numpy on {(n, c, h, w)}")


def _fold_checks(rng, x, k, y, stride):
    """(kernel, inputs, numpy answer) of the folded path's bias + activation kernels; y = depthwise(x, k)."""
    b = rng.standard_normal(x.shape[1]).astype(np.float32)
    r = rng.standard_normal(x.shape).astype(np.float32)
    per_channel = b[None, :, None, None]
    v = x + per_channel
    flat = (x.shape[0], x.shape[1], -1)
    return ((f"DwBiasS{stride}", (x, k, b), y + per_channel),
            (f"DwBiasReluS{stride}", (x, k, b), np.maximum(y + per_channel, 0.0)),
            ("BiasRelu", (x, b), np.maximum(v, 0.0)), ("BiasSigmoid", (x, b), 1.0 / (1.0 + np.exp(-v))),
            ("BiasRelu", (x.reshape(flat), b), np.maximum(v, 0.0).reshape(flat)),
            ("BiasResidualRelu", (x, b, r), np.maximum(v + r, 0.0)))


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


def kernel_library_error():
    """Why the kernel library is unavailable (after kernel_library() returned None), else None."""
    return _library.get("error")


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


def resolve_backend(backend=None):
    """'aot' or 'matmul': the fast-conv backend asked for (argument, else $LITEHRNET_FAST_CONV_BACKEND), built if need be."""
    backend = backend or os.environ.get(_BACKEND_ENV, "auto").strip().lower() or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"fast conv backend must be one of {BACKENDS}, got '{backend}'")
    if backend == "matmul":
        return "matmul"
    if kernel_library() is not None:
        return "aot"
    if backend == "aot":
        raise RuntimeError(f"fast conv backend 'aot' requested but unavailable: {kernel_library_error()}")
    return "matmul"
