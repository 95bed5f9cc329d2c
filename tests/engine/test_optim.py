"""Optimizers against their update formulas computed in numpy, on a single nn.Dense, with weight decay on."""
import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from conftest import ROOT, run_script
from litehrnet.engine.optim import build_optimizer

LR = np.array([0.05, 0.02, 0.01], np.float32)  # a per-step rate: step i uses LR[i]
CASES = {
    'adam': dict(type='adam', weight_decay=0.1),
    'adamw': dict(type='adamw', weight_decay=0.1, betas=[0.8, 0.99], eps=1e-6),
    'sgd': dict(type='sgd', weight_decay=0.1),
    'sgd_momentum': dict(type='sgd', weight_decay=0.1, momentum=0.9),
    'sgd_nesterov': dict(type='sgd', weight_decay=0.1, momentum=0.9, nesterov=True),
}


def _data():
    rng = np.random.default_rng(0)
    return (rng.standard_normal((3, 8, 4)).astype(np.float32), rng.standard_normal((3, 8, 2)).astype(np.float32),
            rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal(2).astype(np.float32))


def reference(cfg, steps=3):
    """The update rules (PyTorch's definitions) in float64 numpy, on loss = mean((x W^T + b - y)^2)."""
    xs, ys, w0, b0 = _data()
    params = [w0.astype(np.float64), b0.astype(np.float64)]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    wd, (b1, b2) = cfg.get('weight_decay', 0), cfg.get('betas', (0.9, 0.999))
    eps, mu = cfg.get('eps', 1e-8), cfg.get('momentum', 0)
    for t in range(1, steps + 1):
        x, y, lr = xs[t - 1].astype(np.float64), ys[t - 1].astype(np.float64), float(LR[t - 1])
        err = 2 * (x @ params[0].T + params[1] - y) / y.size
        grads = [err.T @ x, err.sum(0)]
        for i, (p, g) in enumerate(zip(params, grads)):
            if cfg['type'] == 'sgd':
                g = g + wd * p
                m[i] = mu * m[i] + g  # PyTorch starts the buffer at g: the same from zeros
                step = g + mu * m[i] if cfg.get('nesterov') else m[i]
                params[i] = p - lr * step
                continue
            if cfg['type'] == 'adam':
                g = g + wd * p
            else:
                p = p * (1 - lr * wd)
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            params[i] = p - lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps)
    return params


class _Loss(nn.Cell):
    def __init__(self, net):
        super().__init__(auto_prefix=False)
        self.net = net

    def construct(self, x, y):
        d = self.net(x) - y
        return (d * d).mean()


def run_optimizer(cfg, steps=3):
    """The project's optimizer in a TrainOneStepCell (the current mode) on the same problem."""
    xs, ys, w0, b0 = _data()
    net = nn.Dense(4, 2, weight_init=ms.Tensor(w0), bias_init=ms.Tensor(b0))
    step = nn.TrainOneStepCell(_Loss(net), build_optimizer(cfg, net, LR))
    step.set_train()
    for t in range(steps):
        step(ms.Tensor(xs[t]), ms.Tensor(ys[t]))
    return [net.weight.asnumpy(), net.bias.asnumpy()]


GRAPH_SCRIPT = """
import json, sys
import mindspore as ms
sys.path[:0] = ['tests', 'tests/engine']
ms.set_context(mode=ms.GRAPH_MODE, device_target='CPU')
from test_optim import CASES, run_optimizer
print(json.dumps([p.tolist() for p in run_optimizer(CASES[sys.argv[1]])]))
"""


@pytest.mark.parametrize('name', list(CASES))
def test_optimizer_matches_its_formula(name):
    got, want = run_optimizer(CASES[name]), reference(CASES[name])
    w0 = _data()[2]
    assert np.abs(want[0] - w0).max() > 1e-3  # the steps moved the weights
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['adamw', 'sgd_nesterov'])
def test_optimizer_matches_its_formula_in_a_graph_mode_train_step(name):
    proc = run_script(['-c', GRAPH_SCRIPT, name], env={'PYTHONPATH': str(ROOT / 'src'), 'GLOG_v': '3'})
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = [np.array(p) for p in json.loads(proc.stdout.strip().splitlines()[-1])]
    for g, w in zip(got, reference(CASES[name])):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)


def test_the_formulas_differ_so_the_comparison_can_fail():
    results = {name: reference(cfg)[0] for name, cfg in CASES.items()}
    names = list(results)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(results[a] - results[b]).max() > 1e-4, (a, b)


def test_trainable_filter_leaves_parameters_out_and_no_decay_norm_bias():
    net = nn.Dense(4, 2)
    opt = build_optimizer(dict(type='adamw', weight_decay=0.01, no_decay_norm_bias=True), net, 1e-3,
                          trainable=lambda p: not p.name.endswith('bias'))
    assert [p.name for p in opt.parameters] == ['weight'] and opt.decay_values == (0.01,)
    opt = build_optimizer(dict(type='sgd', weight_decay=0.01, no_decay_norm_bias=True), net, 1e-3)
    assert opt.decay_values == (0.01, 0.0)
    bias = net.bias.asnumpy().copy()
    x, y = ms.Tensor(np.ones((2, 4), np.float32)), ms.Tensor(np.zeros((2, 2), np.float32))
    step = nn.TrainOneStepCell(_Loss(net), build_optimizer(dict(type='sgd'), net, 0.1,
                                                           trainable=lambda p: p.name == 'weight'))
    weight = net.weight.asnumpy().copy()
    step(x, y)
    np.testing.assert_array_equal(net.bias.asnumpy(), bias)  # left out: never updated
    assert np.abs(net.weight.asnumpy() - weight).max() > 0


@pytest.mark.parametrize('cfg, match', [(dict(type='lamb'), "unknown optimizer type 'lamb'"),
                                        (dict(type='adam', momentum=0.9), 'momentum'),
                                        (dict(type='sgd', nesterov=True), 'nesterov needs a momentum'),
                                        (dict(type='adamw', weight_decay=-1), 'weight_decay')])
def test_bad_optimizer_settings_are_refused(cfg, match):
    with pytest.raises(ValueError, match=match):
        build_optimizer(cfg, nn.Dense(2, 2), 1e-3)


def test_the_training_checkpoint_saves_every_state_tensor_of_the_optimizer():
    from litehrnet.engine.state import optimizer_state
    net = nn.Dense(4, 2)
    names = {p.name for p in optimizer_state(build_optimizer(dict(type='adamw'), net, LR))}
    assert names == {'global_step', 'moment1.weight', 'moment1.bias', 'moment2.weight', 'moment2.bias',
                     'steps.weight', 'steps.bias'}
    names = {p.name for p in optimizer_state(build_optimizer(dict(type='sgd', momentum=0.9), net, LR))}
    assert names == {'global_step', 'moment1.weight', 'moment1.bias'}


def test_a_loss_scale_is_divided_out_of_the_gradients():
    xs, ys, w0, b0 = _data()
    net = nn.Dense(4, 2, weight_init=ms.Tensor(w0), bias_init=ms.Tensor(b0))
    step = nn.TrainOneStepCell(_Loss(net), build_optimizer(CASES['sgd_momentum'], net, LR, loss_scale=1024.0),
                               sens=1024.0)
    for t in range(3):
        step(ms.Tensor(xs[t]), ms.Tensor(ys[t]))
    for g, w in zip([net.weight.asnumpy(), net.bias.asnumpy()], reference(CASES['sgd_momentum'])):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=1e-6)
