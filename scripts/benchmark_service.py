"""End-to-end frames per second of the pose service (detector + pose + tracking) on a synthetic video.

    python scripts/benchmark_service.py [--model_type litehrnet_18] [--target_res 256x192] [--frames 20]
        [--onnx yolov8n.onnx] [--kinds whole,boxfile,hog,onnx] [--mindyolo yolov8n] [--json]

The video: 640x480 frames of two of the demo's figures (litehrnet.data.demo) walking past each other
on the demo's background. For each detector kind the same `PoseEstimator` (random pose weights: speed
does not depend on them) runs `track` over the frames after one warm-up pass; reported is frames/s
and the people found per frame.

Kinds: `whole` (the whole frame as one box), `boxfile` (the figures' true boxes, as a box file gives
them), `hog` (OpenCV HOG), `onnx` (the --onnx file; without one, a random-weight YOLO-shaped network
built here: a strided conv backbone to three heads of 4 + 80 channels at strides 8/16/32, exported to
ONNX in the yolov8 layout (1, 84, 8400), about YOLOv8n's width, with two person rows planted in its
output so that the pose model has people to run on), and `mindyolo` (--mindyolo NAME,
random weights; slow on CPU: about 30 s per 640x640 frame measured here).
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)
from litehrnet.cli import resolution  # noqa: E402
from litehrnet.data import demo  # noqa: E402
from litehrnet.detectors import DetectorBoxes, make_detector  # noqa: E402
from litehrnet.device import DEVICES  # noqa: E402
from litehrnet.service import PoseEstimator  # noqa: E402

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


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--model_type', default='litehrnet_18')
    p.add_argument('--target_res', type=resolution, default=(256, 192))
    p.add_argument('--frames', type=int, default=20)
    p.add_argument('--kinds', default='whole,boxfile,hog,onnx')
    p.add_argument('--onnx', help='an ONNX detector of a supported layout (default: a YOLO-shaped one built here)')
    p.add_argument('--mindyolo', help='also time mindyolo:NAME (random weights; slow on CPU)')
    p.add_argument('--device_target', choices=DEVICES)
    p.add_argument('--json', action='store_true')
    args = p.parse_args(argv)
    frames, truth = synthetic_video(args.frames)
    est = PoseEstimator(args.model_type, target_res=args.target_res, device_target=args.device_target,
                        max_batch_size=4)
    kinds = [k for k in args.kinds.split(',') if k] + (['mindyolo'] if args.mindyolo else [])
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            if kind == 'whole':
                source = make_detector(None)
            elif kind == 'boxfile':
                source = TrueBoxes(truth)
            elif kind == 'hog':
                source = make_detector('hog')
            elif kind == 'onnx':
                people = [row[:4] for row in truth[len(truth) // 2]]
                path = args.onnx or str(yolo_shaped_onnx(os.path.join(tmp, 'yolo_shaped.onnx'), people))
                source = make_detector(f'onnx:{path}', det_layout='yolov8')
            elif kind == 'mindyolo':
                from litehrnet.mindyolo_detector import MindyoloDetector
                source = DetectorBoxes(MindyoloDetector(args.mindyolo, 'random'))
            else:
                raise SystemExit(f"unknown kind {kind!r}")
            est.box_source = source
            est.track(frames[:2])  # warm-up (graph compile)
            start = time.perf_counter()
            people = est.track(frames)
            seconds = time.perf_counter() - start
            results.append(dict(kind=kind, detector=source.description, fps=len(frames) / seconds,
                                people_per_frame=sum(map(len, people)) / len(frames)))
    if args.json:
        print(json.dumps(dict(model_type=args.model_type, target_res=list(args.target_res), device=est.device,
                              frames=args.frames, size=list(SIZE_WH), results=results), indent=1))
        return 0
    print(f"{args.model_type} {args.target_res[0]}x{args.target_res[1]} on {est.device}, {args.frames} frames "
          f"{SIZE_WH[0]}x{SIZE_WH[1]}, two people, tracking on")
    for r in results:
        print(f"  {r['kind']:9s} {r['fps']:7.2f} fps  {r['people_per_frame']:.1f} people/frame  ({r['detector']})")
    return 0


if __name__ == '__main__':
    sys.exit(main())
