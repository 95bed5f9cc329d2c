"""Top-down crop geometry and training augmentation (mmpose 0.13 numbers, seeded and reproducible)."""
import numpy as np
import pytest

from litehrnet.keypoints import COCO_17, KeypointInfo
from litehrnet.data.transforms import (TopDownTrainTransform, affine_points, box_to_center_scale,
                                       clean_coco_box, flip_joints, get_affine_transform, half_body_box,
                                       normalize, preprocess, preprocess_box, random_scale_rotation,
                                       warp_crop)

# A standing person in a 640x480 image: head at the top, ankles at the bottom (COCO order).
PERSON = np.array([[320, 100], [330, 90], [310, 90], [340, 95], [300, 95], [360, 140], [280, 140],
                   [370, 190], [270, 190], [375, 240], [265, 240], [345, 250], [295, 250],
                   [345, 320], [295, 320], [345, 390], [295, 390]], dtype=np.float32)


def test_clean_coco_box():
    assert clean_coco_box([10, 20, 30, 40], 100, 100) == [10, 20, 29, 39]
    assert clean_coco_box([-5, -5, 20, 20], 100, 100) == [0, 0, 19, 19]
    assert clean_coco_box([90, 90, 50, 50], 100, 100) == [90, 90, 9, 9]
    assert clean_coco_box([10, 10, 1, 30], 100, 100) is None
    assert clean_coco_box([120, 10, 5, 5], 100, 100) is None


def test_box_to_center_scale_enlarges_the_short_side():
    center, scale = box_to_center_scale([0, 0, 300, 100], 0.75)
    np.testing.assert_allclose(center, [150, 50])
    np.testing.assert_allclose(scale, [1.5 * 1.25, 2.0 * 1.25])
    _, scale = box_to_center_scale([0, 0, 30, 200], 0.75, padding=1.0)
    np.testing.assert_allclose(scale, [0.75, 1.0])
    assert center.dtype == scale.dtype == np.float32


def test_box_center_jitter_matches_mmpose_training_quirk():
    rng = np.random.default_rng(0)
    shifts = np.array([box_to_center_scale([100, 100, 100, 200], 0.75, rng=rng)[0] - [150, 200]
                       for _ in range(4000)])
    moved = np.any(shifts != 0, axis=1)
    assert 0.27 < moved.mean() < 0.33
    assert np.all(np.abs(shifts) <= [20, 40])


@pytest.mark.parametrize('rot, shift', [(0, (0, 0)), (37.5, (0, 0)), (-20, (0.1, -0.05))])
def test_affine_round_trip_is_identity(rot, shift):
    center, scale = np.array([250.0, 180.0]), np.array([1.3, 1.7])
    fwd = get_affine_transform(center, scale, rot, (192, 256), shift=shift)
    inv = get_affine_transform(center, scale, rot, (192, 256), shift=shift, inv=True)
    points = np.random.default_rng(0).uniform(0, 500, size=(50, 2))
    np.testing.assert_allclose(affine_points(affine_points(points, fwd), inv), points, atol=1e-3)
    np.testing.assert_allclose(np.vstack([fwd, [0, 0, 1]]) @ np.vstack([inv, [0, 0, 1]]), np.eye(3),
                               atol=1e-5)


def test_affine_maps_the_box_onto_the_input():
    center, scale = np.array([100.0, 120.0]), np.array([0.96, 1.28])  # 192 x 256 px box
    mat = get_affine_transform(center, scale, 0, (192, 256))
    corners = [[100 - 96, 120 - 128], [100 + 96, 120 + 128], [100, 120]]
    np.testing.assert_allclose(affine_points(corners, mat), [[0, 0], [192, 256], [96, 128]], atol=1e-4)
    rotated = get_affine_transform(center, scale, 90, (192, 256))
    # rotating the box by +90 degrees (counter-clockwise) sends the point above the centre to the left
    np.testing.assert_allclose(affine_points([[100, 120 - 10]], rotated), [[96 - 10, 128]], atol=1e-4)


def test_warp_crop_is_black_outside_the_image():
    image = np.full((100, 100, 3), 200, dtype=np.uint8)
    crop = warp_crop(image, np.array([0.0, 50.0]), np.array([0.5, 0.5]), 0, (64, 64))
    assert crop.shape == (64, 64, 3) and crop.dtype == np.uint8
    assert (crop[:, :30] == 0).all() and (crop[:, 34:] == 200).all()


def test_flip_joints_twice_is_identity():
    visible = np.ones(17, dtype=np.float32)
    once, vis_once = flip_joints(PERSON, visible, 640, COCO_17.flip_pairs)
    np.testing.assert_allclose(once[1], [640 - 1 - 310, 90])  # right eye mirrored into the left slot
    twice, _ = flip_joints(once, vis_once, 640, COCO_17.flip_pairs)
    np.testing.assert_allclose(twice, PERSON)
    visible[3] = 0
    flipped, vis = flip_joints(PERSON, visible, 640, COCO_17.flip_pairs)
    assert vis[4] == 0 and (flipped[4] == 0).all()  # invisible joints are zeroed, as mmpose


def test_half_body_choice_distribution_and_box():
    rng = np.random.default_rng(0)
    visible = np.ones(17)
    centers = np.array([half_body_box(PERSON, visible, COCO_17, 0.75, rng)[0] for _ in range(3000)])
    upper = centers[:, 1] < 200
    assert 0.66 < upper.mean() < 0.72  # P(randn < 0.5) = 0.691
    center, scale = next(b for b in (half_body_box(PERSON, visible, COCO_17, 0.75, rng) for _ in range(9))
                         if b[0][1] > 200)
    np.testing.assert_allclose(center, PERSON[11:].mean(axis=0))
    np.testing.assert_allclose(scale, [140 * 0.75 / 200 * 1.5, 140 / 200 * 1.5], rtol=1e-6)
    visible[2:11] = 0
    visible[15:] = 0  # 2 upper and 4 lower joints visible: always the lower body
    assert all(half_body_box(PERSON, visible, COCO_17, 0.75, rng)[0][1] == 285 for _ in range(20))
    visible[12:] = 0  # 2 upper and 1 lower: falls back to the upper body
    np.testing.assert_allclose(half_body_box(PERSON, visible, COCO_17, 0.75, rng)[0], [325, 95])
    visible[1] = 0  # single joints on either side: no half-body box
    assert half_body_box(PERSON, visible, COCO_17, 0.75, rng) is None


def test_random_scale_rotation_distribution():
    rng = np.random.default_rng(0)
    draws = np.array([random_scale_rotation(rng) for _ in range(5000)])
    scales, rots = draws[:, 0], draws[:, 1]
    assert scales.min() == 0.75 and scales.max() == 1.25
    assert 0.29 < np.mean((scales == 0.75) | (scales == 1.25)) < 0.345  # P(|N(0,1)| > 1) = 0.317
    assert 0.57 < np.mean(rots != 0) < 0.63
    assert np.abs(rots).max() == 60


def test_normalize():
    image = np.zeros((4, 5, 3), dtype=np.uint8)
    image[0, 0] = [255, 128, 0]
    out = normalize(image)
    assert out.shape == (3, 4, 5) and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out[:, 0, 0], [(1 - 0.485) / 0.229, (128 / 255 - 0.456) / 0.224,
                                              -0.406 / 0.225], rtol=1e-6)


def test_preprocess_box_is_the_plain_crop():
    image = np.random.default_rng(0).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    tensor, center, scale = preprocess_box(image, [200, 50, 150, 380], (256, 192))
    assert tensor.shape == (3, 256, 192) and tensor.dtype == np.float32
    expected_center, expected_scale = box_to_center_scale([200, 50, 150, 380], 0.75)
    np.testing.assert_array_equal(center, expected_center)
    np.testing.assert_array_equal(scale, expected_scale)
    np.testing.assert_array_equal(tensor, preprocess(image, center, scale, (256, 192)))
    np.testing.assert_array_equal(tensor, normalize(warp_crop(image, center, scale, 0, (192, 256))))


def _train_inputs():
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    x, y = PERSON[0].astype(int)
    image[y - 2:y + 3, x - 2:x + 3] = 255  # a bright blob on the nose only
    center, scale = box_to_center_scale([250, 70, 140, 340], 0.75)
    return image, PERSON, np.ones(17, dtype=np.float32), center, scale


def test_train_transform_keeps_image_and_joints_aligned():
    transform = TopDownTrainTransform(COCO_17, (256, 192))
    for seed in range(12):
        image, joints, visible, center, scale = _train_inputs()
        tensor, out_joints, out_visible = transform(image, joints, visible, center, scale,
                                                    np.random.default_rng(seed))
        assert tensor.shape == (3, 256, 192) and out_joints.dtype == np.float32
        bright = tensor[0] > 1.5
        if bright.any():
            blob = np.argwhere(bright).mean(axis=0)[::-1]
            assert np.abs(blob - out_joints[0]).max() < 1.5, seed


def test_train_transform_same_seed_same_output():
    transform = TopDownTrainTransform(COCO_17, (256, 192))
    runs = [transform(*_train_inputs(), np.random.default_rng(s)) for s in (7, 7, 8)]
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(runs[0][1], runs[2][1])


def test_train_transform_flip_and_half_body_rates():
    transform = TopDownTrainTransform(COCO_17, (256, 192), rot_prob=0.0, scale_factor=0.0)
    rng = np.random.default_rng(0)
    image, joints, visible, center, scale = _train_inputs()
    joints = joints.copy()
    joints[0, 0] += 20  # nose right of every crop centre unless flipped
    outs = [transform(image, joints, visible, center, scale, rng)[1] for _ in range(600)]
    flipped = np.mean([o[0, 0] < 96 for o in outs])
    zoomed = np.mean([np.ptp(o[:, 1]) > 300 for o in outs])  # half-body: 330+ px tall, else 175 px
    assert 0.45 < flipped < 0.55
    assert 0.24 < zoomed < 0.36


def test_train_transform_without_body_split_skips_half_body():
    info = KeypointInfo('custom', [f'j{i}' for i in range(17)], [], [], (), (), np.full(17, 0.07),
                        np.ones(17, dtype=np.float32))
    assert TopDownTrainTransform(info, (256, 192)).half_body_prob == 0.0
