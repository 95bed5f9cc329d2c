"""The HRNet backbone (official pose HRNet-W32/W48, light_hrnet, custom configs), its heads and pose network.

Built from a validated config (``hrnet_config.py``). Parameter names are the official PyTorch
state-dict keys under ``backbone.`` (``conv1``, ``layer1.0.downsample.0``, ``transition1.1.0.0``,
``stage4.2.fuse_layers.0.3.2.1``, ...) with BatchNorm's ``gamma``/``beta``/``moving_mean``/
``moving_variance``, and the head's under ``keypoint_head.`` (the official ``final_layer``).
"""
from mindspore import nn, ops

from .fold import EvalFold
from .hrnet_blocks import HighResolutionModule, conv_bn_relu, make_blocks, transition
from .hrnet_config import (HEAD_CONCAT, HEAD_FULL_RESOLUTION, HEAD_OFFICIAL, MAX_STAGES, branch_channels,
                           input_multiple, output_stride, validate_hrnet_config)
from .layers import batch_norm, conv2d, fold_conv_bn, upsample_bilinear
from .inputs import check_input_size


class HRNet(EvalFold, nn.Cell):
    """Stem, ``layer1``, then ``transitionK`` + ``stageK+1`` (up to stage 4); returns the branch outputs.

    With ``multi_scale_output=False`` (the official and full-resolution heads) the last module computes
    only the top branch, as the official code, and the list holds one tensor.
    """

    def __init__(self, config, multi_scale_output=False):
        super().__init__()
        stem = config["stem_channels"]
        self.conv1 = conv2d(config["n_channels_in"], stem, 3, 2)
        self.bn1 = batch_norm(stem)
        two = config["stem_convs"] == 2
        self.conv2 = conv2d(stem, stem, 3, 2) if two else None
        self.bn2 = batch_norm(stem) if two else None
        self.relu = nn.ReLU()
        fold_conv_bn(self, "folded1", self.conv1, self.bn1, "relu")
        fold_conv_bn(self, "folded2", self.conv2, self.bn2, "relu")
        stages = config["stages"]
        widths = branch_channels(config)
        first = stages[0]
        self.layer1 = make_blocks(first["block"], stem, first["num_channels"][0], first["num_blocks"][0])
        self.stage_branches = tuple(len(w) for w in widths)
        for k in range(2, MAX_STAGES + 1):
            if k > len(stages):
                setattr(self, f"transition{k - 1}", None)
                setattr(self, f"stage{k}", None)
                continue
            stage = stages[k - 1]
            last_stage = k == len(stages)
            setattr(self, f"transition{k - 1}", transition(widths[k - 2], widths[k - 1]))
            setattr(self, f"stage{k}", nn.SequentialCell([
                HighResolutionModule(widths[k - 1], stage["num_blocks"], stage["block"],
                                     multi_scale_output=multi_scale_output or not last_stage
                                     or m < stage["num_modules"] - 1)
                for m in range(stage["num_modules"])
            ]))
        top = widths[-1]
        self.out_channels = list(top) if multi_scale_output or len(stages) == 1 else top[:1]

    def _transit(self, trans, ys, n_new):
        n_old = len(ys)
        xs = [trans[j](ys[j]) for j in range(n_old)]
        for j in range(n_old, n_new):
            xs.append(trans[j](ys[-1]))
        return xs

    def _stem(self, x):
        if not self.training and self.folded1 is not None:
            x = self.folded1(x)
            return x if self.folded2 is None else self.folded2(x)
        x = self.relu(self.bn1(self.conv1(x)))
        if self.conv2 is not None:
            x = self.relu(self.bn2(self.conv2(x)))
        return x

    def construct(self, x):
        ys = [self.layer1(self._stem(x))]
        if self.stage2 is not None:
            ys = self.stage2(self._transit(self.transition1, ys, self.stage_branches[1]))
        if self.stage3 is not None:
            ys = self.stage3(self._transit(self.transition2, ys, self.stage_branches[2]))
        if self.stage4 is not None:
            ys = self.stage4(self._transit(self.transition3, ys, self.stage_branches[3]))
        return ys

    def forward_intermediates(self, x):
        """The intermediates the reference fixtures record, keyed as they are (PYNATIVE use only)."""
        feats = {"feat.stem": self._stem(x)}
        ys = [self.layer1(feats["feat.stem"])]
        feats["feat.layer1"] = ys[0]
        for k in range(2, len(self.stage_branches) + 1):
            ys = getattr(self, f"stage{k}")(self._transit(getattr(self, f"transition{k - 1}"), ys,
                                                          self.stage_branches[k - 1]))
            for b, y in enumerate(ys):
                feats[f"feat.stage{k}.out{b}"] = y
        return feats


class OfficialHead(nn.Cell):
    """The official head: one biased conv (1x1, or 3x3 padding 1) on the top branch; the backbone's stride."""

    def __init__(self, channels, num_joints, kernel=1):
        super().__init__()
        self.final_layer = conv2d(channels[0], num_joints, kernel, has_bias=True)

    def construct(self, ys, input_hw):
        return self.final_layer(ys[0])


class ConcatHead(nn.Cell):
    """Concat fusion: every branch resized (bilinear, align_corners=False) to the top one, concatenated, conv."""

    def __init__(self, channels, num_joints, kernel=1):
        super().__init__()
        self.final_layer = conv2d(sum(channels), num_joints, kernel, has_bias=True)

    def construct(self, ys, input_hw):
        size = (ys[0].shape[2], ys[0].shape[3])
        feats = [ys[0]] + [upsample_bilinear(y, size) for y in ys[1:]]
        return self.final_layer(ops.cat(feats, axis=1))


class FullResolutionHead(nn.Cell):
    """3x3 conv-BN-ReLU and a biased conv on the top branch, heatmaps resized (bilinear) to the input size."""

    def __init__(self, channels, num_joints, kernel=1, mid_channels=None):
        super().__init__()
        mid = mid_channels or channels[0]
        self.conv_layers = conv_bn_relu(channels[0], mid)
        self.final_layer = conv2d(mid, num_joints, kernel, has_bias=True)

    def construct(self, ys, input_hw):
        return upsample_bilinear(self.final_layer(self.conv_layers(ys[0])), input_hw)


def make_head(head, channels, num_joints):
    """The head of a validated config's ``head`` section, for backbone outputs of widths ``channels``."""
    kernel = head["final_conv_kernel"]
    if head["type"] == HEAD_OFFICIAL:
        return OfficialHead(channels, num_joints, kernel)
    if head["type"] == HEAD_CONCAT:
        return ConcatHead(channels, num_joints, kernel)
    if head["type"] == HEAD_FULL_RESOLUTION:
        return FullResolutionHead(channels, num_joints, kernel, head.get("channels"))
    raise ValueError(f"unknown head type {head['type']!r}")


class HRNetPoseNet(nn.Cell):
    """Top-down pose network: (N, C_in, H, W) images to (N, K, H/s, W/s) heatmaps, s = ``output_stride``.

    H and W must be multiples of ``input_multiple`` (2**(branches + 1)).
    """

    def __init__(self, config, num_joints=17, model_type=None):
        super().__init__()
        config = validate_hrnet_config(config)
        self.model_type = model_type
        self.config = config
        self.num_joints = num_joints
        self.family = config["family"]
        self.input_multiple = input_multiple(config)
        self.output_stride = output_stride(config)
        self.heatmap_sigma = config["head"]["sigma"]  # training targets' sigma (heatmap pixels); None: presets'
        self.n_channels_in = config["n_channels_in"]
        self.backbone = HRNet(config, multi_scale_output=config["head"]["type"] == HEAD_CONCAT)
        self.keypoint_head = make_head(config["head"], self.backbone.out_channels, num_joints)

    def construct(self, x):
        check_input_size(x.shape[2], x.shape[3], self.input_multiple, "this HRNet")
        return self.keypoint_head(self.backbone(x), (x.shape[2], x.shape[3]))
