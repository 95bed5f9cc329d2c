"""Person boxes for top-down inference: a box file, OpenCV's HOG people detector, or the whole image.

`detector_person_records` reads a COCO detection-results file for dataset evaluation. Every source answers `boxes(image_rgb, rel_path) -> (boxes (N, 4) [x, y, w, h], scores (N,))` in image
pixels. The boxes then go through the same centre/scale/aspect handling as evaluation
(`preprocess_box`: aspect fixed to the input's, padded 1.25x), never a plain resize, so the whole
image as one box is exactly mmpose's top-down demo without a detector.
"""
from collections import defaultdict
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from .fileio import read_json

PERSON_CATEGORY = 1


def _empty():
    return np.zeros((0, 4), np.float64), np.zeros(0, np.float64)


def _as_arrays(rows):
    """(N, 4) boxes and (N,) scores of [[x, y, w, h, score], ...] rows (checked later by clean_boxes)."""
    if not rows:
        return _empty()
    rows = np.asarray(rows, dtype=np.float64).reshape(len(rows), 5)
    return rows[:, :4], rows[:, 4]


def clean_boxes(boxes, scores, image_hw):
    """Boxes fit to reach OpenCV: ((M, 4) boxes, (M,) scores, what was done as text or None).

    A box with a non-finite value (box or score), a width or height that is not positive, or nothing
    left inside the image after clipping is dropped; a box reaching outside the image (a 1e30-pixel
    box included) is clipped to it.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return boxes, scores, None
    height, width = image_hw
    finite = np.isfinite(boxes).all(axis=1) & np.isfinite(scores)
    with np.errstate(invalid='ignore', over='ignore'):
        valid = finite & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        x1 = np.clip(boxes[:, 0], 0, width)
        y1 = np.clip(boxes[:, 1], 0, height)
        x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, width)
        y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, height)
    inside = valid & (x2 - x1 >= 1) & (y2 - y1 >= 1)
    clipped = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)
    changed = inside & ~np.all(np.isclose(clipped, boxes, rtol=0, atol=1e-9), axis=1)
    notes = []
    if (~valid).any():
        notes.append(f"dropped {int((~valid).sum())} invalid box(es) (non-finite value or size <= 0)")
    if (valid & ~inside).any():
        notes.append(f"dropped {int((valid & ~inside).sum())} box(es) outside the image")
    if changed.any():
        notes.append(f"clipped {int(changed.sum())} box(es) to the image")
    return clipped[inside], scores[inside], '; '.join(notes) or None


class WholeImage:
    """The whole image as one person box, score 1 (the default when no detector or box file is given)."""

    description = 'whole image as one box'

    def boxes(self, image_rgb, rel_path=None):
        """[[0, 0, width, height]] and [1.0]."""
        h, w = image_rgb.shape[:2]
        return np.array([[0.0, 0.0, w, h]]), np.ones(1)


class HogDetector:
    """OpenCV's built-in HOG + linear SVM people detector (no download), with non-maximum suppression.

    Scores are mapped to [0, 1] from the SVM margins m (above `hit_threshold`) by the logistic
    function, `hog_score(m) = 1 / (1 + exp(-m))`: margin 0 (the default hit threshold) is 0.5, margin 1
    is 0.73, margin 2 is 0.88, so the one `--bbox_thr` applies to HOG as to every box source. Images are
    upscaled to at least `min_height` pixels first: the detector's window is 64x128, so smaller people
    are missed.
    """

    description = 'OpenCV HOG people detector'

    def __init__(self, hit_threshold=0.0, nms_iou=0.45, min_height=400):
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.hit_threshold = hit_threshold
        self.nms_iou = nms_iou
        self.min_height = min_height

    def boxes(self, image_rgb, rel_path=None):
        """Detected people, NMS-filtered, best first."""
        factor = max(1.0, self.min_height / image_rgb.shape[0])
        image = cv2.resize(image_rgb, None, fx=factor, fy=factor) if factor > 1 else image_rgb
        rects, weights = self.hog.detectMultiScale(image, hitThreshold=self.hit_threshold, winStride=(8, 8),
                                                   padding=(8, 8), scale=1.05)
        if len(rects) == 0:
            return _empty()
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / factor
        weights = np.asarray(weights, dtype=np.float64).reshape(-1)
        keep = np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), weights.tolist(), float(self.hit_threshold),
                                           self.nms_iou), dtype=int).reshape(-1)
        return rects[keep], hog_score(weights[keep])


def hog_score(margin):
    """A HOG SVM margin mapped to [0, 1] by the logistic function (0 -> 0.5); see HogDetector."""
    return 1.0 / (1.0 + np.exp(-np.asarray(margin, dtype=np.float64)))


class BoxFile:
    """Boxes read from a JSON file, keeping those scoring above `bbox_thr`.

    Two layouts: a {file_name: [[x, y, w, h, score], ...]} object (file_name relative to the input
    folder, or a bare name; a box without a score scores 1), or COCO detection results
    [{image_id, category_id, bbox, score}, ...] (person category only) whose image_id is matched to
    the number in a file's name, as in COCO's 000000000785.jpg. An image the file does not mention
    has no boxes.
    """

    def __init__(self, path, bbox_thr=0.3):
        path = Path(path)
        self.description = f'box file {path.name} (score > {bbox_thr:g})'
        data = read_json(path, "box file")
        try:
            self.by_key = self._by_name(data) if isinstance(data, dict) else self._by_image_id(data)
            # a non-finite score is kept here so that clean_boxes reports it instead of a silent drop
            self.by_key = {k: _as_arrays([r for r in rows if not r[4] <= bbox_thr])
                           for k, rows in self.by_key.items()}
        except (TypeError, ValueError, KeyError, IndexError):
            raise ValueError(f"{path}: expected {{file_name: [[x, y, w, h, score], ...]}} or COCO detection "
                             f"results [{{image_id, category_id, bbox, score}}, ...]") from None
        self.path = path

    @staticmethod
    def _by_name(data):
        return {PurePosixPath(str(k)).as_posix(): [[float(v) for v in row] + [1.0] * (len(row) == 4)
                                                   for row in rows] for k, rows in data.items()}

    @staticmethod
    def _by_image_id(data):
        out = {}
        for det in data:
            if det['category_id'] == PERSON_CATEGORY:
                row = [float(v) for v in det['bbox']] + [float(det['score'])]
                out.setdefault(int(det['image_id']), []).append(row)
        return out

    def boxes(self, image_rgb, rel_path):
        """Boxes of the image at rel_path (relative to the input folder): by path, bare name or numeric id."""
        rel = PurePosixPath(Path(rel_path).as_posix())
        for key in (rel.as_posix(), rel.name):
            if key in self.by_key:
                return self.by_key[key]
        if rel.stem.isdigit() and int(rel.stem) in self.by_key:
            return self.by_key[int(rel.stem)]
        return _empty()


def make_box_source(bbox_file=None, bbox_thr=0.3, detector=None):
    """The box source the command line asks for: a box file, 'hog', or (neither) the whole image."""
    if bbox_file and detector:
        raise ValueError("give either a box file or a detector, not both")
    if bbox_file:
        return BoxFile(bbox_file, bbox_thr)
    if detector == 'hog':
        return HogDetector()
    if detector:
        raise ValueError(f"unknown detector {detector!r}: the built-in one is 'hog'")
    return WholeImage()


def _bad(path, i, what):
    return ValueError(f"{path}: detection {i} {what}")


def detector_person_records(bbox_file, coco, cat_id=1):
    """Detector boxes of category cat_id from a COCO detection-results JSON, by image; the count ignored.

    Boxes of images absent from the annotations (a detection file for a larger split) and boxes of
    zero width or height are ignored and counted.
    """
    path = Path(bbox_file)
    dets = read_json(path, "detection (bbox) file")
    if not isinstance(dets, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(dets).__name__}")
    jobs, ignored = defaultdict(list), 0
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or any(k not in det for k in ('bbox', 'category_id', 'image_id', 'score')):
            raise _bad(path, i, "is not an object with bbox, category_id, image_id and score")
        if det['category_id'] != cat_id:
            continue
        try:
            box = np.asarray(det['bbox'], dtype=np.float64)
            score = float(det['score'])
        except (TypeError, ValueError):
            raise _bad(path, i, "has a non-numeric bbox or score") from None
        if box.shape != (4,) or not np.isfinite(box).all() or not np.isfinite(score):
            raise _bad(path, i, "needs a finite bbox [x, y, w, h] and score")
        if det['image_id'] not in coco.imgs or box[2] <= 0 or box[3] <= 0:
            ignored += 1
            continue
        jobs[det['image_id']].append(dict(image_id=det['image_id'], bbox=box, box_score=score))
    if not jobs:
        raise ValueError(f"{path}: no detection of category {cat_id} on an image of the annotations")
    return jobs, ignored
