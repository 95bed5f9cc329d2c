"""ONNX YOLO detectors: tiny MindSpore Cells whose outputs hold known boxes, exported to ONNX here.

Every model returns a constant tensor in one layout (plus zero times, or a tap of, its input), so the
boxes it "detects" are chosen by the test; the detector must letterbox a 480x640 image into 320x320
(ratio 0.5, 40 rows of padding on top for YOLOv5/v8, none for YOLOX), decode, filter, NMS and map the
boxes back to exactly the chosen image boxes.
"""
import os
from types import SimpleNamespace

import cv2
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn, ops

from litehrnet import onnx_detector
from litehrnet.onnx_detector import (OnnxYoloDetector, box_nms, grid_cells, letterbox, onnx_input_shape,
                                     onnx_node_count, onnxruntime_module, parse_detector_spec, recognise_layout)

IMAGE_HW = (480, 640)
INPUT_HW = (320, 320)
NUM_CLASSES = 3
RATIO = 0.5
CENTRE_PAD = (0, 40)  # (left, top) of ultralytics' centred letterbox for 480x640 -> 320x320

# Chosen image boxes (x, y, w, h), objectness and class scores; what survives is worked out below.
PEOPLE = {
    'a': ((100, 60, 80, 200), 0.9, (1.0, 0.1, 0.0)),
    'b': ((400, 100, 120, 300), 1.0, (0.8, 0.0, 0.2)),
    'a_duplicate': ((104, 64, 80, 200), 0.9, (0.7, 0.0, 0.0)),   # IoU with a ~0.87: NMS removes it
    'other_class': ((300, 200, 60, 60), 1.0, (0.6, 0.95, 0.0)),  # best class 1: the class filter removes it
    'weak': ((20, 300, 50, 100), 1.0, (0.2, 0.0, 0.0)),          # below score_thr 0.3
    'off_edge': ((600, 400, 100, 120), 0.8, (0.95, 0.0, 0.0)),   # clipped to the image: 40 x 80
}
EXPECTED = {'a': (100, 60, 80, 200), 'b': (400, 100, 120, 300), 'off_edge': (600, 400, 40, 80)}


class ConstantDetector(nn.Cell):
    """Returns `base` plus, for each tap (row, col, c, y, x), the input pixel x[0, c, y, x] at base[0, row, col]."""

    def __init__(self, base, taps=()):
        super().__init__()
        self.base = ms.Tensor(np.asarray(base, np.float32))
        self.taps = tuple((c, y, x) for _, _, c, y, x in taps)
        masks = []
        for row, col, *_ in taps:
            mask = np.zeros(base.shape, np.float32)
            mask[0, row, col] = 1
            masks.append(ms.Tensor(mask))
        self.masks = masks

    def construct(self, x):
        out = self.base + ops.reshape(x[:, :1, :1, :1], (1, 1, 1)) * 0.0
        for k, (c, y, xx) in enumerate(self.taps):
            out = out + self.masks[k] * ops.reshape(x[:, c:c + 1, y:y + 1, xx:xx + 1], (1, 1, 1))
        return out


def export(tmp_path, name, base, taps=(), input_hw=INPUT_HW):
    """Write the ConstantDetector of `base` as tmp_path/name.onnx; returns the path."""
    stem = tmp_path / name
    ms.export(ConstantDetector(base, taps), ms.Tensor(np.zeros((1, 3) + input_hw, np.float32)),
              file_name=str(stem), file_format='ONNX')
    path = stem.with_suffix('.onnx')
    os.chmod(path, 0o644)
    return path


def to_input(box, pad):
    """Image box (x, y, w, h) -> centre and size (cx, cy, w, h) in letterboxed input pixels."""
    x, y, w, h = box
    return ((x + w / 2) * RATIO + pad[0], (y + h / 2) * RATIO + pad[1], w * RATIO, h * RATIO)


def rows_v5(pad):
    """A (1, 3G, 5 + nc) YOLOv5 output holding PEOPLE at scattered rows, all other rows zero."""
    out = np.zeros((1, 3 * grid_cells(INPUT_HW), 5 + NUM_CLASSES), np.float32)
    for i, (box, obj, cls) in enumerate(PEOPLE.values()):
        out[0, 37 * i + 5] = (*to_input(box, pad), obj, *cls)
    return out


def expected_boxes_scores(objectness=True):
    names = sorted(EXPECTED, key=lambda n: -np.prod([PEOPLE[n][1] if objectness else 1.0, PEOPLE[n][2][0]]))
    boxes = np.array([EXPECTED[n] for n in names], np.float64)
    scores = np.array([(PEOPLE[n][1] if objectness else 1.0) * PEOPLE[n][2][0] for n in names])
    return boxes, scores


def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, IMAGE_HW + (3,), dtype=np.uint8)


def test_yolov5_known_boxes_after_letterbox_inversion(tmp_path):
    det = OnnxYoloDetector(export(tmp_path, 'v5', rows_v5(CENTRE_PAD)), score_thr=0.3, nms_iou=0.5)
    assert det.layout == 'yolov5' and det.input_size == INPUT_HW
    boxes, scores = det.boxes(image())
    want_boxes, want_scores = expected_boxes_scores()
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-4)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def test_yolov8_known_boxes_after_letterbox_inversion(tmp_path):
    out = np.zeros((1, 4 + NUM_CLASSES, grid_cells(INPUT_HW)), np.float32)
    for i, (box, _, cls) in enumerate(PEOPLE.values()):
        out[0, :, 101 * i + 3] = (*to_input(box, CENTRE_PAD), *cls)
    det = OnnxYoloDetector(export(tmp_path, 'v8', out), score_thr=0.3, nms_iou=0.5)
    assert det.layout == 'yolov8'
    boxes, scores = det.boxes(image())
    want_boxes, want_scores = expected_boxes_scores(objectness=False)
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-4)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)


def yolox_rows(decoded):
    """(1, G, 5 + nc) YOLOX output: each person in the stride-8 cell holding its centre (top-left letterbox)."""
    out = np.zeros((1, grid_cells(INPUT_HW), 5 + NUM_CLASSES), np.float32)
    cells_per_row = INPUT_HW[1] // 8
    for box, obj, cls in PEOPLE.values():
        cx, cy, w, h = to_input(box, (0, 0))
        col, row = int(min(cx // 8, cells_per_row - 1)), int(cy // 8)
        xywh = (cx, cy, w, h) if decoded else (cx / 8 - col, cy / 8 - row, np.log(w / 8), np.log(h / 8))
        out[0, row * cells_per_row + col] = (*xywh, obj, *cls)
    return out


@pytest.mark.parametrize('decoded', [False, True], ids=['raw_grid', 'decoded'])
def test_yolox_known_boxes_raw_and_decoded(tmp_path, decoded):
    det = OnnxYoloDetector(export(tmp_path, 'yolox', yolox_rows(decoded)), score_thr=0.3, nms_iou=0.5)
    assert det.layout == 'yolox'
    boxes, scores = det.boxes(image())
    want_boxes, want_scores = expected_boxes_scores()
    np.testing.assert_allclose(boxes, want_boxes, atol=1e-3)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    # Forcing the other reading of the same numbers gives other boxes: the recognition mattered.
    forced = OnnxYoloDetector(det.path, score_thr=0.3, nms_iou=0.5, yolox_decoded=not decoded)
    other, _ = forced.boxes(image())
    assert other.shape != want_boxes.shape or not np.allclose(other, want_boxes, atol=1)


def test_network_sees_the_letterboxed_image_per_layout(tmp_path):
    """Scores tapped from input pixels: pad 114 on top (v8, RGB / 255) or the image corner (YOLOX, BGR 0..255)."""
    img = np.empty(IMAGE_HW + (3,), np.uint8)
    img[:] = (200, 50, 10)  # RGB
    v8 = np.zeros((1, 4 + NUM_CLASSES, grid_cells(INPUT_HW)), np.float32)
    v8[0, :4, 0] = to_input((100, 60, 80, 200), CENTRE_PAD)
    v8[0, :4, 1] = to_input((400, 100, 120, 300), CENTRE_PAD)
    # box 0's person score = red at input (0, 0) (padding); box 1's = red at input (160, 160) (image)
    det = OnnxYoloDetector(export(tmp_path, 'v8tap', v8, taps=[(4, 0, 0, 0, 0), (4, 1, 0, 160, 160)]),
                           score_thr=0.3)
    boxes, scores = det.boxes(img)
    np.testing.assert_allclose(scores, [200 / 255, 114 / 255], rtol=1e-5)
    np.testing.assert_allclose(boxes, [[400, 100, 120, 300], [100, 60, 80, 200]], atol=1e-4)

    yx = np.zeros((1, grid_cells(INPUT_HW), 5 + NUM_CLASSES), np.float32)
    yx[0, 0, :5] = (*to_input((100, 60, 80, 200), (0, 0)), 1.0)
    yx[0, 1, :5] = (*to_input((400, 100, 120, 300), (0, 0)), 1.0)
    # channel 0 is blue for YOLOX; input row 300 lies below the 240 image rows: padding
    det = OnnxYoloDetector(export(tmp_path, 'yoxtap', yx, taps=[(0, 5, 0, 0, 0), (1, 5, 0, 300, 0)]),
                           score_thr=0.3, yolox_decoded=True)
    boxes, scores = det.boxes(img)
    np.testing.assert_allclose(scores, [114.0, 10.0], rtol=1e-6)
    np.testing.assert_allclose(boxes, [[400, 100, 120, 300], [100, 60, 80, 200]], atol=1e-4)


def test_named_layout_and_class_filter(tmp_path):
    path = export(tmp_path, 'v5', rows_v5(CENTRE_PAD))
    named = OnnxYoloDetector(path, layout='yolov5', score_thr=0.3, nms_iou=0.5)
    np.testing.assert_allclose(named.boxes(image())[0], expected_boxes_scores()[0], atol=1e-4)
    # class 1: only 'other_class' has it as its best class
    boxes, scores = OnnxYoloDetector(path, class_id=1, score_thr=0.3).boxes(image())
    np.testing.assert_allclose(boxes, [[300, 200, 60, 60]], atol=1e-4)
    np.testing.assert_allclose(scores, [0.95], atol=1e-6)
    # without NMS (threshold 1) the duplicate comes back
    boxes, _ = OnnxYoloDetector(path, score_thr=0.3, nms_iou=1.0).boxes(image())
    assert len(boxes) == 4 and np.allclose(boxes[3], [104, 64, 80, 200], atol=1e-4)
    with pytest.raises(ValueError, match="class 5 is out of range"):
        OnnxYoloDetector(path, class_id=5)


def test_layout_recognition_from_shapes():
    assert recognise_layout((1, 25200, 85), (640, 640)) == 'yolov5'
    assert recognise_layout((1, 84, 8400), (640, 640)) == 'yolov8'
    assert recognise_layout((1, 8400, 85), (640, 640)) == 'yolox'
    assert recognise_layout((1, 5, 8400), (640, 640)) == 'yolov8'  # one-class YOLOv8
    assert recognise_layout((1, 3 * 8500, 85), (640, 640)) == 'yolov5'  # P6: strides 8..64
    assert recognise_layout((1, 84, 8500), (640, 640)) == 'yolov8'
    with pytest.raises(ValueError, match="unrecognised"):
        recognise_layout((1, 8500, 85), (640, 640))  # no raw YOLOX decoding for a stride-64 level
    with pytest.raises(ValueError, match="unrecognised"):
        recognise_layout((1, 300, 6), (640, 640))  # an end-to-end (NMS inside) export: not supported
    assert recognise_layout((1, 84, 2100), (320, 320)) == 'yolov8'
    with pytest.raises(ValueError, match=r"\(1, 84, 84\) for a 64x64 input fits yolov8 and yolox"):
        recognise_layout((1, 84, 84), (64, 64))
    with pytest.raises(ValueError, match=r"unrecognised detector output shape \(1, 300, 6\)"):
        recognise_layout((1, 300, 6), (640, 640))


def test_wrong_output_shape_is_one_clear_error(tmp_path):
    path = export(tmp_path, 'bad', np.zeros((1, 7, 6), np.float32), input_hw=(64, 64))
    with pytest.raises(ValueError) as info:
        OnnxYoloDetector(path)
    message = str(info.value)
    assert '\n' not in message and str(path) in message and '(1, 7, 6)' in message
    assert 'yolov5 (1, 252, 5+nc)' in message and 'det_layout' in message
    with pytest.raises(ValueError, match=r"raw yolox output \(1, 7, 6\) needs 84 boxes for a 64x64 input"):
        OnnxYoloDetector(path, layout='yolox')
    assert OnnxYoloDetector(path, layout='yolov5').layout == 'yolov5'  # 7 boxes of 1 class: readable
    with pytest.raises(ValueError, match=r"\(1, 4, 6\) is not a yolov8 output \(1, 4 \+ classes, boxes\)"):
        OnnxYoloDetector(export(tmp_path, 'thin', np.zeros((1, 4, 6), np.float32), input_hw=(64, 64)),
                         layout='yolov8')


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no_such.onnx: no such ONNX detector file"):
        OnnxYoloDetector(tmp_path / 'no_such.onnx')
    junk = tmp_path / 'junk.onnx'
    junk.write_bytes(b'this is not a protobuf')
    with pytest.raises(ValueError) as info:
        OnnxYoloDetector(junk, backend='opencv')
    assert 'junk.onnx: OpenCV DNN cannot read this ONNX model' in str(info.value)
    assert '\n' not in str(info.value)
    with pytest.raises(ValueError, match="unknown detector layout 'yolov7'"):
        OnnxYoloDetector(junk, layout='yolov7')


def test_onnxruntime_backend_matches_opencv(tmp_path):
    if onnxruntime_module() is None:
        pytest.skip("onnxruntime is not installed (optional: pip install .[onnx]); OpenCV DNN is tested")
    path = export(tmp_path, 'v5', rows_v5(CENTRE_PAD))
    ort_det = OnnxYoloDetector(path, backend='onnxruntime', score_thr=0.3, nms_iou=0.5)
    cv_det = OnnxYoloDetector(path, backend='opencv', score_thr=0.3, nms_iou=0.5)
    assert ort_det.runner.name == 'onnxruntime' and cv_det.runner.name == 'opencv'
    for got, want in zip(ort_det.boxes(image()), cv_det.boxes(image())):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_onnxruntime_missing_is_a_clear_error(tmp_path):
    if onnxruntime_module() is not None:
        pytest.skip("onnxruntime is installed: the missing-backend message cannot be shown")
    path = export(tmp_path, 'v5', rows_v5(CENTRE_PAD))
    with pytest.raises(ValueError, match="onnxruntime is not installed"):
        OnnxYoloDetector(path, backend='onnxruntime')
    assert OnnxYoloDetector(path).runner.name == 'opencv'  # 'auto' falls back


def test_auto_backend_prefers_onnxruntime_when_importable(tmp_path, monkeypatch):
    """With an onnxruntime stand-in (InferenceSession API, run by OpenCV) 'auto' takes it and decodes the same."""
    class Session:
        def __init__(self, path, providers):
            assert providers == ['CPUExecutionProvider']
            self.net = cv2.dnn.readNetFromONNX(path)

        def get_inputs(self):
            return [SimpleNamespace(name='x')]

        def run(self, names, feed):
            assert names is None and list(feed) == ['x'] and feed['x'].dtype == np.float32
            self.net.setInput(feed['x'])
            return [self.net.forward()]

    monkeypatch.setattr(onnx_detector, 'onnxruntime_module', lambda: SimpleNamespace(InferenceSession=Session))
    det = OnnxYoloDetector(export(tmp_path, 'v5', rows_v5(CENTRE_PAD)), score_thr=0.3, nms_iou=0.5)
    assert det.runner.name == 'onnxruntime' and '(onnxruntime,' in det.description
    np.testing.assert_allclose(det.boxes(image())[0], expected_boxes_scores()[0], atol=1e-4)
    assert OnnxYoloDetector(det.path, backend='opencv').runner.name == 'opencv'


def test_input_size_must_match_a_static_model(tmp_path):
    path = export(tmp_path, 'v5', rows_v5(CENTRE_PAD))
    with pytest.raises(ValueError, match="the model's input is 320x320, not the 640x640 asked for"):
        OnnxYoloDetector(path, input_size=640)


def test_letterbox_centre_and_corner():
    img = np.full((480, 640, 3), 7, np.uint8)
    out, ratio, pad = letterbox(img, (320, 320))
    assert ratio == 0.5 and pad == (0, 40)
    assert (out[:40] == 114).all() and (out[280:] == 114).all() and (out[40:280] == 7).all()
    out, ratio, pad = letterbox(img, (320, 320), center=False)
    assert pad == (0, 0) and (out[:240] == 7).all() and (out[240:] == 114).all()
    out, ratio, pad = letterbox(np.zeros((100, 50, 3), np.uint8), (64, 64))
    assert ratio == 0.64 and pad == (16, 0) and out.shape == (64, 64, 3)  # 32 wide: 16 + 32 + 16


def test_box_nms_drops_overlaps_above_threshold():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30], [0, 0, 10, 5]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    # IoU(0, 1) = 90 / 110 = 0.818; IoU(3, 0) = 50 / 100 = 0.5; IoU(3, 1) = 45 / 105
    assert box_nms(boxes, scores, 0.5).tolist() == [3, 0, 2]
    assert box_nms(boxes, scores, 0.49).tolist() == [3, 1, 2]
    assert box_nms(boxes, scores, 0.85).tolist() == [3, 0, 1, 2]
    assert box_nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_parse_detector_spec():
    assert parse_detector_spec('onnx:/a/b.onnx') == ('onnx', '/a/b.onnx')
    assert parse_detector_spec('onnx:C:/models/y.onnx') == ('onnx', 'C:/models/y.onnx')
    assert parse_detector_spec('hog') == ('hog', None)
    assert parse_detector_spec('mindyolo:yolov8n') == ('mindyolo', 'yolov8n')
    with pytest.raises(ValueError, match="needs an argument"):
        parse_detector_spec('onnx:')
    with pytest.raises(ValueError, match="unknown detector 'yolo'"):
        parse_detector_spec('yolo')


def _varint(n):
    n &= (1 << 64) - 1  # int64 as protobuf writes it (a negative value takes ten bytes)
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _msg(number, payload):
    """A length-delimited protobuf field (payload: bytes) or a varint field (payload: int)."""
    if isinstance(payload, int):
        return _varint(number << 3) + _varint(payload)
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def test_input_shape_read_from_the_protobuf(tmp_path):
    """Graph inputs that are initializers are skipped; symbolic and -1 dims read as None."""
    dims = [_msg(1, _msg(1, 1)), _msg(1, _msg(2, b'height')), _msg(1, _msg(1, -1)), _msg(1, _msg(1, 640))]
    tensor_type = _msg(1, _msg(1, 1) + _msg(2, b''.join(dims)))
    graph = (_msg(5, _msg(8, b'weight') + _msg(9, b'\x00' * 16))
             + _msg(11, _msg(1, b'weight') + _msg(2, _msg(1, _msg(1, 1))))
             + _msg(11, _msg(1, b'images') + _msg(2, tensor_type)))
    path = tmp_path / 'm.onnx'
    path.write_bytes(_msg(1, 8) + _msg(7, graph))
    assert onnx_input_shape(path) == [1, None, None, 640]
    path.write_bytes(b'\xff\xff garbage')
    assert onnx_input_shape(path) is None


def test_onnx_node_count_reads_the_graph_nodes_of_a_hand_made_model(tmp_path):
    def field(number, payload):
        return bytes([(number << 3) | 2, len(payload)]) + payload

    node = field(4, b"Relu")  # NodeProto.op_type
    graph = field(1, node) * 3 + field(2, b"g") + field(1, node)  # four nodes and a name
    path = tmp_path / "m.onnx"
    path.write_bytes(bytes([0x08, 0x07]) + field(7, graph))  # ir_version 7, then the graph
    assert onnx_node_count(path) == 4
    (tmp_path / "empty.onnx").write_bytes(bytes([0x08, 0x07]))
    with pytest.raises(ValueError, match="no graph"):
        onnx_node_count(tmp_path / "empty.onnx")
