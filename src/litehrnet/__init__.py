"""Lite-HRNet 2D pose estimation on MindSpore: exact models, checkpoints of every format, top-down pipeline."""
from .checkpoint.io import CheckpointError, load_checkpoint, read_checkpoint, save_checkpoint
from .models.configs import ALIASES, MODEL_CONFIGS, ModelTypeError, canonical_model_type, get_config
from .models.registry import PUBLISHED, create_model, list_models, list_pretrained

__version__ = "0.1.0"

__all__ = [
    "create_model", "list_models", "list_pretrained", "load_checkpoint", "save_checkpoint", "read_checkpoint",
    "get_config", "canonical_model_type", "MODEL_CONFIGS", "ALIASES", "PUBLISHED", "CheckpointError",
    "ModelTypeError",
]
