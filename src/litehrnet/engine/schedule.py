"""The learning-rate schedule as one rate per step: mmcv's linear warm-up on a step decay (the official one)."""
import numpy as np


def step_lr(base_lr, steps_per_epoch, epochs, milestones=(170, 200), gamma=0.1, warmup_iters=500,
            warmup_ratio=0.001):
    """Per-step learning rates (float32, one per training step).

    The rate is base_lr x gamma ** (milestones reached by the 0-based epoch); during the first
    warmup_iters steps it is scaled by 1 - (1 - step / warmup_iters)(1 - warmup_ratio), rising
    linearly from warmup_ratio x the rate (mmcv StepLrUpdaterHook, warmup='linear').
    """
    step = np.arange(int(steps_per_epoch) * int(epochs))
    epoch = step // int(steps_per_epoch)
    lr = base_lr * gamma ** np.searchsorted(np.sort(milestones), epoch, side='right')
    if warmup_iters > 0:
        k = (1 - step / warmup_iters) * (1 - warmup_ratio)
        lr = np.where(step < warmup_iters, lr * (1 - k), lr)
    return lr.astype(np.float32)


def scaled_milestones(epochs, reference_epochs=210, reference=(170, 200)):
    """The official decay epochs (170 and 200 of 210) moved to the same fractions of a shorter or longer run."""
    return tuple(int(round(m * epochs / reference_epochs)) for m in reference)
