"""freeze_backbone_epochs: one compiled train step that serves both phases, backbone frozen and all training.

Frozen means no update at all: the backbone's parameters get no gradient step and no weight decay
(engine/optim's freeze switch), and its BatchNorm layers run as in eval mode (they normalize with
their moving statistics and leave them unchanged), while the rest of the network trains as usual.

MindSpore can crash when a second training graph is compiled in the same process, and BatchNorm's
mode and momentum are compile-time constants, so both switches are Parameters that the one graph
reads: `BackboneFreezer.set_frozen` flips them between steps without recompiling. Each backbone
BatchNorm becomes a `SwitchableBatchNorm2d` (same parameters, same names, checkpoints unchanged):
in training it runs MindSpore's own training and inference kernels and keeps, per the switch, the
training result (output and updated statistics, as nn.BatchNorm2d's) or the inference output with
the statistics restored bit for bit. In eval mode (validation) it is nn.BatchNorm2d. No gradient
flows through the frozen branch (a frozen backbone needs none); the backbone's gradients are still
computed while frozen and discarded by the optimizer: that is the price of one graph. (So the frozen
part must be the network's input end, as a backbone is: nothing trainable may sit before it.)

Measured on a tiny Lite-HRNet (64x64, batch 2, CPU, GRAPH): one graph compiled for both phases; the
frozen backbone's 137 parameters and 78 BN statistics bit-unchanged, all changed after; a step takes
about 15 % longer than without the switches (every backbone BatchNorm also runs its inference
kernel). PYNATIVE gradients with the switches live equal plain ones bit for bit; in GRAPH mode they
agree to float32 round-off (the compiler orders the ops differently). Build the switches only when
freeze_backbone_epochs > 0.
"""
import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common.parameter import Parameter


class SwitchableBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d whose training behaviour follows a runtime switch `self.live` (a shared Parameter).

    live 1: plain training (batch statistics, moving statistics updated); live 0: eval behaviour
    (moving statistics used and left unchanged). Made from an existing layer by `make_switchable`.
    """

    def construct(self, x):
        if not self.training:
            return self.bn_infer(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
        old_mean = self.moving_mean * 1.0  # exact copies (x 1.0 keeps -0.0 and every bit)
        old_variance = self.moving_variance * 1.0
        # frozen: the backbone needs no gradient (its updates are discarded), so none flows through this branch
        frozen_out = ops.stop_gradient(self.bn_infer(x, self.gamma, self.beta, old_mean, old_variance)[0])
        train_out = self.bn_train(x, self.gamma, self.beta, self.moving_mean, self.moving_variance)[0]
        live = self.live > 0.5
        ops.assign(self.moving_mean, ops.select(ops.broadcast_to(live, old_mean.shape), self.moving_mean, old_mean))
        ops.assign(self.moving_variance, ops.select(ops.broadcast_to(live, old_variance.shape),
                                                    self.moving_variance, old_variance))
        return ops.select(ops.broadcast_to(live, train_out.shape), train_out, frozen_out)


def make_switchable(bn, live):
    """Turn the nn.BatchNorm2d `bn` into a SwitchableBatchNorm2d reading `live`, in place (names kept).

    The switch is attached outside the cell's parameter registry, so it is not a network parameter
    (not saved, not optimized) though the compiled graph reads its current value.
    """
    if type(bn) is not nn.BatchNorm2d and not isinstance(bn, SwitchableBatchNorm2d):
        raise TypeError(f"{type(bn).__name__} is not a plain nn.BatchNorm2d")
    if bn.use_batch_statistics is not None or bn.format != 'NCHW':
        raise ValueError("only NCHW BatchNorm2d layers with use_batch_statistics=None can be switched")
    bn.__class__ = SwitchableBatchNorm2d
    object.__setattr__(bn, 'live', live)
    return bn


class BackboneFreezer:
    """Freezes the `backbone` child of a network on a runtime switch; build the optimizer with `freezable`.

        freezer = BackboneFreezer(net)                      # before building the train step
        optimizer = build_optimizer(cfg, net, lr, freezable=freezer.freezable)
        freezer.attach(optimizer)
        ... each step: freezer.set_frozen(freezer.frozen_at(step, steps_per_epoch, freeze_epochs))
    """

    def __init__(self, net, backbone='backbone'):
        cell = getattr(net, backbone, None)
        if not isinstance(cell, nn.Cell):
            raise ValueError(f"the network has no {backbone!r} child to freeze")
        self.live = Parameter(ms.Tensor(np.float32(1.0)), name=f'{backbone}_live', requires_grad=False)
        self._ids = {id(p) for p in cell.get_parameters()}
        self.batchnorms = [make_switchable(c, self.live) for _, c in cell.cells_and_names()
                           if isinstance(c, nn.BatchNorm2d)]
        self.optimizer = None
        self.frozen = False

    def freezable(self, param):
        """True for the backbone's parameters (the optimizer's `freezable` filter)."""
        return id(param) in self._ids

    def attach(self, optimizer):
        """The optimizer (engine/optim.RecipeOptimizer built with `freezable`) whose switch to drive."""
        if not any(optimizer.freezable):
            raise ValueError("the optimizer marks no parameter freezable: build it with freezable=freezer.freezable")
        self.optimizer = optimizer
        optimizer.set_frozen(self.frozen)

    def set_frozen(self, frozen):
        """Backbone frozen (True) or training (False) from the next step on; never recompiles."""
        if self.optimizer is None:
            raise RuntimeError("attach the optimizer first")
        frozen = bool(frozen)
        if frozen != self.frozen:
            self.live.set_data(ms.Tensor(np.float32(0.0 if frozen else 1.0)))
            self.optimizer.set_frozen(frozen)
            self.frozen = frozen
        return frozen

    @staticmethod
    def frozen_at(step, steps_per_epoch, freeze_epochs):
        """Whether 0-based training `step` falls in the first `freeze_epochs` epochs."""
        return step < int(freeze_epochs) * int(steps_per_epoch)
