"""Interrupted and repeated training runs end cleanly (subprocesses: each pays a graph compile, so slow)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from litehrnet.data.demo import ensure_demo_dataset
from litehrnet.engine.rundir import LOCK_NAME, is_temporary
from litehrnet.engine.state import read_training_checkpoint

TINY = dict(stem_channels=16, stages=[
    dict(num_modules=1, num_branches=b, num_blocks=1, num_channels=[8, 16, 32, 64][:b]) for b in (2, 3, 4)])

FULL_DISK = '''
import errno, sys
from litehrnet.commands import train
from litehrnet.engine import trainer
real, calls = trainer.save_training_checkpoint, []
def save(path, *args, **kwargs):
    calls.append(path)
    if len(calls) == 2:
        raise OSError(errno.ENOSPC, 'No space left on device')
    return real(path, *args, **kwargs)
trainer.save_training_checkpoint = save
sys.exit(train.main(sys.argv[1:]))
'''


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny')
    ensure_demo_dataset(root / 'data', {'train': 24, 'val': 4})
    (root / 'tiny.json').write_text(json.dumps(TINY))
    return root


def _args(tiny, *extra):
    return [str(ROOT / 'src' / 'train.py'), '--dataset', 'custom', '--data_root', str(tiny / 'data'),
            '--model_type', str(tiny / 'tiny.json'), '--target_res', '64x64', '--train_batch', '8',
            '--warmup_iters', '5', '--progress', 'false', *extra]


def _run(args, cwd=ROOT):
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONUNBUFFERED='1', PYTHONPATH=str(ROOT / 'src')))


def _leftovers(folder):
    return [p for p in os.listdir(folder) if is_temporary(p) or p == LOCK_NAME]


@pytest.mark.slow
@pytest.mark.parametrize('signum, code', [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_step_saves_last_ckpt_and_resume_finishes(tiny, tmp_path, signum, code):
    out = tmp_path / 'run'
    args = _args(tiny, '--epochs', '3', '--val_interval', '3', '--save_checkpoint_steps', '2',
                 '--checkpoint_path', str(out))
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.time() + 300
    while not (out / 'last.ckpt').exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code, err[-2000:]
    line = err.strip().splitlines()[-1]
    name = signal.Signals(signum).name
    assert line.startswith(f'train.py: interrupted ({name}) at epoch ') and line.endswith('; resume with --resume')
    step = int(line.split(' step ')[1].split(';')[0])
    assert int(read_training_checkpoint(out / 'last.ckpt')[1]['step']) == step  # saved at that very step
    assert f'interrupted ({name}) at epoch' in (out / 'train.log').read_text()
    assert _leftovers(out) == [] and 'Traceback' not in err

    resumed = _run(args + ['--resume'])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    state = read_training_checkpoint(out / 'last.ckpt')[1]
    assert int(state['step']) > step and (out / 'metrics.json').is_file()


@pytest.mark.slow
def test_the_default_folder_is_never_overwritten_and_a_full_disk_names_the_file(tiny, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    first = _run(_args(tiny, '--epochs', '1'), cwd=work)
    assert first.returncode == 0, first.stderr[-2000:]
    before = (work / 'output' / 'last.ckpt').read_bytes()
    second = _run(_args(tiny, '--epochs', '1'), cwd=work)
    assert second.returncode == 0, second.stderr[-2000:]
    assert (work / 'output' / 'last.ckpt').read_bytes() == before
    assert (work / 'output-2' / 'last.ckpt').is_file()
    assert 'output holds an earlier run: this run writes to output-2' in (work / 'output-2' / 'train.log').read_text()

    script = tmp_path / 'full_disk.py'
    script.write_text(FULL_DISK)
    out = tmp_path / 'disk'
    result = _run([str(script), *_args(tiny, '--epochs', '3', '--val_interval', '3',
                                                           '--checkpoint_path', str(out))[1:]])
    assert result.returncode == 1, result.stderr[-2000:]
    line = result.stderr.strip().splitlines()[-1]
    assert f'could not write {out / "last.ckpt"} (No space left on device)' in line
    assert f'the last good checkpoint is {out / "last.ckpt"}' in line and 'Traceback' not in result.stderr
    assert int(read_training_checkpoint(out / 'last.ckpt')[1]['step']) > 0 and _leftovers(out) == []
