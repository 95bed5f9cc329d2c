"""Eval-mode BatchNorm folding on the fast CPU path: conv -> BN (-> ReLU / sigmoid) as one convolution.

In eval mode a BatchNorm is a per-channel affine map, so ``act(BN(conv(x, W)))`` equals
``act(conv(x, W * s) + beta - mean * s)`` with ``s = gamma / sqrt(var + eps)``. A `FoldedConvBN`
computes that with the fewest operators the C++ kernels allow (fast_conv.fold_ops): a depthwise 3x3
with its bias (and ReLU) in one operator; any other convolution followed by one bias + ReLU / sigmoid
operator. A biased convolution without BN (the spatial weighting's) gets the same fused bias +
activation without any folding.

The folded weight and bias are Parameters (requires_grad False) held OUTSIDE the network's
parameters: the unit is attached to its owner cell with ``object.__setattr__``, so
``parameters_dict()``, ``trainable_params()`` and checkpoints never see it, while GRAPH mode still
takes the Parameters as graph inputs (a new value is used without recompiling). They are derived
from the network's weights and running statistics when the unit is built and again at every
``set_train(False)`` of the network or of any cell containing it (`EvalFold.add_flags_recursive`),
and by `refold` (the project's weight loaders call it). The training path never uses them: returning
to training runs the exact unfolded cells. Code that writes weights of a network in eval mode
without these (``mindspore.load_param_into_net``, ``Parameter.set_data``) calls ``refold(net)``.

``LITEHRNET_FOLD_BN=0`` at construction turns folding off (eval runs the BatchNorm operators).
"""
import itertools
import os

import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from mindspore import dtype as mstype

from .fast_conv import DepthwiseConv3x3Aot, _Conv3x3, fold_ops

_FOLD_ENV = "LITEHRNET_FOLD_BN"
_unique = itertools.count()


def folding_enabled():
    """Whether eval-mode folding is on (it is unless LITEHRNET_FOLD_BN is 0 / false / off)."""
    return os.environ.get(_FOLD_ENV, "1").strip().lower() not in ("0", "false", "off", "no")


def _hidden(value, what):
    """A Parameter no gradient reaches, with a name unique in the process (GRAPH mode needs one)."""
    return Parameter(Tensor(value), name=f"_folded.{next(_unique)}.{what}", requires_grad=False)


class FoldedConvBN(nn.Cell):
    """act(bn(conv(x))) in eval mode with bn folded into conv (bn None: conv's own bias, no folding).

    conv: nn.Conv2d or a fast_conv cell; bn: nn.BatchNorm2d or None; act: None, 'relu' or 'sigmoid'.
    conv and bn stay their owner's children; this cell only refers to them.
    """

    def __init__(self, conv, bn, act=None):
        super().__init__(auto_prefix=False)
        object.__setattr__(self, "conv", conv)
        object.__setattr__(self, "bn", bn)
        self.act = act
        self.fast = isinstance(conv, _Conv3x3)
        kernels = fold_ops()
        dw_ops, bias_ops = kernels if kernels is not None else ({}, {})
        self.dw_op = dw_ops.get((conv.s, act)) if isinstance(conv, DepthwiseConv3x3Aot) else None
        self.bias_act = bias_ops.get(act)
        self.residual_op = bias_ops.get("residual_relu") if act is None else None
        if bn is None:  # the conv's own parameters, nothing to derive
            object.__setattr__(self, "weight", conv.weight)
            object.__setattr__(self, "bias", conv.bias)
        else:
            object.__setattr__(self, "weight", _hidden(np.zeros(conv.weight.shape, np.float32), "weight"))
            object.__setattr__(self, "bias", _hidden(np.zeros((conv.out_channels,), np.float32), "bias"))
            self.refold()

    def refold(self):
        """Derive the folded weight and bias from the current weights and running statistics."""
        if self.bn is None:
            return
        bn = self.bn
        scale = bn.gamma.asnumpy().astype(np.float64) / np.sqrt(bn.moving_variance.asnumpy().astype(np.float64)
                                                                 + bn.eps)
        bias = bn.beta.asnumpy().astype(np.float64) - bn.moving_mean.asnumpy().astype(np.float64) * scale
        if self.conv.has_bias:
            bias = bias + self.conv.bias.asnumpy().astype(np.float64) * scale
        weight = self.conv.weight.asnumpy().astype(np.float64) * scale.reshape(-1, 1, 1, 1)
        self.weight.set_data(Tensor(weight.astype(np.float32)))
        self.bias.set_data(Tensor(bias.astype(np.float32)))

    def construct(self, x, residual=None):
        """act(bn(conv(x))); with ``residual`` (act None): relu(bn(conv(x)) + residual), a residual block's end."""
        dtype = x.dtype
        if dtype != mstype.float32:
            x = x.astype(mstype.float32)
            if residual is not None:
                residual = residual.astype(mstype.float32)
        w, b = self.weight, self.bias
        if w.dtype != mstype.float32:  # the conv's own parameters under mixed precision
            w = w.astype(mstype.float32)
            b = b.astype(mstype.float32)
        if self.dw_op is not None and residual is None:
            y = self.dw_op(x, w, b)
        else:
            y = self.conv.conv_f32(x, w) if self.fast else self.conv.conv2d(x, w)
            if residual is not None:
                y = self._residual_relu(y, b, residual)
            elif self.bias_act is not None:
                y = self.bias_act(y, b)
            else:
                y = ops.bias_add(y, b)
                if self.act == "relu":
                    y = ops.relu(y)
                elif self.act == "sigmoid":
                    y = ops.sigmoid(y)
        if dtype != mstype.float32:
            y = y.astype(dtype)
        return y

    def _residual_relu(self, y, b, residual):
        if self.residual_op is not None:
            return self.residual_op(y, b, residual)
        return ops.relu(ops.bias_add(y, b) + residual)


def fold_conv(owner, name, conv, bn, act=None):
    """Set ``owner.<name>`` to the eval path of conv -> bn -> act (a FoldedConvBN outside its parameters).

    None when folding is off (LITEHRNET_FOLD_BN=0) or there is nothing to fuse (no BN and no bias).
    The owner must be an `EvalFold` (it refolds at set_train(False)). Only the fast path folds
    (``layers.fold_conv_bn`` decides); the native path keeps its BatchNorm operators.
    """
    unit = None
    if folding_enabled() and (bn is not None or conv.has_bias):
        unit = FoldedConvBN(conv, bn, act)
        object.__setattr__(owner, "_folds", getattr(owner, "_folds", ()) + (unit,))
    object.__setattr__(owner, name, unit)
    return unit


class EvalFold:
    """Mixin for cells owning FoldedConvBN units: they are re-derived whenever the cell enters eval mode.

    ``set_train(False)`` on any ancestor reaches every cell through ``add_flags_recursive``.
    """

    def add_flags_recursive(self, **flags):
        super().add_flags_recursive(**flags)
        if flags.get("training") is False:
            for unit in getattr(self, "_folds", ()):
                unit.refold()
        return self


def refold(net):
    """Re-derive every folded unit of `net` from its current weights (after writing weights in eval mode)."""
    if not hasattr(net, "cells_and_names"):  # a parameter holder, not a Cell: nothing is folded
        return net
    for _, cell in net.cells_and_names():
        for unit in getattr(cell, "_folds", ()):
            unit.refold()
    return net
