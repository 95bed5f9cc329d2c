"""Parameters, multiply-accumulates and the official "FLOPs" of a Lite-HRNet, computed analytically.

The network is not run: the architecture config is walked the same way ``litehrnet.py`` builds
it (stem, transitions, modules with their fusion, iterative head, keypoint head), layer by layer,
tracking every tensor's (channels, height, width). Three numbers come out:

``params``
    Trainable parameters: conv weights (+ bias), BatchNorm gamma and beta. Equals
    ``sum(p.size for p in PoseNet(config, K).trainable_params())`` and the official PyTorch count.

``macs``
    True multiply-accumulates of every convolution (out elements x k*k*in/groups) for one image, with
    the fuse layers F_i0 (i >= 1) counted twice because the official (in-place) fusion runs them twice.
    Nothing else (BatchNorm, activations, resizes, pooling, additions) is counted. Reported in
    millions of 10**6 ("242.3M" for litehrnet_18 at 256x192).

``official_flops``
    What the official repository reports. Its ``tools/summary_network.py`` runs the torchstat copy
    vendored from Microsoft's tensorwatch, which wraps the ``__call__`` of every *leaf* ``nn.Module``
    and *assigns* (not adds) the value of each call, so a module run several times counts once, with
    the shape of its last call. The published "M" figures are that sum divided by 2**20. Per module:

    * Conv2d: out_h*out_w * k*k*in*(out/groups), plus out elements when it has a bias;
    * BatchNorm2d: 2 x input elements (affine);
    * ReLU: input elements;
    * Upsample (fuse layers j > i only): out_h*out_w -- torchstat reads ``out[0].shape[1:]``, the
      spatial size of the first sample, so the channels are not counted;
    * AdaptiveAvgPool2d (spatial weighting's global pool): c*(h+1)*(w+1), tensorwatch's rule with its +1;
    * Sigmoid, Identity: 0 (not in its table);
    * functional ops (F.interpolate, F.adaptive_avg_pool2d, cat, channel shuffle, mul, add): 0.

    Consequences of counting each module once: F_i0 counts once, and the one ReLU a LiteHRModule shares
    between its outputs counts once, with the elements of its last call (the lowest-resolution branch).

Units: ``official_flops_m`` = official_flops / 2**20 and ``macs_m`` = macs / 10**6.
All ten published figures (``PUBLISHED_FLOPS_M``) are reproduced to the printed digit.
"""
from .configs import canonical_model_type, get_config, validate_config
from .hrnet_config import (BLOCK_EXPANSION, HEAD_CONCAT, HEAD_FULL_RESOLUTION, branch_channels, input_multiple,
                           is_hrnet_config, validate_hrnet_config)
from .inputs import INPUT_MULTIPLE, check_input_size, parse_input_size


OFFICIAL_FLOPS_UNIT = 2 ** 20  # torchstat's "M" (binary, as the official repo prints it)
MACS_UNIT = 10 ** 6

# README / paper "FLOPs" in M (2**20), keyed by (model type, (H, W), joints): COCO 17, MPII 16 at 256x256.
# wider_naive on MPII: the README prints 418.7M, the counter gives 414.6M (taken as a slip there).
PUBLISHED_FLOPS_M = {
    ("litehrnet_18", (256, 192), 17): 205.2, ("litehrnet_18", (384, 288), 17): 461.6,
    ("litehrnet_18", (256, 256), 16): 273.4,
    ("litehrnet_30", (256, 192), 17): 319.2, ("litehrnet_30", (384, 288), 17): 717.8,
    ("litehrnet_30", (256, 256), 16): 425.3,
    ("naive_litehrnet_18", (256, 192), 17): 194.8, ("naive_litehrnet_18", (256, 256), 16): 259.6,
    ("wider_naive_litehrnet_18", (256, 192), 17): 311.1, ("wider_naive_litehrnet_18", (256, 256), 16): 414.6,
}
PUBLISHED_PARAMS = {"litehrnet_18": 1130769, "litehrnet_30": 1763717, "naive_litehrnet_18": 760365,
                    "wider_naive_litehrnet_18": 1318625}  # 17 joints; 16 joints: 41 fewer (naive: 31)


def _down(size):
    """Spatial size after a 3x3 convolution with stride 2 and padding 1."""
    return (size - 1) // 2 + 1


class _Walker:
    """Accumulates one record per official leaf module (and per functional op worth showing)."""

    def __init__(self):
        self.layers = []

    def _add(self, name, op, shape_in, shape_out, tensors=None, macs=0, flops=0, calls=1):
        tensors = tensors or {}
        self.layers.append(dict(name=name, op=op, in_shape=tuple(shape_in), out_shape=tuple(shape_out),
                                params=sum(tensors.values()), param_tensors=tensors,
                                macs=int(macs) * calls, official_flops=int(flops), calls=calls))
        return tuple(shape_out)

    # ---- leaf modules -------------------------------------------------------------------------
    def conv(self, name, shape, out_channels, kernel, stride=1, groups=1, bias=False, calls=1):
        c, h, w = shape
        if stride == 2:
            h, w = _down(h), _down(w)
        per_position = kernel * kernel * (c // groups) * out_channels
        macs = per_position * h * w
        flops = macs + (out_channels * h * w if bias else 0)
        tensors = {f"{name}.weight": kernel * kernel * (c // groups) * out_channels}
        if bias:
            tensors[f"{name}.bias"] = out_channels
        op = f"conv{kernel}x{kernel}" + ("/dw" if groups > 1 else "") + ("/s2" if stride == 2 else "")
        return self._add(name, op, shape, (out_channels, h, w), tensors, macs, flops, calls)

    def bn(self, name, shape, calls=1):
        c, h, w = shape
        return self._add(name, "batchnorm", shape, shape, {f"{name}.gamma": c, f"{name}.beta": c},
                         flops=2 * c * h * w, calls=calls)

    def relu(self, name, shape, calls=1, counted_shape=None):
        c, h, w = counted_shape or shape
        return self._add(name, "relu", shape, shape, flops=c * h * w, calls=calls)

    def sigmoid(self, name, shape):
        return self._add(name, "sigmoid", shape, shape)

    def upsample(self, name, shape, scale, calls=1):
        c, h, w = shape
        out = (c, h * scale, w * scale)
        return self._add(name, "upsample_nearest", shape, out, flops=out[1] * out[2], calls=calls)

    def adaptive_avgpool(self, name, shape):
        # tensorwatch's rule (credited to SDPoint): for each output cell, planes x (rows+1) x (cols+1)
        # of its input window; the +1 is theirs. Output 1x1: c * (h+1) * (w+1).
        c, h, w = shape
        return self._add(name, "adaptive_avgpool", shape, (c, 1, 1), flops=c * (h + 1) * (w + 1))

    def functional(self, name, op, shape_in, shape_out):
        """An op the official code calls functionally: no parameters, no MACs, not counted."""
        return self._add(name, op, shape_in, shape_out)

    # ---- composites as the official code builds them -------------------------------------------
    def conv_module(self, name, shape, out_channels, kernel, stride=1, groups=1, norm=True, act="relu"):
        shape = self.conv(f"{name}.conv", shape, out_channels, kernel, stride, groups, bias=not norm)
        if norm:
            shape = self.bn(f"{name}.bn", shape)
        if act == "relu":
            shape = self.relu(f"{name}.activate", shape)
        elif act == "sigmoid":
            shape = self.sigmoid(f"{name}.activate", shape)
        return shape

    def depthwise_pointwise(self, name, shape, out_channels, stride, final_relu=True, calls=1):
        c = shape[0]
        shape = self.conv(f"{name}.0", shape, c, 3, stride, groups=c, calls=calls)
        shape = self.bn(f"{name}.1", shape, calls=calls)
        shape = self.conv(f"{name}.2", shape, out_channels, 1, calls=calls)
        shape = self.bn(f"{name}.3", shape, calls=calls)
        if final_relu:
            shape = self.relu(f"{name}.4", shape, calls=calls)
        return shape


def _stem(wk, shape, stem_channels):
    half = stem_channels // 2
    shape = wk.conv_module("backbone.stem.conv1", shape, stem_channels, 3, stride=2)
    _, h, w = shape
    b1 = wk.conv_module("backbone.stem.branch1.0", (half, h, w), half, 3, stride=2, groups=half, act=None)
    b1 = wk.conv_module("backbone.stem.branch1.1", b1, half, 1)
    b2 = wk.conv_module("backbone.stem.expand_conv", (half, h, w), stem_channels, 1)
    b2 = wk.conv_module("backbone.stem.depthwise_conv", b2, stem_channels, 3, stride=2, groups=stem_channels,
                        act=None)
    b2 = wk.conv_module("backbone.stem.linear_conv", b2, half, 1)
    return (b1[0] + b2[0], b1[1], b1[2])


def _transition(wk, s, shapes, cur_channels):
    name = f"backbone.transitions.{s}"
    out = []
    for i, cur in enumerate(cur_channels):
        if i < len(shapes):
            if cur == shapes[i][0]:
                out.append(shapes[i])
            else:
                out.append(wk.depthwise_pointwise(f"{name}.{i}", shapes[i], cur, 1))
        else:
            steps = i + 1 - len(shapes)
            shape = shapes[-1]
            src = shape[0]
            for k in range(steps):
                shape = wk.depthwise_pointwise(f"{name}.{i}.{k}", shape, cur if k == steps - 1 else src, 2)
            out.append(shape)
    return out


def _cross_resolution_weighting(wk, name, shapes, reduce_ratio):
    mini = shapes[-1][1:]
    total = sum(c for c, _, _ in shapes)
    for b, shape in enumerate(shapes[:-1]):
        wk.functional(f"{name}.pool{b}", "adaptive_avg_pool2d (functional)", shape, (shape[0],) + mini)
    shape = (total,) + mini
    shape = wk.conv_module(f"{name}.conv1", shape, int(total / reduce_ratio), 1, act="relu")
    wk.conv_module(f"{name}.conv2", shape, total, 1, act="sigmoid")
    for b, shape in enumerate(shapes):
        wk.functional(f"{name}.resize{b}", "interpolate nearest (functional)", (shape[0],) + mini, shape)
    return shapes


def _spatial_weighting(wk, name, shape, ratio=4):
    c = shape[0]
    pooled = wk.adaptive_avgpool(f"{name}.global_avgpool", shape)
    pooled = wk.conv_module(f"{name}.conv1", pooled, int(c / ratio), 1, norm=False, act="relu")
    wk.conv_module(f"{name}.conv2", pooled, c, 1, norm=False, act="sigmoid")
    return shape


def _conditional_channel_weighting(wk, name, shapes, reduce_ratio):
    halves = [(c // 2, h, w) for c, h, w in shapes]
    halves = _cross_resolution_weighting(wk, f"{name}.cross_resolution_weighting", halves, reduce_ratio)
    for b, shape in enumerate(halves):
        shape = wk.conv_module(f"{name}.depthwise_convs.{b}", shape, shape[0], 3, groups=shape[0], act=None)
        _spatial_weighting(wk, f"{name}.spatial_weighting.{b}", shape)
    return shapes


def _shuffle_unit(wk, name, shape):
    c, h, w = shape
    half = (c // 2, h, w)
    half = wk.conv_module(f"{name}.branch2.0", half, c // 2, 1)
    half = wk.conv_module(f"{name}.branch2.1", half, c // 2, 3, groups=c // 2, act=None)
    wk.conv_module(f"{name}.branch2.2", half, c // 2, 1)
    return shape


def _fusion(wk, name, shapes):
    """Fuse layers F_ij; F_i0 (i >= 1) runs twice in the official in-place fusion."""
    n = len(shapes)
    for i in range(n):
        for j in range(n):
            fname = f"{name}.fuse_layers.{i}.{j}"
            calls = 2 if (j == 0 and i >= 1) else 1
            if j > i:
                shape = wk.conv(f"{fname}.0", shapes[j], shapes[i][0], 1)
                shape = wk.bn(f"{fname}.1", shape)
                wk.upsample(f"{fname}.2", shape, 2 ** (j - i))
            elif j < i:
                shape = shapes[j]
                steps = i - j
                for k in range(steps):
                    last = k == steps - 1
                    shape = wk.depthwise_pointwise(f"{fname}.{k}", shape, shapes[i][0] if last else shape[0], 2,
                                                   final_relu=not last, calls=calls)
    # One ReLU module serves every output; counted once, with the shape of its last call (branch n-1).
    for i in range(n):
        wk.relu(f"{name}.relu[{i}]", shapes[i], counted_shape=shapes[i] if i == n - 1 else (0, 0, 0))
    return shapes


def _module(wk, name, shapes, stage):
    if stage["module_type"] == "naive":
        for b, shape in enumerate(shapes):
            for k in range(stage["num_blocks"]):
                _shuffle_unit(wk, f"{name}.layers.{b}.{k}", shape)
    else:
        for k in range(stage["num_blocks"]):
            _conditional_channel_weighting(wk, f"{name}.layers.{k}", shapes, stage.get("reduce_ratio", 8))
    return _fusion(wk, name, shapes)


def _iterative_head(wk, shapes):
    rev = shapes[::-1]
    outs = [s[0] for s in rev[1:]] + [rev[-1][0]]
    last = None
    out = []
    for i, shape in enumerate(rev):
        name = f"backbone.head_layer.projects.{i}"
        if last is not None:
            wk.functional(f"backbone.head_layer.resize{i}", "interpolate bilinear (functional)", last,
                          (last[0],) + shape[1:])
        shape = wk.conv_module(f"{name}.depthwise_conv", shape, shape[0], 3, groups=shape[0], act=None)
        last = wk.conv_module(f"{name}.pointwise_conv", shape, outs[i], 1)
        out.append(last)
    return out[::-1]


def _resolve_config(model_type_or_config):
    if isinstance(model_type_or_config, dict):
        return validate_config(model_type_or_config), None
    name = canonical_model_type(model_type_or_config)
    return get_config(name), name


def parse_input_hw(input_hw, multiple=INPUT_MULTIPLE, model="Lite-HRNet"):
    """(H, W) from a pair or a 'HxW' string, checked against the network's input-size rule (``multiple``)."""
    h, w = parse_input_size(input_hw)
    check_input_size(h, w, multiple, model)
    return h, w


def model_complexity(model_type_or_config, input_hw=(256, 192), num_joints=17, per_layer=False):
    """Analytic complexity of ``PoseNet(config, num_joints)`` for one image of size ``input_hw``.

    ``model_type_or_config`` is a model type (aliases accepted) or an architecture config dict.
    Returns ``dict(model_type, input_hw, num_joints, params, macs, macs_m, official_flops,
    official_flops_m, per_layer)``; ``per_layer`` is the list of layer records (name, op, in_shape,
    out_shape, params, macs, official_flops, calls) when asked for, else None.
    """
    config, name = _resolve_config(model_type_or_config)
    if int(num_joints) < 1:
        raise ValueError(f"num_joints must be >= 1, got {num_joints}")
    if is_hrnet_config(config):
        return _hrnet_complexity(config, name, input_hw, int(num_joints), per_layer)
    h, w = parse_input_hw(input_hw)
    wk = _Walker()
    shapes = [_stem(wk, (3, h, w), config["stem_channels"])]
    for s, stage in enumerate(config["stages"]):
        shapes = _transition(wk, s, shapes, stage["num_channels"])
        for m in range(stage["num_modules"]):
            shapes = _module(wk, f"backbone.stages.{s}.{m}", shapes, stage)
    top = _iterative_head(wk, shapes)[0]
    wk.conv("keypoint_head.final_layer", top, int(num_joints), 1, bias=True)

    params = sum(r["params"] for r in wk.layers)
    macs = sum(r["macs"] for r in wk.layers)
    flops = sum(r["official_flops"] for r in wk.layers)
    return dict(model_type=name, input_hw=(h, w), num_joints=int(num_joints), params=params, macs=macs,
                macs_m=macs / MACS_UNIT, official_flops=flops, official_flops_m=flops / OFFICIAL_FLOPS_UNIT,
                per_layer=wk.layers if per_layer else None)


def analytic_param_sizes(model_type_or_config, num_joints=17):
    """``{parameter name: number of elements}`` as PoseNet names its trainable parameters."""
    result = model_complexity(model_type_or_config, (256, 192), num_joints, per_layer=True)
    sizes = {}
    for record in result["per_layer"]:
        sizes.update(record["param_tensors"])
    return sizes


def real_param_sizes(model_type_or_config, num_joints=17):
    """``{parameter name: number of elements}`` of a freshly built ``PoseNet`` (needs MindSpore).

    Builds in PYNATIVE mode (a few seconds per model); the execution mode is left as it was found.
    """
    import mindspore

    from .hrnet import HRNetPoseNet
    from .litehrnet import PoseNet

    config, name = _resolve_config(model_type_or_config)
    mode = mindspore.get_context("mode")
    mindspore.set_context(mode=mindspore.PYNATIVE_MODE)
    try:
        net = (HRNetPoseNet if is_hrnet_config(config) else PoseNet)(config, int(num_joints), model_type=name)
        return {p.name: int(p.size) for p in net.trainable_params()}
    finally:
        mindspore.set_context(mode=mode)


def verify_params(model_type_or_config, num_joints=17):
    """Compare the analytic parameter count with a built PoseNet, tensor by tensor.

    Returns ``dict(analytic, real, ok, mismatches)``; ``mismatches`` lists names whose size differs
    or that only one side has.
    """
    analytic = analytic_param_sizes(model_type_or_config, num_joints)
    real = real_param_sizes(model_type_or_config, num_joints)
    mismatches = sorted(k for k in set(analytic) | set(real) if analytic.get(k) != real.get(k))
    a, r = sum(analytic.values()), sum(real.values())
    return dict(analytic=a, real=r, ok=(a == r and not mismatches), mismatches=mismatches)


# ---- HRNet (official pose HRNet, light_hrnet, custom HRNet configs) ---------------------------------
# The official counter (lib/utils/utils.py get_model_summary) counts prod(weight.shape) * output pixels
# per convolution: the true MACs without bias, BN, ReLU or upsampling. The official README's "GFLOPs"
# are these MACs / 2**30, so for HRNet ``official_flops`` = ``macs``.

PUBLISHED_HRNET_GFLOPS = {  # official README "GFLOPs" (2**30 MACs), COCO 17 joints
    ("hrnet_w32", (256, 192), 17): 7.1, ("hrnet_w32", (384, 288), 17): 16.0,
    ("hrnet_w48", (256, 192), 17): 14.6, ("hrnet_w48", (384, 288), 17): 32.9,
}
PUBLISHED_HRNET_PARAMS = {("hrnet_w32", 17): 28_536_113, ("hrnet_w48", 17): 63_595_745, ("hrnet_w32", 16): 28_536_080,
                          ("hrnet_w48", 16): 63_595_696}
GFLOPS_UNIT = 2 ** 30


def _hr_conv_bn(wk, name, shape, out_channels, kernel=3, stride=1, relu=True, conv="0", bn="1"):
    shape = wk.conv(f"{name}.{conv}", shape, out_channels, kernel, stride)
    shape = wk.bn(f"{name}.{bn}", shape)
    if relu:
        wk.relu(f"{name}.relu", shape)
    return shape


def _hr_block(wk, name, shape, block, planes):
    out = planes * BLOCK_EXPANSION[block]
    if shape[0] != out:
        _hr_conv_bn(wk, f"{name}.downsample", shape, out, 1, relu=False)
    x = _hr_conv_bn(wk, name, shape, planes, 1 if block == "bottleneck" else 3, conv="conv1", bn="bn1")
    x = _hr_conv_bn(wk, name, x, planes if block == "bottleneck" else out, 3, conv="conv2", bn="bn2",
                    relu=block == "bottleneck")
    if block == "bottleneck":
        x = _hr_conv_bn(wk, name, x, out, 1, conv="conv3", bn="bn3", relu=False)
    return wk.relu(f"{name}.relu", x)


def _hr_module(wk, name, shapes, stage, outputs):
    expansion = BLOCK_EXPANSION[stage["block"]]
    shapes = list(shapes)
    for b, n in enumerate(stage["num_blocks"]):
        for k in range(n):
            shapes[b] = _hr_block(wk, f"{name}.branches.{b}.{k}", shapes[b], stage["block"], shapes[b][0] // expansion)
    if len(shapes) == 1:
        return shapes
    for i in range(outputs):
        for j in range(len(shapes)):
            fname = f"{name}.fuse_layers.{i}.{j}"
            if j > i:
                up = _hr_conv_bn(wk, fname, shapes[j], shapes[i][0], 1, relu=False)
                wk.upsample(f"{fname}.upsample", up, 2 ** (j - i))
            elif j < i:
                shape = shapes[j]
                for k in range(i - j):
                    last = k == i - j - 1
                    shape = _hr_conv_bn(wk, f"{fname}.{k}", shape, shapes[i][0] if last else shape[0], 3, 2,
                                        relu=not last)
        wk.relu(f"{name}.relu[{i}]", shapes[i])
    return shapes[:outputs]


def _hr_transition(wk, name, shapes, widths):
    out = []
    for i, cur in enumerate(widths):
        if i < len(shapes):
            out.append(shapes[i] if cur == shapes[i][0] else _hr_conv_bn(wk, f"{name}.{i}", shapes[i], cur))
        else:
            shape = shapes[-1]
            steps = i + 1 - len(shapes)
            for k in range(steps):
                shape = _hr_conv_bn(wk, f"{name}.{i}.{k}", shape, cur if k == steps - 1 else shape[0], 3, 2)
            out.append(shape)
    return out


def _hrnet_complexity(config, name, input_hw, num_joints, per_layer):
    """model_complexity for an HRNet config: walks HRNetPoseNet's layers with their parameter names."""
    config = validate_hrnet_config(config)
    h, w = parse_input_hw(input_hw, input_multiple(config), "this HRNet")
    wk = _Walker()
    stem = config["stem_channels"]
    shape = _hr_conv_bn(wk, "backbone", (config["n_channels_in"], h, w), stem, 3, 2, conv="conv1", bn="bn1")
    if config["stem_convs"] == 2:
        shape = _hr_conv_bn(wk, "backbone", shape, stem, 3, 2, conv="conv2", bn="bn2")
    first = config["stages"][0]
    for k in range(first["num_blocks"][0]):
        shape = _hr_block(wk, f"backbone.layer1.{k}", shape, first["block"], first["num_channels"][0])
    shapes = [shape]
    head = config["head"]
    widths = branch_channels(config)
    for s, stage in enumerate(config["stages"][1:], start=2):
        shapes = _hr_transition(wk, f"backbone.transition{s - 1}", shapes, widths[s - 1])
        for m in range(stage["num_modules"]):
            last = s == len(config["stages"]) and m == stage["num_modules"] - 1
            outputs = 1 if last and head["type"] != HEAD_CONCAT else len(shapes)
            shapes = _hr_module(wk, f"backbone.stage{s}.{m}", shapes, stage, outputs)
    kernel = head["final_conv_kernel"]
    if head["type"] == HEAD_CONCAT:
        top = (sum(c for c, _, _ in shapes),) + shapes[0][1:]
        wk.conv("keypoint_head.final_layer", top, num_joints, kernel, bias=True)
    elif head["type"] == HEAD_FULL_RESOLUTION:
        top = _hr_conv_bn(wk, "keypoint_head.conv_layers", shapes[0], head.get("channels") or shapes[0][0])
        wk.conv("keypoint_head.final_layer", top, num_joints, kernel, bias=True)
    else:
        wk.conv("keypoint_head.final_layer", shapes[0], num_joints, kernel, bias=True)
    params = sum(r["params"] for r in wk.layers)
    macs = sum(r["macs"] for r in wk.layers)
    return dict(model_type=name, input_hw=(h, w), num_joints=num_joints, params=params, macs=macs,
                macs_m=macs / MACS_UNIT, official_flops=macs, official_flops_m=macs / OFFICIAL_FLOPS_UNIT,
                per_layer=wk.layers if per_layer else None)
