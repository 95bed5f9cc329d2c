"""HRNet's building blocks (Sun et al. 2019), with the official PyTorch module names.

BasicBlock and Bottleneck residual blocks, the multi-resolution module (parallel branches and
sum fusion with nearest upsampling) and the transitions between stages. Every cell's children carry
the names of the official ``pose_hrnet.py`` modules (``conv1``/``bn1``, ``downsample.0``,
``branches.b.n``, ``fuse_layers.i.j.k.0``, ``transitionK.i.0.0``), so a parameter's name is the
official state-dict key with BatchNorm's tensors named the MindSpore way.
"""
from mindspore import nn

from .fold import EvalFold
from .layers import add_upsampled, batch_norm, conv2d, conv_bn, current_conv_impl, fold_conv_bn, fused_upsample_ops


def conv_bn_relu(in_channels, out_channels, stride=1, relu=True):
    """3x3 conv (padding 1, no bias), BN, optional ReLU, as one sequence (indices 0, 1, 2)."""
    return conv_bn(in_channels, out_channels, 3, stride, relu=relu)


def _downsample(in_channels, out_channels):
    """The residual path's 1x1 conv + BN (``downsample.0``, ``downsample.1``) when the width changes, else None.

    HRNet's blocks all have stride 1 (resolution changes happen in transitions and fuse layers).
    """
    if in_channels == out_channels:
        return None
    return conv_bn(in_channels, out_channels)


class BasicBlock(EvalFold, nn.Cell):
    """3x3 conv-BN-ReLU, 3x3 conv-BN, plus the input, ReLU (expansion 1); folded in eval on the fast path."""
    expansion = 1

    def __init__(self, in_channels, planes):
        super().__init__()
        self.conv1 = conv2d(in_channels, planes, 3)
        self.bn1 = batch_norm(planes)
        self.conv2 = conv2d(planes, planes, 3)
        self.bn2 = batch_norm(planes)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_channels, planes)
        fold_conv_bn(self, "folded1", self.conv1, self.bn1, "relu")
        fold_conv_bn(self, "folded2", self.conv2, self.bn2)

    def construct(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        if not self.training and self.folded1 is not None:
            return self.folded2(self.folded1(x), residual)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + residual)


class Bottleneck(EvalFold, nn.Cell):
    """1x1 conv-BN-ReLU, 3x3 conv-BN-ReLU, 1x1 conv-BN to 4x the planes, plus the input, ReLU (folded in eval)."""
    expansion = 4

    def __init__(self, in_channels, planes):
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1 = conv2d(in_channels, planes, 1)
        self.bn1 = batch_norm(planes)
        self.conv2 = conv2d(planes, planes, 3)
        self.bn2 = batch_norm(planes)
        self.conv3 = conv2d(planes, out_channels, 1)
        self.bn3 = batch_norm(out_channels)
        self.relu = nn.ReLU()
        self.downsample = _downsample(in_channels, out_channels)
        fold_conv_bn(self, "folded1", self.conv1, self.bn1, "relu")
        fold_conv_bn(self, "folded2", self.conv2, self.bn2, "relu")
        fold_conv_bn(self, "folded3", self.conv3, self.bn3)

    def construct(self, x):
        residual = x if self.downsample is None else self.downsample(x)
        if not self.training and self.folded1 is not None:
            return self.folded3(self.folded2(self.folded1(x)), residual)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + residual)


BLOCKS = {"basic": BasicBlock, "bottleneck": Bottleneck}


def make_blocks(block, in_channels, planes, num_blocks):
    """``num_blocks`` blocks as one sequence; the first adapts ``in_channels`` (downsample) if needed."""
    cls = BLOCKS[block]
    cells = [cls(in_channels if k == 0 else planes * cls.expansion, planes) for k in range(num_blocks)]
    return nn.SequentialCell(cells)


def _fuse_layer(channels, i, j):
    """Fuse layer from branch j to output i: 1x1+BN (then upsampled), identity, or stride-2 3x3 convs."""
    if j > i:
        return conv_bn(channels[j], channels[i])
    if j == i:
        return nn.Identity()
    steps = i - j
    return nn.SequentialCell([
        conv_bn_relu(channels[j], channels[i] if k == steps - 1 else channels[j], 2, relu=k < steps - 1)
        for k in range(steps)
    ])


class HighResolutionModule(nn.Cell):
    """Parallel branches of blocks, then sum fusion of every branch into every output, ReLU.

    Output i = relu(sum_j F_ij(x_j)) summed left to right from j = 0 (the official order);
    F_ij upsamples (nearest, 2^(j-i)) after a 1x1 conv + BN for j > i, is the identity for j == i and
    a chain of stride-2 3x3 convs for j < i. ``multi_scale_output=False`` (the last module before the
    official head) computes only output 0. A single-branch module returns its branch, no fusion.
    """

    def __init__(self, channels, num_blocks, block="basic", multi_scale_output=True):
        super().__init__()
        self.num_branches = len(channels)
        expansion = BLOCKS[block].expansion
        self.branches = nn.CellList([make_blocks(block, c, c // expansion, n) for c, n in zip(channels, num_blocks)])
        self.num_outputs = self.num_branches if multi_scale_output else 1
        if self.num_branches > 1:
            self.fuse_layers = nn.CellList([
                nn.CellList([_fuse_layer(channels, i, j) for j in range(self.num_branches)])
                for i in range(self.num_outputs)
            ])
        else:
            self.fuse_layers = None
        self.relu = nn.ReLU()
        self.resize_by_matmul = current_conv_impl() == "fast"
        self.fused_up = fused_upsample_ops()

    def construct(self, xs):
        xs = [self.branches[b](xs[b]) for b in range(self.num_branches)]
        if self.num_branches == 1:
            return xs
        outs = []
        for i in range(self.num_outputs):
            y = xs[0] if i == 0 else self.fuse_layers[i][0](xs[0])
            for j in range(1, self.num_branches):
                if j == i:
                    y = y + xs[j]
                elif j > i:
                    y = add_upsampled(y, self.fuse_layers[i][j](xs[j]), self.fused_up, self.resize_by_matmul)
                else:
                    y = y + self.fuse_layers[i][j](xs[j])
            outs.append(self.relu(y))
        return outs


def transition(pre_channels, cur_channels):
    """Transition into a stage (``transitionK``): width changes of existing branches, new branches.

    Existing branch i: identity when the width is unchanged, else 3x3 conv-BN-ReLU (``K.i.0``).
    New branch i: from the last previous branch, stride-2 3x3 conv-BN-ReLU steps, each its own
    sequence (``K.i.0.0``, the official double nesting).
    """
    cells = []
    for i, cur in enumerate(cur_channels):
        if i < len(pre_channels):
            cells.append(nn.Identity() if cur == pre_channels[i] else conv_bn_relu(pre_channels[i], cur))
        else:
            src = pre_channels[-1]
            steps = i + 1 - len(pre_channels)
            cells.append(nn.SequentialCell([conv_bn_relu(src, cur if k == steps - 1 else src, 2)
                                            for k in range(steps)]))
    return nn.CellList(cells)
