"""Helpers for test_freeze: a toy backbone+head network, and a GRAPH-mode probe run in a subprocess.

`python tests/engine/freeze_probe.py MODEL FROZEN_STEPS LIVE_STEPS [plain]` trains one graph with the backbone
frozen for FROZEN_STEPS, then everything for LIVE_STEPS (plain: no freezer at all), and prints one JSON
line: per step, how many backbone parameters / BN statistics / head parameters changed and the number
of graphs compiled so far; at the end a digest of all parameters.
"""
import hashlib
import json
import sys
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from litehrnet.engine.freeze import BackboneFreezer
from litehrnet.engine.loss import JointsMSELoss, NetWithLoss
from litehrnet.engine.optim import build_optimizer

TINY_LITE = dict(stem_channels=8, stages=[dict(num_modules=1, num_branches=b, num_blocks=1,
                                               num_channels=[8, 16, 16][:b]) for b in (2, 3)])


class ToyPose(nn.Cell):
    """conv-BN-ReLU x 2 as the backbone, conv-BN-ReLU-conv as the head: 3 heatmaps at 1/2 resolution."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.SequentialCell([
            nn.Conv2d(3, 8, 3, stride=2, has_bias=False), nn.BatchNorm2d(8, momentum=0.9), nn.ReLU(),
            nn.Conv2d(8, 8, 3, has_bias=False), nn.BatchNorm2d(8, momentum=0.9), nn.ReLU()])
        self.keypoint_head = nn.SequentialCell([
            nn.Conv2d(8, 8, 3, has_bias=False), nn.BatchNorm2d(8, momentum=0.9), nn.ReLU(),
            nn.Conv2d(8, 3, 1, has_bias=True)])

    def construct(self, x):
        return self.keypoint_head(self.backbone(x))


def build(model, freeze=True, seed=0):
    """(net, train step, freezer or None): model 'toy' (ToyPose), 'lite' or 'lite_fast' (a tiny Lite-HRNet with
    the native or the fast CPU convolutions), trained by AdamW at 64x64."""
    ms.set_seed(seed)
    if model == 'toy':
        net = ToyPose()
    else:
        from litehrnet import create_model
        net = create_model(TINY_LITE, num_joints=3, conv_impl='fast' if model == 'lite_fast' else 'native')
    freezer = BackboneFreezer(net) if freeze else None
    lr = np.full(100, 1e-2, np.float32)
    opt = build_optimizer(dict(type='adamw', weight_decay=0.01), net, lr,
                          freezable=freezer.freezable if freezer else None)
    if freezer:
        freezer.attach(opt)
    step = nn.TrainOneStepCell(NetWithLoss(net, JointsMSELoss()), opt)
    step.set_train()
    return net, step, freezer


def batches(model, count, size=64, seed=0):
    """(image, heatmaps, weights) batches of 2 at 64x64: ToyPose's heatmaps are 1/2 size, Lite-HRNet's 1/4."""
    rng = np.random.default_rng(seed)
    out = size // (2 if model == 'toy' else 4)
    for _ in range(count):
        yield (ms.Tensor(rng.standard_normal((2, 3, size, size)).astype(np.float32)),
               ms.Tensor(rng.random((2, 3, out, out)).astype(np.float32)), ms.Tensor(np.ones((2, 3), np.float32)))


def snapshot(net):
    """name -> copy of every network parameter (weights and BN moving statistics)."""
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def _changed(before, after, names):
    return sorted(n for n in names if not np.array_equal(before[n], after[n]))


def digest(net):
    """sha256 of every network parameter, in name order."""
    h = hashlib.sha256()
    for name, value in sorted(snapshot(net).items()):
        h.update(name.encode())
        h.update(np.ascontiguousarray(value).tobytes())
    return h.hexdigest()


def probe(model, frozen_steps, live_steps, freeze=True):
    from mindspore.common import api
    compiled = []
    executor = api._cell_graph_executor
    original = executor.compile

    def counting(obj, *args, **kwargs):
        phase, is_new = original(obj, *args, **kwargs)
        if is_new:
            compiled.append(type(obj).__name__)
        return phase, is_new

    executor.compile = counting
    net, step, freezer = build(model, freeze)
    names = list(snapshot(net))
    backbone = [n for n in names if n.startswith('backbone.')]
    stats = [n for n in backbone if 'moving_' in n]
    head = [n for n in names if not n.startswith('backbone.')]
    rows = []
    for i, (image, target, weight) in enumerate(batches(model, frozen_steps + live_steps)):
        if freezer:
            freezer.set_frozen(i < frozen_steps)
        before = snapshot(net)
        tic = time.time()
        loss = float(step(image, target, weight).asnumpy())
        seconds = time.time() - tic
        after = snapshot(net)
        rows.append(dict(frozen=i < frozen_steps, loss=loss, seconds=seconds, compiled=len(compiled),
                         backbone_params_changed=len(_changed(before, after, [n for n in backbone
                                                                               if n not in stats])),
                         backbone_stats_changed=len(_changed(before, after, stats)),
                         head_changed=len(_changed(before, after, head))))
    return dict(rows=rows, compiled=compiled, num_backbone=len(backbone) - len(stats), num_stats=len(stats),
                num_head=len(head), batchnorms=len(freezer.batchnorms) if freezer else 0, digest=digest(net))


if __name__ == '__main__':
    ms.set_context(mode=ms.GRAPH_MODE, device_target='CPU')
    print(json.dumps(probe(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:] != ['plain'])))
