"""HRNet architectures as data (the second model family), in the scheme of Lite-HRNet's configs.

A config is a dict (or a .json/.yaml file holding one)::

    family: hrnet
    n_channels_in: 3          # image channels (1 for grayscale X-rays)
    stem_channels: 64         # width of the stem convolutions
    stem_convs: 2             # stride-2 3x3 conv + BN + ReLU, once (light) or twice (official)
    stages:                   # stage 1 is a single plain sequence of blocks (``layer1``)
      - {num_modules: 1, num_branches: 1, num_blocks: 4, num_channels: [64], block: bottleneck}
      - {num_modules: 1, num_branches: 2, num_blocks: 4, num_channels: [32, 64], block: basic}
      ...
    head: {type: official}    # official (1x1 conv) | concat (all branches, bilinear) | full_resolution

``num_blocks`` is an int (the same for every branch) or one entry per branch. In stage 1
``num_channels`` are the block's planes: a Bottleneck widens them 4x (64 -> 256), as in the official
code. Every later stage adds at most the branches its transition creates; a stage's widths are its
branches' widths. The head section may carry ``sigma`` (the heatmap Gaussian's sigma for training
targets; ``None`` leaves it to the training preset), ``final_conv_kernel`` (1 or 3) and, for the
full-resolution head, ``channels`` (its 3x3 conv's width; default the top branch's).

``light_hrnet`` is a generated config: :func:`light_hrnet_config` (n_channels, num_stages,
num_branches, num_blocks). Pure Python: no MindSpore here.
"""
import copy

FAMILY = "hrnet"
BASIC = "basic"
BOTTLENECK = "bottleneck"
BLOCK_EXPANSION = {BASIC: 1, BOTTLENECK: 4}
HEAD_OFFICIAL = "official"
HEAD_CONCAT = "concat"
HEAD_FULL_RESOLUTION = "full_resolution"
HEAD_TYPES = (HEAD_OFFICIAL, HEAD_CONCAT, HEAD_FULL_RESOLUTION)
MAX_STAGES = 4  # layer1 + stage2..stage4, the official layout (names transitionK / stageK+1)

LIGHT_DEFAULTS = dict(n_channels=32, num_stages=2, num_branches=2, num_blocks=2)
LIGHT_RANGES = dict(num_stages=(2, 3), num_branches=(2, 4))


class HRNetConfigError(ValueError):
    """An invalid HRNet architecture config (the message names the stage and the field)."""


def _official(width):
    """The official pose HRNet-W<width> (Sun et al. 2019; experiments/coco/hrnet/w32_256x192...yaml)."""
    widths = [width * 2 ** i for i in range(4)]
    stages = [dict(num_modules=1, num_branches=1, num_blocks=4, num_channels=[64], block=BOTTLENECK)]
    for branches, modules in ((2, 1), (3, 4), (4, 3)):
        stages.append(dict(num_modules=modules, num_branches=branches, num_blocks=4,
                           num_channels=widths[:branches], block=BASIC))
    return dict(family=FAMILY, n_channels_in=3, stem_channels=64, stem_convs=2, stages=stages,
                head=dict(type=HEAD_OFFICIAL, final_conv_kernel=1, sigma=None))


def light_hrnet_config(n_channels=32, num_stages=2, num_branches=2, num_blocks=2, n_channels_in=3):
    """The small configurable HRNet: one stride-2 stem conv, BasicBlocks, concat-fusion head.

    Stage 1 is one branch of ``num_blocks`` BasicBlocks; each of the ``num_stages - 1`` later stages
    adds one lower-resolution branch until there are ``num_branches``; branch i is
    ``n_channels * 2**i`` wide. Ranges: num_stages 2-3, num_branches 2-4 and at most num_stages.
    """
    values = dict(n_channels=n_channels, num_stages=num_stages, num_branches=num_branches, num_blocks=num_blocks,
                  n_channels_in=n_channels_in)
    for field, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise HRNetConfigError(f"light_hrnet: {field} must be an int >= 1, got {value!r}")
    for field, (lo, hi) in LIGHT_RANGES.items():
        if not lo <= values[field] <= hi:
            raise HRNetConfigError(f"light_hrnet: {field} must be {lo}-{hi}, got {values[field]}")
    if num_branches > num_stages:
        raise HRNetConfigError(f"light_hrnet: num_branches ({num_branches}) must be at most num_stages "
                               f"({num_stages}): stage 1 has one branch and each later stage adds one")
    stages = [dict(num_modules=1, num_branches=1, num_blocks=num_blocks, num_channels=[n_channels], block=BASIC)]
    for s in range(1, num_stages):
        b = min(s + 1, num_branches)
        stages.append(dict(num_modules=1, num_branches=b, num_blocks=num_blocks,
                           num_channels=[n_channels * 2 ** i for i in range(b)], block=BASIC))
    return dict(family=FAMILY, n_channels_in=n_channels_in, stem_channels=n_channels, stem_convs=1, stages=stages,
                head=dict(type=HEAD_CONCAT, final_conv_kernel=1, sigma=None))


LIGHT_FIELDS = tuple(LIGHT_DEFAULTS)


def is_hrnet_config(config):
    return isinstance(config, dict) and config.get("family") == FAMILY


def _positive_int(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _stage_out_channels(stage):
    """Widths of the branches a stage outputs (stage 1's blocks expand their planes)."""
    return [c * BLOCK_EXPANSION[stage["block"]] for c in stage["num_channels"]]


def validate_hrnet_config(config):
    """Check a (possibly user-written) HRNet config; return a normalised deep copy.

    Normalised: every stage has ``num_blocks`` as one int per branch and a ``block``; the head
    section has ``type``, ``final_conv_kernel`` and ``sigma``.
    """
    if not is_hrnet_config(config):
        raise HRNetConfigError(f"an HRNet config is a dict with family '{FAMILY}', 'stem_channels' and 'stages'")
    cfg = copy.deepcopy(config)
    cfg.setdefault("n_channels_in", 3)
    cfg.setdefault("stem_channels", 64)
    cfg.setdefault("stem_convs", 2)
    for field in ("n_channels_in", "stem_channels"):
        if not _positive_int(cfg[field]):
            raise HRNetConfigError(f"{field} must be an int >= 1, got {cfg[field]!r}")
    if cfg["stem_convs"] not in (1, 2):
        raise HRNetConfigError(f"stem_convs must be 1 or 2 (stride-2 3x3 convs), got {cfg['stem_convs']!r}")
    stages = cfg.get("stages")
    if not isinstance(stages, list) or not 1 <= len(stages) <= MAX_STAGES:
        raise HRNetConfigError(f"stages must be a list of 1 to {MAX_STAGES} stages")
    prev = 1
    for s, stage in enumerate(stages, start=1):
        if not isinstance(stage, dict):
            raise HRNetConfigError(f"stage {s}: must be a mapping of num_modules, num_branches, ...")
        stage.setdefault("block", BASIC if s > 1 else BOTTLENECK)
        missing = [k for k in ("num_modules", "num_branches", "num_blocks", "num_channels") if k not in stage]
        if missing:
            raise HRNetConfigError(f"stage {s} lacks {', '.join(missing)}")
        if stage["block"] not in BLOCK_EXPANSION:
            raise HRNetConfigError(f"stage {s}: block must be one of {tuple(BLOCK_EXPANSION)}, got {stage['block']!r}")
        nb = stage["num_branches"]
        if not _positive_int(nb):
            raise HRNetConfigError(f"stage {s}: num_branches must be an int >= 1, got {nb!r}")
        if s == 1 and nb != 1:
            raise HRNetConfigError(f"stage 1: num_branches must be 1 (stage 1 is one sequence of blocks), got {nb}")
        if s > 1 and not prev <= nb:
            raise HRNetConfigError(f"stage {s}: num_branches ({nb}) must not be fewer than stage {s - 1}'s ({prev})")
        if not _positive_int(stage["num_modules"]) or (s == 1 and stage["num_modules"] != 1):
            raise HRNetConfigError(f"stage {s}: num_modules must be " + ("1" if s == 1 else "an int >= 1")
                                   + f", got {stage['num_modules']!r}")
        blocks = stage["num_blocks"]
        blocks = [blocks] * nb if _positive_int(blocks) else blocks
        if not isinstance(blocks, (list, tuple)) or len(blocks) != nb or not all(_positive_int(b) for b in blocks):
            raise HRNetConfigError(f"stage {s}: num_blocks must be an int >= 1 or {nb} of them (one per branch), "
                                   f"got {stage['num_blocks']!r}")
        stage["num_blocks"] = list(blocks)
        widths = stage["num_channels"]
        if not isinstance(widths, (list, tuple)) or len(widths) != nb or not all(_positive_int(c) for c in widths):
            raise HRNetConfigError(f"stage {s}: num_channels needs {nb} ints >= 1 (one per branch), got {widths!r}")
        stage["num_channels"] = list(widths)
        prev = nb
    head = cfg.setdefault("head", {})
    if isinstance(head, str):
        head = cfg["head"] = dict(type=head)
    if not isinstance(head, dict):
        raise HRNetConfigError(f"head must be a mapping with a 'type' ({', '.join(HEAD_TYPES)}), got {head!r}")
    head.setdefault("type", HEAD_OFFICIAL)
    head.setdefault("final_conv_kernel", 1)
    head.setdefault("sigma", None)
    if head["type"] not in HEAD_TYPES:
        raise HRNetConfigError(f"head: type must be one of {HEAD_TYPES}, got {head['type']!r}")
    if head["final_conv_kernel"] not in (1, 3):
        raise HRNetConfigError(f"head: final_conv_kernel must be 1 or 3, got {head['final_conv_kernel']!r}")
    if head["sigma"] is not None and not (isinstance(head["sigma"], (int, float)) and head["sigma"] > 0):
        raise HRNetConfigError(f"head: sigma must be a positive number (or null), got {head['sigma']!r}")
    if "channels" in head and not _positive_int(head["channels"]):
        raise HRNetConfigError(f"head: channels must be an int >= 1, got {head['channels']!r}")
    return cfg


def from_official_extra(extra, n_channels_in=3, sigma=None):
    """The config of an official pose-HRNet yaml's ``MODEL.EXTRA`` (STAGE2-4, optional STAGE1, FINAL_CONV_KERNEL).

    The official code hard-codes stem (64) and stage 1 (4 Bottlenecks of 64 planes); mmpose-style yamls
    may give STAGE1. Only ``FUSE_METHOD: SUM`` exists. ``sigma``: the yaml's ``MODEL.SIGMA``, if wanted.
    """
    def stage(k, entry):
        if entry.get("FUSE_METHOD", "SUM") != "SUM":
            raise HRNetConfigError(f"STAGE{k}: FUSE_METHOD must be SUM, got {entry['FUSE_METHOD']!r}")
        missing = [k for k in ("NUM_MODULES", "NUM_BRANCHES", "NUM_BLOCKS", "NUM_CHANNELS", "BLOCK") if k not in entry]
        if missing:
            raise HRNetConfigError(f"STAGE{k} lacks {', '.join(missing)}")
        return dict(num_modules=entry["NUM_MODULES"], num_branches=entry["NUM_BRANCHES"],
                    num_blocks=list(entry["NUM_BLOCKS"]), num_channels=list(entry["NUM_CHANNELS"]),
                    block=str(entry["BLOCK"]).lower())

    stages = [stage(1, extra["STAGE1"]) if "STAGE1" in extra else
              dict(num_modules=1, num_branches=1, num_blocks=4, num_channels=[64], block=BOTTLENECK)]
    stages += [stage(k, extra[f"STAGE{k}"]) for k in (2, 3, 4) if f"STAGE{k}" in extra]
    return validate_hrnet_config(dict(
        family=FAMILY, n_channels_in=n_channels_in, stem_channels=64, stem_convs=2, stages=stages,
        head=dict(type=HEAD_OFFICIAL, final_conv_kernel=extra.get("FINAL_CONV_KERNEL", 1), sigma=sigma)))


HRNET_CONFIGS = {name: validate_hrnet_config(cfg) for name, cfg in (
    ("hrnet_w32", _official(32)), ("hrnet_w48", _official(48)), ("light_hrnet", light_hrnet_config()))}


def apply_overrides(name, config, overrides):
    """``create_model`` keyword overrides: n_channels_in and head (any HRNet), the light_hrnet fields."""
    overrides = dict(overrides)
    light = {k: overrides.pop(k) for k in LIGHT_FIELDS if k in overrides}
    if light:
        if name != "light_hrnet":
            raise HRNetConfigError(f"{', '.join(light)}: only for model type light_hrnet, not {name}")
        config = light_hrnet_config(**dict(LIGHT_DEFAULTS, **light))
    else:
        config = copy.deepcopy(config)
    if "n_channels_in" in overrides:
        config["n_channels_in"] = overrides.pop("n_channels_in")
    if "head" in overrides:
        head = overrides.pop("head")
        config["head"] = dict(config.get("head", {}), **(dict(type=head) if isinstance(head, str) else head))
    if overrides:
        raise HRNetConfigError(f"unknown model settings: {', '.join(sorted(overrides))} (an HRNet takes "
                               f"n_channels_in, head" + (f", {', '.join(LIGHT_FIELDS)}" if name == "light_hrnet"
                                                         else "") + ")")
    return validate_hrnet_config(config)


def branch_channels(config):
    """Per stage, the widths of the branches it outputs (validated config)."""
    return [_stage_out_channels(stage) for stage in config["stages"]]


def stem_stride(config):
    return 2 ** config["stem_convs"]


def input_multiple(config):
    """Input height and width must be multiples of 2**(branches + 1) (32 for the official four branches)."""
    return 2 ** (config["stages"][-1]["num_branches"] + 1)


def output_stride(config):
    """Input pixels per heatmap pixel: the top branch's stride, or 1 for the full-resolution head."""
    return 1 if config["head"]["type"] == HEAD_FULL_RESOLUTION else stem_stride(config)
