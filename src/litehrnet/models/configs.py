"""Lite-HRNet architectures as data: one dict per variant builds the whole network.

A config has the stem width, then one entry per stage with its number of modules,
branches, blocks per module, widths per branch, module type ("lite" = conditional
channel weighting, "naive" = naive shuffle) and the reduce ratio of the
cross-resolution weighting. Adding a variant (or a custom width/depth, see the
README) is adding a dict here, or passing one (or a .json/.yaml file) as ``create_model(model_type)``.
"""
import copy

from .hrnet_config import HRNET_CONFIGS, is_hrnet_config, validate_hrnet_config

LITE = "lite"    # conditional channel weighting blocks (Lite-HRNet-18/30)
NAIVE = "naive"  # naive shuffle blocks (naive / wider-naive Lite-HRNet)
MODULE_TYPES = (LITE, NAIVE)


def _stages(num_modules, widths, module_type):
    """The three stages of every published variant: 2/3/4 branches, 2 blocks each."""
    return [
        dict(num_modules=num_modules[s], num_branches=s + 2, num_blocks=2,
             num_channels=list(widths[:s + 2]), module_type=module_type, reduce_ratio=8)
        for s in range(3)
    ]


MODEL_CONFIGS = {
    "litehrnet_18": dict(stem_channels=32, stages=_stages((2, 4, 2), (40, 80, 160, 320), LITE)),
    "litehrnet_30": dict(stem_channels=32, stages=_stages((3, 8, 3), (40, 80, 160, 320), LITE)),
    "naive_litehrnet_18": dict(stem_channels=32, stages=_stages((2, 4, 2), (30, 60, 120, 240), NAIVE)),
    "wider_naive_litehrnet_18": dict(stem_channels=32,
                                     stages=_stages((2, 4, 2), (40, 80, 160, 320), NAIVE)),
}

# Names used by the earlier MindSpore port.
ALIASES = {
    "lite_18": "litehrnet_18",
    "lite_30": "litehrnet_30",
    "naive": "naive_litehrnet_18",
    "wider_naive": "wider_naive_litehrnet_18",
}


class ModelTypeError(ValueError):
    """An unknown model type or an invalid architecture config."""


def canonical_model_type(model_type):
    """Return the canonical name of ``model_type`` (aliases accepted) or raise listing the valid ones."""
    name = str(model_type).strip().lower()
    name = ALIASES.get(name, name)
    if name not in MODEL_CONFIGS and name not in HRNET_CONFIGS:
        valid = ", ".join(list(MODEL_CONFIGS) + list(HRNET_CONFIGS) + [f"{a} (= {c})" for a, c in ALIASES.items()])
        raise ModelTypeError(f"unknown model type '{model_type}'; valid model types: {valid}")
    return name


def get_config(model_type):
    """A deep copy of the architecture config for ``model_type``."""
    name = canonical_model_type(model_type)
    return copy.deepcopy(HRNET_CONFIGS[name] if name in HRNET_CONFIGS else MODEL_CONFIGS[name])


def validate_config(config):
    """Check a (possibly user-written) architecture config and return a normalised copy."""
    if is_hrnet_config(config):  # family: hrnet (see hrnet_config.py)
        return validate_hrnet_config(config)
    cfg = copy.deepcopy(config)
    if not isinstance(cfg, dict) or "stages" not in cfg:
        raise ModelTypeError("an architecture config is a dict with 'stem_channels' and 'stages'")
    cfg.setdefault("stem_channels", 32)
    if cfg["stem_channels"] % 2:
        raise ModelTypeError("stem_channels must be even (the stem splits it in halves)")
    prev = 1
    for s, stage in enumerate(cfg["stages"]):
        stage.setdefault("module_type", LITE)
        stage.setdefault("reduce_ratio", 8)
        nb = stage.get("num_branches")
        missing = [k for k in ("num_modules", "num_branches", "num_blocks", "num_channels") if k not in stage]
        if missing:
            raise ModelTypeError(f"stage {s} lacks {', '.join(missing)}")
        if stage["module_type"] not in MODULE_TYPES:
            raise ModelTypeError(f"stage {s}: module_type must be one of {MODULE_TYPES}")
        if len(stage["num_channels"]) != nb:
            raise ModelTypeError(f"stage {s}: num_channels needs {nb} entries, one per branch")
        if not isinstance(stage["num_blocks"], int) or stage["num_blocks"] < 1:
            raise ModelTypeError(f"stage {s}: num_blocks is the number of blocks per module (an int >= 1)")
        if not isinstance(stage["num_modules"], int) or stage["num_modules"] < 1:
            raise ModelTypeError(f"stage {s}: num_modules must be an int >= 1")
        if nb != prev + 1:
            raise ModelTypeError(f"stage {s}: each stage adds exactly one branch ({prev + 1} expected)")
        if any(c % 2 for c in stage["num_channels"]):
            raise ModelTypeError(f"stage {s}: branch widths must be even (blocks split channels in halves)")
        prev = nb
    return cfg
