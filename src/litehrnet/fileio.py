"""Atomic file writing: a temporary file in the destination folder, then a rename, so a crash never
leaves a half-written output and an existing file is replaced only by a complete one."""
import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path beside ``path``; on success it replaces ``path`` (mode 0644)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_text_atomic(path, text):
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as f:
            f.write(text)
    return str(path)


def write_json_atomic(path, obj, **kwargs):
    """Write ``obj`` as JSON to ``path`` atomically (NaN refused unless allow_nan is given)."""
    kwargs.setdefault("allow_nan", False)
    return write_text_atomic(path, json.dumps(obj, **kwargs))


def read_json(path, what="file", error=ValueError):
    """Parse a JSON file; a missing or malformed file raises ``error`` in one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None
