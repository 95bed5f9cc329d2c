"""Person boxes from a YOLO detector exported to ONNX by its user: YOLOv5, YOLOv8/YOLO11 and YOLOX layouts.

The model runs through OpenCV DNN (a dependency already) or onnxruntime when it is installed. This
module does everything around the network: letterboxing, decoding the output layout, the class filter,
the score threshold, non-maximum suppression, and mapping the boxes back to the image.

Supported output layouts (one output tensor of rank 3, batch 1; G = number of grid cells over the
strides 8/16/32, e.g. 8400 for a 640x640 input):

- ``yolov5``: (1, 3G, 5 + nc) rows ``cx, cy, w, h, objectness, class scores...``; box centre and size in
  input pixels, objectness and class scores already sigmoid-activated (what YOLOv5's export.py writes).
  A row's score is objectness x class score.
- ``yolov8`` (also YOLO11 and the 'u' models): (1, 4 + nc, G) columns ``cx, cy, w, h, class scores...``;
  input pixels, no objectness (ultralytics' export).
- ``yolox``: (1, G, 5 + nc) rows ``x, y, w, h, objectness, class scores...`` as YOLOX's
  tools/export_onnx.py writes them by default: raw grid outputs, decoded here as
  centre = (xy + cell) x stride and size = exp(wh) x stride, cells in row-major order per stride,
  strides 8, 16, 32 in turn. Objectness and class scores are already sigmoid-activated. Models
  exported with ``--decode_in_inference`` hold input pixels instead: `yolox_decoded` says which, or
  (None) it is recognised from the confident rows' centres (raw offsets lie within a few cells of 0.5,
  decoded centres within a few cells of their own cell; the more plausible reading wins, raw on a tie).

Preprocessing follows each family's own demo: YOLOv5/YOLOv8 get an RGB image scaled to [0, 1],
letterboxed in the centre (ultralytics: aspect kept, padded with 114); YOLOX gets a BGR image in 0..255
placed in the top-left corner, padded with 114 (YOLOX's `preproc`).

When the layout is not named it is recognised from the output shape and the input size: the box axis
must hold exactly G (yolov8, yolox) or 3G (yolov5) entries; for yolov5 and yolov8 also G counted
with a stride-64 level (P6 models; raw YOLOX outputs are decoded for strides 8/16/32 only). A shape no layout fits, or one that several fit (only possible for tiny inputs, e.g.
(1, 84, 84) for a 64x64 input), is an error asking to name the layout.

A row is kept when its best class is `class_id` (ultralytics' and YOLOX's single-label rule) and its
score is above `score_thr`; greedy NMS at `nms_iou` follows, then the letterbox is inverted and the
boxes are clipped to the image. `boxes()` answers like every box source in `detection`:
(boxes (N, 4) as x, y, w, h in image pixels, scores (N,)), best first.
"""
import importlib
import logging
from collections import namedtuple
from pathlib import Path

import cv2
import numpy as np

LAYOUTS = ('yolov5', 'yolov8', 'yolox')
BACKENDS = ('auto', 'opencv', 'onnxruntime')
STRIDES = (8, 16, 32)
P6_STRIDES = (8, 16, 32, 64)
PAD_VALUE = 114
DEFAULT_INPUT_SIZE = (640, 640)
DETECTOR_KINDS = ('hog', 'onnx', 'mindyolo')

# (centre the letterbox, feed BGR, multiply pixel values by) per layout.
_PREPROCESS = {'yolov5': (True, False, 1 / 255.0), 'yolov8': (True, False, 1 / 255.0),
               'yolox': (False, True, 1.0)}

log = logging.getLogger(__name__)

DetectorSpec = namedtuple('DetectorSpec', 'kind arg')


def parse_detector_spec(spec):
    """'onnx:PATH' -> DetectorSpec('onnx', 'PATH'); 'hog' -> ('hog', None); 'mindyolo:yolov8n' likewise.

    Only the first colon separates, so a path may hold colons. Raises ValueError (one line) for an
    unknown kind, a missing argument, or an argument the kind does not take.
    """
    text = str(spec).strip()
    kind, sep, arg = text.partition(':')
    kind = kind.lower()
    if kind not in DETECTOR_KINDS:
        raise ValueError(f"unknown detector {text!r}: expected one of 'hog', 'onnx:PATH', 'mindyolo:MODEL'")
    if kind == 'hog':
        if sep:
            raise ValueError(f"detector 'hog' takes no argument, got {text!r}")
        return DetectorSpec('hog', None)
    if not arg.strip():
        raise ValueError(f"detector {kind!r} needs an argument: '{kind}:"
                         f"{'PATH' if kind == 'onnx' else 'MODEL'}', got {text!r}")
    return DetectorSpec(kind, arg.strip())


# ----------------------------------------------------------------------------------------------------
# Letterbox and its inversion

def letterbox(image, size_hw, center=True, pad_value=PAD_VALUE):
    """Resize keeping the aspect ratio into size_hw (H, W) and pad; returns (image, ratio, (left, top)).

    center=True is ultralytics' letterbox (rounded size, the padding split around the image);
    center=False is YOLOX's (size truncated, the image in the top-left corner).
    """
    h, w = image.shape[:2]
    out_h, out_w = size_hw
    ratio = min(out_h / h, out_w / w)
    if center:
        new_w, new_h = int(round(w * ratio)), int(round(h * ratio))
    else:
        new_w, new_h = int(w * ratio), int(h * ratio)
    resized = image if (new_w, new_h) == (w, h) else cv2.resize(image, (new_w, new_h),
                                                                 interpolation=cv2.INTER_LINEAR)
    if center:
        dw, dh = (out_w - new_w) / 2, (out_h - new_h) / 2
        top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    else:
        top = left = 0
    out = np.full((out_h, out_w) + image.shape[2:], pad_value, dtype=image.dtype)
    out[top:top + new_h, left:left + new_w] = resized
    return out, ratio, (left, top)


def unletterbox_boxes(boxes_xyxy, ratio, pad, image_hw):
    """Boxes (N, 4) x1, y1, x2, y2 in letterboxed input pixels -> image pixels, clipped to the image."""
    left, top = pad
    out = (np.asarray(boxes_xyxy, dtype=np.float64) - [left, top, left, top]) / ratio
    h, w = image_hw
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out


def box_nms(boxes_xyxy, scores, iou_thr):
    """Greedy non-maximum suppression: indices kept, best score first; drops boxes with IoU > iou_thr."""
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    areas = (boxes[:, 2] - boxes[:, 0]).clip(0) * (boxes[:, 3] - boxes[:, 1]).clip(0)
    order = np.argsort(-scores, kind='stable')
    keep = []
    while len(order):
        i, rest = order[0], order[1:]
        keep.append(i)
        iw = (np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0], boxes[rest, 0])).clip(0)
        ih = (np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1], boxes[rest, 1])).clip(0)
        inter = iw * ih
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, np.finfo(np.float64).tiny)
        order = rest[iou <= iou_thr]
    return np.array(keep, dtype=np.intp)


# ----------------------------------------------------------------------------------------------------
# Layouts

def grid_cells(input_hw, strides=STRIDES):
    """Number of grid cells over the strides for an input of size (H, W)."""
    h, w = input_hw
    return sum((h // s) * (w // s) for s in strides)


def _grid(input_hw, strides=STRIDES):
    """Cell (x, y) and stride of every box row, row-major per stride, strides in turn: (G, 2), (G, 1)."""
    cells, stride_col = [], []
    h, w = input_hw
    for s in strides:
        ys, xs = np.mgrid[0:h // s, 0:w // s]
        cells.append(np.stack([xs.ravel(), ys.ravel()], 1))
        stride_col.append(np.full((xs.size, 1), s, dtype=np.float64))
    return np.concatenate(cells).astype(np.float64), np.concatenate(stride_col)


def _shape_text(shape):
    return '(' + ', '.join(str(int(d)) for d in shape) + ')'


def recognise_layout(shape, input_hw):
    """The layout of an output of this shape for an input (H, W); ValueError when none or several fit."""
    shape = tuple(int(d) for d in shape)
    if len(shape) != 3 or shape[0] != 1:
        raise ValueError(f"unrecognised detector output shape {_shape_text(shape)}: expected (1, boxes, "
                         f"5 + classes) or (1, 4 + classes, boxes)")
    _, a, b = shape
    grids = {grid_cells(input_hw), grid_cells(input_hw, P6_STRIDES)}
    fits = [name for name, ok in (('yolov5', a in {3 * g for g in grids} and b >= 6),
                                  ('yolov8', b in grids and a >= 5),
                                  ('yolox', a == grid_cells(input_hw) and b >= 6)) if ok]
    size = f"{input_hw[0]}x{input_hw[1]}"
    if len(fits) == 1:
        return fits[0]
    g = grid_cells(input_hw)
    if not fits:
        raise ValueError(f"unrecognised detector output shape {_shape_text(shape)} for a {size} input: "
                         f"expected yolov5 (1, {3 * g}, 5+nc), yolov8 (1, 4+nc, {g}) or yolox (1, {g}, 5+nc); "
                         f"name the layout (--det_layout)")
    raise ValueError(f"detector output shape {_shape_text(shape)} for a {size} input fits "
                     f"{' and '.join(fits)}: name the layout (--det_layout)")


def _check_shape(layout, shape):
    """ValueError when an output of this shape cannot be read in the named layout."""
    ok = len(shape) == 3 and shape[0] == 1 and (shape[1] >= 5 if layout == 'yolov8' else shape[2] >= 6)
    if not ok:
        expected = '(1, 4 + classes, boxes)' if layout == 'yolov8' else '(1, boxes, 5 + classes)'
        raise ValueError(f"detector output shape {_shape_text(shape)} is not a {layout} output {expected}")


def _yolox_is_decoded(xywh, cells, strides):
    """Whether YOLOX boxes hold input pixels already (exported with decode_in_inference) or raw offsets."""
    xy = xywh[:, :2]
    raw_fit = (np.abs(xy - 0.5) <= 3).all(1).sum()
    decoded_fit = (np.abs(xy / strides - cells - 0.5) <= 3).all(1).sum()
    return decoded_fit > raw_fit


def decode_output(output, layout, input_hw, class_id, score_thr, yolox_decoded=None):
    """Candidate boxes of one output: (boxes (N, 4) x1, y1, x2, y2 in input pixels, scores (N,)).

    Rows whose best class is class_id and whose score is above score_thr, before NMS.
    """
    output = np.asarray(output, dtype=np.float64)
    _check_shape(layout, output.shape)
    rows = output[0].T if layout == 'yolov8' else output[0]
    first_class = 4 if layout == 'yolov8' else 5
    num_classes = rows.shape[1] - first_class
    if not 0 <= class_id < num_classes:
        raise ValueError(f"class {class_id} is out of range: the {layout} output has {num_classes} classes")
    scores = rows[:, first_class:]
    if layout != 'yolov8':
        scores = scores * rows[:, 4:5]
    best = scores.argmax(1)
    score = scores[np.arange(len(rows)), best]
    keep = (best == class_id) & (score > score_thr)
    if layout == 'yolov5':
        keep &= rows[:, 4] > score_thr
    xywh = rows[keep, :4]
    if layout == 'yolox':
        if len(rows) != grid_cells(input_hw):
            if yolox_decoded is False or yolox_decoded is None:
                raise ValueError(f"raw yolox output {_shape_text(output.shape)} needs "
                                 f"{grid_cells(input_hw)} boxes for a {input_hw[0]}x{input_hw[1]} input "
                                 f"(strides {STRIDES}); pass yolox_decoded=True if it holds pixels")
        else:
            cells, strides = (a[keep] for a in _grid(input_hw))
            decoded = _yolox_is_decoded(xywh, cells, strides) if yolox_decoded is None else yolox_decoded
            if not decoded:
                xywh = np.concatenate([(xywh[:, :2] + cells) * strides, np.exp(xywh[:, 2:]) * strides], 1)
    boxes = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], 1)
    return boxes, score[keep]


# ----------------------------------------------------------------------------------------------------
# Reading the model's input size without the onnx package: a minimal protobuf walk

def _varint(buf, pos):
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start=0, end=None):
    """(field number, wire type, value) of a protobuf message; length-delimited values as memoryview."""
    pos, end = start, len(buf) if end is None else end
    while pos < end:
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


def _sub(buf, number):
    return [v for n, w, v in _fields(buf) if n == number and w == 2]


def onnx_input_shape(path):
    """Dims of the model's first real graph input (None for a symbolic dim), or None if unreadable.

    ModelProto.graph (7) -> GraphProto.input (11, minus initializer (5) names) -> ValueInfoProto.type (2)
    -> TypeProto.tensor_type (1) -> shape (2) -> dim (1) -> dim_value (1).
    """
    try:
        buf = memoryview(Path(path).read_bytes())
        graph = _sub(buf, 7)[0]
        initializers = {bytes(n).decode() for init in _sub(graph, 5) for n in _sub(init, 8)}
        for info in _sub(graph, 11):
            if bytes(_sub(info, 1)[0]).decode() in initializers:
                continue
            shape = _sub(_sub(_sub(info, 2)[0], 1)[0], 2)[0]
            dims = []
            for dim in _sub(shape, 1):
                values = [v - (1 << 64) if v >= 1 << 63 else v for n, w, v in _fields(dim) if n == 1 and w == 0]
                dims.append(int(values[0]) if values and values[0] > 0 else None)  # -1, 0, symbolic: None
            return dims
    except (IndexError, ValueError, UnicodeDecodeError):
        return None
    return None


def onnx_node_count(path):
    """Nodes of the model's main graph (ModelProto.graph (7) -> GraphProto.node (1)); ValueError if it has none."""
    graphs = _sub(memoryview(Path(path).read_bytes()), 7)
    if not graphs:
        raise ValueError(f"{path}: no graph in this ONNX file")
    return len(_sub(graphs[0], 1))


# ----------------------------------------------------------------------------------------------------
# Backends

def onnxruntime_module():
    """The onnxruntime module, or None when it is not installed (it is optional: pip install .[onnx])."""
    try:
        return importlib.import_module('onnxruntime')
    except ImportError:
        return None


class _OpenCVRunner:
    name = 'opencv'

    def __init__(self, path):
        try:
            self.net = cv2.dnn.readNetFromONNX(str(path))
        except cv2.error as e:
            reason = str(e).strip().splitlines()[-1].strip('> ') if str(e).strip() else 'cv2.error'
            raise ValueError(f"{path}: OpenCV DNN cannot read this ONNX model ({reason})") from None
        self.outputs = self.net.getUnconnectedOutLayersNames()

    def __call__(self, blob):
        self.net.setInput(blob)
        return [np.asarray(o) for o in self.net.forward(self.outputs)]


class _OrtRunner:
    name = 'onnxruntime'

    def __init__(self, path, ort):
        try:
            self.session = ort.InferenceSession(str(path), providers=['CPUExecutionProvider'])
        except Exception as e:  # onnxruntime raises its own exception classes
            raise ValueError(f"{path}: onnxruntime cannot read this ONNX model "
                             f"({str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__})") from None
        self.input = self.session.get_inputs()[0].name

    def __call__(self, blob):
        return [np.asarray(o) for o in self.session.run(None, {self.input: blob})]


def _pick_output(outputs, path):
    """The detection tensor among a model's outputs: the largest one of rank 3 (or rank 2, batch added)."""
    candidates = [o if o.ndim == 3 else o[None] for o in outputs if o.ndim in (2, 3)]
    if not candidates:
        shapes = ', '.join(_shape_text(o.shape) for o in outputs)
        raise ValueError(f"{path}: unrecognised detector output shape {shapes}: expected one tensor "
                         f"(1, boxes, 5 + classes) or (1, 4 + classes, boxes)")
    return max(candidates, key=lambda o: o.size)


def _as_hw(size):
    if isinstance(size, (int, np.integer)):
        return int(size), int(size)
    h, w = (int(v) for v in size)
    return h, w


class OnnxYoloDetector:
    """A YOLO person detector exported to ONNX (see the module docstring for layouts and preprocessing).

    path: the .onnx file. layout: 'yolov5', 'yolov8' (also YOLO11) or 'yolox'; None recognises it from
    the output shape. class_id: the class kept (0 = person in COCO). score_thr: scores above it are
    kept. nms_iou: NMS overlap threshold. input_size: (H, W) or an int; None takes the model's static
    input size, else 640x640. backend: 'opencv', 'onnxruntime', or 'auto' (onnxruntime when
    installed). yolox_decoded: whether a YOLOX model decodes its boxes itself (None: recognised).
    The model is run once on a blank image at construction, so a bad model fails here, not mid-video.
    """

    def __init__(self, path, layout=None, class_id=0, score_thr=0.3, nms_iou=0.45, input_size=None,
                 backend='auto', yolox_decoded=None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such ONNX detector file")
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"unknown detector layout {layout!r}: expected one of {', '.join(LAYOUTS)}")
        if backend not in BACKENDS:
            raise ValueError(f"unknown ONNX backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.path, self.class_id = path, int(class_id)
        self.score_thr, self.nms_iou, self.yolox_decoded = float(score_thr), float(nms_iou), yolox_decoded
        self.input_size = self._input_size(path, input_size)
        self.runner = self._runner(path, backend)
        probe = _pick_output(self.runner(np.zeros((1, 3) + self.input_size, np.float32)), path)
        try:
            self.layout = layout or recognise_layout(probe.shape, self.input_size)
            decode_output(probe, self.layout, self.input_size, self.class_id, self.score_thr, yolox_decoded)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
        self.center, self.bgr, self.pixel_scale = _PREPROCESS[self.layout]
        self.description = (f"ONNX {self.layout} detector {path.name} ({self.runner.name}, input "
                            f"{self.input_size[0]}x{self.input_size[1]}, class {self.class_id}, "
                            f"score > {self.score_thr:g}, NMS IoU {self.nms_iou:g})")

    @staticmethod
    def _input_size(path, input_size):
        dims = onnx_input_shape(path)
        static = tuple(dims[2:4]) if dims and len(dims) == 4 and None not in dims[2:4] else None
        if input_size is None:
            if static is None:
                log.info("%s: dynamic input size; using %dx%d", path, *DEFAULT_INPUT_SIZE)
            return static or DEFAULT_INPUT_SIZE
        size = _as_hw(input_size)
        if static is not None and size != static:
            raise ValueError(f"{path}: the model's input is {static[0]}x{static[1]}, not the "
                             f"{size[0]}x{size[1]} asked for")
        return size

    @staticmethod
    def _runner(path, backend):
        ort = onnxruntime_module() if backend in ('auto', 'onnxruntime') else None
        if backend == 'onnxruntime' and ort is None:
            raise ValueError("backend 'onnxruntime' asked for, but onnxruntime is not installed "
                             "(pip install onnxruntime, or .[onnx])")
        return _OrtRunner(path, ort) if ort is not None else _OpenCVRunner(path)

    def preprocess(self, image_rgb):
        """(1, 3, H, W) float32 network input, letterbox ratio and (left, top) padding of an RGB image."""
        image = np.ascontiguousarray(image_rgb[..., ::-1]) if self.bgr else image_rgb
        padded, ratio, pad = letterbox(image, self.input_size, center=self.center)
        blob = padded.transpose(2, 0, 1)[None].astype(np.float32) * np.float32(self.pixel_scale)
        return np.ascontiguousarray(blob), ratio, pad

    def boxes(self, image_rgb, rel_path=None):
        """People in an HWC RGB uint8 image: (boxes (N, 4) x, y, w, h in image pixels, scores (N,)), best first."""
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3:
            raise ValueError(f"expected an HWC RGB image, got shape {image_rgb.shape}")
        blob, ratio, pad = self.preprocess(image_rgb)
        output = _pick_output(self.runner(blob), self.path)
        cand, scores = decode_output(output, self.layout, self.input_size, self.class_id, self.score_thr,
                                     self.yolox_decoded)
        keep = box_nms(cand, scores, self.nms_iou)
        xyxy = unletterbox_boxes(cand[keep], ratio, pad, image_rgb.shape[:2])
        xywh = np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], 1)
        valid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        return xywh[valid], scores[keep][valid]

    __call__ = boxes
