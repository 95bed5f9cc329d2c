"""The seeded train/val split of one annotation file, by image."""
import copy

import pytest

from litehrnet.data.split import split_annotations


def _coco(num_images=40):
    images = [dict(id=100 + i, file_name=f'{i:04d}.jpg', width=64, height=64) for i in range(num_images)]
    anns = [dict(id=len(images) * k + i, image_id=100 + i, bbox=[0, 0, 1, 1]) for i in range(num_images)
            for k in range(1 + i % 3)]  # 1-3 persons per image
    return dict(info=dict(description='x'), categories=[dict(id=1, name='person')], images=images,
                annotations=anns)


def _ids(d):
    return [img['id'] for img in d['images']]


def test_split_is_disjoint_complete_and_keeps_annotations_with_their_image():
    coco = _coco()
    before = copy.deepcopy(coco)
    train, val = split_annotations(coco, 0.15, seed=3)
    assert coco == before  # the input is not modified
    assert len(val['images']) == 6 and len(train['images']) == 34  # round(0.15 x 40)
    assert not set(_ids(train)) & set(_ids(val))
    assert sorted(_ids(train) + _ids(val)) == _ids(coco)
    for part in (train, val):
        assert {a['image_id'] for a in part['annotations']} <= set(_ids(part))
        assert part['categories'] == coco['categories'] and part['info'] == coco['info']
    assert sorted(a['id'] for a in train['annotations'] + val['annotations']) == \
        sorted(a['id'] for a in coco['annotations'])


def test_split_is_seeded():
    coco = _coco()
    val_a = _ids(split_annotations(coco, 0.25, seed=0)[1])
    assert val_a == _ids(split_annotations(coco, 0.25, seed=0)[1])
    assert val_a != _ids(split_annotations(coco, 0.25, seed=1)[1])
    assert val_a != sorted(_ids(coco))[:len(val_a)]  # shuffled, not the first images


@pytest.mark.parametrize('fraction, expected', [(0.5, 5), (0.01, 1), (0.99, 9), (0.15, 2)])
def test_split_fraction_is_respected_with_one_image_at_least_each_side(fraction, expected):
    train, val = split_annotations(_coco(10), fraction, seed=0)
    assert (len(val['images']), len(train['images'])) == (expected, 10 - expected)


@pytest.mark.parametrize('fraction', [0, 1, -0.1, 1.5])
def test_split_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match='val_fraction'):
        split_annotations(_coco(), fraction, seed=0)


def test_split_refuses_repeated_image_ids():
    coco = _coco(3)
    coco['images'][1]['id'] = coco['images'][0]['id']
    with pytest.raises(ValueError, match='repeats image ids'):
        split_annotations(coco, 0.5, seed=0)
