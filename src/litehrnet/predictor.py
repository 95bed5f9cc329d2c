"""Top-down prediction: person boxes of an image -> shared crops -> heatmaps (flip test) -> keypoints.

`TopDownPredictor` runs any pose network on the boxes of one image (flip test and decoding as mmpose
0.13); `CropBatcher` runs the crops of many images through it in full batches, for dataset
evaluation (`evaluate`) and for pictures and videos (`annotate`) alike.
"""
import cv2
import mindspore as ms
import numpy as np

from .data.images import read_image_bgr
from .codec import PIXEL_STD, codec_for, codec_of_heatmaps, flip_back, flip_shift, keypoints_to_image, shift_heatmap
from .data.transforms import preprocess_box
from .keypoints import COCO_17, get_keypoint_info


class TopDownPredictor:
    """Keypoints of the people in boxes of one image: crop, run (with flip test), decode, map back.

    The network maps (N, 3, H, W) float32 crops to (N, K, H/s, W/s) heatmaps, s its output stride
    (`net.output_stride`: 4 official, 2 light_hrnet's concat head, 1 full resolution); decoding follows
    the heatmaps the network returns, and a network that states its stride is held to it. The DARK
    blur uses the model's heatmap sigma (`net.heatmap_sigma`, else the presets'). In GRAPH mode every
    batch is padded to `batch_size`, so the graph is compiled once (a new shape costs ~45 s on CPU).
    Flip test is switched off for keypoint sets without left/right pairs.
    """

    def __init__(self, net, input_size_hw, keypoint_info=COCO_17, flip_test=True, post_process='default',
                 batch_size=32):
        self.net = net
        self.net.set_train(False)
        self.input_size_hw = (int(input_size_hw[0]), int(input_size_hw[1]))
        self.info = get_keypoint_info(keypoint_info) if isinstance(keypoint_info, str) else keypoint_info
        self.flip_test = bool(flip_test) and bool(self.info.flip_pairs)
        self.post_process = post_process
        self.output_stride = getattr(net, 'output_stride', None)
        self.sigma = getattr(net, 'heatmap_sigma', None)
        self.codec = codec_for(self.input_size_hw, post_process, self.output_stride or 4, self.sigma)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fixed_batch = ms.get_context('mode') == ms.GRAPH_MODE  # pad every batch to batch_size

    def crops(self, image_rgb, boxes_xywh):
        """Crops (N, 3, H, W), centres (N, 2) and scales (N, 2) of boxes, through the shared preprocess_box."""
        out = [preprocess_box(image_rgb, box, self.input_size_hw) for box in boxes_xywh]
        if not out:
            return (np.zeros((0, 3) + self.input_size_hw, np.float32), np.zeros((0, 2), np.float32),
                    np.zeros((0, 2), np.float32))
        crops, centers, scales = zip(*out)
        return np.stack(crops), np.stack(centers), np.stack(scales)

    def _forward(self, crops):
        """Network heatmaps of crops, batch_size at a time (padded to batch_size when fixed_batch)."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            n = len(batch)
            if self.fixed_batch and n < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - n,) + batch.shape[1:], np.float32)])
            out.append(self.net(ms.Tensor(np.ascontiguousarray(batch))).asnumpy()[:n])
        heatmaps = np.concatenate(out)
        if self.output_stride and heatmaps.shape[2:] != self.codec.heatmap_size_hw:
            raise ValueError(f"the network returns {heatmaps.shape[2]}x{heatmaps.shape[3]} heatmaps for "
                             f"{self.input_size_hw[0]}x{self.input_size_hw[1]} crops, not the "
                             f"{self.codec.heatmap_size_hw[0]}x{self.codec.heatmap_size_hw[1]} of its output "
                             f"stride {self.output_stride}")
        if not self.output_stride and heatmaps.shape[2:] != self.codec.heatmap_size_hw:
            self.codec = codec_of_heatmaps(self.input_size_hw, heatmaps.shape[2:], self.post_process, self.sigma)
        if heatmaps.shape[1] != self.info.num_joints:
            raise ValueError(f"the network predicts {heatmaps.shape[1]} joints but the keypoint set "
                             f"'{self.info.name}' has {self.info.num_joints}")
        return heatmaps

    def heatmaps(self, crops):
        """Heatmaps of (N, 3, H, W) crops; with flip test, averaged with the mirrored crops' (shifted: `flip_shift`)."""
        crops = np.asarray(crops, dtype=np.float32)
        if not self.flip_test:
            return self._forward(crops)
        both = self._forward(np.concatenate([crops, crops[..., ::-1]]))
        stride = self.input_size_hw[1] // both.shape[3]
        flipped = shift_heatmap(flip_back(both[len(crops):], self.info.flip_pairs), flip_shift(stride))
        return (both[:len(crops)] + flipped) * 0.5

    def predict_crops(self, crops, centers, scales):
        """Keypoints (N, K, 3) = x, y, score in image pixels of crops cut at the given centres/scales."""
        if len(crops) == 0:
            return np.zeros((0, self.info.num_joints, 3), np.float32)
        heatmaps = self.heatmaps(crops)  # first: it may set the codec from the heatmaps' size
        coords, scores = self.codec.decode(heatmaps)
        coords = keypoints_to_image(coords, centers, scales, self.input_size_hw[::-1])
        return np.concatenate([coords, scores[..., None]], axis=-1).astype(np.float32)

    def predict(self, image_rgb, boxes_xywh, box_scores=None):
        """One dict per box: keypoints (K, 3), box_score, center, scale, area (the padded box area)."""
        boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} box scores")
        crops, centers, scales = self.crops(image_rgb, boxes)
        keypoints = self.predict_crops(crops, centers, scales)
        return [dict(keypoints=k, box_score=float(s), center=c, scale=sc, area=padded_area(sc))
                for k, s, c, sc in zip(keypoints, scores, centers, scales)]


def padded_area(scale):
    """Area of the padded centre/scale box in pixels (what OKS-NMS uses, as mmpose 0.13)."""
    return float(scale[0] * PIXEL_STD * scale[1] * PIXEL_STD)


def read_image_rgb(path):
    """An image file as RGB uint8 HWC, or None when it is missing or unreadable."""
    image = read_image_bgr(path)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CropBatcher:
    """Crops of many images through a predictor in full batches; each image's keypoints once all are done.

    `add(item, crops, centers, scales)` queues one image's crops (any number, also none) and returns the
    `(item, keypoints (N, K, 3))` pairs that are complete, in the order they were added; `finish()` runs
    the rest. Crops wait until a whole batch is there; with `max_waiting`, at most that many images wait
    (the rest is then run as a partial batch), so memory stays bounded when images have few boxes.
    """

    def __init__(self, predictor, max_waiting=None):
        self.predictor = predictor
        self.max_waiting = max_waiting
        self._waiting = []  # [item, crop count] in order
        self._queued = []   # (crops, centers, scales) not yet run
        self._count = 0     # crops not yet run
        self._done = []     # keypoints arrays of crops already run, in order

    def add(self, item, crops, centers, scales):
        self._waiting.append([item, len(crops)])
        if len(crops):
            self._queued.append((crops, centers, scales))
            self._count += len(crops)
        bs = self.predictor.batch_size
        if self._count >= bs:
            self._run(self._count // bs * bs)
        elif self.max_waiting and len(self._waiting) >= self.max_waiting:
            self._run(self._count)
        return self._ready()

    def finish(self):
        """Run what is left; the remaining (item, keypoints) pairs."""
        self._run(self._count)
        return self._ready()

    def _run(self, n):
        if n == 0:
            return
        crops, centers, scales = (np.concatenate([q[i] for q in self._queued]) for i in range(3))
        self._done.append(self.predictor.predict_crops(crops[:n], centers[:n], scales[:n]))
        self._queued = [(crops[n:], centers[n:], scales[n:])] if n < len(crops) else []
        self._count -= n

    def _ready(self):
        done = np.concatenate(self._done) if self._done else np.zeros((0, self.predictor.info.num_joints, 3),
                                                                        np.float32)
        out, start = [], 0
        while self._waiting and start + self._waiting[0][1] <= len(done):
            item, n = self._waiting.pop(0)
            out.append((item, done[start:start + n]))
            start += n
        self._done = [done[start:]] if start < len(done) else []
        return out
