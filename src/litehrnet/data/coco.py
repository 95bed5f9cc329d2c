"""COCO-format top-down keypoint dataset: one person per sample, validated up front, seeded per sample.

Works for COCO person keypoints and any COCO-format keypoint set (the first category with keypoints
describes it). Boxes are cleaned, centred, aspect-fixed and padded as mmpose 0.13 does; a sample is
the augmented crop, its Gaussian heatmaps and joint weights. All randomness of sample `index` in
`epoch` comes from `np.random.default_rng((seed, epoch, index))`, so training is reproducible and
resumable at any step, whatever the worker count or shard. `TopDownDataset` (image reading, samples,
skip summary) and the dataset layouts under --data_root are shared with the MPII set (data/mpii.py).
"""
import logging
from pathlib import Path

import cv2
import numpy as np

from ..codec import codec_for
from ..fileio import read_json
from .keypoints import COCO_17, from_coco_category
from .transforms import TopDownTrainTransform, affine_points, box_to_center_scale, clean_coco_box, \
    get_affine_transform, normalize, warp_crop

_LOG = logging.getLogger(__name__)

# Annotation file and image folder of each split under --data_root.
LAYOUTS = {
    'coco': {'train': ('annotations/person_keypoints_train2017.json', 'train2017'),
             'val': ('annotations/person_keypoints_val2017.json', 'val2017')},
    'custom': {'train': ('annotations/train.json', 'images'),
               'val': ('annotations/val.json', 'images')},
    'mpii': {'train': ('annotations/mpii_train.json', 'images'),  # mmpose's layout; PCKh also needs
             'val': ('annotations/mpii_val.json', 'images')},      # annotations/mpii_gt_val.mat
}
LAYOUTS['demo'] = LAYOUTS['custom']


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the one-line message names the file, the record and why."""


def split_files(layout, data_root, split):
    """(annotation file, image folder) of a split ('train' / 'val') of a dataset layout under data_root."""
    ann, img = LAYOUTS[layout][split]
    return Path(data_root) / ann, Path(data_root) / img


def load_annotation_file(ann_file):
    """The parsed JSON of a COCO-format annotation file (one-line AnnotationError when missing or broken)."""
    path = Path(ann_file)
    data = read_json(path, "annotation file", error=AnnotationError)
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list)
                                             for k in ('images', 'annotations', 'categories')):
        raise AnnotationError(f"{path}: not a COCO annotation file (needs lists 'images', 'annotations', "
                              f"'categories')")
    return data


def keypoint_info_of(data, ann_file, meta=None):
    """(KeypointInfo, category id) of the first category with keypoints; COCO_17 for COCO's person."""
    cats = [c for c in data['categories'] if isinstance(c, dict) and c.get('keypoints')]
    if not cats:
        raise AnnotationError(f"{ann_file}: no category has keypoints (not a keypoint annotation file)")
    cat = cats[0]
    if meta is None and list(cat['keypoints']) == COCO_17.joint_names:
        return COCO_17, cat['id']
    return from_coco_category(cat, meta), cat['id']


def _finite_numbers(values, n):
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.isfinite(arr).all() else None


def _check_image(ann_file, i, img):
    where = f"{ann_file}: image record {i} (id {img.get('id') if isinstance(img, dict) else '?'})"
    if not isinstance(img, dict) or any(k not in img for k in ('id', 'file_name', 'width', 'height')):
        raise AnnotationError(f"{where}: needs id, file_name, width and height")
    if _finite_numbers([img['width'], img['height']], 2) is None or min(img['width'], img['height']) <= 0:
        raise AnnotationError(f"{where}: width and height must be positive numbers")


def _check_annotation(ann_file, i, ann, images, categories, num_joints):
    """Raise a one-line AnnotationError naming annotation i when it is malformed."""
    where = f"{ann_file}: annotation {i} (id {ann.get('id') if isinstance(ann, dict) else '?'})"
    if not isinstance(ann, dict) or any(k not in ann for k in ('image_id', 'category_id', 'bbox', 'keypoints')):
        raise AnnotationError(f"{where}: needs image_id, category_id, bbox and keypoints")
    if ann['image_id'] not in images:
        raise AnnotationError(f"{where}: image_id {ann['image_id']!r} has no entry in 'images'")
    cat = categories.get(ann['category_id'])
    if cat is None:
        raise AnnotationError(f"{where}: category_id {ann['category_id']!r} has no entry in 'categories'")
    if not cat.get('keypoints'):
        raise AnnotationError(f"{where}: category {ann['category_id']} ({cat.get('name')!r}) has no keypoints")
    kpts = _finite_numbers(ann['keypoints'], 3 * num_joints)
    if kpts is None:
        n = len(ann['keypoints']) if isinstance(ann['keypoints'], list) else type(ann['keypoints']).__name__
        raise AnnotationError(f"{where}: has {n} keypoint values, expected {3 * num_joints} "
                              f"({num_joints} joints x 3 finite numbers)")
    box = _finite_numbers(ann['bbox'], 4)
    if box is None:
        raise AnnotationError(f"{where}: bbox must be 4 finite numbers [x, y, w, h]")
    if kpts.max() > 0 and (box[2] <= 0 or box[3] <= 0):
        raise AnnotationError(f"{where}: non-positive box {list(box)} for a person with keypoints")
    return kpts.reshape(num_joints, 3), box


class TopDownDataset:
    """Shared part of the top-down training sets: per-person arrays, image reading and seeded samples.

    A subclass validates its annotation file and hands the usable persons to `_keep`; images are
    checked once on disk through `_present` (missing ones are left out and warned about together).
    """

    def __init__(self, ann_file, img_root, input_size_hw, info, train=True, seed=0, half_body_prob=0.3):
        self.ann_file = Path(ann_file)
        self.img_root = Path(img_root)
        self.input_size_hw = (int(input_size_hw[0]), int(input_size_hw[1]))
        self.train = bool(train)
        self.seed = int(seed)
        self.info = info
        self.codec = codec_for(self.input_size_hw)
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

    def _read(self, index):
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
        """Person `index` as seen in `epoch`: (image (3, H, W), target (K, H/4, W/4), weight (K,)), float32."""
        j, image = self._read(int(index))
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


class CocoKeypointDataset(TopDownDataset):
    """Top-down samples of a COCO-format keypoint set: (image CHW float32, target (K, h, w), weight (K,)).

    train=True augments (flip, half-body, scale, rotation) with a per-sample seeded rng; train=False
    crops the padded box as evaluation does. Persons whose keypoints are all zero (num_keypoints 0),
    or whose cleaned box is empty, are left out as mmpose 0.13 does. Images missing on disk are left
    out with one warning; an unreadable image is replaced by the next readable one and counted.
    """

    def __init__(self, ann_file, img_root, input_size_hw, train=True, seed=0, meta=None):
        data = load_annotation_file(ann_file)
        info, self.category_id = keypoint_info_of(data, Path(ann_file), meta)
        super().__init__(ann_file, img_root, input_size_hw, info, train, seed)
        self._load(data)

    def _load(self, data):
        """Validate every record, then keep the usable persons as arrays."""
        k = self.info.num_joints
        for i, img in enumerate(data['images']):
            _check_image(self.ann_file, i, img)
        images = {img['id']: img for img in data['images']}
        categories = {c.get('id'): c for c in data['categories'] if isinstance(c, dict)}
        aspect = self.input_size_hw[1] / self.input_size_hw[0]
        jitter = np.random.default_rng(self.seed) if self.train else None  # mmpose: once per person at load
        paths, joints, visible, centers, scales, image_ids = [], [], [], [], [], []
        for i, ann in enumerate(data['annotations']):
            kpts, box = _check_annotation(self.ann_file, i, ann, images, categories, k)
            if kpts.max() <= 0 or ann.get('num_keypoints', 1) == 0 or ann.get('area', 1) <= 0:
                continue
            img = images[ann['image_id']]
            clean = clean_coco_box(box, img['width'], img['height'])
            if clean is None:
                continue
            path = self.img_root / img['file_name']
            if not self._present(path):
                continue
            center, scale = box_to_center_scale(clean, aspect, 1.25, rng=jitter)
            paths.append(path)
            joints.append(kpts[:, :2])
            visible.append(np.minimum(1, kpts[:, 2]))
            centers.append(center)
            scales.append(scale)
            image_ids.append(ann['image_id'])
        self._keep(paths, joints, visible, centers, scales, usable='keypoints labelled, box inside the image, ')
        self.image_ids = image_ids
