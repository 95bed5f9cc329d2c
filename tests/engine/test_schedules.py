"""Learning-rate schedules against their formulas at chosen steps: multistep and cosine with linear warm-up."""
import math

import numpy as np
import pytest

from litehrnet.engine.schedule import build_schedule, cosine_lr, step_lr


def _cos(base, min_lr, s, total):
    return min_lr + (base - min_lr) * 0.5 * (1 + math.cos(math.pi * s / total))


def test_cosine_with_warmup_in_epochs_matches_the_formula():
    base, min_lr, spe, epochs = 1e-4, 1e-6, 10, 100  # the vertebra recipe: 5 warm-up epochs down to 1e-6
    lr = cosine_lr(base, spe, epochs, min_lr=min_lr, warmup_epochs=5)
    total, warm = spe * epochs, 50
    assert len(lr) == total and lr.dtype == np.float32
    assert lr[0] == pytest.approx(base * 0.001 * 1.0, rel=1e-3)  # cos(0) = 1, times the warm-up ratio
    s = 25  # mid warm-up: the cosine value scaled by 1 - 0.5 x 0.999
    assert lr[s] == pytest.approx(_cos(base, min_lr, s, total) * (1 - 0.5 * 0.999), rel=1e-6)
    assert lr[warm - 1] == pytest.approx(_cos(base, min_lr, warm - 1, total) * (1 - 0.999 / warm), rel=1e-6)
    assert lr[warm] == pytest.approx(_cos(base, min_lr, warm, total), rel=1e-6)  # warm-up over
    assert lr[total // 2] == pytest.approx((base + min_lr) / 2, rel=1e-6)  # the cosine's middle
    assert lr[-1] == pytest.approx(_cos(base, min_lr, total - 1, total), rel=1e-5)
    assert min_lr < lr[-1] < min_lr * 1.01
    assert np.all(np.diff(lr[warm:]) <= 0) and np.all(np.diff(lr[:warm]) > 0)


def test_cosine_warmup_in_iterations_and_by_epoch():
    a = cosine_lr(2e-3, 7, 4, warmup_iters=3)
    b = cosine_lr(2e-3, 7, 4, warmup_epochs=3 / 7)
    np.testing.assert_array_equal(a, b)
    assert a[3] == pytest.approx(_cos(2e-3, 0, 3, 28), rel=1e-6)
    e = cosine_lr(2e-3, 7, 4, by_epoch=True)
    assert len(set(e[7:14].tolist())) == 1 and e[7] == pytest.approx(_cos(2e-3, 0, 1, 4), rel=1e-6)


def test_build_schedule_dispatches_and_refuses_unknown_settings():
    np.testing.assert_array_equal(build_schedule({'type': 'multistep', 'milestones': [2, 3], 'warmup_iters': 5},
                                                 1e-3, 10, 4),
                                  step_lr(1e-3, 10, 4, (2, 3), warmup_iters=5))
    lr = build_schedule({'type': 'step', 'milestones': [2], 'gamma': 0.5, 'warmup_epochs': 1}, 1e-3, 10, 4)
    assert lr[10] == pytest.approx(1e-3) and lr[19] == pytest.approx(1e-3) and lr[20] == pytest.approx(5e-4)
    assert lr[5] == pytest.approx(1e-3 * (1 - 0.5 * 0.999))
    np.testing.assert_array_equal(build_schedule(None, 2e-3, 5, 210), step_lr(2e-3, 5, 210))  # the official one
    np.testing.assert_array_equal(build_schedule({'type': 'cosine', 'min_lr': 1e-6, 'warmup_epochs': 1}, 1e-4, 8, 3),
                                  cosine_lr(1e-4, 8, 3, min_lr=1e-6, warmup_epochs=1))
    with pytest.raises(ValueError, match="unknown lr schedule type 'poly'"):
        build_schedule({'type': 'poly'}, 1e-3, 10, 4)
    with pytest.raises(ValueError, match='min_lr'):
        build_schedule({'type': 'step', 'min_lr': 0}, 1e-3, 10, 4)
    with pytest.raises(ValueError, match='not both'):
        build_schedule({'type': 'cosine', 'warmup_epochs': 1, 'warmup_iters': 3}, 1e-3, 10, 4)
    with pytest.raises(ValueError, match='shorter than the run'):
        build_schedule({'type': 'cosine', 'warmup_epochs': 4}, 1e-3, 10, 4)
