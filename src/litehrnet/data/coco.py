"""COCO-format top-down keypoint dataset: one person per sample, validated up front, seeded per sample.

Works for COCO person keypoints and any COCO-format keypoint set (the first category with keypoints
describes it). Boxes are cleaned, centred, aspect-fixed and padded as mmpose 0.13 does; a sample is
the augmented crop, its Gaussian heatmaps and joint weights (see `data/topdown.py`, shared with MPII).
"""
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from ..fileio import read_json
from ..keypoints import COCO_17, from_coco_category
from .topdown import TopDownDataset, finite_numbers
from .transforms import box_to_center_scale, clean_coco_box

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


def _check_image(ann_file, i, img):
    where = f"{ann_file}: image record {i} (id {img.get('id') if isinstance(img, dict) else '?'})"
    if not isinstance(img, dict) or any(k not in img for k in ('id', 'file_name', 'width', 'height')):
        raise AnnotationError(f"{where}: needs id, file_name, width and height")
    if finite_numbers([img['width'], img['height']], 2) is None or min(img['width'], img['height']) <= 0:
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
    kpts = finite_numbers(ann['keypoints'], 3 * num_joints)
    if kpts is None:
        n = len(ann['keypoints']) if isinstance(ann['keypoints'], list) else type(ann['keypoints']).__name__
        raise AnnotationError(f"{where}: has {n} keypoint values, expected {3 * num_joints} "
                              f"({num_joints} joints x 3 finite numbers)")
    box = finite_numbers(ann['bbox'], 4)
    if box is None:
        raise AnnotationError(f"{where}: bbox must be 4 finite numbers [x, y, w, h]")
    if kpts.max() > 0 and (box[2] <= 0 or box[3] <= 0):
        raise AnnotationError(f"{where}: non-positive box {list(box)} for a person with keypoints")
    return kpts.reshape(num_joints, 3), box


class CocoKeypointDataset(TopDownDataset):
    """Top-down samples of a COCO-format keypoint set: (image CHW float32, target (K, h, w), weight (K,)).

    train=True augments (flip, half-body, scale, rotation) with a per-sample seeded rng; train=False
    crops the padded box as evaluation does. Persons whose keypoints are all zero (num_keypoints 0),
    or whose cleaned box is empty, are left out as mmpose 0.13 does. Images missing on disk are left
    out with one warning; an unreadable image is replaced by the next readable one and counted.
    """

    def __init__(self, ann_file, img_root, input_size_hw, train=True, seed=0, meta=None, codec=None):
        data = load_annotation_file(ann_file)
        info, self.category_id = keypoint_info_of(data, Path(ann_file), meta)
        super().__init__(ann_file, img_root, input_size_hw, info, train, seed, codec=codec)
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
