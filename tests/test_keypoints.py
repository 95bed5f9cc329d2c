"""Keypoint-set metadata: the built-in COCO/MPII sets and inference for other COCO-format sets."""
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from litehrnet.keypoints import (COCO_17, MPII_16, flip_indices, from_coco_category,
                                      get_keypoint_info, infer_flip_pairs)

TINY_ANN = SHARED / 'data' / 'coco-tiny' / 'test_coco.json'

COCO_CATEGORY = {
    'id': 1, 'name': 'person', 'keypoints': COCO_17.joint_names,
    'skeleton': [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                 [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]],
}


def test_builtin_sets():
    assert COCO_17.num_joints == 17 and MPII_16.num_joints == 16
    np.testing.assert_allclose(COCO_17.sigmas[:3], [0.026, 0.025, 0.025])
    assert COCO_17.upper_body_ids == tuple(range(11)) and MPII_16.lower_body_ids == tuple(range(7))
    assert MPII_16.flip_pairs == [[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]]
    assert get_keypoint_info('coco') is COCO_17 and get_keypoint_info('mpii') is MPII_16
    with pytest.raises(KeyError):
        get_keypoint_info('crowdpose')


def test_coco_category_reproduces_coco_17():
    info = from_coco_category(COCO_CATEGORY, meta={'upper_body_ids': list(range(11)),
                                                   'sigmas': COCO_17.sigmas.tolist()})
    assert info.skeleton == COCO_17.skeleton  # 1-based json -> 0-based
    assert info.flip_pairs == COCO_17.flip_pairs
    assert info.lower_body_ids == COCO_17.lower_body_ids
    np.testing.assert_array_equal(info.sigmas, COCO_17.sigmas)
    assert [n for n in info.notes if 'inferred' in n]


def test_mpii_names_give_mpii_pairs():
    assert infer_flip_pairs(MPII_16.joint_names) == MPII_16.flip_pairs


def test_infer_flip_pairs_spellings():
    names = ['head', 'l_hand', 'r_hand', 'tail_left', 'tail_right', 'LeftFoot', 'RightFoot',
             'wing_l', 'wing_r', 'left_eye']
    assert infer_flip_pairs(names) == [[1, 2], [3, 4], [5, 6], [7, 8]]


def test_no_side_names_no_flip_pairs_and_notes():
    info = from_coco_category({'name': 'fish', 'keypoints': ['mouth', 'fin', 'tail'],
                               'skeleton': [[1, 2], [2, 3]]})
    assert info.flip_pairs == [] and info.skeleton == [[0, 1], [1, 2]]
    assert info.upper_body_ids == () and info.lower_body_ids == ()
    np.testing.assert_allclose(info.sigmas, [0.0669] * 3)
    np.testing.assert_array_equal(info.joint_weights, np.ones(3))
    text = ' '.join(info.notes)
    assert 'no left/right' in text and 'half-body augmentation disabled' in text and 'uniform sigma' in text
    np.testing.assert_array_equal(flip_indices(3, info.flip_pairs), [0, 1, 2])


@pytest.mark.parametrize('suffix', ['.json', '.yaml'])
def test_metadata_file(tmp_path, suffix):
    meta = {'lower_body_ids': ['left_foot', 'right_foot'], 'sigmas': [0.05, 0.06, 0.06, 0.08, 0.08],
            'flip_pairs': [['left_hand', 'right_hand'], [3, 4]]}
    path = tmp_path / f'meta{suffix}'
    path.write_text(json.dumps(meta))  # JSON is valid YAML
    info = from_coco_category({'name': 'toy', 'keypoints': ['head', 'left_hand', 'right_hand',
                                                             'left_foot', 'right_foot']}, meta=path)
    assert info.flip_pairs == [[1, 2], [3, 4]]
    assert info.lower_body_ids == (3, 4) and info.upper_body_ids == (0, 1, 2)
    assert info.notes == []


def test_metadata_length_is_checked():
    with pytest.raises(ValueError):
        from_coco_category({'keypoints': ['a', 'b']}, meta={'sigmas': [0.1]})


def test_annotation_file_keypoint_set():
    if not TINY_ANN.is_file():
        pytest.skip(f'shared test data not found: {TINY_ANN}')
    info = get_keypoint_info(str(TINY_ANN))
    assert info.joint_names == COCO_17.joint_names and info.skeleton == COCO_17.skeleton
    assert info.flip_pairs == COCO_17.flip_pairs
