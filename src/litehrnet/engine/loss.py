"""The training loss: mmpose's JointsMSELoss with target weights, and the network+loss cell it trains."""
from mindspore import nn, ops


class JointsMSELoss(nn.Cell):
    """Mean over joints of mean((w * (pred - gt))^2) over batch and pixels; no 0.5 factor (mmpose 0.13).

    All joints have the same number of pixels, so this is the plain mean of the weighted squared error.
    """

    def construct(self, output, target, target_weight):
        diff = (output - target) * target_weight[:, :, None, None]
        return ops.mean(diff * diff)


class NetWithLoss(nn.Cell):
    """Network then loss; auto_prefix=False keeps the network's parameter names (checkpoints stay bare)."""

    def __init__(self, net, loss):
        super().__init__(auto_prefix=False)
        self.net = net
        self.loss = loss

    def construct(self, image, target, target_weight):
        return self.loss(self.net(image), target, target_weight)
