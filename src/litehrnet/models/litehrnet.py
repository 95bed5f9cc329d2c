"""The Lite-HRNet backbone and the top-down pose network, built from an architecture config."""
from mindspore import nn
from mindspore.common.initializer import Normal

from .blocks import IterativeHead, LiteHRModule, Stem
from .inputs import INPUT_MULTIPLE, check_input_size
from .layers import depthwise_pointwise

def _transition(pre_channels, cur_channels):
    """Transition into a stage: width changes on existing branches, one new lower-resolution branch."""
    cells = []
    for i, cur in enumerate(cur_channels):
        if i < len(pre_channels):
            cells.append(nn.Identity() if cur == pre_channels[i] else
                         depthwise_pointwise(pre_channels[i], cur, 1))
        else:
            steps = i + 1 - len(pre_channels)
            src = pre_channels[-1]
            cells.append(nn.SequentialCell([
                depthwise_pointwise(src, cur if k == steps - 1 else src, 2) for k in range(steps)
            ]))
    return nn.CellList(cells)


class LiteHRNet(nn.Cell):
    """Stem, stages of multi-resolution modules joined by transitions, iterative head.

    Returns the highest-resolution branch of the head (stage width 0, 1/4 input size).
    """

    def __init__(self, config, in_channels=3):
        super().__init__()
        stem_channels = config["stem_channels"]
        self.stem = Stem(in_channels, stem_channels)
        pre = [stem_channels]
        transitions, stages = [], []
        self.num_new_branches = []
        for stage in config["stages"]:
            cur = list(stage["num_channels"])
            transitions.append(_transition(pre, cur))
            self.num_new_branches.append(len(cur) - len(pre))
            stages.append(nn.SequentialCell([
                LiteHRModule(cur, stage["num_blocks"], stage["module_type"], stage.get("reduce_ratio", 8))
                for _ in range(stage["num_modules"])
            ]))
            pre = cur
        self.transitions = nn.CellList(transitions)
        self.stages = nn.CellList(stages)
        self.head_layer = IterativeHead(pre)
        self.out_channels = pre[0]
        self.num_stages = len(stages)

    def _transit(self, s, ys):
        n_old = len(ys)
        xs = [self.transitions[s][j](ys[j]) for j in range(n_old)]
        for j in range(n_old, n_old + self.num_new_branches[s]):
            xs.append(self.transitions[s][j](ys[-1]))
        return xs

    def construct(self, x):
        ys = [self.stem(x)]
        for s in range(self.num_stages):
            ys = self.stages[s](self._transit(s, ys))
        return self.head_layer(ys)[0]

    def forward_intermediates(self, x):
        """Every intermediate the reference fixtures record, keyed as they are (PYNATIVE use only)."""
        feats = {}
        ys = [self.stem(x)]
        feats["feat/stem"] = ys[0]
        for s in range(self.num_stages):
            ys = self.stages[s](self._transit(s, ys))
            for b, y in enumerate(ys):
                feats[f"feat/stage{s}/b{b}"] = y
        for b, y in enumerate(self.head_layer(ys)):
            feats[f"feat/head_layer/b{b}"] = y
        return feats


class KeypointHead(nn.Cell):
    """One biased 1x1 conv from backbone features to K heatmaps (init normal 0.001)."""

    def __init__(self, in_channels, num_joints):
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels, num_joints, 1, has_bias=True, pad_mode="valid",
                                     weight_init=Normal(0.001), bias_init="zeros")

    def construct(self, x):
        return self.final_layer(x)


class PoseNet(nn.Cell):
    """Top-down pose network: (N, 3, H, W) float32 images to (N, K, H/4, W/4) heatmaps."""

    input_multiple = INPUT_MULTIPLE

    def __init__(self, config, num_joints=17, model_type=None):
        super().__init__()
        self.model_type = model_type
        self.config = config
        self.num_joints = num_joints
        self.input_multiple = INPUT_MULTIPLE
        self.output_stride = 4
        self.heatmap_sigma = None  # the presets' (codec.default_sigma)
        self.n_channels_in = config.get("n_channels_in", 3)
        self.backbone = LiteHRNet(config, in_channels=config.get("n_channels_in", 3))
        self.keypoint_head = KeypointHead(self.backbone.out_channels, num_joints)

    def construct(self, x):
        check_input_size(x.shape[2], x.shape[3], self.input_multiple)
        return self.keypoint_head(self.backbone(x))
