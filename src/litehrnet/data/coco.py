"""COCO-format top-down keypoint dataset: one person per sample, validated up front, seeded per sample.

Works for COCO person keypoints and any COCO-format keypoint set (checked up front by
`data.validate.load_ground_truth`; every category sharing the keypoint set is used, as AP-10K's
species). Boxes are cleaned, centred, aspect-fixed and padded as mmpose 0.13 does; a sample is the
augmented crop, its Gaussian heatmaps and joint weights (see `data/topdown.py`, shared with MPII).
"""
import numpy as np

from ..errors import AnnotationError  # noqa: F401 (where the tests and callers have imported it from)
from .topdown import TopDownDataset
from .transforms import box_to_center_scale, clean_coco_box
from .validate import load_ground_truth


class CocoKeypointDataset(TopDownDataset):
    """Top-down samples of a COCO-format keypoint set: (image CHW float32, target (K, h, w), weight (K,)).

    train=True augments (flip, half-body, scale, rotation) with a per-sample seeded rng; train=False
    crops the padded box as evaluation does. Persons whose keypoints are all zero (num_keypoints 0),
    or whose cleaned box is empty, are left out as mmpose 0.13 does, and so are crowd annotations
    (counted in `num_crowd`). Images missing on disk are left
    out with one warning; an unreadable image is replaced by the next readable one and counted.
    """

    def __init__(self, ann_file, img_root, input_size_hw, train=True, seed=0, meta=None, keypoints=None,
                 sigmas=None, codec=None):
        gt = load_ground_truth(ann_file, keypoints, meta, sigmas)
        self.category_ids = gt.category_ids
        self.annotation_notes = gt.notes
        super().__init__(ann_file, img_root, input_size_hw, gt.info, train, seed, codec=codec)
        self._load(gt)

    def _load(self, gt):
        """Keep the usable persons of the validated file as arrays (crowd annotations left out, counted)."""
        k = self.info.num_joints
        images = gt.images
        self.num_crowd = 0
        aspect = self.input_size_hw[1] / self.input_size_hw[0]
        jitter = np.random.default_rng(self.seed) if self.train else None  # mmpose: once per person at load
        paths, joints, visible, centers, scales, image_ids = [], [], [], [], [], []
        for ann in gt.keypoint_annotations():
            if ann['iscrowd']:
                self.num_crowd += 1
                continue
            kpts = np.asarray(ann['keypoints'], np.float64).reshape(k, 3)
            box = np.asarray(ann['bbox'], np.float64)
            if kpts.max() <= 0 or ann['num_keypoints'] == 0 or ann['area'] <= 0:
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
