"""COCO-format keypoint dataset and training pipeline: validation, skipping, seeded samples, sharded resumable order."""
import copy
import json
import logging

import cv2
import numpy as np
import pytest

from conftest import shared_path
from litehrnet.codec import codec_for
from litehrnet.data.coco import CocoKeypointDataset
from litehrnet.errors import AnnotationError
from litehrnet.keypoints import COCO_17
from litehrnet.data.pipeline import TrainSampler, build_train_dataset, steps_per_epoch
from litehrnet.data.transforms import box_to_center_scale, clean_coco_box

SIZE = (64, 64)


def _person(x, y, s=1.0):
    """17 COCO keypoints of a standing person with its nose at (x, y), all visible."""
    offsets = np.array([[0, 0], [2, -2], [-2, -2], [4, 0], [-4, 0], [8, 10], [-8, 10], [10, 22], [-10, 22],
                        [11, 33], [-11, 33], [6, 35], [-6, 35], [6, 50], [-6, 50], [6, 64], [-6, 64]])
    pts = np.array([x, y]) + offsets * s
    return np.concatenate([pts, np.full((17, 1), 2)], axis=1).reshape(-1).tolist()


def _coco(tmp_path):
    """A COCO keypoint file with 3 images and 4 persons (one with no keypoints), images written to disk."""
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / f'{i}.png'), rng.integers(0, 255, (120, 100, 3), dtype=np.uint8))
        images.append(dict(id=i + 1, file_name=f'{i}.png', width=100, height=120))
    anns = [dict(id=1, image_id=1, category_id=1, bbox=[30, 10, 30, 70], keypoints=_person(45, 12), num_keypoints=17),
            dict(id=2, image_id=2, category_id=1, bbox=[20, 20, 30, 70], keypoints=_person(35, 22), num_keypoints=17),
            dict(id=3, image_id=2, category_id=1, bbox=[5, 5, 10, 10], keypoints=[0] * 51, num_keypoints=0),
            dict(id=4, image_id=3, category_id=1, bbox=[10, 30, 40, 80], keypoints=_person(30, 32, 1.2),
                 num_keypoints=17)]
    cat = dict(id=1, name='person', keypoints=list(COCO_17.joint_names),
               skeleton=[[a + 1, b + 1] for a, b in COCO_17.skeleton])
    return dict(images=images, annotations=anns, categories=[cat])


def _write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def coco(tmp_path):
    data = _coco(tmp_path)
    return tmp_path, data, _write(tmp_path, data)


def test_persons_boxes_and_centres_follow_mmpose(coco):
    root, data, ann = coco
    ds = CocoKeypointDataset(ann, root, SIZE, train=False)
    assert len(ds) == 3  # the person without keypoints is left out
    assert ds.info.joint_names == COCO_17.joint_names and list(ds.info.sigmas) == list(COCO_17.sigmas)
    box = clean_coco_box(data['annotations'][0]['bbox'], 100, 120)
    center, scale = box_to_center_scale(box, 1.0, 1.25)
    np.testing.assert_allclose(ds.centers[0], center)
    np.testing.assert_allclose(ds.scales[0], scale)
    np.testing.assert_array_equal(ds.visible[0], np.ones(17))


def test_sample_shapes_and_target_decodes_to_the_joints(coco):
    root, _, ann = coco
    ds = CocoKeypointDataset(ann, root, SIZE, train=False)
    image, target, weight = ds.sample(0)
    assert image.shape == (3, 64, 64) and image.dtype == np.float32
    assert target.shape == (17, 16, 16) and target.dtype == np.float32
    assert weight.shape == (17,) and weight.dtype == np.float32
    keypoints, _ = codec_for(SIZE).decode(target[None])
    from litehrnet.data.transforms import affine_points, get_affine_transform
    mat = get_affine_transform(ds.centers[0], ds.scales[0], 0, SIZE[::-1])
    expected = affine_points(ds.joints[0], mat)
    inside = weight > 0
    assert inside.sum() >= 15
    assert np.abs(keypoints[0][inside] - expected[inside]).max() < 4.5  # heatmap pixel = 4 input pixels


@pytest.mark.parametrize("stride, sigma", [(1, 3), (2, 2)])
def test_targets_follow_the_given_codec(coco, stride, sigma):
    """A full-resolution or stride-2 head trains on targets at its own stride and sigma."""
    root, _, ann = coco
    ds = CocoKeypointDataset(ann, root, SIZE, train=False, codec=codec_for(SIZE, output_stride=stride, sigma=sigma))
    _, target, weight = ds.sample(0)
    assert target.shape == (17, 64 // stride, 64 // stride)
    from litehrnet.data.transforms import affine_points, get_affine_transform
    expected = affine_points(ds.joints[0], get_affine_transform(ds.centers[0], ds.scales[0], 0, SIZE[::-1]))
    inside = (weight > 0) & (expected >= 0).all(1) & (expected < 64).all(1)
    assert inside.sum() >= 15
    flat = target.reshape(17, -1)
    ys, xs = np.unravel_index(flat.argmax(1), target.shape[1:])
    np.testing.assert_array_equal(np.c_[xs, ys][inside], (expected[inside] / stride + 0.5).astype(int))
    # the Gaussian has the given sigma in heatmap pixels: one pixel beside the peak is exp(-1 / (2 sigma^2))
    j = int(np.flatnonzero(inside & (xs > 0) & (xs < 64 // stride - 1))[0])
    np.testing.assert_allclose(target[j, ys[j], xs[j] + 1], np.exp(-1 / (2 * sigma ** 2)), rtol=1e-6)


def test_training_samples_are_seeded_per_epoch_and_index(coco):
    root, _, ann = coco
    a = CocoKeypointDataset(ann, root, SIZE, train=True, seed=3)
    b = CocoKeypointDataset(ann, root, SIZE, train=True, seed=3)
    for x, y in zip(a.sample(1, epoch=2), b.sample(1, epoch=2)):
        np.testing.assert_array_equal(x, y)
    differs = [not np.array_equal(a.sample(1, epoch=e)[0], a.sample(1, epoch=2)[0]) for e in range(3, 8)]
    assert any(differs)
    np.testing.assert_array_equal(a.centers, b.centers)  # the load-time centre jitter is seeded too


def _one_line_error(tmp_path, data, *needles):
    ann = _write(tmp_path, data, 'bad.json')
    with pytest.raises(AnnotationError) as e:
        CocoKeypointDataset(ann, tmp_path, SIZE)
    message = str(e.value)
    assert '\n' not in message and 'bad.json' in message
    for needle in needles:
        assert needle in message
    return message


def test_malformed_annotations_give_one_line_naming_file_record_and_reason(coco):
    root, data, _ = coco
    bad = copy.deepcopy(data)
    bad['annotations'][1]['keypoints'] = bad['annotations'][1]['keypoints'][:-3]
    _one_line_error(root, bad, 'annotation 1 (id 2)', '48 keypoint values', 'expected 51')

    bad = copy.deepcopy(data)
    bad['annotations'][0]['bbox'] = [30, 10, 0, 70]
    _one_line_error(root, bad, 'annotation 0 (id 1)', 'non-positive box')

    bad = copy.deepcopy(data)
    bad['annotations'][3]['image_id'] = 99
    _one_line_error(root, bad, 'annotation 3 (id 4)', 'image_id 99')

    bad = copy.deepcopy(data)
    bad['annotations'][0]['category_id'] = 2
    _one_line_error(root, bad, 'annotation 0', "category_id 2 has no entry in 'categories'")

    bad = copy.deepcopy(data)
    bad['categories'][0].pop('keypoints')
    _one_line_error(root, bad, 'no category has keypoints')

    bad = copy.deepcopy(data)
    bad['images'][0].pop('width')
    _one_line_error(root, bad, 'image record 0 (id 1)', 'width')


def test_missing_file_and_broken_json_are_one_line_errors(tmp_path):
    with pytest.raises(AnnotationError, match='annotation file not found'):
        CocoKeypointDataset(tmp_path / 'nope.json', tmp_path, SIZE)
    (tmp_path / 'broken.json').write_text('{"images": [')
    with pytest.raises(AnnotationError, match='not valid JSON'):
        CocoKeypointDataset(tmp_path / 'broken.json', tmp_path, SIZE)


def test_missing_images_are_skipped_with_a_warning_and_summary(coco, caplog):
    root, _, ann = coco
    (root / '1.png').unlink()
    with caplog.at_level(logging.WARNING, logger='litehrnet'):
        ds = CocoKeypointDataset(ann, root, SIZE)
    assert len(ds) == 2
    assert '1 of 3 images are missing' in caplog.text
    assert '1 missing' in ds.skip_summary()


def test_unreadable_image_is_replaced_and_counted_not_a_crash(coco, caplog):
    root, _, ann = coco
    (root / '0.png').write_bytes(b'not an image')
    ds = CocoKeypointDataset(ann, root, SIZE)
    with caplog.at_level(logging.WARNING, logger='litehrnet'):
        image, _, _ = ds.sample(0)
        ds.sample(0, epoch=1)
    assert image.shape == (3, 64, 64)
    assert caplog.text.count('unreadable image') == 1  # warned once per file
    assert '1 unreadable' in ds.skip_summary()


def test_custom_keypoint_set_reads_with_inferred_flip_pairs(tmp_path):
    cv2.imwrite(str(tmp_path / 'a.png'), np.zeros((50, 50, 3), np.uint8))
    cat = dict(id=7, name='hand', keypoints=['wrist', 'left_tip', 'right_tip'])
    data = dict(images=[dict(id=1, file_name='a.png', width=50, height=50)], categories=[cat],
                annotations=[dict(id=1, image_id=1, category_id=7, bbox=[10, 10, 20, 20],
                                  keypoints=[15, 15, 2, 12, 25, 2, 25, 25, 1])])
    ds = CocoKeypointDataset(_write(tmp_path, data), tmp_path, SIZE)
    assert ds.info.num_joints == 3 and ds.info.flip_pairs == [[1, 2]]
    image, target, weight = ds.sample(0)
    assert target.shape == (3, 16, 16) and weight.shape == (3,)


def test_real_coco_tiny_samples():
    root = shared_path('data', 'coco-tiny')
    ds = CocoKeypointDataset(root / 'test_coco.json', root, (256, 192), train=True)
    assert len(ds) == 12  # 14 persons, 12 with keypoints
    image, target, weight = ds.sample(5, epoch=1)
    assert image.shape == (3, 256, 192) and target.shape == (17, 64, 48)
    assert 0 < weight.sum() <= 17 and target.max() == pytest.approx(1.0)


# --- the sample order -------------------------------------------------------------------------------

def test_sampler_resumes_mid_run_with_the_same_order():
    full = list(TrainSampler(50, 4, epochs=3, seed=1))
    assert len(full) == 3 * 12 * 4
    for start in (0, 5, 12, 13, 35):
        assert list(TrainSampler(50, 4, epochs=3, seed=1, start_step=start)) == full[start * 4:]
    epochs = [k // 50 for k in full]
    assert epochs == sorted(epochs)  # keys carry the epoch: epoch * N + index
    assert len({k % 50 for k in full[:48]}) == 48  # no repeats within an epoch


def test_shards_are_disjoint_and_cover_the_epoch():
    shards = [TrainSampler(21, 2, epochs=1, seed=0, num_shards=3, shard_id=r) for r in range(3)]
    assert steps_per_epoch(21, 2, 3) == 3 == shards[0].steps_per_epoch
    indices = [set(s.epoch_indices(0).tolist()) for s in shards]
    assert all(len(i) == 6 for i in indices)
    assert not (indices[0] & indices[1]) and not (indices[1] & indices[2]) and not (indices[0] & indices[2])


def test_too_few_samples_for_one_batch_is_a_clear_error():
    with pytest.raises(ValueError, match='do not fill one batch'):
        TrainSampler(3, 4, epochs=1)


def test_generator_dataset_batches_equal_direct_samples(coco):
    root, _, ann = coco
    ds = CocoKeypointDataset(ann, root, SIZE, train=True, seed=0)
    data, sampler = build_train_dataset(ds, batch_size=2, epochs=2, seed=0, start_step=1)
    batches = list(data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    assert len(batches) == 1  # one step per epoch, the first one skipped
    keys = list(sampler)
    expected = [ds.sample(k % len(ds), k // len(ds)) for k in keys]
    for column in range(3):
        np.testing.assert_array_equal(batches[0][column], np.stack([e[column] for e in expected]))
