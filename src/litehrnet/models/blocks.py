"""Lite-HRNet's building blocks, named as in the paper and the official code.

Stem, conditional channel weighting (cross-resolution weighting + spatial
weighting), the naive shuffle unit, the multi-branch module with its fusion, and
the iterative head. Each computes exactly what the official PyTorch code computes
(see ../shared/spec/architecture.md), including its in-place fusion quirk.
"""
from mindspore import nn, ops

from .layers import (ConvModule, add_upsampled, concat_shuffle, conv_bn, current_conv_impl, depthwise_pointwise,
                     fused_upsample_ops, mul_upsampled, scale_channels, split_halves, upsample_bilinear_align_corners)


class Stem(nn.Cell):
    """3x3 stride-2 conv, then a shuffle-style split block that halves the resolution again."""

    def __init__(self, in_channels=3, stem_channels=32):
        super().__init__()
        half = stem_channels // 2
        self.conv1 = ConvModule(in_channels, stem_channels, 3, stride=2)
        self.branch1 = nn.SequentialCell([
            ConvModule(half, half, 3, stride=2, groups=half, act=None),
            ConvModule(half, half, 1),
        ])
        self.expand_conv = ConvModule(half, stem_channels, 1)
        self.depthwise_conv = ConvModule(stem_channels, stem_channels, 3, stride=2, groups=stem_channels, act=None)
        self.linear_conv = ConvModule(stem_channels, half, 1)

    def construct(self, x):
        x = self.conv1(x)
        x1, x2 = split_halves(x)
        x2 = self.linear_conv(self.depthwise_conv(self.expand_conv(x2)))
        return concat_shuffle(self.branch1(x1), x2)


class CrossResolutionWeighting(nn.Cell):
    """Channel weights computed from all branches pooled to the smallest resolution."""

    def __init__(self, channels, reduce_ratio=8):
        super().__init__()
        self.channels = tuple(channels)
        total = sum(channels)
        self.conv1 = ConvModule(total, int(total / reduce_ratio), 1, act="relu")
        self.conv2 = ConvModule(int(total / reduce_ratio), total, 1, act="sigmoid")
        self.resize_by_matmul = current_conv_impl() == "fast"
        self.fused_up = fused_upsample_ops()

    def construct(self, xs):
        mini_h, mini_w = xs[-1].shape[2], xs[-1].shape[3]
        pooled = []
        for x in xs[:-1]:
            kh, kw = x.shape[2] // mini_h, x.shape[3] // mini_w
            pooled.append(ops.AvgPool(kernel_size=(kh, kw), strides=(kh, kw))(x))
        pooled.append(xs[-1])
        weights = self.conv2(self.conv1(ops.cat(pooled, axis=1)))
        out = []
        start = 0
        for i, x in enumerate(xs):
            w = weights[:, start:start + self.channels[i]]
            start += self.channels[i]
            out.append(mul_upsampled(x, w, self.fused_up, self.resize_by_matmul))
        return out


class SpatialWeighting(nn.Cell):
    """Squeeze-and-excitation style weighting of one branch (the backbone's only biased convs)."""

    def __init__(self, channels, ratio=4):
        super().__init__()
        self.conv1 = ConvModule(channels, int(channels / ratio), 1, norm=False, act="relu")
        self.conv2 = ConvModule(int(channels / ratio), channels, 1, norm=False, act="sigmoid")
        self.pool_by_matmul = current_conv_impl() == "fast"
        self.fused_up = fused_upsample_ops()

    def construct(self, x):
        if self.pool_by_matmul:  # CPU: a product with a constant column is ~2.5x faster than ReduceMean
            n, c, h, w = x.shape
            mean = ops.matmul(x.reshape(n * c, h * w), ops.ones((h * w, 1), x.dtype) / (h * w))
            pooled = mean.reshape(n, c, 1, 1)
        else:
            pooled = x.mean(axis=(2, 3), keep_dims=True)
        return scale_channels(x, self.conv2(self.conv1(pooled)), self.fused_up)


class ConditionalChannelWeighting(nn.Cell):
    """Lite-HRNet's block: cross-resolution weighting, depthwise 3x3, spatial weighting on half the channels."""

    def __init__(self, in_channels, reduce_ratio=8):
        super().__init__()
        halves = [c // 2 for c in in_channels]
        self.cross_resolution_weighting = CrossResolutionWeighting(halves, reduce_ratio)
        self.depthwise_convs = nn.CellList([ConvModule(c, c, 3, groups=c, act=None) for c in halves])
        self.spatial_weighting = nn.CellList([SpatialWeighting(c, 4) for c in halves])

    def construct(self, xs):
        keep, work = [], []
        for x in xs:
            a, b = split_halves(x)
            keep.append(a)
            work.append(b)
        work = self.cross_resolution_weighting(work)
        out = []
        for i, x in enumerate(work):
            x = self.spatial_weighting[i](self.depthwise_convs[i](x))
            out.append(concat_shuffle(keep[i], x))
        return out


class ShuffleUnit(nn.Cell):
    """The naive block: ShuffleNet-v2 unit (stride 1) on one branch."""

    def __init__(self, channels):
        super().__init__()
        half = channels // 2
        self.branch2 = nn.SequentialCell([
            ConvModule(half, half, 1),
            ConvModule(half, half, 3, groups=half, act=None),
            ConvModule(half, half, 1),
        ])

    def construct(self, x):
        a, b = split_halves(x)
        return concat_shuffle(a, self.branch2(b))


def _fuse_layer(in_channels, j, i):
    """The path from branch j to branch i (identity when j == i)."""
    if j == i:
        return nn.Identity()
    if j > i:  # lower resolution: 1x1 conv + BN; the nearest upsample happens in the module
        return conv_bn(in_channels[j], in_channels[i])
    steps = i - j
    return nn.SequentialCell([
        depthwise_pointwise(in_channels[j], in_channels[i] if k == steps - 1 else in_channels[j], 2,
                            final_relu=k != steps - 1)
        for k in range(steps)
    ])


class LiteHRModule(nn.Cell):
    """One multi-branch module: the blocks on every branch, then the official (in-place) fusion."""

    def __init__(self, in_channels, num_blocks, module_type, reduce_ratio=8):
        super().__init__()
        self.num_branches = len(in_channels)
        self.is_naive = module_type == "naive"
        if self.is_naive:
            self.layers = nn.CellList([
                nn.SequentialCell([ShuffleUnit(c) for _ in range(num_blocks)]) for c in in_channels
            ])
        else:
            self.layers = nn.SequentialCell([
                ConditionalChannelWeighting(in_channels, reduce_ratio) for _ in range(num_blocks)
            ])
        self.fuse_layers = nn.CellList([
            nn.CellList([_fuse_layer(in_channels, j, i) for j in range(self.num_branches)])
            for i in range(self.num_branches)
        ])
        self.relu = nn.ReLU()
        self.resize_by_matmul = current_conv_impl() == "fast"
        self.fused_up = fused_upsample_ops()

    def _add_from(self, acc, i, j, x):
        """acc + the path from branch j to branch i applied to x (a lower resolution is upsampled)."""
        y = self.fuse_layers[i][j](x)
        if j > i:
            return add_upsampled(acc, y, self.fused_up, self.resize_by_matmul)
        return acc + y

    def construct(self, xs):
        if self.is_naive:
            xs = [self.layers[i](xs[i]) for i in range(self.num_branches)]
        else:
            xs = self.layers(xs)
        # The official code accumulates in place: branch 0's sum s0 replaces x0 before the
        # other branches read it, and F_i0 is added twice (in training its BN updates twice).
        s0 = xs[0] + xs[0]
        for j in range(1, self.num_branches):
            s0 = self._add_from(s0, 0, j, xs[j])
        out = [self.relu(s0)]
        for i in range(1, self.num_branches):
            if self.training:
                y = self._add_from(self.fuse_layers[i][0](s0), i, 0, s0)
            else:
                y = self.fuse_layers[i][0](s0)
                y = y + y
            for j in range(1, self.num_branches):
                y = y + xs[j] if j == i else self._add_from(y, i, j, xs[j])
            out.append(self.relu(y))
        return out


class DepthwiseSeparable(nn.Cell):
    """Depthwise 3x3 + BN (no activation), pointwise 1x1 + BN + ReLU."""

    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.depthwise_conv = ConvModule(in_channels, in_channels, 3, groups=in_channels, act=None)
        self.pointwise_conv = ConvModule(in_channels, out_channels, 1)

    def construct(self, x):
        return self.pointwise_conv(self.depthwise_conv(x))


class IterativeHead(nn.Cell):
    """From the lowest resolution up: add the previous result (bilinear, align_corners) and refine."""

    def __init__(self, in_channels):
        super().__init__()
        rev = list(in_channels)[::-1]
        outs = rev[1:] + rev[-1:]
        self.projects = nn.CellList([DepthwiseSeparable(c, o) for c, o in zip(rev, outs)])

    def construct(self, xs):
        n = len(xs)
        out = []
        last = None
        for i in range(n):
            s = xs[n - 1 - i]
            if last is not None:
                s = s + upsample_bilinear_align_corners(last, (s.shape[2], s.shape[3]))
            last = self.projects[i](s)
            out.append(last)
        return out[::-1]
