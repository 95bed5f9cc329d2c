"""Reading any supported checkpoint file into a name -> array map, and writing this project's atomically.

Formats are recognised by content: MindSpore ``.ckpt`` (this project's, and every key scheme
`formats` knows), PyTorch/mmpose ``.pth`` files (zip archive or legacy pickle, read without torch)
and ``.npz`` state dicts. Matching the arrays to a network, strictly, is `models.weights`' job.
"""
import os
import zipfile

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
    with np.load(path, allow_pickle=False) as data:
        return {k: np.asarray(data[k]) for k in data.files}


def _read_mindspore(path):
    try:
        params = ms.load_checkpoint(path, crc_check=True)
    except (ValueError, RuntimeError, TypeError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint (MindSpore .ckpt, PyTorch .pth or .npz): "
                              f"{first}") from None
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
        ms.save_checkpoint(net, tmp, append_dict=append_dict, crc_check=True)
    return path
