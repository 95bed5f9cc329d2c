"""The pose service: one object that holds a detector, the pose network and a tracker (`PoseEstimator`).

    from litehrnet import PoseEstimator
    est = PoseEstimator('hrnet_w32_256x192', detector='onnx:yolov8n.onnx')   # checkpoint from the alias
    people = est.predict(image_rgb)[0]            # one image -> [[person, ...]]
    for frame_people in est.track(frames):        # a video: each person also has a track_id
        ...

Images are HWC uint8 **RGB** unless `bgr=True` (what OpenCV's imread and VideoCapture give). `predict`
takes one image, a list of images or an NHWC batch and returns, per image, a list of people:

    box (x, y, w, h), score (box score x mean confident keypoint score), box_score,
    keypoints (K, 3) float32 array of x, y, score in image pixels, keypoint_names (K names; COCO-17:
    nose, left_eye, ..., right_ankle), and track_id (int) for the frames of `track`.

The crops of many images go through the network together, `max_batch_size` at a time. Input size and
keypoint set come from the published checkpoint entry (or an exported model's JSON description);
`target_res` and `keypoints` override them. The device is auto-selected (GPU, then Ascend, then CPU)
unless `device_target` names one. The command line `infer.py` runs the same `stream`/`iter_track`
methods (through `annotate.Annotator`).
"""
import logging

import numpy as np

from .detectors import make_detector
from .detection import clean_boxes
from .device import set_device
from .evaluation import rescore
from .models.registry import PRETRAINED_ALIASES, PUBLISHED
from .predictor import CropBatcher
from .runners import make_predictor, open_backend
from .tracking import PoseTracker

log = logging.getLogger(__name__)


def published_defaults(model_type, checkpoint):
    """(model_type, checkpoint, input size or None, keypoint set or None) from a published name or alias.

    `model_type` may itself be a published name or alias (e.g. 'hrnet_w32_256x256'): it then names the
    checkpoint too. Otherwise a published `checkpoint` name gives the input size and keypoint set.
    """
    name = PRETRAINED_ALIASES.get(str(model_type), str(model_type))
    if name in PUBLISHED:
        checkpoint = checkpoint or model_type
        model_type = PUBLISHED[name].model_type
    entry = PUBLISHED.get(PRETRAINED_ALIASES.get(str(checkpoint), str(checkpoint))) if checkpoint else None
    if entry is None:
        return model_type, checkpoint, None, None
    return model_type, checkpoint, tuple(entry.input_size), entry.dataset


def as_images(images, bgr=False):
    """A list of HWC uint8 RGB images from one HWC image, a list of them, or an NHWC array."""
    if isinstance(images, np.ndarray):
        if images.ndim == 3:
            images = [images]
        elif images.ndim == 4:
            images = list(images)
        else:
            raise ValueError(f"expected an HWC image or an NHWC batch, got an array of shape {images.shape}")
    out = []
    for i, image in enumerate(images):
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {i}: expected HWC with 3 channels, got shape {image.shape}")
        if image.dtype != np.uint8:
            raise ValueError(f"image {i}: expected uint8 pixels, got {image.dtype}")
        out.append(np.ascontiguousarray(image[..., ::-1]) if bgr else image)
    return out


def _check_video_options(tracking, det_interval):
    if int(det_interval) < 1:
        raise ValueError(f"det_interval must be >= 1, got {det_interval}")
    if int(det_interval) > 1 and not tracking:
        raise ValueError("det_interval > 1 takes the boxes between detector runs from the tracks: "
                         "it needs tracking on")


class PoseEstimator:
    """Detector + top-down pose network + tracker (see the module docstring).

    model_type: a model type, alias or architecture file, or a published checkpoint name/alias.
    checkpoint: file or published name (None: the published name in model_type, else random weights).
    detector: 'hog', 'onnx:PATH', 'mindyolo:yolov8n' (yolov8s/m, yolox_s/m), None (the whole image,
    or `bbox_file`), or an object with `boxes(image_rgb, name) -> (boxes (N, 4) xywh, scores (N,))`.
    single_person: keep only the best box of each image (the whole image without a detector).
    tracking: track ids in `track` (off: no track_id). smooth: One-Euro smoothing of tracked keypoints.
    det_interval: in `track`, run the detector every N frames and take the boxes in between from the
    tracked keypoints. bbox_thr: the one box score threshold (every box source). kpt_thr: keypoints at
    or above it count as confident (drawing, boxes from keypoints).
    """

    def __init__(self, model_type='litehrnet_18', checkpoint=None, detector=None, target_res=None, keypoints=None,
                 device_target=None, max_batch_size=16, single_person=False, tracking=True, flip_test=True,
                 kpt_thr=0.3, bbox_thr=0.3, smooth=False, det_interval=1, backend='mindspore', model=None,
                 mode='graph', post_process='default', bbox_file=None, det_layout=None, det_class=0,
                 det_weights=None, warn=None, meta=None, sigmas=None, image_ids=None, category_ids=None):
        _check_video_options(tracking, det_interval)  # before anything heavy is built
        model_type, checkpoint, size, kpset = ((model_type, checkpoint, None, None) if backend != 'mindspore'
                                               else published_defaults(model_type, checkpoint))
        self.device = set_device(device_target, mode)  # before any network is built (a mindyolo detector too)
        box_source = make_detector(detector, bbox_file, bbox_thr, det_layout, det_class, det_weights,
                                   image_ids=image_ids, category_ids=category_ids)
        runner, cfg = open_backend(backend, model, model_type, checkpoint, keypoints or kpset, target_res or size,
                                   flip_test, max_batch_size, meta=meta, sigmas=sigmas)
        predictor = make_predictor(runner, cfg['input_size_hw'], cfg['keypoint_info'], cfg['flip_test'],
                                   post_process, max_batch_size)
        self.description = dict(cfg['description'], device=self.device, random_weights=cfg['random_weights'])
        self.random_weights = cfg['random_weights']
        self._setup(predictor, box_source, single_person, tracking, kpt_thr, smooth, det_interval, warn)

    @classmethod
    def from_parts(cls, predictor, box_source=None, single_person=False, tracking=True, kpt_thr=0.3, smooth=False,
                   det_interval=1, warn=None):
        """An estimator around a ready predictor (runners.make_predictor) and box source (tests, infer.py)."""
        self = cls.__new__(cls)
        self.device, self.random_weights = None, False
        self.description = {}
        self._setup(predictor, make_detector(box_source), single_person, tracking, kpt_thr, smooth,
                    det_interval, warn)
        return self

    def _setup(self, predictor, box_source, single_person, tracking, kpt_thr, smooth, det_interval, warn):
        _check_video_options(tracking, det_interval)
        self.predictor, self.box_source = predictor, box_source
        self.info = predictor.info
        self.single_person, self.tracking, self.kpt_thr = bool(single_person), bool(tracking), float(kpt_thr)
        self.smooth, self.det_interval = bool(smooth), int(det_interval)
        self.warn = warn or (lambda message: log.warning(message))

    @property
    def max_batch_size(self):
        return self.predictor.batch_size

    # --- the shared frame code (infer.py runs these too) ---------------------------------------------

    def detect(self, image, name=None):
        """Boxes (N, 4) xywh and scores (N,) of an RGB image: the box source, cleaned, best only if single_person."""
        boxes, scores = self.box_source.boxes(image, name)
        boxes, scores, note = clean_boxes(boxes, scores, image.shape[:2])
        if note:
            self.warn(f"{name if name is not None else 'image'}: {note}")
        if self.single_person and len(boxes) > 1:
            best = int(np.argmax(scores))
            boxes, scores = boxes[best:best + 1], scores[best:best + 1]
        return boxes, scores

    @staticmethod
    def _persons(boxes, scores, keypoints):
        return [dict(bbox=box, box_score=float(s), keypoints=k, score=rescore(k[:, 2], s))
                for box, s, k in zip(boxes, scores, keypoints)]

    def stream(self, items):
        """(name, RGB image) items -> (name, image, persons), in order; crops of many images batched.

        At most max_batch_size images wait for a full batch, so memory stays bounded. A person is a dict
        with bbox (x, y, w, h), box_score, keypoints (K, 3) and score.
        """
        batcher = CropBatcher(self.predictor, max_waiting=self.predictor.batch_size)
        for name, image in items:
            boxes, scores = self.detect(image, name)
            ready = batcher.add((name, image, boxes, scores), *self.predictor.crops(image, boxes))
            for (n, im, b, s), kpts in ready:
                yield n, im, self._persons(b, s, kpts)
        for (n, im, b, s), kpts in batcher.finish():
            yield n, im, self._persons(b, s, kpts)

    def iter_track(self, items, fps=30.0):
        """Like `stream` over the frames of one video, each person with a track_id (when tracking is on).

        With det_interval N > 1 the detector runs on frames 0, N, 2N, ...; the other frames take their
        boxes from the people tracked in the frame before (frames then run one at a time).
        """
        if not self.tracking:
            yield from self.stream(items)
            return
        tracker = PoseTracker(sigmas=self.info.sigmas, kpt_thr=self.kpt_thr, smooth=self.smooth, fps=fps)
        if self.det_interval == 1:
            for name, image, persons in self.stream(items):
                yield name, image, self._tracked(tracker, persons)
            return
        for index, (name, image) in enumerate(items):
            if index % self.det_interval == 0 or not tracker.tracks:
                boxes, scores = self.detect(image, name)
            else:
                boxes, scores, _ = tracker.keypoint_boxes(self.kpt_thr, image_hw=image.shape[:2])
            crops, centers, scales = self.predictor.crops(image, boxes)
            keypoints = self.predictor.predict_crops(crops, centers, scales)
            yield name, image, self._tracked(tracker, self._persons(boxes, scores, keypoints))

    @staticmethod
    def _tracked(tracker, persons):
        boxes = np.array([p['bbox'] for p in persons], np.float64).reshape(-1, 4)
        kpts = np.stack([p['keypoints'] for p in persons]) if persons else None
        result = tracker.update(boxes, kpts)
        for i, person in enumerate(persons):
            person['track_id'] = int(result.ids[i])
            if tracker.smooth:
                person['keypoints'] = result.keypoints[i].astype(np.float32)
        return persons

    # --- the API -------------------------------------------------------------------------------------

    def public(self, person):
        """A person as the API returns it: box, score, box_score, keypoints (K, 3), keypoint_names[, track_id]."""
        out = dict(box=[float(v) for v in person['bbox']], score=float(person['score']),
                   box_score=float(person['box_score']), keypoints=np.asarray(person['keypoints'], np.float32),
                   keypoint_names=list(self.info.joint_names))
        if 'track_id' in person:
            out['track_id'] = person['track_id']
        return out

    def predict(self, images, bgr=False):
        """People of each image (one HWC image, a list, or an NHWC batch; RGB unless bgr): a list per image."""
        frames = as_images(images, bgr)
        return [[self.public(p) for p in persons] for _, _, persons in self.stream(enumerate(frames))]

    def track(self, frames, bgr=False, fps=30.0):
        """People of each frame of a video (frames in order; any iterable of HWC images), with track ids."""
        def items():
            for i, frame in enumerate(frames):
                yield i, as_images([frame], bgr)[0]
        return [[self.public(p) for p in persons] for _, _, persons in self.iter_track(items(), fps)]
