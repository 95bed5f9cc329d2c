"""Backends that run the pose network: a MindSpore Cell, an exported MINDIR, or an ONNX model.

Every backend maps numpy (N, 3, H, W) float32 crops to (N, K, H/s, W/s) heatmaps (s the network's
output stride: its `output_stride`, or the export description's; else read off the heatmaps), and
`make_predictor` puts any of them behind the one `TopDownPredictor`, so cropping, flip test and
decoding are the same whatever runs the network. Exported models have a fixed batch size (every
batch is padded to it) and may carry the flip test inside; `src/export.py` records both, with the
input size and keypoint set, in a JSON file beside the model (`export_meta_path`).
"""
import json
import re
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import nn

from .data.datasets import DATASETS
from .data.validate import apply_keypoint_options, override_with_meta, with_sigmas
from .errors import CheckpointError
from .keypoint_sets import KNOWN_SETS
from .keypoints import keypoint_info_from_dict
from .predictor import TopDownPredictor
from .models.registry import check_input_size, create_model

BACKENDS = ('mindspore', 'mindir', 'onnx')
DEFAULT_INPUT_SIZE = DATASETS['coco'].input_size_hw  # when neither the arguments nor an export say


def export_meta_path(model_path):
    """Where the description of an exported model lives: beside it, with '.json' appended."""
    return Path(str(model_path) + '.json')


def read_export_meta(model_path):
    """The description export wrote beside a model (input_size, batch_size, flip_test, keypoints...), or {}."""
    path = export_meta_path(model_path)
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({str(e).splitlines()[0]})") from None


class CellRunner:
    """A MindSpore Cell in evaluation mode, any batch size (GRAPH mode pads batches to compile once)."""

    batch_size = None

    def __init__(self, net):
        self.net = net
        self.net.set_train(False)
        self.output_stride = getattr(net, 'output_stride', None)
        self.heatmap_sigma = getattr(net, 'heatmap_sigma', None)

    def __call__(self, batch):
        return self.net(ms.Tensor(np.ascontiguousarray(batch, dtype=np.float32))).asnumpy()


class MindirRunner:
    """An exported MINDIR file (`mindspore.load` + `nn.GraphCell`), run at its export batch size."""

    def __init__(self, path, batch_size):
        if not Path(path).is_file():
            raise ValueError(f"{path}: MINDIR file not found")
        try:
            self.cell = nn.GraphCell(ms.load(str(path)))
        except (RuntimeError, ValueError) as e:
            raise ValueError(f"{path}: cannot load as MINDIR ({str(e).strip().splitlines()[0]})") from None
        self.batch_size = int(batch_size)
        self.path = path

    def __call__(self, batch):
        try:
            return self.cell(ms.Tensor(np.ascontiguousarray(batch, dtype=np.float32))).asnumpy()
        except RuntimeError as e:
            raise ValueError(f"{self.path}: the model refused input of shape {tuple(batch.shape)}; was it "
                             f"exported for batch {self.batch_size} at this input size? "
                             f"({str(e).strip().splitlines()[0]})") from None


class OnnxRunner:
    """An ONNX model on onnxruntime's CPU provider (optional dependency); batch size read from the model."""

    def __init__(self, path):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ValueError("the onnx backend needs onnxruntime: pip install onnxruntime") from None
        if not Path(path).is_file():
            raise ValueError(f"{path}: ONNX file not found")
        try:
            self.session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own exception types for unreadable models
            raise ValueError(f"{path}: cannot load as ONNX ({str(e).strip().splitlines()[0]})") from None
        model_input = self.session.get_inputs()[0]
        self.input_name = model_input.name
        self.input_shape = list(model_input.shape)
        self.batch_size = self.input_shape[0] if isinstance(self.input_shape[0], int) else None

    @property
    def input_size_hw(self):
        """(H, W) the model was exported for."""
        return tuple(self.input_shape[2:4])

    def __call__(self, batch):
        return self.session.run(None, {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)})[0]


class _RunnerNet:
    """What TopDownPredictor calls (`set_train`, and Tensor in -> Tensor out) around a numpy runner."""

    def __init__(self, runner):
        self.runner = runner
        self.output_stride = getattr(runner, 'output_stride', None)  # None: the predictor reads the heatmaps
        self.heatmap_sigma = getattr(runner, 'heatmap_sigma', None)

    def set_train(self, mode=True):
        """Exported models and CellRunner's net are always in evaluation mode."""

    def __call__(self, batch):
        return ms.Tensor(self.runner(batch.asnumpy()))


def make_predictor(runner, input_size_hw, keypoint_info, flip_test=True, post_process='default', batch_size=32):
    """TopDownPredictor over any runner; a runner with a fixed batch size sets the predictor's, padded."""
    predictor = TopDownPredictor(_RunnerNet(runner), input_size_hw, keypoint_info, flip_test, post_process,
                                 runner.batch_size or batch_size)
    if runner.batch_size:
        predictor.fixed_batch = True
    return predictor


def _exported_meta(backend, model, checkpoint):
    """The export description of an exported backend's --model ({} for the mindspore backend), arguments checked."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == 'mindspore':
        if model:
            raise ValueError("--model is for the mindir and onnx backends (the mindspore backend builds "
                             "--model_type and loads --checkpoint)")
        return {}
    if not model:
        raise ValueError(f"the {backend} backend needs --model FILE (written by src/export.py)")
    if checkpoint:
        raise ValueError(f"--checkpoint is for the mindspore backend: the {backend} model holds its weights")
    return read_export_meta(model)


def _backend_keypoints(meta, model, keypoints, keypoint_meta, sigmas):
    """The keypoint set: --keypoints NAME, else the one an export carries (older exports: its name), else
    COCO's; --meta and --sigmas applied."""
    if keypoints or 'keypoint_set' not in meta:
        try:
            return apply_keypoint_options(keypoints or meta.get('keypoints', 'coco'), keypoint_meta, sigmas)
        except ValueError as e:
            if keypoints:
                raise
            raise ValueError(f"{export_meta_path(model)}: names keypoint set {meta['keypoints']!r} without its "
                             f"joints (an export older than the full keypoint set): give --keypoints NAME or "
                             f"ANNOTATION.json, or export again ({e})") from None
    info = keypoint_info_from_dict(meta['keypoint_set'], str(export_meta_path(model)))
    return with_sigmas(override_with_meta(info, keypoint_meta), sigmas)


def _native_model(model_type, info, checkpoint):
    """The mindspore backend's network; a checkpoint of another joint count says which --keypoints fit it."""
    try:
        return create_model(model_type, num_joints=info.num_joints, pretrained=checkpoint)
    except CheckpointError as e:
        found = re.search(r"keypoint_head\.final_layer\.\w+: file \((\d+)", str(e))
        if not found:
            raise
        k = int(found.group(1))
        fits = [s.key for s in KNOWN_SETS.values() if s.info.num_joints == k]
        raise CheckpointError(f"{e}; the checkpoint predicts {k} joints, keypoint set '{info.name}' has "
                              f"{info.num_joints}: give --keypoints NAME"
                              + (f" ({' / '.join(fits)})" if fits else '')
                              + " or --keypoints ANNOTATION.json") from None


def open_backend(backend, model=None, model_type='litehrnet_18', checkpoint=None, keypoints=None,
                 input_size_hw=None, flip_test=True, batch_size=16, meta=None, sigmas=None):
    """A runner for the backend and the settings to run it with, from the arguments and the export description.

    Returns (runner, settings): input_size_hw, keypoint_info, flip_test (for the predictor: off when
    the exported model holds it), flip_in_model, random_weights, and a JSON-ready `description`.
    Exported models take their input size, batch size and keypoint set from their description (or,
    for ONNX, the model's input); an explicit argument that contradicts them is an error.
    """
    exported = _exported_meta(backend, model, checkpoint)
    info = _backend_keypoints(exported, model, keypoints, meta, sigmas)
    meta = exported
    if meta.get('num_joints', info.num_joints) != info.num_joints:
        raise ValueError(f"{model} predicts {meta['num_joints']} joints but keypoint set '{info.name}' "
                         f"has {info.num_joints}")
    if backend == 'mindspore':
        size = tuple(input_size_hw or DEFAULT_INPUT_SIZE)
        check_input_size(model_type, *size)
        runner = CellRunner(_native_model(model_type, info, checkpoint))
    else:
        runner = MindirRunner(model, meta.get('batch_size') or batch_size) if backend == 'mindir' else OnnxRunner(model)
        model_size = tuple(meta.get('input_size') or getattr(runner, 'input_size_hw', ())) or None
        if input_size_hw and model_size and tuple(input_size_hw) != model_size:
            raise ValueError(f"{model} was exported for {model_size[0]}x{model_size[1]}, not "
                             f"{input_size_hw[0]}x{input_size_hw[1]}")
        size = tuple(input_size_hw or model_size or DEFAULT_INPUT_SIZE)
        runner.output_stride = meta.get('output_stride')  # absent in earlier exports: read off the heatmaps
        runner.heatmap_sigma = meta.get('heatmap_sigma')
    flip_in_model = bool(meta.get('flip_test'))
    description = dict(backend=backend, model=str(model) if model else model_type,
                       checkpoint=checkpoint if backend == 'mindspore' else meta.get('checkpoint'),
                       input_size=list(size), output_stride=runner.output_stride, keypoints=info.name,
                       flip_test='in the model' if flip_in_model else bool(flip_test))
    return runner, dict(input_size_hw=size, keypoint_info=info, flip_test=bool(flip_test) and not flip_in_model,
                        flip_in_model=flip_in_model, random_weights=backend == 'mindspore' and not checkpoint,
                        description=description)
