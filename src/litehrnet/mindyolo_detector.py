"""A MindSpore-native person detector: YOLOv8 n/s/m and YOLOX s/m built with mindyolo (optional extra).

`pip install .[detect]` installs mindyolo 0.5 (and pillow and setuptools, which it imports without
declaring them). Its wheel ships no model configs: the two networks' layer lists are this package's
data (`detector_configs/yolov8.yaml`, `yolox.yaml`), scaled per size here. Weights: `weights` is a
.ckpt file or URL (downloaded to the checkpoint folder); default the published COCO checkpoint of the
model on the MindSpore download server. Every parameter of the network must be in the file with its
shape (extra entries, e.g. optimizer state, are ignored and counted). Person is COCO class 0.

Preprocessing is mindyolo's: the RGB image letterboxed into 640x640 (centred, padded with 114),
scaled to [0, 1]. mindyolo's YOLOv8 head gives (1, G, 4 + 80) rows of cx, cy, w, h in input pixels and
sigmoid class scores, its YOLOX head (1, G, 5 + 80) rows of decoded boxes, objectness and class
scores; both are decoded by onnx_detector's yolov8 / yolox (decoded) readers, then NMS and the
letterbox inversion follow as for ONNX models.

CPU speed: MindSpore's stock CPU convolutions are slow (the project's fast CPU path covers the pose
networks' convolutions, not mindyolo's), so expect about a second or more per 640x640 frame for
yolov8n on 2 CPU cores and several seconds for the s/m sizes; on CPU the ONNX detector (onnxruntime
or OpenCV DNN) is the fast path. On GPU/Ascend mindyolo runs at its usual speed.
"""
import importlib
from pathlib import Path

import mindspore as ms
import numpy as np
import yaml

from .checkpoint.download import download
from .checkpoint.io import read_tensors
from .errors import CheckpointError
from .models.registry import default_checkpoint_dir
from .onnx_detector import box_nms, decode_output, letterbox, unletterbox_boxes

CONFIG_DIR = Path(__file__).resolve().parent / 'detector_configs'
SERVER = 'https://download.mindspore.cn/toolkits/mindyolo/'
INPUT_SIZE = (640, 640)
NUM_CLASSES = 80

# name -> (family, depth_multiple, width_multiple, max_channels, default weights URL)
MODELS = {
    'yolov8n': ('yolov8', 0.33, 0.25, None, SERVER + 'yolov8/yolov8-n_500e_mAP372-cc07f5bd.ckpt'),
    'yolov8s': ('yolov8', 0.33, 0.50, None, SERVER + 'yolov8/yolov8-s_500e_mAP446-3086f0c9.ckpt'),
    'yolov8m': ('yolov8', 0.67, 0.75, 768, SERVER + 'yolov8/yolov8-m_500e_mAP505-8ff7a728.ckpt'),
    'yolox_s': ('yolox', 0.33, 0.50, None, SERVER + 'yolox/yolox-s_300e_map407-0983e07f.ckpt'),
    'yolox_m': ('yolox', 0.67, 0.75, None, SERVER + 'yolox/yolox-m_300e_map467-1db321ee.ckpt'),
}
MINDYOLO_MISSING = ("the mindyolo detector needs the optional mindyolo package: pip install '.[detect]' "
                    "(or pip install mindyolo==0.5.0 pillow setuptools)")


def mindyolo_available():
    """Whether mindyolo imports here."""
    try:
        importlib.import_module('mindyolo')
    except ImportError:
        return False
    return True


def network_config(name):
    """mindyolo's network config (a mindyolo Config) for a model name, from the package's own layer lists."""
    if name not in MODELS:
        raise ValueError(f"unknown mindyolo model {name!r}: expected one of {', '.join(MODELS)}")
    family, depth, width, max_channels, _ = MODELS[name]
    layers = yaml.safe_load((CONFIG_DIR / f'{family}.yaml').read_text())
    cfg = dict(layers, model_name=family, nc=NUM_CLASSES, depth_multiple=depth, width_multiple=width)
    if max_channels:
        cfg['max_channels'] = max_channels
    config = importlib.import_module('mindyolo.utils.config')
    return family, config.Config(cfg)


def build_network(name):
    """The mindyolo network for a model name (fresh weights), in evaluation mode; ValueError without mindyolo."""
    try:
        factory = importlib.import_module('mindyolo.models')
    except ImportError as e:
        raise ValueError(f"{MINDYOLO_MISSING} ({e})") from None
    family, cfg = network_config(name)
    net = factory.create_model(model_name=family, model_cfg=cfg, num_classes=NUM_CLASSES)
    net.set_train(False)
    return net


def load_detector_weights(net, path):
    """Every parameter of net from the checkpoint file at path (shapes checked); the count of ignored entries."""
    tensors = read_tensors(path)
    own = {p.name: p for p in net.get_parameters()}
    missing = [n for n in own if n not in tensors]
    wrong = [n for n in own if n in tensors and tuple(tensors[n].shape) != tuple(own[n].shape)]
    if missing or wrong:
        what = (f"{len(missing)} missing ({', '.join(sorted(missing)[:3])})" if missing else
                f"{len(wrong)} wrongly shaped ({wrong[0]})")
        raise CheckpointError(f"{path}: does not fit the detector network: {what}")
    for name, param in own.items():
        param.set_data(ms.Tensor(np.asarray(tensors[name]), dtype=param.dtype))
    return len(tensors) - len(own)


def resolve_weights(name, weights):
    """A local .ckpt path for weights (a file, a URL downloaded once, or None: the published URL)."""
    weights = weights or MODELS[name][4]
    if str(weights).startswith(('http://', 'https://')):
        # the server's file names end in the first 8 hex digits of the file's sha256
        stem = str(weights).rsplit('/', 1)[-1].rsplit('.', 1)[0]
        digest = stem.rsplit('-', 1)[-1] if '-' in stem else None
        digest = digest if digest and len(digest) == 8 and all(c in '0123456789abcdef' for c in digest) else None
        return download(weights, Path(default_checkpoint_dir()) / 'mindyolo', sha256=digest)
    if not Path(weights).is_file():
        raise ValueError(f"{weights}: detector weights file not found")
    return str(weights)


class MindyoloDetector:
    """People in an image from a mindyolo YOLOv8/YOLOX network (see the module docstring).

    weights: .ckpt file, URL, None (the published COCO checkpoint) or 'random' (fresh weights: for
    tests and timing only). class_id: the class kept (0 = person). score_thr, nms_iou: as ONNX models.
    """

    def __init__(self, name, weights=None, class_id=0, score_thr=0.3, nms_iou=0.45, input_size=INPUT_SIZE):
        if name not in MODELS:
            raise ValueError(f"unknown mindyolo model {name!r}: expected one of {', '.join(MODELS)}")
        self.name, self.family = name, MODELS[name][0]
        self.class_id, self.score_thr, self.nms_iou = int(class_id), float(score_thr), float(nms_iou)
        self.input_size = (int(input_size[0]), int(input_size[1]))  # multiples of 32
        self.net = build_network(name)
        if weights == 'random':
            self.weights = 'random (fresh initialisation)'
        else:
            self.weights = resolve_weights(name, weights)
            load_detector_weights(self.net, self.weights)
        self.description = f"mindyolo {name} (input {self.input_size[0]}x{self.input_size[1]}, class {self.class_id})"

    def raw(self, blob):
        """The network's detections (1, G, 4 + nc) or (1, G, 5 + nc) for a (1, 3, H, W) input."""
        out = self.net(ms.Tensor(blob))
        return (out[0] if isinstance(out, (tuple, list)) else out).asnumpy()

    def decode(self, raw):
        """Candidate boxes (M, 4) x1, y1, x2, y2 in input pixels and scores (M,), NMS applied."""
        if self.family == 'yolov8':
            cand, scores = decode_output(raw.transpose(0, 2, 1), 'yolov8', self.input_size, self.class_id,
                                         self.score_thr)
        else:
            cand, scores = decode_output(raw, 'yolox', self.input_size, self.class_id, self.score_thr,
                                         yolox_decoded=True)
        keep = box_nms(cand, scores, self.nms_iou)
        return cand[keep], scores[keep]

    def boxes(self, image_rgb, rel_path=None):
        """(boxes (N, 4) x, y, w, h in image pixels, scores (N,)), best first."""
        padded, ratio, pad = letterbox(image_rgb, self.input_size, center=True)
        blob = np.ascontiguousarray(padded.transpose(2, 0, 1)[None], dtype=np.float32) / np.float32(255)
        cand, scores = self.decode(self.raw(blob))
        xyxy = unletterbox_boxes(cand, ratio, pad, image_rgb.shape[:2])
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        return xywh[valid], scores[valid]
