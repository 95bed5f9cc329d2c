"""Lite-HRNet 2D pose estimation on MindSpore: exact models, checkpoints of every format, top-down pipeline.

The public names below are loaded on first use, so that `import litehrnet` (and the command lines,
which set MindSpore's log level first) do not import MindSpore before they need it.
"""
import importlib

__version__ = "0.1.0"

_PUBLIC = {  # name -> module that owns it
    "create_model": "models.registry", "list_models": "models.registry", "list_pretrained": "models.registry",
    "load_checkpoint": "models.registry", "PUBLISHED": "models.registry",
    "save_checkpoint": "checkpoint.io", "read_checkpoint": "checkpoint.io",
    "get_config": "models.configs", "canonical_model_type": "models.configs", "MODEL_CONFIGS": "models.configs",
    "ALIASES": "models.configs", "ModelTypeError": "models.configs",
    "CheckpointError": "errors",
    "PoseEstimator": "service",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:
        return getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'litehrnet' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_PUBLIC))
