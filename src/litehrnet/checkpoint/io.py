"""Reading any supported checkpoint strictly, and writing this project's atomically.

Formats are recognised by content: MindSpore ``.ckpt`` (this project's, and both key
schemes of the earlier MindSpore port), PyTorch/mmpose ``.pth`` zip archives (read
without torch), and ``.npz`` state dicts. Loading never relies on MindSpore's
``load_param_into_net`` (it silently suffix-matches and ignores missing names):
every tensor of the network must be present with the right shape, and nothing else
(optimizer state aside) may be in the file.
"""
import binascii
import contextlib
import logging
import os
import re
import zipfile
import zlib

import numpy as np
import mindspore as ms

from ..fileio import atomic_path
from .formats import to_project_names


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network (the message names the file)."""


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
    from .pth_reader import read_pth  # imported lazily: only .pth files need it
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


def describe_weights(weights):
    """A short description of the architecture a set of weights belongs to (for error messages)."""
    from ..models.configs import MODEL_CONFIGS
    if not any(k.startswith("backbone.") for k in weights):
        return "not a Lite-HRNet checkpoint"
    stages = {}
    for k in weights:
        m = re.match(r"^backbone\.stages\.(\d+)\.(\d+)\.", k)
        if m:
            stages.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    modules = tuple(len(stages[s]) for s in sorted(stages))
    lite = any("cross_resolution_weighting" in k for k in weights)
    widths = []
    for i in range(8):
        w = weights.get(f"backbone.head_layer.projects.{i}.depthwise_conv.conv.weight")
        if w is None:
            break
        widths.append(int(w.shape[0]))
    widths = tuple(widths[::-1])
    head = weights.get("keypoint_head.final_layer.weight")
    joints = f"{head.shape[0]} joints" if head is not None else "no keypoint head"
    for name, cfg in MODEL_CONFIGS.items():
        if (tuple(s["num_modules"] for s in cfg["stages"]) == modules
                and tuple(cfg["stages"][-1]["num_channels"]) == widths
                and (cfg["stages"][0]["module_type"] == "lite") == lite):
            return f"{name} ({joints})"
    kind = "conditional-channel-weighting" if lite else "naive"
    return f"a custom {kind} Lite-HRNet (modules {modules}, widths {widths}, {joints})"


def describe_network(net):
    """The same description for a built network."""
    return describe_weights({p.name: p for p in net.get_parameters()})


def _first(names, n=3):
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_weights(net, weights, source="weights", reset_head=False, verbose=True):
    """Strictly copy ``weights`` (project names -> arrays) into ``net``.

    With ``reset_head`` a keypoint head of a different joint count is left at its fresh
    initialisation (fine-tuning on another keypoint set); anything else must match exactly.
    """
    own = {p.name: p for p in net.get_parameters()}
    missing = [n for n in own if n not in weights]
    unexpected = [n for n in weights if n not in own]
    wrong = [n for n in own if n in weights and tuple(weights[n].shape) != tuple(own[n].shape)]
    skipped = []
    if reset_head:
        skipped = [n for n in wrong if n.startswith("keypoint_head.final_layer.")]
        wrong = [n for n in wrong if n not in skipped]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        if wrong:
            n = wrong[0]
            parts.append(f"{len(wrong)} wrongly shaped ({n}: file {tuple(weights[n].shape)}, "
                         f"network {tuple(own[n].shape)}{'...' if len(wrong) > 1 else ''})")
        raise CheckpointError(f"{source}: does not fit the network: {'; '.join(parts)}; "
                              f"this is a {describe_weights(weights)} checkpoint, you built {describe_network(net)}")
    for name, param in own.items():
        if name in skipped:
            continue
        param.set_data(ms.Tensor(np.asarray(weights[name]), dtype=param.dtype))
    if skipped and verbose:
        old = weights["keypoint_head.final_layer.weight"].shape[0]
        print(f"{source}: keypoint head has {old} joints, the network {net.num_joints}: "
              f"the final layer was re-initialised, everything else loaded")
    return skipped


def load_checkpoint(net, path_or_name, reset_head=False, verbose=True):
    """Load a checkpoint (a file, or a published name / URL that is downloaded) into ``net``, strictly."""
    from ..models.registry import resolve_checkpoint
    path = resolve_checkpoint(path_or_name)
    weights, _, _ = read_checkpoint(path)
    load_weights(net, weights, source=path, reset_head=reset_head, verbose=verbose)
    return net


def _atomic_save(save_obj, path, append_dict=None):
    path = os.fspath(path)
    # MindSpore appends ".ckpt" to any other name, so the temporary name ends with it too.
    with atomic_path(path, suffix=".tmp.ckpt") as tmp:
        try:
            ms.save_checkpoint(save_obj, tmp, append_dict=append_dict, crc_check=True)
        finally:  # MindSpore writes <name>.tmp and renames it: a failed write leaves it behind
            leftover = tmp[:-len(".ckpt")] + ".tmp"
            if os.path.exists(leftover):
                os.chmod(leftover, 0o600)
                os.remove(leftover)
    return path


def save_checkpoint(net, path, append_dict=None):
    """Save the bare network's weights to ``path`` via a temporary file and a rename."""
    return _atomic_save(net, path, append_dict)


def save_tensors(tensors, path):
    """Save a dict name -> numpy array as a MindSpore .ckpt, atomically."""
    params = [{"name": k, "data": ms.Tensor(np.asarray(v))} for k, v in tensors.items()]
    return _atomic_save(params, path)
