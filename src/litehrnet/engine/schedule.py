"""Learning-rate schedules, one rate per step: mmcv's linear warm-up on a step decay (the official one) or a cosine."""
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


def warmup_steps(steps_per_epoch, warmup_epochs=0, warmup_iters=0):
    """Warm-up length in steps: given in epochs (x steps_per_epoch) or in iterations, not both."""
    if warmup_epochs and warmup_iters:
        raise ValueError("give the warm-up in epochs or in iterations, not both")
    if warmup_epochs < 0 or warmup_iters < 0:
        raise ValueError("the warm-up length cannot be negative")
    return int(round(warmup_epochs * int(steps_per_epoch))) if warmup_epochs else int(warmup_iters)


def cosine_lr(base_lr, steps_per_epoch, epochs, min_lr=0.0, warmup_epochs=0, warmup_iters=0,
              warmup_ratio=0.001, by_epoch=False):
    """Per-step learning rates (float32): cosine decay from base_lr to min_lr under a linear warm-up.

    As mmcv's CosineAnnealingLrUpdaterHook: step s of T has the rate
    min_lr + (base_lr - min_lr)(1 + cos(pi s / T)) / 2 (by_epoch: s and T in whole epochs, so the rate is
    constant within an epoch), so it nears min_lr at the last step; during the W warm-up steps that rate
    is scaled by 1 - (1 - s / W)(1 - warmup_ratio), exactly as step_lr's warm-up.
    """
    spe, total = int(steps_per_epoch), int(steps_per_epoch) * int(epochs)
    warm = warmup_steps(spe, warmup_epochs, warmup_iters)
    if warm >= total:
        raise ValueError(f"the warm-up ({warm} steps) must be shorter than the run ({total} steps)")
    if min_lr > base_lr:
        raise ValueError(f"min_lr {min_lr} is above the base rate {base_lr}")
    step = np.arange(total)
    progress = step // spe / int(epochs) if by_epoch else step / total
    lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + np.cos(np.pi * progress))
    if warm > 0:
        k = (1 - step / warm) * (1 - warmup_ratio)
        lr = np.where(step < warm, lr * (1 - k), lr)
    return lr.astype(np.float32)


SCHEDULE_KEYS = {
    'step': {'milestones', 'gamma', 'warmup_epochs', 'warmup_iters', 'warmup_ratio'},
    'cosine': {'min_lr', 'warmup_epochs', 'warmup_iters', 'warmup_ratio', 'by_epoch'},
}
SCHEDULE_ALIASES = {'multistep': 'step', 'step': 'step', 'cosine': 'cosine', 'cosineannealing': 'cosine'}


def build_schedule(config, base_lr, steps_per_epoch, epochs):
    """Per-step float32 rates from a config dict: {'type': 'step' | 'multistep' | 'cosine', ...}.

    step/multistep: milestones (epochs; default the official 170/200 of 210 scaled to `epochs`),
    gamma (0.1), warm-up; cosine: min_lr (0), warm-up, by_epoch (false). The warm-up is warmup_epochs
    or warmup_iters (step default: 500 iterations, as the official schedule; cosine: none) rising
    from warmup_ratio (0.001) x the rate. Unknown types and keys are refused, naming them.
    """
    config = dict(config or {})
    kind = str(config.pop('type', 'step')).lower()
    if kind not in SCHEDULE_ALIASES:
        raise ValueError(f"unknown lr schedule type {kind!r}: use one of {sorted(SCHEDULE_ALIASES)}")
    kind = SCHEDULE_ALIASES[kind]
    unknown = sorted(set(config) - SCHEDULE_KEYS[kind])
    if unknown:
        raise ValueError(f"unknown key(s) for the {kind} lr schedule: {', '.join(unknown)} "
                         f"(allowed: {', '.join(sorted(SCHEDULE_KEYS[kind]))})")
    if kind == 'cosine':
        return cosine_lr(base_lr, steps_per_epoch, epochs, **config)
    if 'warmup_epochs' in config:
        config['warmup_iters'] = warmup_steps(steps_per_epoch, config.pop('warmup_epochs'),
                                              config.pop('warmup_iters', 0))
    milestones = tuple(config.pop('milestones', scaled_milestones(epochs)))
    return step_lr(base_lr, steps_per_epoch, epochs, milestones, **config)
