"""The pose service end to end (detector + pose + tracking) for scripts/benchmark.py --service.

The video: 640x480 frames of two of the demo's figures (litehrnet.data.demo) walking past each other
on the demo's background. For one detector kind a `PoseEstimator` (random pose weights: speed does not
depend on them) runs `track` over the frames after a warm-up pass; measured: frames/s and the people
found per frame.

Kinds: `whole` (the whole frame as one box), `boxfile` (the figures' true boxes, as a box file gives
them), `hog` (OpenCV HOG), `onnx` (an ONNX file of a supported layout; without one, a random-weight
YOLO-shaped network built here: a strided conv backbone to three heads of 4 + 80 channels at strides
8/16/32, exported to ONNX in the yolov8 layout (1, 84, 8400), about YOLOv8n's width, with two person
rows planted in its output so that the pose model has people to run on), and `mindyolo` (random
weights; slow on CPU: about 30 s per 640x640 frame measured here).
"""
import os
import time

import numpy as np

from litehrnet.data import demo
from litehrnet.detectors import DetectorBoxes, make_detector
from litehrnet.service import PoseEstimator

KINDS = ("whole", "boxfile", "hog", "onnx")

SIZE_WH = (640, 480)


def synthetic_video(frames, seed=0):
    """(frames as HWC RGB uint8, the two figures' boxes per frame [[x, y, w, h, 1.0], ...])."""
    rng = np.random.default_rng(seed)
    background = demo._background(rng, SIZE_WH)
    poses = [demo.random_pose(rng, 300), demo.random_pose(rng, 280)]
    out, boxes = [], []
    for t in range(frames):
        canvas, mask = background.copy(), np.zeros(SIZE_WH[::-1], np.uint8)
        frame_boxes = []
        for (joints, radius), start, step in zip(poses, (120, 520), (12, -12)):
            placed = joints + np.array([start + step * t * 20 / max(frames, 1), 110])
            demo._draw_person(canvas, mask, placed, radius, 300, np.random.default_rng(seed + 1))
            lo, hi = placed.min(0) - radius, placed.max(0) + radius
            frame_boxes.append([lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1], 1.0])
        out.append(canvas[..., ::-1].copy())  # the demo draws BGR
        boxes.append(frame_boxes)
    return out, boxes


class TrueBoxes:
    """The figures' boxes by frame (what a box file would give)."""

    description = 'box file (true boxes)'

    def __init__(self, boxes):
        self.rows, self.t = boxes, 0

    def boxes(self, image, name):
        rows = np.asarray(self.rows[self.t % len(self.rows)], np.float64)
        self.t += 1
        return rows[:, :4], rows[:, 4]


def yolo_shaped_onnx(path, people=()):
    """Export a random-weight YOLO-shaped network (yolov8 layout, 640x640 -> (1, 84, 8400)) to path.

    Random weights find nobody, which would leave the pose model idle: the output is the network's
    (scaled by 1e-3) plus planted person rows at `people` (x, y, w, h boxes of a 640x480 frame,
    class-0 score 0.9), so the detector finds them and the pose model runs as with a real detector.
    """
    import mindspore as ms
    from mindspore import nn, ops

    def block(cin, cout, stride):
        return nn.SequentialCell([nn.Conv2d(cin, cout, 3, stride, pad_mode='pad', padding=1, has_bias=True),
                                  nn.ReLU(), nn.Conv2d(cout, cout, 3, 1, pad_mode='pad', padding=1, has_bias=True),
                                  nn.ReLU()])

    class YoloShaped(nn.Cell):
        def __init__(self):
            super().__init__()
            widths = [3, 16, 32, 64, 128, 256]
            self.stages = nn.CellList([block(widths[i], widths[i + 1], 2) for i in range(5)])
            self.heads = nn.CellList([nn.Conv2d(w, 84, 1, has_bias=True) for w in (64, 128, 256)])
            self.sigmoid = ops.Sigmoid()

        def construct(self, x):
            feats = []
            for i, stage in enumerate(self.stages):
                x = stage(x)
                if i >= 2:
                    feats.append(x)
            outs = ops.concat([self.sigmoid(head(f)).reshape(1, 84, -1) for head, f in zip(self.heads, feats)], 2)
            return ops.concat([outs[:, :4] * 640, outs[:, 4:]], 1) * 1e-3 + self.planted

    planted = np.zeros((1, 84, 8400), np.float32)
    for i, (x, y, w, h) in enumerate(people):  # the 640x480 frame sits at rows 80..560 of the 640x640 input
        planted[0, :5, 1000 + 97 * i] = [x + w / 2, y + h / 2 + 80, w, h, 0.9]
    net = YoloShaped()
    net.planted = ms.Tensor(planted)
    ms.export(net, ms.Tensor(np.zeros((1, 3, 640, 640), np.float32)), file_name=str(path)[:-5],
              file_format='ONNX')
    return path


def worker_service(spec):
    """frames/s of one detector kind (spec['kind']) on spec['frames'] frames, after a 2-frame warm-up."""
    frames, truth = synthetic_video(spec["frames"])
    kind = spec["kind"]
    if kind == "whole":
        source = make_detector(None)
    elif kind == "boxfile":
        source = TrueBoxes(truth)
    elif kind == "hog":
        source = make_detector("hog")
    elif kind == "onnx":
        people = [row[:4] for row in truth[len(truth) // 2]]
        path = spec.get("det_onnx") or str(yolo_shaped_onnx(os.path.join(spec["out_dir"], "yolo_shaped.onnx"),
                                                            people))
        layout = spec.get("det_layout") or (None if spec.get("det_onnx") else "yolov8")
        source = make_detector(f"onnx:{path}", det_layout=layout)
    elif kind == "mindyolo":
        from litehrnet.mindyolo_detector import MindyoloDetector
        source = DetectorBoxes(MindyoloDetector(spec["mindyolo"], "random"))
    else:
        raise ValueError(f"unknown detector kind {kind!r}")
    size = tuple(int(v) for v in spec["target_res"].lower().split("x"))
    est = PoseEstimator(spec["model_type"], target_res=size, device_target=spec["device_target"], max_batch_size=4)
    est.box_source = source
    est.track(frames[:2])  # warm-up (graph compile)
    start = time.perf_counter()
    people = est.track(frames)
    seconds = time.perf_counter() - start
    return {"detector": source.description, "fps": len(frames) / seconds,
            "people_per_frame": sum(map(len, people)) / len(frames), "device": est.device}
