"""Tensor-name schemes of every supported checkpoint, converted to this project's names.

This project names each tensor by its true module path (``backbone.stages.0.0.layers...``,
BatchNorm ``gamma``/``beta``/``moving_mean``/``moving_variance``). Files come in these
schemes, recognised by their keys, never by file name:

- ``project``: this project's own names;
- ``official``: the official PyTorch / mmpose state dict (``backbone.stage0.0...``,
  BatchNorm ``weight``/``bias``/``running_mean``/``running_var``);
- ``seed``: the earlier MindSpore port, either its bare-network files whose stage and
  transition names are mangled (``0.0.layers...``) or its training files (``net.<path>``
  plus Adam state).
Optimizer state and counters found beside the weights are set aside, never loaded.
"""
import re

OPTIMIZER_PREFIXES = ("moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "optimizer.")
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
    weights, other = split_training_state(_strip_wrappers(dict(tensors)))
    scheme = detect_scheme(weights)
    if scheme == "seed-train":
        weights = {seed_path_to_project(k[len("net."):]): v for k, v in weights.items()}
    elif scheme == "seed":
        weights = {seed_path_to_project(demangle_seed_name(k)): v for k, v in weights.items()}
    elif scheme == "official":
        weights = official_to_project(weights)
    return weights, scheme, other
