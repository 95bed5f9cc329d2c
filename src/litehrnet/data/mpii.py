"""MPII top-down keypoint dataset (mmpose's JSON): the COCO set's samples, without half-body.

Records are {image, center, scale, joints, joints_vis} in 1-based (MATLAB) pixels; `mpii_center_scale`
is mmpose 0.13's box rule and shift to 0-based, shared with PCKh evaluation (evaluate.evaluate_mpii),
which also needs mpii_gt_val.mat beside the validation annotations.
"""
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from ..evaluation.pckh import load_mpii_gt
from ..fileio import read_json
from ..keypoints import MPII_16
from .topdown import TopDownDataset, finite_numbers

GT_MAT = 'mpii_gt_val.mat'  # PCKh ground truth, beside the validation annotations (mmpose's layout)


def mpii_center_scale(center, scale):
    """mmpose 0.13's MPII person box: centre y += 15 s, scale (s, s) x 1.25, then 1-based -> 0-based."""
    center = np.array(center, dtype=np.float32)
    scale = np.array([scale, scale], dtype=np.float32)
    if center[0] != -1:
        center[1] += 15 * scale[1]
        scale *= 1.25
    return center - 1, scale


def default_gt_mat(ann_file):
    """mpii_gt_val.mat beside an annotation file."""
    return Path(ann_file).parent / GT_MAT


def _check_record(path, i, rec, with_joints):
    """Raise a one-line AnnotationError naming record i of `path` when it is malformed."""
    keys = ('image', 'center', 'scale') + (('joints', 'joints_vis') if with_joints else ())
    if not isinstance(rec, dict):
        raise AnnotationError(f"{path}: record {i} is a {type(rec).__name__}, not an object with {', '.join(keys)}")
    where = f"{path}: record {i} (image {rec.get('image')!r})"
    lacking = [k for k in keys if k not in rec]
    if lacking:
        raise AnnotationError(f"{where}: lacks {', '.join(lacking)} (needs {', '.join(keys)})")
    if not isinstance(rec['image'], str) or not rec['image']:
        raise AnnotationError(f"{where}: image must be a file name")
    if finite_numbers(rec['center'], 2) is None:
        raise AnnotationError(f"{where}: center must be 2 finite numbers [x, y]")
    scale = rec['scale']
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not np.isfinite(scale) or scale <= 0:
        raise AnnotationError(f"{where}: scale must be a positive number (person height / 200), got {scale!r}")
    if not with_joints:
        return
    k = MPII_16.num_joints
    if finite_numbers(rec['joints'], 2 * k) is None or np.shape(rec['joints']) != (k, 2):
        n = len(rec['joints']) if isinstance(rec['joints'], list) else type(rec['joints']).__name__
        raise AnnotationError(f"{where}: has {n} joints, expected {k} (each [x, y], finite numbers)")
    vis = finite_numbers(rec['joints_vis'], k)
    if vis is None or not np.isin(vis, (0, 1)).all():
        raise AnnotationError(f"{where}: joints_vis must be {k} values 0 or 1")


def load_mpii_annotations(ann_file, gt_mat=None, with_joints=False):
    """mmpose-style MPII records (a JSON list), each checked; one-line AnnotationError naming the bad one.

    with_joints also requires joints (16 [x, y]) and joints_vis (training); with gt_mat, the ground
    truth must hold as many people as the file (PCKh compares them in order).
    """
    path = Path(ann_file)
    anns = read_json(path, "annotation file", error=AnnotationError)
    if not isinstance(anns, list):
        raise AnnotationError(f"{path}: expected a JSON list of {{image, center, scale, ...}} objects "
                              f"(mmpose's MPII format), got a {type(anns).__name__}")
    for i, rec in enumerate(anns):
        _check_record(path, i, rec, with_joints)
    if gt_mat is not None:
        num_gt = load_mpii_gt(gt_mat)[1].shape[2]
        if num_gt != len(anns):
            raise AnnotationError(f"{gt_mat}: has {num_gt} people but {ann_file} has {len(anns)}")
    return anns


class MpiiKeypointDataset(TopDownDataset):
    """Top-down samples of an MPII set: (image CHW float32, target (16, h, w), weight (16,)).

    train=True augments as mmpose 0.13's MPII config (flip, scale, rotation; no half-body) with a
    per-sample seeded rng; train=False crops the annotated box as evaluation does. Visibility is
    joints_vis. Missing images are left out with one warning; unreadable ones are replaced and counted.
    """

    def __init__(self, ann_file, img_root, input_size_hw, train=True, seed=0, codec=None):
        super().__init__(ann_file, img_root, input_size_hw, MPII_16, train, seed, half_body_prob=0.0, codec=codec)
        self._load(load_mpii_annotations(self.ann_file, with_joints=True))

    def _load(self, anns):
        """Keep the people whose image is present, 0-based, as arrays."""
        paths, joints, visible, centers, scales = [], [], [], [], []
        for rec in anns:
            path = self.img_root / rec['image']
            if not self._present(path):
                continue
            center, scale = mpii_center_scale(rec['center'], rec['scale'])
            paths.append(path)
            joints.append(np.asarray(rec['joints'], np.float32) - 1)
            visible.append(np.asarray(rec['joints_vis'], np.float32))
            centers.append(center)
            scales.append(scale)
        self._keep(paths, joints, visible, centers, scales, usable='')
