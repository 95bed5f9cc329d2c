"""Basic layers shared by every Lite-HRNet block: conv + BN + activation, channel shuffle, resizes.

Every convolution is created by :func:`conv2d`, the one place that decides how a
convolution is computed. The default is MindSpore's ``nn.Conv2d``; the CPU fast
path (see ``fast_conv.py``) swaps in formulations that avoid oneDNN's reference
kernel while keeping the same parameter names and shapes, so checkpoints are
interchangeable between the two.
"""
import contextlib

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype
from mindspore.common.initializer import Normal

from .fast_conv import fast_conv2d, upsample_ops
from .fold import EvalFold, fold_conv

CONV_IMPLS = ("native", "fast")
_conv_impl = ["native"]


@contextlib.contextmanager
def conv_implementation(impl):
    """Build the convolutions created inside this block with ``impl`` ('native' or 'fast')."""
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv implementation must be one of {CONV_IMPLS}, got '{impl}'")
    _conv_impl.append(impl)
    try:
        yield
    finally:
        _conv_impl.pop()


def current_conv_impl():
    return _conv_impl[-1]


def conv2d(in_channels, out_channels, kernel_size, stride=1, groups=1, has_bias=False):
    """A convolution as the official code builds it: explicit padding k//2, init normal(0, 0.001)."""
    if current_conv_impl() == "fast":
        conv = fast_conv2d(in_channels, out_channels, kernel_size, stride, groups, has_bias)
        if conv is not None:
            return conv
    pad = kernel_size // 2
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride,
                     pad_mode="pad" if pad else "valid", padding=pad, group=groups,
                     has_bias=has_bias, weight_init=Normal(0.001), bias_init="zeros")


def batch_norm(channels):
    """BatchNorm as PyTorch's default: eps 1e-5, momentum 0.1 (MindSpore's 0.9), gamma 1, beta 0."""
    return nn.BatchNorm2d(channels, eps=1e-5, momentum=0.9)


_ACTIVATIONS = {None: None, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}


def fold_conv_bn(owner, name, conv, bn, act=None):
    """Set ``owner.<name>`` to the folded eval path of conv -> bn -> act on the fast path, else None.

    See fold.py: the folded weights are kept outside the parameters and re-derived at every
    set_train(False); `owner` is an `EvalFold` cell whose construct uses the unit when not training.
    conv None (an absent layer): None.
    """
    if conv is None or current_conv_impl() != "fast":
        object.__setattr__(owner, name, None)
        return None
    return fold_conv(owner, name, conv, bn, act)


class ConvModule(EvalFold, nn.Cell):
    """conv -> optional BN -> optional activation (mmcv's ConvModule; no bias when normalised).

    On the fast path, eval mode runs it folded (one convolution and one bias + activation operator).
    """

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, groups=1, norm=True, act="relu"):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, groups, has_bias=not norm)
        self.bn = batch_norm(out_channels) if norm else None
        self.act = _ACTIVATIONS[act]() if act else None
        fold_conv_bn(self, "folded", self.conv, self.bn, act)

    def construct(self, x):
        if not self.training and self.folded is not None:
            return self.folded(x)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        if self.act is not None:
            x = self.act(x)
        return x


class ConvBNSequence(EvalFold, nn.SequentialCell):
    """An nn.SequentialCell of conv, BN[, ReLU] groups (same child names: 0, 1, 2, ...).

    On the fast path, eval mode runs each group folded (see fold.py); training runs the cells in order.
    """

    def __init__(self, cells):
        super().__init__(cells)
        i = 0
        while i < len(cells):
            relu = i + 2 < len(cells) and isinstance(cells[i + 2], nn.ReLU)
            fold_conv_bn(self, f"folded{i}", cells[i], cells[i + 1], "relu" if relu else None)
            i += 3 if relu else 2
        self.folded = len(getattr(self, "_folds", ())) > 0

    def construct(self, x):
        if not self.training and self.folded:
            for unit in self._folds:
                x = unit(x)
            return x
        for cell in self.cell_list:
            x = cell(x)
        return x


def conv_bn(in_channels, out_channels, kernel_size=1, stride=1, groups=1, relu=False):
    """conv (no bias), BN, optional ReLU as a ConvBNSequence (indices 0, 1, 2)."""
    cells = [conv2d(in_channels, out_channels, kernel_size, stride, groups), batch_norm(out_channels)]
    if relu:
        cells.append(nn.ReLU())
    return ConvBNSequence(cells)


def depthwise_pointwise(in_channels, out_channels, stride, final_relu=True):
    """Depthwise 3x3 + BN, 1x1 + BN (+ ReLU) as one sequence: the transitions' and fuse layers' unit.

    Index layout (0 conv, 1 bn, 2 conv, 3 bn) equals the official and the earlier port's names.
    """
    cells = [conv2d(in_channels, in_channels, 3, stride, groups=in_channels), batch_norm(in_channels),
             conv2d(in_channels, out_channels, 1), batch_norm(out_channels)]
    if final_relu:
        cells.append(nn.ReLU())
    return ConvBNSequence(cells)


def split_halves(x):
    """The two channel halves of x (a Split, whose gradient is one Concat)."""
    return ops.split(x, x.shape[1] // 2, axis=1)


def concat_shuffle(a, b):
    """channel_shuffle(cat(a, b), groups 2) in one op: output channels [a0, b0, a1, b1, ...].

    Stacking on a new axis after the channels interleaves them directly, instead of a Concat
    followed by a 5-D Transpose (about 2x faster forward and backward on CPU).
    """
    n, c, h, w = a.shape
    return ops.stack((a, b), axis=2).reshape(n, 2 * c, h, w)


def nearest_matrix(n_in, n_out):
    """(n_out, n_in) 0/1 matrix of nearest-neighbour resizing along one axis (source floor(i * in / out))."""
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), (np.arange(n_out) * n_in) // n_out] = 1.0
    return m


def upsample_nearest(x, size, by_matmul=False):
    """Nearest-neighbour resize to ``size`` = (h, w).

    By default the ResizeNearestNeighbor primitive, which exports to ONNX. ``by_matmul`` (the CPU
    fast path) uses two fixed 0/1 matrix products instead: bit-identical values (every output copies
    one input), and a forward and backward that run on fast matrix kernels (the primitive's gradient
    kernel is slow on CPU).
    """
    if by_matmul:
        rows = Tensor(nearest_matrix(x.shape[2], size[0])).astype(x.dtype)  # float16 under mixed precision
        cols = Tensor(nearest_matrix(x.shape[3], size[1]).T).astype(x.dtype)
        return ops.matmul(ops.matmul(rows, x), cols)
    return ops.ResizeNearestNeighbor(size)(x)


def fused_upsample_ops():
    """The fast path's (add, mul) operators fusing a nearest upsample with its consumer, else None.

    On CPU they replace a resize (two matrix products) and the add / multiply after it by one pass
    over memory, and the broadcast gradient of a channel scaling by a block sum.
    """
    if current_conv_impl() != "fast":
        return None
    return upsample_ops()


def _fusable(fused, a, b):
    return fused is not None and a.dtype == mstype.float32 and b.dtype == mstype.float32


def add_upsampled(acc, z, fused=None, by_matmul=False):
    """acc + z resized (nearest, integer factor) to acc's size; one C++ pass when `fused` is given."""
    if _fusable(fused, acc, z):
        return fused[0](acc, z)
    return acc + upsample_nearest(z, (acc.shape[2], acc.shape[3]), by_matmul)


def scale_channels(x, s, fused=None):
    """x (N, C, H, W) * s (N, C, 1, 1); one C++ pass (and a block-sum backward) when `fused` is given."""
    if _fusable(fused, x, s):
        return fused[1](x, s)
    return x * s


def mul_upsampled(x, w, fused=None, by_matmul=False):
    """x * w resized (nearest, integer factor) to x's size; one C++ pass when `fused` is given."""
    if x.shape[2] == w.shape[2] and x.shape[3] == w.shape[3]:  # already x's size: no resize
        return x * w
    if _fusable(fused, x, w):
        return fused[1](x, w)
    return x * upsample_nearest(w, (x.shape[2], x.shape[3]), by_matmul)


def bilinear_matrix(n_in, n_out):
    """(n_out, n_in) matrix of bilinear align_corners=True weights along one axis."""
    m = np.zeros((n_out, n_in), np.float32)
    if n_in == 1 or n_out == 1:
        m[:, 0] = 1.0
        return m
    src = np.arange(n_out, dtype=np.float64) * (n_in - 1) / (n_out - 1)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    rows = np.arange(n_out)
    m[rows, i0] += (1.0 - frac).astype(np.float32)
    m[rows, i1] += frac.astype(np.float32)
    return m


def upsample_bilinear_align_corners(x, size):
    """Bilinear align_corners=True resize as two fixed matrix products (exportable, same values)."""
    h_in, w_in = x.shape[2], x.shape[3]
    rows = Tensor(bilinear_matrix(h_in, size[0])).astype(x.dtype)  # float16 under mixed precision
    cols = Tensor(bilinear_matrix(w_in, size[1]).T).astype(x.dtype)
    return ops.matmul(ops.matmul(rows, x), cols)


def bilinear_half_pixel_matrix(n_in, n_out):
    """(n_out, n_in) matrix of bilinear align_corners=False weights along one axis (PyTorch's rule).

    Output i samples source (i + 0.5) * n_in / n_out - 0.5, clamped below at 0; the upper neighbour
    is clamped to the last input.
    """
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = src - i0
    m = np.zeros((n_out, n_in), np.float64)
    rows = np.arange(n_out)
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m.astype(np.float32)


def upsample_bilinear(x, size):
    """Bilinear align_corners=False resize to ``size`` = (h, w) as two fixed matrix products (exportable)."""
    rows = Tensor(bilinear_half_pixel_matrix(x.shape[2], size[0])).astype(x.dtype)
    cols = Tensor(bilinear_half_pixel_matrix(x.shape[3], size[1]).T).astype(x.dtype)
    return ops.matmul(ops.matmul(rows, x), cols)
