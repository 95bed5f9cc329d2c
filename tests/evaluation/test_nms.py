"""OKS and OKS-NMS: closed-form OKS, and duplicates of the tiny COCO ground truth removed (pipeline.md)."""
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from litehrnet.evaluation import COCO_SIGMAS, oks_iou, oks_nms, soft_oks_nms

ANN_FILE = SHARED / 'data' / 'coco-tiny' / 'test_coco.json'


def padded_area(bbox, aspect=192 / 256, padding=1.25):
    """Area of the padded box: the aspect ratio fixed to the input's by enlarging, then x 1.25 per side."""
    _, _, w, h = bbox
    w, h = max(w, h * aspect), max(h, w / aspect)
    return w * h * padding ** 2


@pytest.fixture(scope='module')
def persons_by_image():
    if not ANN_FILE.is_file():
        pytest.skip(f"shared test data not found: {ANN_FILE}")
    by_image = defaultdict(list)
    for ann in json.loads(ANN_FILE.read_text())['annotations']:
        if ann['num_keypoints'] > 0:
            kpts = np.array(ann['keypoints'], dtype=np.float64).reshape(-1, 3)
            kpts[:, 2] = kpts[:, 2] > 0
            by_image[ann['image_id']].append(dict(keypoints=kpts, score=1.0, area=padded_area(ann['bbox'])))
    return by_image


def test_oks_closed_form():
    g = np.array([[10.0, 20.0, 1.0], [30.0, 40.0, 1.0]])
    d = np.stack([g, g + [[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]]])
    sigmas, area = np.array([0.1, 0.2]), 100.0
    expected = (np.exp(-25 / (2 * 0.1) ** 2 / area / 2) + 1) / 2
    np.testing.assert_allclose(oks_iou(g, d, area, [area, area], sigmas), [1.0, expected], rtol=1e-6)


def test_oks_vis_thr_uses_the_detections_scores():
    g = np.zeros((17, 3))
    d = np.zeros((1, 17, 3))
    d[0, :, 0] = 1000.0   # every joint far away ...
    d[0, 0] = [0, 0, 0.9]  # ... but the only confident one is exact
    assert oks_iou(g, d, 1e4, [1e4], vis_thr=0.2)[0] == pytest.approx(1.0)
    assert oks_iou(g, d, 1e4, [1e4])[0] == pytest.approx(1 / 17)
    assert oks_iou(g, d, 1e4, [1e4], vis_thr=0.95)[0] == 0.0


def test_oks_nms_keeps_ground_truth_and_removes_duplicates(persons_by_image):
    kept = 0
    for people in persons_by_image.values():
        db = people + [dict(p, keypoints=p['keypoints'].copy(), score=0.5) for p in people]
        keep = oks_nms(db, 0.9, sigmas=COCO_SIGMAS)
        assert sorted(keep) == list(range(len(people)))
        kept += len(keep)
    assert kept == 12


def test_soft_oks_nms_ranks_duplicates_last(persons_by_image):
    people = max(persons_by_image.values(), key=len)
    db = people + [dict(p, score=0.5) for p in people]
    keep = soft_oks_nms(db, 0.9)
    assert len(keep) == len(db)
    assert sorted(keep[:len(people)]) == list(range(len(people)))
    assert len(soft_oks_nms(db, 0.9, max_dets=3)) == 3


def test_empty():
    assert len(oks_nms([], 0.9)) == 0 and len(soft_oks_nms([], 0.9)) == 0
