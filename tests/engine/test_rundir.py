"""Run folders: an earlier run is never overwritten silently, one job per folder, no temporary leftovers."""
import errno
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from litehrnet.commands import train
from litehrnet import save_checkpoint
from litehrnet.engine.rundir import (LOCK_NAME, RunFolderError, RunLock, choose_output_dir, next_free,
                                     remove_stale_temporaries)


def _run_folder(path, marker='last.ckpt'):
    path.mkdir(parents=True, exist_ok=True)
    (path / marker).write_bytes(b'an earlier run')
    return path


def _dead_pid():
    proc = subprocess.Popen([sys.executable, '-c', 'pass'])
    proc.wait()
    return proc.pid


def test_a_named_folder_holding_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    for marker in ('last.ckpt', 'history.json'):
        folder = _run_folder(tmp_path / marker, marker)
        with pytest.raises(RunFolderError, match=r'already holds a training run .*--resume.*--checkpoint_path.*'
                                                 r'--overwrite'):
            choose_output_dir(str(folder))
        assert choose_output_dir(str(folder), resume=True) == (folder, None)
        chosen, note = choose_output_dir(str(folder), overwrite=True)
        assert chosen == folder and 'replaces' in note
    empty = tmp_path / 'fresh'
    assert choose_output_dir(str(empty)) == (empty, None)


def test_the_default_folder_moves_on_to_the_next_free_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert choose_output_dir(None) == (tmp_path.joinpath('output').relative_to(tmp_path), None)
    _run_folder(tmp_path / 'output')
    chosen, note = choose_output_dir(None)
    assert str(chosen) == 'output-2' and note == 'output holds an earlier run: this run writes to output-2'
    _run_folder(tmp_path / 'output-2', 'history.json')
    (tmp_path / 'output-3').mkdir()
    (tmp_path / 'output-3' / LOCK_NAME).write_text('{}')  # a job is starting there
    assert str(next_free('output')) == 'output-4'
    with pytest.raises(RunFolderError):  # ranks of a distributed job cannot agree on a new name: refuse
        choose_output_dir(None, distributed=True)


def test_a_second_job_is_refused_and_a_dead_jobs_lock_is_taken_over(tmp_path):
    folder = tmp_path / 'run'
    first = RunLock(folder)
    assert first.acquire() is None
    assert json.loads((folder / LOCK_NAME).read_text())['pid'] == os.getpid()
    with pytest.raises(RunFolderError, match=rf'in use by another training job \(PID {os.getpid()}'):
        RunLock(folder).acquire()
    first.release()
    assert not (folder / LOCK_NAME).exists()

    dead = _dead_pid()
    (folder / LOCK_NAME).write_text(json.dumps(dict(pid=dead, host=os.uname().nodename)))
    second = RunLock(folder)
    assert second.acquire() == f"took over the lock {folder / LOCK_NAME} left by PID {dead}, which is no longer running"
    assert json.loads((folder / LOCK_NAME).read_text())['pid'] == os.getpid()
    second.release()


def test_train_cli_refuses_a_run_folder_and_a_folder_in_use_in_one_line(tmp_path, capsys):
    folder = _run_folder(tmp_path / 'named')
    before = (folder / 'last.ckpt').read_bytes()
    assert train.main(['--dataset', 'demo', '--checkpoint_path', str(folder), '--progress', 'false']) == 2
    err = capsys.readouterr().err.strip()
    assert err.count('\n') == 0 and str(folder) in err and '--overwrite' in err and 'Traceback' not in err
    assert (folder / 'last.ckpt').read_bytes() == before and sorted(os.listdir(folder)) == ['last.ckpt']

    busy = tmp_path / 'busy'
    sleeper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])
    try:
        busy.mkdir()
        (busy / LOCK_NAME).write_text(json.dumps(dict(pid=sleeper.pid, host=os.uname().nodename)))
        assert train.main(['--dataset', 'demo', '--checkpoint_path', str(busy), '--progress', 'false']) == 2
        err = capsys.readouterr().err.strip()
        assert err.count('\n') == 0 and f'PID {sleeper.pid}' in err and str(busy) in err
        assert sorted(os.listdir(busy)) == [LOCK_NAME]  # nothing generated or written
    finally:
        sleeper.kill()
        sleeper.wait()


def test_failed_checkpoint_writes_leave_no_temporary_files(tmp_path, monkeypatch):
    """Neither the project's temporary file nor MindSpore's own intermediate .tmp survives a failed save."""
    import mindspore as ms
    from mindspore import nn

    def full_disk(obj, name, **kwargs):
        with open(name[:-len('.ckpt')] + '.tmp', 'wb') as f:  # what MindSpore writes before its rename
            f.write(b'partial')
        raise OSError(errno.ENOSPC, 'No space left on device')

    net = nn.Dense(2, 2)
    save_checkpoint(net, tmp_path / 'last.ckpt')
    good = (tmp_path / 'last.ckpt').read_bytes()
    monkeypatch.setattr(ms, 'save_checkpoint', full_disk)
    with pytest.raises(OSError):
        save_checkpoint(net, tmp_path / 'last.ckpt')
    assert os.listdir(tmp_path) == ['last.ckpt'] and (tmp_path / 'last.ckpt').read_bytes() == good


def test_stale_temporaries_are_recognised_and_removed(tmp_path):
    (tmp_path / 'val').mkdir()
    stale = ['.last.ckpt.k2j3.tmp.ckpt', '.last.ckpt.k2j3.tmp.tmp', '.history.json.x1.tmp']
    for name in stale:
        (tmp_path / name).write_bytes(b'x')
    (tmp_path / 'val' / '.metrics.json.ab.tmp').write_bytes(b'x')
    keep = ['last.ckpt', 'history.json', 'train.log', 'notes.tmp.txt']
    for name in keep:
        (tmp_path / name).write_bytes(b'x')
    removed = remove_stale_temporaries(tmp_path)
    assert sorted(os.path.basename(p) for p in removed) == sorted(stale + ['.metrics.json.ab.tmp'])
    assert sorted(os.listdir(tmp_path)) == sorted(keep + ['val']) and not os.listdir(tmp_path / 'val')
