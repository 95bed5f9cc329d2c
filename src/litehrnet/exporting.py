"""Export the pose network to MINDIR or ONNX, optionally with the predictor's flip test folded in.

`FlipTestNet` computes in one graph exactly what `TopDownPredictor` does for the flip test, so an
exported model can be used without any flip logic around it. Files are written under a temporary
name and renamed, and a JSON description (input size, batch size, keypoint set, whether the flip
test is inside) and the full keypoint set (names, flip pairs, skeleton, sigmas) is written beside the model for `runners` and `src/infer.py`.
"""
import os
import shutil
import tempfile
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from .codec import OFFICIAL_STRIDE, flip_shift
from .keypoints import flip_indices, keypoint_info_dict
from .runners import export_meta_path
from .fileio import write_json_atomic

SUFFIXES = {'MINDIR': '.mindir', 'ONNX': '.onnx'}


class FlipTestNet(nn.Cell):
    """net(x) averaged with net(mirrored x) flipped back: pairs swapped, mirrored, shifted right by
    `codec.flip_shift` of the network's output stride (1 px, none at full resolution), as the predictor."""

    def __init__(self, net, flip_pairs, num_joints):
        super().__init__()
        self.net = net
        self.order = ms.Tensor(flip_indices(num_joints, flip_pairs).astype(np.int32))
        self.shift = flip_shift(getattr(net, 'output_stride', OFFICIAL_STRIDE))

    def construct(self, x):
        n = x.shape[0]
        both = self.net(ops.concat((x, ops.flip(x, (3,))), 0))
        flipped = ops.gather(ops.flip(both[n:], (3,)), self.order, 1)
        if self.shift:
            flipped = ops.concat((flipped[:, :, :, :1], flipped[:, :, :, :-1]), 3)
        return (both[:n] + flipped) * 0.5


def output_path(path, file_format):
    """The file export writes: `path`, with the format's suffix appended when it has another one."""
    path = Path(path)
    suffix = SUFFIXES[file_format]
    return path if path.suffix.lower() == suffix else path.with_name(path.name + suffix)


def export_network(net, input_size_hw, batch_size, file_format, path, keypoint_info, flip_test=False,
                   description=None):
    """Write `net` (flip test folded in when flip_test) for (batch_size, 3, H, W) float32 input; returns the path.

    The network must use the 'native' convolutions (the fast CPU kernels are custom operators that
    cannot be exported; checkpoints are interchangeable). `description` adds fields to the JSON.
    """
    if file_format not in SUFFIXES:
        raise ValueError(f"file format must be one of {sorted(SUFFIXES)}, got {file_format!r}")
    if getattr(net, 'conv_impl', 'native') != 'native':
        raise ValueError("build the network with conv_impl='native' to export it (the fast CPU "
                         "convolutions are custom operators)")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if flip_test and not keypoint_info.flip_pairs:
        raise ValueError(f"keypoint set '{keypoint_info.name}' has no left/right pairs: no flip test to fold in")
    net.set_train(False)
    cell = FlipTestNet(net, keypoint_info.flip_pairs, keypoint_info.num_joints) if flip_test else net
    path = output_path(path, file_format)
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = int(getattr(net, 'n_channels_in', 3))
    dummy = ms.Tensor(np.zeros((int(batch_size), channels) + tuple(input_size_hw), np.float32))
    tmp_stem = Path(tempfile.mkdtemp(dir=path.parent, prefix=f'.{path.name}.')) / 'model'
    written = tmp_stem.with_name(tmp_stem.name + SUFFIXES[file_format])
    try:
        ms.export(cell, dummy, file_name=str(tmp_stem), file_format=file_format)
        os.chmod(written, 0o644)  # MindSpore writes it owner-read-only
        os.replace(written, path)
    finally:
        shutil.rmtree(tmp_stem.parent, ignore_errors=True)
    stride = int(getattr(net, 'output_stride', OFFICIAL_STRIDE))
    meta = dict(description or {}, file_format=file_format, input_size=list(input_size_hw), output_stride=stride,
                heatmap_size=[int(input_size_hw[0]) // stride, int(input_size_hw[1]) // stride],
                heatmap_sigma=getattr(net, 'heatmap_sigma', None),
                batch_size=int(batch_size), num_joints=keypoint_info.num_joints, keypoints=keypoint_info.name,
                keypoint_set=keypoint_info_dict(keypoint_info), flip_test=bool(flip_test), mindspore_version=ms.__version__)
    write_json_atomic(export_meta_path(path), meta, indent=2)
    return path
