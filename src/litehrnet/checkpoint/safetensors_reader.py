"""Read ``.safetensors`` files (timm, Hugging Face) into numpy arrays through the package's numpy API (no torch).

A safetensors file is an 8-byte little-endian header length, a JSON header starting with ``{``, then the raw
tensor bytes; it is recognised by that content, never by its file name.
"""
import os
from typing import Dict

import numpy as np
import safetensors.numpy

__all__ = ["is_safetensors", "read_safetensors"]

_MAX_HEADER = 100 << 20  # the format's own limit on the JSON header


def is_safetensors(path) -> bool:
    """True when ``path`` starts like a safetensors file (header length that fits the file, then ``{``)."""
    try:
        with open(path, "rb") as file:
            head = file.read(9)
            size = os.fstat(file.fileno()).st_size
    except OSError:
        return False
    if len(head) < 9:
        return False
    length = int.from_bytes(head[:8], "little")
    return 2 <= length <= min(_MAX_HEADER, size - 8) and head[8:9] == b"{"


def read_safetensors(path) -> Dict[str, np.ndarray]:
    """All tensors of a safetensors file as {name: array}; any failure is a one-line ValueError naming the file."""
    try:
        return {str(k): np.asarray(v) for k, v in safetensors.numpy.load_file(os.fspath(path)).items()}
    except Exception as err:  # the Rust reader reports damage through several exception types
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"{path}: not a readable safetensors file ({reason})") from None
