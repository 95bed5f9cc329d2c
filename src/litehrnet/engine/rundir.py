"""The run folder of a training job: an earlier run is never overwritten silently, one job at a time.

* A folder that already holds a run (`last.ckpt` or `history.json`) is refused unless the run is
  resumed (`--resume`) or replaced (`--overwrite`); when the folder is the default one, not named by
  the user, the new run goes to the next free name instead (`output-2`, `output-3`, ...).
* A lock file (`train.lock`, holding the PID and host) keeps a second job out of a folder in use. Rank 0
  holds it for all ranks of an msrun job. A lock left by a process that is no longer running is
  taken over, with a note.
* Temporary files a crashed writer left behind (`.<name>.<random>.tmp...`) are removed on resume.
"""
import json
import os
import socket
from pathlib import Path

DEFAULT_OUTPUT_DIR = 'output'
RUN_MARKERS = ('last.ckpt', 'history.json')
LOCK_NAME = 'train.lock'


class RunFolderError(ValueError):
    """The run folder cannot be used (it holds another run, or another job is using it)."""


def run_marker(folder):
    """The first file showing that `folder` holds a training run, or None."""
    for name in RUN_MARKERS:
        if (Path(folder) / name).exists():
            return name
    return None


def next_free(folder):
    """`folder-2`, `folder-3`, ...: the first of these that does not hold a run."""
    folder = Path(folder)
    n = 2
    while run_marker(folder.with_name(f"{folder.name}-{n}")) or (folder.with_name(f"{folder.name}-{n}")
                                                                 / LOCK_NAME).exists():
        n += 1
    return folder.with_name(f"{folder.name}-{n}")


def choose_output_dir(output_dir=None, resume=False, overwrite=False, distributed=False):
    """(the folder this run writes to, a note for the log or None).

    output_dir None means the default folder, which moves on to the next free name when it holds a
    run (not in a distributed job, whose ranks must agree on the folder without talking).
    """
    folder = Path(output_dir or DEFAULT_OUTPUT_DIR)
    marker = run_marker(folder)
    if marker is None or resume:
        return folder, None
    if overwrite:
        return folder, f"--overwrite: this run replaces the earlier run in {folder}"
    if output_dir is None and not distributed:
        free = next_free(folder)
        return free, f"{folder} holds an earlier run: this run writes to {free}"
    raise RunFolderError(f"{folder} already holds a training run ({marker}): continue it with --resume, "
                         f"choose a new --checkpoint_path, or replace it with --overwrite")


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunLock:
    """`train.lock` in the run folder: acquire() refuses a folder in use; release() removes the lock."""

    def __init__(self, folder):
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def acquire(self):
        """Take the lock; returns a note when a dead process's lock was taken over, else None."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = dict(pid=os.getpid(), host=socket.gethostname())
        note = None
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                pid, host = holder.get('pid'), holder.get('host')
                if isinstance(pid, int) and (host != me['host'] or _alive(pid)):
                    where = '' if host == me['host'] else f" on host {host}"
                    raise RunFolderError(f"{self.path.parent} is in use by another training job (PID {pid}{where}, "
                                         f"lock file {self.path}): wait for it to end, or use another "
                                         f"--checkpoint_path") from None
                note = (f"took over the lock {self.path} left by PID {pid}, which is no longer running"
                        if isinstance(pid, int) else f"replaced the unreadable lock file {self.path}")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, 'w') as f:
                json.dump(me, f)
            self.held = True
            return note
        raise RunFolderError(f"{self.path}: could not take the run folder's lock")

    def _holder(self):
        try:
            holder = json.loads(self.path.read_text())
            return holder if isinstance(holder, dict) else {}
        except (OSError, ValueError):
            return {}

    def release(self):
        if self.held and self._holder().get('pid') == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False


def is_temporary(name):
    """A writer's temporary file (fileio.atomic_path's `.<name>.<random>.tmp[.ckpt]`, MindSpore's `.tmp`)."""
    return name.startswith('.') and ('.tmp' in name)


def remove_stale_temporaries(folder):
    """Delete temporary files a crashed writer left in `folder` (top level and val/); returns their names."""
    removed = []
    for sub in (Path(folder), Path(folder) / 'val'):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.is_file() and is_temporary(p.name):
                    p.unlink()
                    removed.append(str(p))
    return removed
