"""The landmark demo set: deterministic synthetic spines, 40 corner landmarks that sit on the drawn vertebrae."""
import json

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script
from litehrnet.data.coco import CocoKeypointDataset
from litehrnet.data.datasets import dataset_spec
from litehrnet.data.demo_landmarks import (IMAGE_SIZE_WH, JOINT_NAMES, NUM_VERTEBRAE, SKELETON, ensure_landmark_dataset,
                                           keypoint_info, render_image)

SMALL = {'train': 6, 'val': 3}


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file() and p.name != '.lock'}


def test_the_same_seed_writes_identical_files_and_another_seed_others(tmp_path):
    a = _files(ensure_landmark_dataset(tmp_path / 'a', SMALL, seed=3))
    b = _files(ensure_landmark_dataset(tmp_path / 'b', SMALL, seed=3))
    c = _files(ensure_landmark_dataset(tmp_path / 'c', SMALL, seed=4))
    assert a == b
    assert len(a) == 9 + 2 + 1  # 9 images, 2 annotation files, meta.json
    assert a['images/train/000000.png'] != c['images/train/000000.png']
    assert a['annotations/val.json'] != c['annotations/val.json']


def test_an_existing_complete_set_is_kept(tmp_path):
    root = ensure_landmark_dataset(tmp_path, SMALL, seed=0)
    image = root / 'images' / 'val' / '000001.png'
    stamp = image.stat().st_mtime_ns
    ensure_landmark_dataset(tmp_path, SMALL, seed=0)
    assert image.stat().st_mtime_ns == stamp
    ensure_landmark_dataset(tmp_path, dict(SMALL, val=4), seed=0)  # another size: rewritten
    assert len(json.loads((root / 'annotations' / 'val.json').read_text())['images']) == 4


def test_annotations_are_valid_one_spine_per_image(tmp_path):
    root = ensure_landmark_dataset(tmp_path, SMALL, seed=0)
    w, h = IMAGE_SIZE_WH
    for split, count in SMALL.items():
        ann_file, img_dir = dataset_spec('custom').split_files(root, split)
        data = json.loads(ann_file.read_text())
        assert len(data['images']) == len(data['annotations']) == count
        assert data['categories'][0]['keypoints'] == JOINT_NAMES and len(JOINT_NAMES) == 40
        assert JOINT_NAMES[:4] == ['v1_top_left', 'v1_top_right', 'v1_bottom_right', 'v1_bottom_left']
        for image, ann in zip(data['images'], data['annotations']):
            assert ann['image_id'] == image['id'] and (image['width'], image['height']) == (w, h)
            pixels = cv2.imread(str(img_dir / image['file_name']), cv2.IMREAD_COLOR)
            assert pixels.shape == (h, w, 3) and np.array_equal(pixels[..., 0], pixels[..., 2])  # gray
            k = np.array(ann['keypoints']).reshape(40, 3)
            assert set(np.unique(k[:, 2])) <= {1, 2} and ann['num_keypoints'] == 40  # all inside the image
            x, y, bw, bh = ann['bbox']
            assert (k[:, 0] >= x).all() and (k[:, 0] <= x + bw).all()
            assert (k[:, 1] >= y).all() and (k[:, 1] <= y + bh).all()
            assert bw * bh < 0.9 * w * h and ann['area'] > 0
    info = keypoint_info()
    assert info.num_joints == 40 and info.flip_pairs == [] and len(info.skeleton) == 40
    assert len(set(info.sigmas)) == 1 and info.upper_body_ids == ()
    assert [0, 1] in SKELETON and [3, 0] in SKELETON  # each vertebra's outline
    dataset = CocoKeypointDataset(*dataset_spec('custom').split_files(root, 'train'), (256, 128), train=True, seed=0,
                                  meta=root / 'meta.json')
    assert len(dataset) == SMALL['train'] and dataset.info.flip_pairs == []


def test_vertebrae_follow_a_curved_spine_with_endplates_square_to_it():
    from litehrnet.data.demo_landmarks import spine_corners
    cosines, bends = [], []
    for i in range(50):
        quads = spine_corners(np.random.default_rng(i)).reshape(NUM_VERTEBRAE, 4, 2)
        centres = quads.mean(1)
        axis = np.gradient(centres, axis=0)
        axis /= np.linalg.norm(axis, axis=1, keepdims=True)
        plate = quads[:, 1] - quads[:, 0] + quads[:, 2] - quads[:, 3]  # top and bottom endplates, left to right
        plate /= np.linalg.norm(plate, axis=1, keepdims=True)
        cosines.append(np.abs((plate * axis).sum(1)))
        bends.append(np.ptp(centres[:, 0] - np.polyval(np.polyfit(centres[:, 1], centres[:, 0], 1), centres[:, 1])))
        assert (np.diff(centres[:, 1]) > 0).all() and (plate[:, 0] > 0).all()  # v1 on top; left before right
    assert np.mean(np.concatenate(cosines)) < 0.06  # measured 0.028 (a tilted-the-wrong-way spine gives 0.21)
    assert np.median(bends) > 5 and np.min(bends) < 3  # curved spines (pixels off a straight line), some straight


def _contrast(image, kpts):
    """Per landmark: mean intensity 2.5 px inside its vertebra (toward the centre) minus 2.5 px outside."""
    img = image.astype(np.float64)
    quads = kpts[:, :2].reshape(NUM_VERTEBRAE, 4, 2)
    out = []
    for quad in quads:
        centre = quad.mean(0)
        for p in quad:
            u = (centre - p) / np.linalg.norm(centre - p)
            sample = [cv2.getRectSubPix(img.astype(np.float32), (3, 3), tuple(map(float, p + s * 2.5 * u))).mean()
                      for s in (1, -1)]
            out.append(sample[0] - sample[1])
    return np.array(out)


def test_landmarks_sit_on_the_drawn_vertebra_corners():
    """Inside each corner is bone (bright), just outside is soft tissue or disc (dark); misplaced points fail.

    Measured on 12 images (seeds (7, i)): true corners have contrast > 10 everywhere, median about 107;
    another spine's landmarks: 30 % pass, median 5; landmarks moved 8 px right: 44 % pass, median 8.
    """
    true, other, shifted = [], [], []
    for i in range(12):
        image, kpts = render_image(np.random.default_rng((7, i)))
        clear = kpts[:, 2] == 2  # not under an occluder
        true.append(_contrast(image, kpts)[clear])
        other.append(_contrast(image, render_image(np.random.default_rng((8, i)))[1])[clear])
        moved = kpts.copy()
        moved[:, 0] += 8  # a third of a vertebra's width to the right
        shifted.append(_contrast(image, moved)[clear])
    true, other, shifted = map(np.concatenate, (true, other, shifted))
    assert len(true) > 400
    assert (true > 10).mean() > 0.98 and np.median(true) > 50
    for wrong in (other, shifted):
        assert (wrong > 10).mean() < 0.6 and np.median(wrong) < 20


@pytest.mark.slow
def test_a_narrow_litehrnet_learns_the_landmarks(tmp_path):
    """6 epochs of 28 steps (tests/data/landmark_probe.py): measured MRE 177 px after epoch 1, 4.9 px after epoch 6
    (SDR@4 0.54, SDR@8 0.83), 60-150 s of training on 2 shared cores."""
    proc = run_script(['tests/data/landmark_probe.py', tmp_path / 'data', 6, 0],
                      env={'PYTHONPATH': str(ROOT / 'src'), 'GLOG_v': '3'}, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith('{"epoch"')]
    assert [r['epoch'] for r in rows] == list(range(1, 7))
    first, last = rows[0], rows[-1]
    assert last['loss'] < 0.6 * first['loss']
    assert first['MRE'] > 50 and last['MRE'] < 8.0  # pixels on 128x256 images
    assert last['SDR@8'] > 0.65
