"""The shared part of the top-down training sets (COCO-format and MPII): per-person arrays, image
reading, seeded samples and the skip summary.

All randomness of sample `index` in `epoch` comes from `np.random.default_rng((seed, epoch, index))`,
so training is reproducible and resumable at any step, whatever the worker count or shard.
"""
import logging
from pathlib import Path

import cv2
import numpy as np

from ..codec import codec_for
from ..errors import AnnotationError
from .transforms import TopDownTrainTransform, affine_points, get_affine_transform, normalize, warp_crop

_LOG = logging.getLogger(__name__)


def finite_numbers(values, n):
    """`values` as a flat float64 array of n finite numbers, or None when they are not."""
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.isfinite(arr).all() else None



class TopDownDataset:
    """Shared part of the top-down training sets: per-person arrays, image reading and seeded samples.

    A subclass validates its annotation file and hands the usable persons to `_keep`; images are
    checked once on disk through `_present` (missing ones are left out and warned about together).
    `codec` makes the targets: the network's (`codec.codec_for` with its output stride and sigma); by
    default the official stride-4 one.
    """

    def __init__(self, ann_file, img_root, input_size_hw, info, train=True, seed=0, half_body_prob=0.3, codec=None):
        self.ann_file = Path(ann_file)
        self.img_root = Path(img_root)
        self.input_size_hw = (int(input_size_hw[0]), int(input_size_hw[1]))
        self.train = bool(train)
        self.seed = int(seed)
        self.info = info
        self.codec = codec or codec_for(self.input_size_hw)  # the network's (its output stride and sigma)
        if self.codec.input_size_hw != self.input_size_hw:
            raise ValueError(f"the codec is for {self.codec.input_size_hw} input, the dataset for {self.input_size_hw}")
        self.transform = TopDownTrainTransform(info, self.input_size_hw, half_body_prob=half_body_prob)
        self.unreadable = set()
        self.missing_images = []
        self._exists = {}

    def _present(self, path):
        """Whether the image file exists (looked up once; missing ones are remembered)."""
        if path not in self._exists:
            self._exists[path] = path.is_file()
            if not self._exists[path]:
                self.missing_images.append(path)
        return self._exists[path]

    def _keep(self, paths, joints, visible, centers, scales, usable):
        """Store the usable persons as arrays; warn about missing images; an error when none is left."""
        missing = self.missing_images
        if missing:
            _LOG.warning("%s: %d of %d images are missing under %s and were skipped (first: %s)",
                         self.ann_file, len(missing), len(self._exists), self.img_root, missing[0])
        if not paths:
            raise AnnotationError(f"{self.ann_file}: no usable person ({usable}image present under "
                                  f"{self.img_root})")
        self.paths = paths
        self.joints = np.asarray(joints, np.float32)
        self.visible = np.asarray(visible, np.float32)
        self.centers = np.asarray(centers, np.float32)
        self.scales = np.asarray(scales, np.float32)

    def __len__(self):
        return len(self.paths)

    def read_person_image(self, index):
        """The RGB image of person `index`, or of the next person whose image reads (counted, warned once)."""
        for offset in range(len(self.paths)):
            j = (index + offset) % len(self.paths)
            image = cv2.imread(str(self.paths[j]), cv2.IMREAD_COLOR)
            if image is not None:
                return j, cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
            if self.paths[j] not in self.unreadable:
                self.unreadable.add(self.paths[j])
                _LOG.warning("%s: unreadable image, its persons are replaced by others", self.paths[j])
        raise AnnotationError(f"{self.ann_file}: none of the images under {self.img_root} can be read")

    def sample(self, index, epoch=0):
        """Person `index` as seen in `epoch`: (image (3, H, W), target (K, H/s, W/s), weight (K,)), float32;
        s is the codec's output stride."""
        j, image = self.read_person_image(int(index))
        if self.train:
            rng = np.random.default_rng((self.seed, int(epoch), int(index)))
            crop, joints, visible = self.transform(image, self.joints[j], self.visible[j], self.centers[j],
                                                   self.scales[j], rng)
        else:
            size_wh = self.input_size_hw[::-1]
            crop = normalize(warp_crop(image, self.centers[j], self.scales[j], 0, size_wh))
            mat = get_affine_transform(self.centers[j], self.scales[j], 0, size_wh)
            visible = self.visible[j]
            joints = np.where(visible[:, None] > 0, affine_points(self.joints[j], mat), 0).astype(np.float32)
        target, weight = self.codec.encode(joints, visible)
        return crop, target, weight

    def skip_summary(self):
        """One line about the images that were missing or unreadable, or '' when there were none."""
        parts = []
        if self.missing_images:
            parts.append(f"{len(self.missing_images)} missing (first: {self.missing_images[0]})")
        if self.unreadable:
            parts.append(f"{len(self.unreadable)} unreadable (first: {sorted(self.unreadable)[0]})")
        return f"{self.ann_file.name}: skipped images: {'; '.join(parts)}" if parts else ''
