"""Tensor-name schemes of every supported checkpoint, converted to this project's names.

This project names each tensor by its true module path (``backbone.stages.0.0.layers...``,
BatchNorm ``gamma``/``beta``/``moving_mean``/``moving_variance``). Files come in these
schemes, recognised by their keys, never by file name:

- ``project``: this project's own names;
- ``official``: the official PyTorch / mmpose state dict (``backbone.stage0.0...``,
  BatchNorm ``weight``/``bias``/``running_mean``/``running_var``);
- ``seed``: the earlier MindSpore port, either its bare-network files whose stage and
  transition names are mangled (``0.0.layers...``) or its training files (``net.<path>``
  plus Adam state);
- ``hrnet-*``: the pose HRNet (Sun et al. 2019) and its ImageNet classification version, told
  apart from Lite-HRNet by HRNet's hard-coded stage 1 ``layer1`` (see ``hrnet_to_project``).
Optimizer state and counters found beside the weights are set aside, never loaded.
"""
import re

OPTIMIZER_PREFIXES = ("moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "optimizer.",
                      "moments.")  # the last: the state of MindSpore's Momentum (SGD) optimizer
OPTIMIZER_KEYS = {"global_step", "learning_rate", "beta1_power", "beta2_power", "epoch_num", "step_num",
                  "current_iterator_step", "last_overflow_iterator_step", "loss_scale", "scale_sense"}
_TRAINING_STATE_PREFIX = "train_state."

_BN_OFFICIAL = {"weight": "gamma", "bias": "beta", "running_mean": "moving_mean", "running_var": "moving_variance"}

# The earlier port wrapped each conv+BN pair in a SequentialCell (".0" conv, ".1" BN) where
# the official code and this project have ConvModule's ".conv" / ".bn".
_SEED_CONVMODULE = re.compile(
    r"(\.(?:conv1|conv2|expand_conv|depthwise_conv|linear_conv)|\.depthwise_convs\.\d+)\.([01])\.")
# Its naive unit's branch2 is one flat sequence: conv, BN, ReLU, dw conv, BN, conv, BN, ReLU.
_SEED_NAIVE_BRANCH2 = re.compile(r"\.branch2\.([0-7])\.")
_SEED_NAIVE_INDEX = {0: "0.conv", 1: "0.bn", 3: "1.conv", 4: "1.bn", 5: "2.conv", 6: "2.bn"}
_SEED_STEM_BRANCH1 = re.compile(r"^stem\.branch1\.([0-3])\.")
_SEED_HEAD_PROJECT = re.compile(r"^head_layer\.projects\.(\d+)\.([0-3])\.")
_SEED_PAIR = ("depthwise_conv.conv", "depthwise_conv.bn", "pointwise_conv.conv", "pointwise_conv.bn")


def is_training_state_key(key):
    """Keys that hold optimizer state or counters rather than network weights."""
    return key in OPTIMIZER_KEYS or key.startswith(OPTIMIZER_PREFIXES) or key.startswith(_TRAINING_STATE_PREFIX)


def split_training_state(tensors):
    """Separate network tensors from optimizer state / counters: (weights, other)."""
    weights, other = {}, {}
    for k, v in tensors.items():
        (other if is_training_state_key(k) else weights)[k] = v
    return weights, other


def detect_scheme(keys):
    """Name the key scheme of a set of (network) tensor names."""
    keys = list(keys)
    if any(k.startswith("net.") for k in keys):
        return "seed-train"
    if any(k.startswith(("heat_map.", "stem.")) for k in keys) or any(re.match(r"^\d+\.", k) for k in keys):
        return "seed"
    if any(k.endswith(".running_mean") or ".stage0." in k or ".transition0." in k for k in keys):
        return "official"
    return "project"


def demangle_seed_name(name):
    """Undo the earlier port's mangled stage/transition names (see ../shared/spec/checkpoints.md).

    stages.0.m -> '0.m.'; stages.s.m (s >= 1) -> '0.0.layers.0.<first sub-cell>.s.m.';
    transitions.0.i -> '0.i.'; transitions.s.i (s >= 1) -> '0.0.s.i.'.
    """
    m = re.match(r"^0\.0\.layers\.0\.(?:cross_resolution_weighting\.conv1|0\.branch2)\.(\d+)\.(\d+)\.(.*)$", name)
    if m:
        return f"stages.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.match(r"^0\.0\.(\d+)\.(\d+)\.(\d+\..*)$", name)
    if m:  # a later transition's new branch: 0.0.<s>.<i>.<step>.<idx>.<leaf>
        return f"transitions.{m.group(1)}.{m.group(2)}.{m.group(3)}"
    m = re.match(r"^0\.(\d+)\.((?:layers|fuse_layers)\..*)$", name)
    if m:
        return f"stages.0.{m.group(1)}.{m.group(2)}"
    m = re.match(r"^0\.(\d+\..*)$", name)
    if m:
        return f"transitions.0.{m.group(1)}"
    return name


def seed_path_to_project(path):
    """Map one tensor of the earlier port (true module path) to this project's name."""
    if path.startswith("heat_map."):
        return "keypoint_head." + path[len("heat_map."):]
    m = _SEED_STEM_BRANCH1.match(path)
    if m:
        i = int(m.group(1))
        return f"backbone.stem.branch1.{i // 2}.{'conv' if i % 2 == 0 else 'bn'}." + path[m.end():]
    m = _SEED_HEAD_PROJECT.match(path)
    if m:
        return f"backbone.head_layer.projects.{m.group(1)}.{_SEED_PAIR[int(m.group(2))]}." + path[m.end():]
    path = _SEED_NAIVE_BRANCH2.sub(lambda g: f".branch2.{_SEED_NAIVE_INDEX.get(int(g.group(1)), g.group(1))}.", path)
    path = _SEED_CONVMODULE.sub(lambda g: f"{g.group(1)}.{'conv' if g.group(2) == '0' else 'bn'}.", path)
    return "backbone." + path


def official_to_project(state, bn_prefixes=None):
    """Map an official PyTorch/mmpose state dict to this project's names (num_batches_tracked dropped).

    BatchNorm layers are recognised by their running_mean; pass ``bn_prefixes`` for partial
    dicts without one (e.g. gradients).
    """
    if bn_prefixes is None:
        bn_prefixes = {k[: -len(".running_mean")] for k in state if k.endswith(".running_mean")}
    out = {}
    for key, value in state.items():
        if key.endswith(".num_batches_tracked"):
            continue
        prefix, leaf = key.rsplit(".", 1)
        if prefix in bn_prefixes:
            leaf = _BN_OFFICIAL.get(leaf, leaf)
        prefix = re.sub(r"^backbone\.stage(\d+)\.", r"backbone.stages.\1.", prefix)
        prefix = re.sub(r"^backbone\.transition(\d+)\.", r"backbone.transitions.\1.", prefix)
        out[f"{prefix}.{leaf}"] = value
    return out


def _strip_wrappers(tensors):
    """Drop a DataParallel ``module.`` prefix shared by every key."""
    if tensors and all(k.startswith("module.") for k in tensors):
        return {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def to_project_names(tensors):
    """Convert any supported scheme to this project's names.

    Returns (weights, scheme, training_state) where training_state holds whatever
    optimizer state / counters the file carried beside the weights.
    """
    if is_hrnet(tensors):
        weights, scheme, other, classification_only = hrnet_to_project(tensors)
        # a classification file's own head is kept under its names: a strict load then names it
        weights.update(classification_only)
        return weights, scheme, other
    weights, other = split_training_state(_strip_wrappers(dict(tensors)))
    scheme = detect_scheme(weights)
    if scheme == "seed-train":
        weights = {seed_path_to_project(k[len("net."):]): v for k, v in weights.items()}
    elif scheme == "seed":
        weights = {seed_path_to_project(demangle_seed_name(k)): v for k, v in weights.items()}
    elif scheme == "official":
        weights = official_to_project(weights)
    return weights, scheme, other


# HRNet. The project's network names each tensor ``backbone.`` + the official PyTorch pose key, with
# BatchNorm leaves in MindSpore's names (num_batches_tracked dropped), and its head
# ``keypoint_head.final_layer.{weight,bias}``. The files in circulation (../shared/spec/hrnet_checkpoints.md):
#   official pose_hrnet_*.pth, simple-HRNet     conv1.weight ... final_layer.weight      (torch BN names)
#   official training checkpoint.pth            module.<official key>  (its 'state_dict')
#   mmpose 0.x                                  backbone.<official key>, keypoint_head.final_layer.*
#   mmpose 1.x                                  backbone.<official key>, head.final_layer.*
#   this project's .ckpt                        the project names
#   ImageNet classification (official, timm)    official keys + incre_modules, downsamp_modules, final_layer.0/1,
#                                               classifier, and all fuse rows of stage4's last module
#   mindcv classification .ckpt                 the same with MindSpore BN names, down_sample, downsample_modules
HRNET_BACKBONE_ROOTS = ("conv1", "bn1", "conv2", "bn2", "layer1", "transition1", "transition2", "transition3",
                        "stage2", "stage3", "stage4")  # the official PRETRAINED_LAYERS
_HRNET_CLS_ROOTS = ("incre_modules", "downsamp_modules", "downsample_modules", "final_layer", "classifier")
_HRNET_HEADS = ("", "keypoint_head.", "head.")  # official / simple-HRNet, mmpose 0.x, mmpose 1.x
_HRNET_MARK = re.compile(r"^(?:module\.)?(?:backbone\.)?layer1\.")
_NOT_WEIGHTS_PREFIXES = ("data_preprocessor.",)  # mmpose 1.x normalisation buffers, not network weights


def is_hrnet(keys):
    """True for HRNet files of any scheme: HRNet's stage 1 is ``layer1`` (Lite-HRNet has no such module)."""
    return any(_HRNET_MARK.match(k) for k in keys)


def _stage4_last_module(keys):
    found = [int(m.group(1)) for m in (re.match(r"^stage4\.(\d+)\.", k) for k in keys) if m]
    return max(found) if found else None


def hrnet_to_project(tensors):
    """Map an HRNet state dict of any scheme to the project names.

    Returns (weights, scheme, training_state, classification_only). ``classification_only`` holds, under
    their original names, the tensors of an ImageNet file's classification parts (incre/downsample modules, its
    ``final_layer.0/1``, ``classifier``, and the fuse rows 1-3 of stage 4's last module, which the pose
    model does not build); they are not in ``weights``. Keys of no known part are kept unchanged, so that
    a strict load names them. scheme is ``hrnet-official``, ``hrnet-official-train`` (``module.`` prefix),
    ``hrnet-mmpose0``, ``hrnet-mmpose1``, ``hrnet-imagenet``, ``hrnet-mindspore`` (MindSpore BN names
    without a prefix) or ``project``.
    """
    wrapped = bool(tensors) and all(k.startswith("module.") for k in tensors)
    state, other = split_training_state(_strip_wrappers(dict(tensors)))
    other.update({k: state.pop(k) for k in [k for k in state if k.startswith(_NOT_WEIGHTS_PREFIXES)]})
    prefixed = any(k.startswith("backbone.") for k in state)
    bodies = {k: k[len("backbone."):] if prefixed and k.startswith("backbone.") else k for k in state}
    torch_bn = {b[: -len(".running_mean")] for b in bodies.values() if b.endswith(".running_mean")}
    last = _stage4_last_module(bodies.values())
    weights, heads, classification_only = {}, set(), {}
    for key, value in state.items():
        head = next((p for p in _HRNET_HEADS if key in (p + "final_layer.weight", p + "final_layer.bias")), None)
        if head is not None:
            heads.add(head)
            weights["keypoint_head." + key[len(head):]] = value
            continue
        body = bodies[key]
        root = body.split(".", 1)[0]
        if root in _HRNET_CLS_ROOTS or (last is not None and re.match(rf"^stage4\.{last}\.fuse_layers\.[1-9]", body)):
            classification_only[key] = value
            continue
        if root not in HRNET_BACKBONE_ROOTS:
            weights[key] = value  # unknown: left for the strict loader to report
            continue
        if body.endswith(".num_batches_tracked"):
            continue
        module, leaf = body.rsplit(".", 1)
        if module in torch_bn:
            leaf = _BN_OFFICIAL.get(leaf, leaf)
        module = re.sub(r"\.down_sample(?=\.)", ".downsample", module)  # mindcv's Bottleneck shortcut
        weights[f"backbone.{module}.{leaf}"] = value
    if classification_only:
        scheme = "hrnet-imagenet"
    elif wrapped and not prefixed:
        scheme = "hrnet-official-train"
    elif "head." in heads:
        scheme = "hrnet-mmpose1"
    elif prefixed:  # torch BatchNorm names: mmpose 0.x; MindSpore ones: this project's own file
        scheme = "hrnet-mmpose0" if torch_bn else "project"
    else:
        scheme = "hrnet-official" if torch_bn else "hrnet-mindspore"
    return weights, scheme, other, classification_only
