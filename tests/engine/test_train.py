"""Training: loss, schedule, settings, CLI errors, and end-to-end runs (resume after SIGKILL, NaN stop, msrun)."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from conftest import ROOT, run_script, shared_path
from litehrnet import create_model, load_checkpoint, read_checkpoint
from litehrnet.data.demo import ensure_demo_dataset
from litehrnet.engine.config import DEMO_MODEL, PRESETS, make_config
from litehrnet.engine.loss import JointsMSELoss
from litehrnet.engine.schedule import scaled_milestones, step_lr
from litehrnet.engine.state import read_training_checkpoint, restore_optimizer, save_training_checkpoint

TINY_DATA = {'train': 24, 'val': 4}  # about 40 training persons
TINY = dict(stem_channels=16, stages=[  # the smallest useful Lite-HRNet: fast tests
    dict(num_modules=1, num_branches=b, num_blocks=1, num_channels=[8, 16, 32, 64][:b]) for b in (2, 3, 4)])


def test_joints_mse_loss_is_the_weighted_mean_without_half():
    rng = np.random.default_rng(0)
    pred, gt = rng.random((2, 3, 4, 5), np.float32), rng.random((2, 3, 4, 5), np.float32)
    w = np.array([[1, 0, 1], [1, 1, 0]], np.float32)
    loss = JointsMSELoss()(ms.Tensor(pred), ms.Tensor(gt), ms.Tensor(w)).asnumpy()
    per_joint = [np.mean(((pred[:, j] - gt[:, j]) * w[:, j, None, None]) ** 2) for j in range(3)]
    assert loss == pytest.approx(np.mean(per_joint), rel=1e-6)


def test_official_schedule_numbers():
    lr = step_lr(2e-3, steps_per_epoch=100, epochs=210)
    assert len(lr) == 21000 and lr.dtype == np.float32
    assert lr[0] == pytest.approx(2e-6)  # warm-up starts at 0.001 x lr
    assert lr[250] == pytest.approx(2e-3 * (1 - 0.5 * 0.999))
    assert lr[499] < lr[500] == pytest.approx(2e-3)
    assert lr[16999] == pytest.approx(2e-3) and lr[17000] == pytest.approx(2e-4)  # epoch 170
    assert lr[19999] == pytest.approx(2e-4) and lr[20000] == pytest.approx(2e-5)  # epoch 200
    assert scaled_milestones(210) == (170, 200) and scaled_milestones(21) == (17, 20)


def test_settings_defaults_presets_and_overrides():
    coco = make_config('coco')
    assert (coco.epochs, coco.batch_size, coco.lr, coco.milestones, coco.warmup_iters, coco.val_interval) == \
        (210, 64, 2e-3, (170, 200), 500, 10)
    assert coco.model_type == 'litehrnet_18' and coco.input_size_hw == (256, 192)
    demo = make_config('demo', lr=1e-3)
    assert demo.model_type == DEMO_MODEL and demo.lr == 1e-3 and demo.epochs == PRESETS['demo']['epochs']
    assert make_config('coco', epochs=21).milestones == (17, 20)
    assert make_config('coco', epochs=21, milestones=(5,)).milestones == (5,)
    for bad, match in ((dict(input_size_hw=(100, 96)), 'multiples of 32'), (dict(epochs=0), 'epochs'),
                       (dict(batch_size=-1), 'batch_size'), (dict(resume='x', pretrained='y'), 'either')):
        with pytest.raises(ValueError, match=match):
            make_config('coco', **bad)


def test_cli_flags_are_typed():
    from litehrnet.commands import train as cli
    args = cli.parse_args(['--dataset', 'demo', '--flip_test', 'false', '--target_res', '64x64', '--epochs', '3',
                           '--lr_steps', '2', '--resume'])
    cfg = cli.config_from_args(args)
    assert cfg.flip_test is False and cfg.input_size_hw == (64, 64) and cfg.epochs == 3
    assert cfg.milestones == (2,) and cfg.resume == 'auto'
    assert cli.config_from_args(cli.parse_args(['--flip', 'true', '--load_ckpt', 'w.ckpt'])).pretrained == 'w.ckpt'
    with pytest.raises(SystemExit) as e:
        cli.parse_args(['--flip_test', 'maybe'])
    assert e.value.code == 2


def test_training_checkpoint_round_trip_and_plain_loading(tmp_path):
    net = create_model(TINY, num_joints=5)
    opt = nn.Adam(net.trainable_params(), learning_rate=1e-3)
    opt.moment1[0].set_data(ms.Tensor(np.full(opt.moment1[0].shape, 0.25, np.float32)))
    opt.global_step.set_data(ms.Tensor(np.array([7], np.int32)))
    path = save_training_checkpoint(tmp_path / 'last.ckpt', net, opt, dict(step=7, best_metric=0.5))
    weights, state = read_training_checkpoint(path)
    assert int(state['step']) == 7 and float(state['best_metric']) == 0.5
    assert set(weights) == {p.name for p in net.get_parameters()}  # bare names, no optimizer keys
    fresh = nn.Adam(net.trainable_params(), learning_rate=1e-3)
    restore_optimizer(fresh, state, path)
    assert float(fresh.moment1[0].asnumpy().flat[0]) == 0.25 and int(fresh.global_step.asnumpy()[0]) == 7
    load_checkpoint(create_model(TINY, num_joints=5), path)  # a plain strict load ignores train_state.*
    with pytest.raises(ValueError, match='no training state'):
        read_training_checkpoint(save_training_checkpoint(tmp_path / 'w.ckpt', net))


def test_bad_input_exits_2_with_one_line(tmp_path):
    result = run_script(['src/train.py', '--dataset', 'coco', '--data_root', str(tmp_path / 'none'),
                         '--checkpoint_path', str(tmp_path / 'out')], timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count('\n') == 0 and 'data folder not found' in result.stderr
    assert 'Traceback' not in result.stderr


# --- end-to-end runs (subprocesses) -------------------------------------------------------------------

@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory):
    """A small demo set in the custom layout, and the tiny architecture as a .json file."""
    root = tmp_path_factory.mktemp('tiny')
    ensure_demo_dataset(root / 'data', TINY_DATA)
    (root / 'tiny.json').write_text(json.dumps(TINY))
    return root


def _train_args(tiny, out, *extra):
    return ['src/train.py', '--dataset', 'custom', '--data_root', str(tiny / 'data'), '--model_type',
            str(tiny / 'tiny.json'), '--target_res', '64x64', '--train_batch', '8', '--warmup_iters', '5',
            '--checkpoint_path', str(out), '--progress', 'false', *extra]


def _weights(path):
    return {k: np.asarray(v) for k, v in read_checkpoint(path)[0].items()}


RESUME_RUN = ['--epochs', '3', '--val_interval', '3', '--save_checkpoint_steps', '3']


@pytest.fixture(scope='module')
def whole_run(tiny_data, tmp_path_factory):
    """The uninterrupted run the resumed ones must reproduce."""
    out = tmp_path_factory.mktemp('whole')
    whole = run_script(_train_args(tiny_data, out, *RESUME_RUN))
    assert whole.returncode == 0, whole.stderr[-2000:]
    return out


def _as_written_before_the_rename(path):
    """Rewrite a training checkpoint as the trainer wrote it when the best metric was stored as `best_ap`."""
    params = ms.load_checkpoint(str(path))
    assert 'train_state.best_metric' in params
    ms.save_checkpoint([{'name': 'train_state.best_ap' if k == 'train_state.best_metric' else k,
                         'data': ms.Tensor(v.asnumpy())} for k, v in params.items()], str(path))
    assert 'best_ap' in read_training_checkpoint(path)[1]


@pytest.mark.slow
@pytest.mark.parametrize('written', ['now', 'before the best_ap rename'])
def test_resume_after_sigkill_ends_with_the_same_weights(tiny_data, whole_run, tmp_path, written):
    common = RESUME_RUN
    killed_dir = tmp_path / 'killed'
    proc = subprocess.Popen([sys.executable, *_train_args(tiny_data, killed_dir, *common)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (killed_dir / 'last.ckpt').exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL  # killed mid-run, not finished
    step = int(read_training_checkpoint(killed_dir / 'last.ckpt')[1]['step'])
    total = int(read_training_checkpoint(whole_run / 'last.ckpt')[1]['step'])
    assert 0 < step < total
    if written != 'now':
        _as_written_before_the_rename(killed_dir / 'last.ckpt')

    resumed = run_script(_train_args(tiny_data, killed_dir, *common, '--resume'))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f'resumed from {killed_dir / "last.ckpt"} at step {step}' in (killed_dir / 'train.log').read_text()
    a, b = _weights(whole_run / 'last.ckpt'), _weights(killed_dir / 'last.ckpt')
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    _, sa = read_training_checkpoint(whole_run / 'last.ckpt')
    _, sb = read_training_checkpoint(killed_dir / 'last.ckpt')
    for k in sa:
        np.testing.assert_array_equal(sa[k], sb[k], err_msg=k)  # optimizer moments and counters too


@pytest.mark.slow
def test_loss_falls_and_outputs_are_written(tiny_data, tmp_path):
    out = tmp_path / 'run'
    result = run_script(_train_args(tiny_data, out, '--epochs', '4', '--val_interval', '2', '--lr', '5e-3',
                                    '--save_interval', '2'))
    assert result.returncode == 0, result.stderr[-2000:]
    history = json.loads((out / 'history.json').read_text())
    losses = [r['loss'] for r in history]
    assert len(losses) == 4 and losses[-1] < 0.8 * losses[0], losses
    assert [r['epoch'] for r in history if 'AP' in r] == [2, 4]
    metrics = json.loads((out / 'metrics.json').read_text())
    assert {'AP', 'AP50', 'AP75', 'APm', 'APl', 'AR', 'best_AP', 'best_epoch'} <= set(metrics)
    assert metrics['epoch'] == 4
    for name in ('last.ckpt', 'best.ckpt', 'epoch_002.ckpt', 'epoch_004.ckpt', 'train.log', 'config.json',
                 'model.json'):
        assert (out / name).is_file(), name
    import cv2
    assert cv2.imread(str(out / 'curves.png')).shape[0] > 100
    examples = sorted((out / 'examples').glob('*.jpg'))
    assert examples and cv2.imread(str(examples[0])) is not None  # validation images with predicted poses
    net = create_model(str(tiny_data / 'tiny.json'))
    load_checkpoint(net, out / 'best.ckpt')  # bare network, true names, strict


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path):
    out = tmp_path / 'nan'
    result = run_script(_train_args(tiny_data, out, '--epochs', '3', '--lr', '1e30', '--warmup_iters', '0'))
    assert result.returncode == 1, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert 'loss is' in line and 'training stopped' in line and 'Traceback' not in result.stderr
    assert not (out / 'metrics.json').exists()


@pytest.mark.slow
def test_real_coco_tiny_training_lowers_the_loss(tmp_path):
    src = shared_path('data', 'coco-tiny')
    root = tmp_path / 'coco_tiny'
    (root / 'annotations').mkdir(parents=True)
    for split in ('train', 'val'):
        shutil.copy(src / 'test_coco.json', root / 'annotations' / f'{split}.json')
    os.symlink(src, root / 'images')
    (tmp_path / 'tiny.json').write_text(json.dumps(TINY))
    out = tmp_path / 'out'
    result = run_script(['src/train.py', '--dataset', 'custom', '--data_root', str(root), '--model_type',
                         str(tmp_path / 'tiny.json'), '--target_res', '128x96', '--train_batch', '4',
                         '--epochs', '24', '--warmup_iters', '5', '--lr', '5e-3', '--val_interval', '24',
                         '--checkpoint_path', str(out), '--progress', 'false'])
    assert result.returncode == 0, result.stderr[-2000:]
    losses = [r['loss'] for r in json.loads((out / 'history.json').read_text())]
    assert np.mean(losses[-4:]) < 0.85 * np.mean(losses[:4]), losses  # measured: 0.76


@pytest.mark.slow
def test_msrun_two_cpu_workers_end_with_identical_weights(tiny_data, tmp_path):
    out, logs = tmp_path / 'dist', tmp_path / 'logs'
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    cmd = ['bash', 'scripts/run_distribute_train.sh', '2', *_train_args(tiny_data, out, '--epochs', '2')[1:]]
    result = subprocess.run(cmd, cwd=ROOT, env=dict(env, LOG_DIR=str(logs)), capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prints = []
    for rank in (0, 1):
        text = (logs / f'worker_{rank}.log').read_text()
        prints += [line.split()[-1] for line in text.splitlines() if 'weights fingerprint' in line]
    assert len(prints) == 2 and prints[0] == prints[1]
    assert (out / 'last.ckpt').is_file() and (out / 'metrics.json').is_file()
    config = json.loads((out / 'config.json').read_text())
    assert config['batch_size'] == 8


AMP_STEPS = '''
import sys
import numpy as np
import mindspore as ms
from mindspore import nn
ms.set_context(mode=ms.GRAPH_MODE, device_target='CPU')
import litehrnet
from litehrnet.engine import trainer
from litehrnet.engine.config import DEMO_MODEL
net = litehrnet.create_model(DEMO_MODEL, num_joints=3, conv_impl='native')
opt = nn.Adam(net.trainable_params(), learning_rate=1e-3, loss_scale=trainer.LOSS_SCALE)
step = trainer.train_step_cell(net, opt, sys.argv[1])
step.set_train()
rng = np.random.default_rng(0)
x = ms.Tensor(rng.standard_normal((2, 3, 64, 64)).astype(np.float32))
target = ms.Tensor(rng.random((2, 3, 16, 16)).astype(np.float32))
weight = ms.Tensor(np.ones((2, 3), np.float32))
print([float(step(x, target, weight).asnumpy()) for _ in range(4)])
print(sorted({str(p.dtype) for p in net.trainable_params()}))
'''


@pytest.mark.slow
@pytest.mark.parametrize('level', ['O2', 'O3'])
def test_mixed_precision_train_step_compiles_and_learns(tmp_path, level):
    """--amp_level's graph (float16 activations, static loss scale) on the native layers GPU/Ascend use.

    Run on CPU here, which has float16 kernels: the head's bilinear matrices once stayed float32 and
    the graph did not compile. The loss must fall and the parameters stay float32 (saved as such).
    """
    script = tmp_path / 'amp_steps.py'
    script.write_text(AMP_STEPS)
    result = run_script([script, level])  # PYTHONPATH from run_script
    assert result.returncode == 0, result.stderr[-2000:]
    losses, dtypes = [json.loads(line.replace("'", '"')) for line in result.stdout.strip().splitlines()[-2:]]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert dtypes == ['Float32']
