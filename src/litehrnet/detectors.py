"""Every person-box source behind one interface, chosen by a string (`--detector`, `detector=`).

    None            the whole image as one box (or `bbox_file` when given)
    'hog'           OpenCV's HOG people detector (scores mapped to [0, 1], see detection.hog_score)
    'onnx:PATH'     a YOLOv5 / YOLOv8 (YOLO11) / YOLOX model exported to ONNX (onnx_detector), with
                    det_layout to force the layout and det_class the class kept (0 = person)
    'mindyolo:NAME' a MindSpore YOLO from mindyolo (yolov8n/s/m, yolox_s/m; optional extra `.[detect]`),
                    det_weights FILE|URL (default: the published COCO checkpoint)
    an object       anything with `boxes(image_rgb, name) -> (boxes (N, 4) xywh, scores (N,))`

A source answers `boxes(image_rgb, name)`; `description` names it and `weights` its weights (or None):
both go to the run summary and run.json. Detector boxes (HOG, ONNX, mindyolo) are thresholded at
`bbox_thr` (scores above it are kept; the one threshold of every source, box files included) and go
through greedy NMS (IoU `nms_iou`) before pose.
"""
import numpy as np

from .detection import PERSON_CATEGORY, BoxFile, HogDetector, WholeImage
from .mindyolo_detector import MindyoloDetector
from .onnx_detector import OnnxYoloDetector, box_nms, parse_detector_spec

NMS_IOU = 0.45


class DetectorBoxes:
    """A detector's boxes with the score threshold and NMS applied (what every detector kind goes through)."""

    def __init__(self, detector, bbox_thr=0.3, nms_iou=NMS_IOU, weights=None):
        self.detector, self.bbox_thr, self.nms_iou = detector, float(bbox_thr), float(nms_iou)
        self.weights = weights if weights is not None else getattr(detector, 'weights', None)
        name = getattr(detector, 'description', type(detector).__name__)
        note = f" (score > {self.bbox_thr:g}, NMS IoU {self.nms_iou:g})"
        self.description = name if 'NMS IoU' in name else name + note

    def boxes(self, image_rgb, name=None):
        boxes, scores = self.detector.boxes(image_rgb, name)
        return nms_xywh(boxes, scores, self.bbox_thr, self.nms_iou)


def nms_xywh(boxes, scores, score_thr, nms_iou):
    """Boxes (N, 4) x, y, w, h scoring above score_thr after greedy NMS: (boxes, scores), best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    above = ~(scores <= score_thr)  # a NaN score is kept here for clean_boxes to report
    boxes, scores = boxes[above], scores[above]
    xyxy = np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
    keep = box_nms(xyxy, np.nan_to_num(scores, nan=-np.inf), nms_iou)
    return boxes[keep], scores[keep]


def make_detector(detector=None, bbox_file=None, bbox_thr=0.3, det_layout=None, det_class=0, det_weights=None,
                  nms_iou=NMS_IOU, image_ids=None, category_ids=None):
    """The box source named by `detector` (see the module docstring); ValueError for a bad combination."""
    if detector is not None and not isinstance(detector, str):
        if not hasattr(detector, 'boxes'):
            raise ValueError(f"a detector object needs a boxes(image_rgb, name) method, got {type(detector).__name__}")
        return detector
    if bbox_file and detector:
        raise ValueError("give either a box file or a detector, not both")
    if bbox_file:
        return BoxFile(bbox_file, bbox_thr, image_ids, category_ids or (PERSON_CATEGORY,))
    if not detector:
        if det_layout or det_weights:
            raise ValueError("--det_layout and --det_weights are for a detector "
                             "(--detector onnx:PATH or mindyolo:NAME)")
        return WholeImage()
    spec = parse_detector_spec(detector)
    if spec.kind != 'onnx' and det_layout:
        raise ValueError(f"--det_layout is for onnx detectors, not {detector!r}")
    if spec.kind != 'mindyolo' and det_weights:
        raise ValueError(f"--det_weights is for mindyolo detectors (an onnx file holds its weights), not {detector!r}")
    if spec.kind == 'hog':
        return DetectorBoxes(HogDetector(), bbox_thr, nms_iou)
    if spec.kind == 'onnx':
        # the ONNX detector keeps scores above bbox_thr and runs NMS itself; running them again is a no-op
        return DetectorBoxes(OnnxYoloDetector(spec.arg, det_layout, det_class, bbox_thr, nms_iou), bbox_thr,
                             nms_iou, weights=spec.arg)
    return DetectorBoxes(MindyoloDetector(spec.arg, det_weights, class_id=det_class, score_thr=bbox_thr), bbox_thr,
                         nms_iou)
