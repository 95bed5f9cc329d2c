"""freeze_backbone_epochs: one train-step graph for both phases; the frozen backbone is bit-unchanged."""
import json

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from conftest import ROOT, run_script
from freeze_probe import ToyPose, batches, snapshot
from litehrnet.engine.freeze import BackboneFreezer, SwitchableBatchNorm2d, make_switchable
from litehrnet.engine.optim import build_optimizer


def _probe(*args):
    proc = run_script(['tests/engine/freeze_probe.py', *map(str, args)],
                      env={'PYTHONPATH': str(ROOT / 'src'), 'GLOG_v': '3'}, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _bn_pair(seed=0):
    rng = np.random.default_rng(seed)
    layers = []
    for switch in (False, True):
        bn = nn.BatchNorm2d(4, momentum=0.9)
        bn.gamma.set_data(ms.Tensor(rng.random(4).astype(np.float32) + 0.5))
        bn.moving_mean.set_data(ms.Tensor(np.float32([0.1, -0.2, 0.3, 0.0])))
        bn.moving_variance.set_data(ms.Tensor(np.float32([1.5, 0.5, 2.0, 1.0])))
        layers.append(bn)
    layers[1].gamma.set_data(layers[0].gamma.value())
    return layers


def test_switchable_batchnorm_trains_exactly_as_batchnorm_when_live_and_as_eval_when_frozen():
    x = ms.Tensor(np.random.default_rng(1).standard_normal((2, 4, 5, 5)).astype(np.float32) * 2 + 1)
    plain, switched = _bn_pair()
    live = ms.Parameter(ms.Tensor(np.float32(1.0)), name='live', requires_grad=False)
    make_switchable(switched, live)
    assert isinstance(switched, SwitchableBatchNorm2d)
    plain.set_train(True)
    switched.set_train(True)
    np.testing.assert_array_equal(switched(x).asnumpy(), plain(x).asnumpy())  # live: plain training, bit-exact
    np.testing.assert_array_equal(switched.moving_mean.asnumpy(), plain.moving_mean.asnumpy())
    np.testing.assert_array_equal(switched.moving_variance.asnumpy(), plain.moving_variance.asnumpy())
    assert not np.allclose(plain.moving_mean.asnumpy(), [0.1, -0.2, 0.3, 0.0])  # training did move them

    stats = switched.moving_mean.asnumpy().copy(), switched.moving_variance.asnumpy().copy()
    live.set_data(ms.Tensor(np.float32(0.0)))
    frozen_out = switched(x).asnumpy()
    np.testing.assert_array_equal(switched.moving_mean.asnumpy(), stats[0])  # frozen: unchanged, bit for bit
    np.testing.assert_array_equal(switched.moving_variance.asnumpy(), stats[1])
    switched.set_train(False)
    np.testing.assert_array_equal(frozen_out, switched(x).asnumpy())  # frozen training = eval behaviour
    want = (x.asnumpy() - stats[0][:, None, None]) / np.sqrt(stats[1][:, None, None] + 1e-5) \
        * switched.gamma.asnumpy()[:, None, None]
    np.testing.assert_allclose(frozen_out, want, rtol=1e-5, atol=1e-5)


def test_freezer_keeps_names_and_marks_only_the_backbone():
    net = ToyPose()
    names = [p.name for p in net.get_parameters()]
    freezer = BackboneFreezer(net)
    assert [p.name for p in net.get_parameters()] == names  # the switch is no network parameter
    assert len(freezer.batchnorms) == 2 and all(isinstance(b, SwitchableBatchNorm2d) for b in freezer.batchnorms)
    assert type(net.keypoint_head[1]) is nn.BatchNorm2d  # the head's BatchNorm trains as usual
    opt = build_optimizer(dict(type='adamw'), net, 1e-3, freezable=freezer.freezable)
    marked = [p.name for p, f in zip(opt.parameters, opt.freezable) if f]
    assert marked == [p.name for p in net.backbone.trainable_params()] and marked
    with pytest.raises(RuntimeError, match='attach'):
        freezer.set_frozen(True)
    with pytest.raises(ValueError, match='freezable'):
        freezer.attach(build_optimizer(dict(type='adam'), net, 1e-3))
    with pytest.raises(ValueError, match="no 'encoder' child"):
        BackboneFreezer(net, backbone='encoder')
    assert BackboneFreezer.frozen_at(19, 1, 20) and not BackboneFreezer.frozen_at(20, 1, 20)
    assert BackboneFreezer.frozen_at(199, 10, 20) and not BackboneFreezer.frozen_at(200, 10, 20)


def test_frozen_steps_in_pynative_leave_the_backbone_alone_with_sgd_momentum_and_weight_decay():
    ms.set_seed(0)
    net = ToyPose()
    freezer = BackboneFreezer(net)
    opt = build_optimizer(dict(type='sgd', momentum=0.9, weight_decay=0.1), net, 0.05, freezable=freezer.freezable)
    freezer.attach(opt)
    from litehrnet.engine.loss import JointsMSELoss, NetWithLoss
    step = nn.TrainOneStepCell(NetWithLoss(net, JointsMSELoss()), opt)
    step.set_train()
    data = list(batches('toy', 4))
    step(*data[0])  # a live step first: the momentum buffers are non-zero when the freeze starts
    freezer.set_frozen(True)
    before = snapshot(net)
    velocity = {p.name: p.asnumpy().copy() for p in opt.moment1}
    for batch in data[1:3]:
        step(*batch)
    after = snapshot(net)
    for name, value in before.items():
        if name.startswith('backbone.'):
            np.testing.assert_array_equal(after[name], value, err_msg=name)
    for p in opt.moment1:
        if p.name.startswith('moment1.backbone.'):
            np.testing.assert_array_equal(p.asnumpy(), velocity[p.name], err_msg=p.name)
    assert not np.array_equal(after['keypoint_head.0.weight'], before['keypoint_head.0.weight'])
    freezer.set_frozen(False)
    step(*data[3])
    assert not np.array_equal(snapshot(net)['backbone.0.weight'], before['backbone.0.weight'])


def test_one_graph_serves_both_phases_frozen_backbone_bit_unchanged_then_trained():
    result = _probe('toy', 3, 3)
    rows = result['rows']
    assert result['compiled'] == ['TrainOneStepCell']  # one graph compiled in all, none at the unfreeze
    assert [r['compiled'] for r in rows] == [1] * 6
    for r in rows[:3]:  # frozen: no backbone weight and no BN statistic moves (bit-exact); the head learns
        assert (r['backbone_params_changed'], r['backbone_stats_changed']) == (0, 0)
        assert r['head_changed'] == result['num_head']
    for r in rows[3:]:  # then everything trains
        assert r['backbone_params_changed'] == result['num_backbone'] == 6
        assert r['backbone_stats_changed'] == result['num_stats'] == 4
    assert rows[-1]['loss'] < rows[0]['loss']


def test_a_never_frozen_freezer_trains_bit_identically_to_plain_training():
    """GRAPH mode, toy network: equal bit for bit (on Lite-HRNet, GRAPH-mode gradients differ from a plain graph's
    at float32 round-off, median 1.5e-7 relative, from the compiler's different op order; PYNATIVE: identical)."""
    assert _probe('toy', 0, 3)['digest'] == _probe('toy', 0, 3, 'plain')['digest']


def test_live_switchable_batchnorm_gives_a_tiny_litehrnet_the_same_gradients():
    from freeze_probe import TINY_LITE
    from litehrnet import create_model
    from litehrnet.engine.loss import JointsMSELoss, NetWithLoss
    batch = next(iter(batches('lite', 1)))
    grads = []
    for freeze in (False, True):
        ms.set_seed(0)
        net = create_model(TINY_LITE, num_joints=3, conv_impl='native')
        if freeze:
            assert len(BackboneFreezer(net).batchnorms) > 30
        loss_net = NetWithLoss(net, JointsMSELoss())
        loss_net.set_train()
        _, g = ms.value_and_grad(loss_net, None, net.trainable_params())(*batch)
        grads.append([t.asnumpy() for t in g])
    assert len(grads[0]) == len(grads[1]) > 100
    for a, b in zip(*grads):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_tiny_litehrnet_frozen_backbone_then_all_in_one_graph():
    result = _probe('lite', 2, 2)
    assert result['compiled'] == ['TrainOneStepCell'] and result['batchnorms'] > 30
    assert all((r['backbone_params_changed'], r['backbone_stats_changed']) == (0, 0) for r in result['rows'][:2])
    assert all(r['head_changed'] == result['num_head'] for r in result['rows'])
    assert all(r['backbone_params_changed'] == result['num_backbone'] and
               r['backbone_stats_changed'] == result['num_stats'] for r in result['rows'][2:])


def test_adam_counts_steps_per_parameter_so_a_late_starting_backbone_gets_its_own_bias_correction():
    ms.set_seed(0)
    net = ToyPose()
    freezer = BackboneFreezer(net)
    opt = build_optimizer(dict(type='adamw', weight_decay=0.01), net, 1e-3, freezable=freezer.freezable)
    freezer.attach(opt)
    from litehrnet.engine.loss import JointsMSELoss, NetWithLoss
    step = nn.TrainOneStepCell(NetWithLoss(net, JointsMSELoss()), opt)
    step.set_train()
    for i, batch in enumerate(batches('toy', 5)):
        freezer.set_frozen(1 <= i < 4)  # live, 3 frozen, live
        step(*batch)
    steps = {p.name[len('steps.'):]: float(p.asnumpy()) for p in opt.steps}
    assert {v for k, v in steps.items() if k.startswith('backbone.')} == {2.0}
    assert {v for k, v in steps.items() if k.startswith('keypoint_head.')} == {5.0}
