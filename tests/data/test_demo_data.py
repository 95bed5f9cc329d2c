"""The generated demo dataset: deterministic, COCO-17 format, sided colours, visibility semantics, cached."""
import json

import cv2
import numpy as np
from pycocotools.coco import COCO

from litehrnet.data.coco import CocoKeypointDataset
from litehrnet.data.datasets import DATASETS
from litehrnet.data.demo import (IMAGE_SIZE_WH, L_EAR, L_ELB, L_EYE, L_HIP, L_SHO, R_EAR, R_ELB, R_EYE, R_HIP, R_SHO,
                                 _draw_person, ensure_demo_dataset, random_pose, render_image)
from litehrnet.keypoints import COCO_17, from_coco_category

SMALL = {'train': 6, 'val': 3}


def test_rendering_is_deterministic():
    a_img, a_persons = render_image(np.random.default_rng((0, 1, 2)))
    b_img, b_persons = render_image(np.random.default_rng((0, 1, 2)))
    np.testing.assert_array_equal(a_img, b_img)
    assert len(a_persons) == len(b_persons) >= 1
    for (ka, box_a, area_a), (kb, box_b, area_b) in zip(a_persons, b_persons):
        np.testing.assert_array_equal(ka, kb)
        assert box_a == box_b and area_a == area_b


def test_written_dataset_is_identical_across_runs(tmp_path):
    ensure_demo_dataset(tmp_path / 'a', SMALL, seed=5)
    ensure_demo_dataset(tmp_path / 'b', SMALL, seed=5)
    for split in SMALL:
        a = json.loads((tmp_path / 'a' / 'annotations' / f'{split}.json').read_text())
        b = json.loads((tmp_path / 'b' / 'annotations' / f'{split}.json').read_text())
        assert a == b
        for img in a['images']:
            assert (tmp_path / 'a' / 'images' / img['file_name']).read_bytes() == \
                (tmp_path / 'b' / 'images' / img['file_name']).read_bytes()


def test_coco17_format_readable_by_pycocotools_and_the_dataset(tmp_path):
    root = ensure_demo_dataset(tmp_path, SMALL)
    ann, img_root = DATASETS['demo'].split_files(root, 'train')
    coco = COCO(str(ann))
    cat = coco.loadCats(1)[0]
    assert cat['keypoints'] == COCO_17.joint_names
    assert sorted(map(sorted, cat['skeleton'])) == sorted(sorted([a + 1, b + 1]) for a, b in COCO_17.skeleton)
    assert from_coco_category(cat).flip_pairs == COCO_17.flip_pairs  # the left/right names pair up
    assert len(coco.imgs) == SMALL['train'] and len(coco.anns) >= SMALL['train']
    for a in coco.anns.values():
        k = np.array(a['keypoints']).reshape(17, 3)
        assert set(np.unique(k[:, 2])) <= {0, 1, 2}
        assert a['num_keypoints'] == int((k[:, 2] > 0).sum()) > 0
        assert np.all(k[k[:, 2] == 0, :2] == 0)  # unlabelled joints are (0, 0, 0), as COCO
        x, y, w, h = a['bbox']
        labelled = k[k[:, 2] > 0, :2]
        assert np.all(labelled >= [0, 0]) and np.all(labelled < IMAGE_SIZE_WH)
        assert np.all(labelled >= [x - 1, y - 1]) and np.all(labelled <= [x + w + 1, y + h + 1])
        assert a['area'] > 0 and a['iscrowd'] == 0
    ds = CocoKeypointDataset(ann, img_root, (128, 96), train=True)
    image, target, weight = ds.sample(0)
    assert image.shape == (3, 128, 96) and target.shape == (17, 32, 24) and weight.sum() > 0


def test_some_joints_are_occluded_or_outside():
    visibility = np.concatenate([k[:, 2] for i in range(60)
                                 for k, _, _ in render_image(np.random.default_rng(i))[1]])
    counts = {v: int((visibility == v).sum()) for v in (0, 1, 2)}
    assert counts[2] > counts[1] > 0 and counts[0] > 0


def test_figures_face_the_camera_and_sides_have_distinct_colours():
    """Left is on the image right (as in a photo); the colours tell the sides apart, not which is left."""
    left_is_blue = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        joints, radius = random_pose(rng, 150)
        for left, right in ((L_SHO, R_SHO), (L_HIP, R_HIP), (L_EYE, R_EYE), (L_EAR, R_EAR)):
            assert joints[left, 0] > joints[right, 0], seed
        joints += [128, 40]
        canvas = np.zeros((192, 256, 3), np.uint8)
        _draw_person(canvas, np.zeros((192, 256), np.uint8), joints, radius, 150, rng)
        hue = cv2.cvtColor(canvas, cv2.COLOR_BGR2HSV)[..., 0].astype(int)

        def is_blue(a, b):
            x, y = np.round(joints[a] * 0.6 + joints[b] * 0.4).astype(int)
            return 90 <= hue[y, x] <= 135

        assert is_blue(L_SHO, L_ELB) != is_blue(R_SHO, R_ELB), seed
        left_is_blue.append(is_blue(L_SHO, L_ELB))
    assert 0 < sum(left_is_blue) < len(left_is_blue)  # either colour may be the left one


def test_generated_only_when_missing(tmp_path):
    ensure_demo_dataset(tmp_path, SMALL)
    ann = tmp_path / 'annotations' / 'train.json'
    stamp = ann.stat().st_mtime_ns
    ensure_demo_dataset(tmp_path, SMALL)
    assert ann.stat().st_mtime_ns == stamp
    ann.unlink()
    ensure_demo_dataset(tmp_path, SMALL)
    assert ann.is_file()
    ensure_demo_dataset(tmp_path, {'train': 7, 'val': 3})  # another size: rewritten
    assert len(json.loads(ann.read_text())['images']) == 7
