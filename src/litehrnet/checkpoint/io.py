"""Reading any supported checkpoint file into a name -> array map, and writing this project's atomically.

Formats are recognised by content: MindSpore ``.ckpt`` (this project's, and every key scheme
`formats` knows), PyTorch/mmpose ``.pth`` files (zip archive or legacy pickle, read without torch)
and ``.npz`` state dicts. Matching the arrays to a network, strictly, is `models.weights`' job.
"""
import binascii
import contextlib
import logging
import os
import zipfile
import zlib

import numpy as np
import mindspore as ms

from ..errors import CheckpointError
from ..fileio import atomic_path
from .formats import to_project_names
from .pth_reader import read_pth

__all__ = ["CheckpointError", "read_tensors", "read_checkpoint", "save_checkpoint"]


def _is_zip(path):
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def _read_npz(path):
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: np.asarray(data[k]) for k in data.files}
    except ValueError as e:  # object arrays (pickled Python objects) are refused, never unpickled
        reason = "holds object arrays (pickled Python objects), which are not read" \
            if "allow_pickle" in str(e) else f"not a readable .npz ({_first_line(e)})"
        raise CheckpointError(f"{path}: {reason}") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise CheckpointError(f"{path}: damaged .npz archive ({_first_line(e)})") from None
    return arrays


def _first_line(e):
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


@contextlib.contextmanager
def _mindspore_errors_quiet():
    """MindSpore logs an [ERROR] line for every unreadable .ckpt; the CheckpointError raised says it all."""
    logger = getattr(ms.log, "_get_logger", lambda: None)()
    level = logger.level if logger is not None else None
    if logger is not None:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        if logger is not None:
            logger.setLevel(level)


def _ckpt_crc_problem(path):
    """Why a .ckpt's own CRC (which MindSpore writes with crc_check=True) does not match, or None."""
    with open(path, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(max(size - 17, 0))
        tail = f.read(17)
        if size < 17 or tail[:7] != b"crc_num":
            return None  # written without a checksum (e.g. by the earlier port): nothing to check
        f.seek(0)
        crc, left = 0, size - 17
        while left > 0:
            chunk = f.read(min(left, 1 << 22))
            crc, left = binascii.crc32(chunk, crc), left - len(chunk)
    if crc != int.from_bytes(tail[7:], "big"):
        return "corrupt MindSpore checkpoint: its CRC checksum does not match (damaged or altered file)"
    return None


def _read_mindspore(path):
    problem = _ckpt_crc_problem(path)
    if problem:
        raise CheckpointError(f"{path}: {problem}")
    try:
        with _mindspore_errors_quiet():
            params = ms.load_checkpoint(path)  # the CRC was checked above
    except (ValueError, RuntimeError, TypeError) as e:
        reason = _first_line(e)
        detail = "" if os.path.abspath(path) in reason or str(path) in reason else f" ({reason})"
        raise CheckpointError(f"{path}: corrupt or not a checkpoint: MindSpore cannot parse it as a .ckpt{detail}, "
                              f"and it is not a PyTorch .pth or an .npz") from None
    return {k: v.asnumpy() for k, v in params.items()}


def _read_torch(path):
    try:
        return read_pth(path)
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def read_tensors(path):
    """All tensors of a checkpoint file as numpy arrays, keyed as stored (format chosen by content)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if _is_zip(path):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except zipfile.BadZipFile:
            raise CheckpointError(f"{path}: damaged zip archive (truncated download?)") from None
        return _read_npz(path) if any(n.endswith(".npy") for n in names) else _read_torch(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a pickle stream: PyTorch's legacy (pre-1.6) format
        return _read_torch(path)
    return _read_mindspore(path)


def read_checkpoint(path):
    """Network weights of a checkpoint under this project's names: (weights, scheme, training_state)."""
    return to_project_names(read_tensors(path))


def save_checkpoint(net, path, append_dict=None):
    """Save the bare network's weights to ``path`` via a temporary file and a rename."""
    path = os.fspath(path)
    # MindSpore appends ".ckpt" to any other name, so the temporary name ends with it too.
    with atomic_path(path, suffix=".tmp.ckpt") as tmp:
        try:
            ms.save_checkpoint(net, tmp, append_dict=append_dict, crc_check=True)
        finally:  # MindSpore writes <name>.tmp and renames it: a failed write leaves it behind
            leftover = tmp[:-len(".ckpt")] + ".tmp"
            if os.path.exists(leftover):
                os.chmod(leftover, 0o600)
                os.remove(leftover)
    return path
