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
    the number in a file's name, as in COCO's 000000000785.jpg, or through `image_ids` ({file_name:
    image id}, from an annotation file) when names are not numbers (AIC's hashes). An image the file
    does not mention has no boxes. `category_ids`: the detection categories kept (default: person).
    With COCO detection results, `image_id(rel_path)` gives the file's image id of an image.
    """

    def __init__(self, path, bbox_thr=0.3, image_ids=None, category_ids=(PERSON_CATEGORY,)):
        path = Path(path)
        self.image_ids = dict(image_ids or {})
        self.category_ids = set(category_ids)
        self.description = f'box file {path.name} (score > {bbox_thr:g})'
        data = read_json(path, "box file")
        try:
            self.by_key = self._by_name(data) if isinstance(data, dict) else self._by_image_id(data, self.category_ids)
            # a non-finite score is kept here so that clean_boxes reports it instead of a silent drop
            self.by_key = {k: _as_arrays([r for r in rows if not r[4] <= bbox_thr])
                           for k, rows in self.by_key.items()}
        except (TypeError, ValueError, KeyError, IndexError):
            raise ValueError(f"{path}: expected {{file_name: [[x, y, w, h, score], ...]}} or COCO detection "
                             f"results [{{image_id, category_id, bbox, score}}, ...]") from None
        self.path = path
        self.has_image_ids = isinstance(data, list)

    @staticmethod
    def _by_name(data):
        return {PurePosixPath(str(k)).as_posix(): [[float(v) for v in row] + [1.0] * (len(row) == 4)
                                                   for row in rows] for k, rows in data.items()}

    def _by_image_id(self, data, category_ids):
        out, self.categories = {}, {}
        for det in data:
            if det['category_id'] in category_ids:
                row = [float(v) for v in det['bbox']] + [float(det['score'])]
                out.setdefault(int(det['image_id']), []).append(row)
                self.categories.setdefault(int(det['image_id']), []).append(det['category_id'])
        return out

    def category_of(self, rel_path):
        """The most frequent detection category of an image (its results are written under it), or None."""
        cats = getattr(self, 'categories', {}).get(self._key(rel_path))
        return max(set(cats), key=cats.count) if cats else None

    def _key(self, rel_path):
        rel = PurePosixPath(Path(rel_path).as_posix())
        for key in (rel.as_posix(), rel.name):
            if key in self.by_key:
                return key
        if not self.has_image_ids:
            return None
        for key in (rel.as_posix(), rel.name):
            if key in self.image_ids:
                return self.image_ids[key]
        return int(rel.stem) if rel.stem.isdigit() else None

    def image_id(self, rel_path):
        """The image id a COCO detection-results file gives the image (numeric name or --ann_file's
        file_name), or None (a {file_name: boxes} file, or an image it cannot name)."""
        return self._key(rel_path) if self.has_image_ids else None

    def boxes(self, image_rgb, rel_path):
        """Boxes of the image at rel_path (relative to the input folder): by path, bare name, numeric id or
        the annotation file's id of its file_name."""
        key = self._key(rel_path)
        return self.by_key[key] if key in self.by_key else _empty()


def make_box_source(bbox_file=None, bbox_thr=0.3, detector=None, image_ids=None, category_ids=(PERSON_CATEGORY,)):
    """The box source the command line asks for: a box file, 'hog', or (neither) the whole image."""
    if bbox_file and detector:
        raise ValueError("give either a box file or a detector, not both")
    if bbox_file:
        return BoxFile(bbox_file, bbox_thr, image_ids, category_ids)
    if detector == 'hog':
        return HogDetector()
    if detector:
        raise ValueError(f"unknown detector {detector!r}: the built-in one is 'hog'")
    return WholeImage()


def _bad(path, i, what):
    return ValueError(f"{path}: detection {i} {what}")


def detector_person_records(bbox_file, coco, cat_id=1):
    """Detector boxes of category cat_id (an id, or the ids of a keypoint set's categories) from a COCO
    detection-results JSON, by image; the count ignored.

    Boxes of images absent from the annotations (a detection file for a larger split) and boxes of
    zero width or height are ignored and counted.
    """
    path = Path(bbox_file)
    dets = read_json(path, "detection (bbox) file")
    if not isinstance(dets, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(dets).__name__}")
    cat_ids = {cat_id} if isinstance(cat_id, int) else set(cat_id)
    jobs, ignored = defaultdict(list), 0
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or any(k not in det for k in ('bbox', 'category_id', 'image_id', 'score')):
            raise _bad(path, i, "is not an object with bbox, category_id, image_id and score")
        if det['category_id'] not in cat_ids:
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
        jobs[det['image_id']].append(dict(image_id=det['image_id'], bbox=box, box_score=score,
                                          category_id=det['category_id']))
    if not jobs:
        named = ', '.join(map(str, sorted(cat_ids)))
        raise ValueError(f"{path}: no detection of category {named} on an image of the annotations")
    return jobs, ignored
