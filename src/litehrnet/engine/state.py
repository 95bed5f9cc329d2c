"""Checkpoints that resume exactly: bare network weights plus the training state under `train_state.*` keys.

`load_checkpoint` ignores every `train_state.*` key, so these files load anywhere a plain weights file
does; `--resume` reads the optimizer moments, Adam's step counters and the run's own counters back.
"""
import mindspore as ms
import numpy as np

from ..checkpoint.io import read_checkpoint, save_checkpoint
from ..errors import CheckpointError

PREFIX = 'train_state.'
_OPTIMIZER_KEYS = ('beta1_power', 'beta2_power', 'global_step')
_OPTIMIZER_PREFIXES = ('moment1.', 'moment2.', 'steps.')  # steps.*: engine/optim's per-parameter step counts


def optimizer_state(optimizer):
    """The optimizer's own parameters (moments and step counters; not the weights, not the rate table)."""
    return [p for _, p in optimizer.parameters_and_names()
            if p.name.startswith(_OPTIMIZER_PREFIXES) or p.name in _OPTIMIZER_KEYS]


def save_training_checkpoint(path, net, optimizer=None, counters=None):
    """Save the bare network, with the optimizer state and `counters` (name -> number) when given."""
    extra = {}
    if optimizer is not None:
        extra.update({PREFIX + p.name: p for p in optimizer_state(optimizer)})
    for name, value in (counters or {}).items():
        extra[PREFIX + name] = ms.Tensor(np.asarray(value, dtype=np.float64 if isinstance(value, float) else np.int64))
    return save_checkpoint(net, path, append_dict=extra or None)


def read_training_checkpoint(path):
    """(weights under project names, training state name -> numpy array) of a checkpoint written above."""
    weights, _, other = read_checkpoint(path)
    state = {k[len(PREFIX):]: v for k, v in other.items() if k.startswith(PREFIX)}
    if not state:
        raise CheckpointError(f"{path}: holds no training state (train_state.*), so it cannot be resumed; "
                              f"use --pretrained to start a new run from its weights")
    return weights, state


def restore_optimizer(optimizer, state, path):
    """Copy the saved moments and step counters into the optimizer (one-line error when any is missing)."""
    params = optimizer_state(optimizer)
    missing = [p.name for p in params if p.name not in state]
    if missing:
        raise CheckpointError(f"{path}: training state lacks {len(missing)} optimizer tensors "
                              f"(first: {missing[0]}); was it written for another network?")
    for p in params:
        value = np.asarray(state[p.name])
        if value.shape != tuple(p.shape):
            raise CheckpointError(f"{path}: optimizer tensor {p.name} has shape {value.shape}, "
                                  f"the network needs {tuple(p.shape)}")
        p.set_data(ms.Tensor(value, dtype=p.dtype))
