"""The one ground-truth validator (data/validate.py): every rule, on small synthetic files with each quirk."""
import copy
import json

import numpy as np
import pytest

from litehrnet.data.validate import AREA_FACTOR, box_area, load_ground_truth
from litehrnet.errors import AnnotationError
from litehrnet.keypoint_sets import keypoint_set

from conftest import coco_annotations

CROWDPOSE = keypoint_set('crowdpose').joint_names
AP10K = keypoint_set('ap10k').joint_names
COCO_SKELETON_1_BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                         [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]


def coco_file(names=CROWDPOSE, n=2, categories=None):
    return coco_annotations(names, n, categories)


def write(tmp_path, data, name='ann.json'):
    path = tmp_path / name
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def one_line_error(tmp_path, data, *expected):
    path = write(tmp_path, data)
    with pytest.raises(AnnotationError) as e:
        load_ground_truth(path)
    message = str(e.value)
    assert '\n' not in message and str(path) in message, message
    for part in expected:
        assert part in message, message
    return message


def test_a_clean_file_passes_and_is_recognised(tmp_path):
    gt = load_ground_truth(write(tmp_path, coco_file()))
    assert gt.info.name == 'crowdpose' and gt.category_ids == [1] and gt.notes == [] and gt.num_crowd == 0


def test_duplicate_ids_are_reported_as_duplicates(tmp_path):
    data = coco_file()
    data['images'][1]['id'] = 1
    data['annotations'][1]['image_id'] = 1
    one_line_error(tmp_path, data, 'duplicate image id 1', 'records 0 and 1')
    data = coco_file()
    data['annotations'][1]['id'] = 1
    one_line_error(tmp_path, data, 'duplicate annotation id 1')


@pytest.mark.parametrize('v', [3, -1, 0.5])
def test_visibility_outside_0_1_2(tmp_path, v):
    data = coco_file()
    data['annotations'][0]['keypoints'][3 * 4 + 2] = v
    one_line_error(tmp_path, data, 'annotation 0 (id 1)', 'keypoint 4 v (visibility)', f'is {v}')


@pytest.mark.parametrize('value, shown', [(float('nan'), 'nan'), (float('inf'), 'inf')])
def test_a_non_finite_value_is_named(tmp_path, value, shown):
    data = coco_file()
    data['annotations'][1]['keypoints'][3 * 2] = value  # keypoint 2's x
    message = one_line_error(tmp_path, data, 'annotation 1 (id 2)', 'keypoint 2 x', shown, 'not finite')
    assert 'keypoint values, expected' not in message  # not "has 42 keypoint values, expected 42"
    data = coco_file()
    data['annotations'][0]['bbox'][3] = value
    one_line_error(tmp_path, data, 'bbox[3]', 'not finite')


def test_string_numbers_are_named(tmp_path):
    data = coco_file()
    data['images'][0]['width'] = '64'
    one_line_error(tmp_path, data, 'image record 0 (id 1)', "width is the string '64', expected a number")
    data = coco_file()
    data['annotations'][0]['bbox'][0] = '5'
    one_line_error(tmp_path, data, "bbox[0] is the string '5'")
    data = coco_file()
    data['annotations'][0]['keypoints'][0] = '10'
    one_line_error(tmp_path, data, "keypoint 0 x (value 0) is the string '10'")


def test_a_top_level_list_where_a_dict_is_due(tmp_path):
    one_line_error(tmp_path, [dict(image_id=1, keypoints=[], score=1.0)], 'the top level is a JSON list',
                   '--results_json')


def test_unknown_image_id_and_missing_bbox(tmp_path):
    data = coco_file()
    data['annotations'][1]['image_id'] = 999999
    one_line_error(tmp_path, data, 'annotation 1 (id 2)', 'image_id 999999 has no entry')
    data = coco_file()
    del data['annotations'][0]['bbox']
    one_line_error(tmp_path, data, 'annotation 0 (id 1)', 'lacks bbox')


def test_wrong_keypoint_count_and_bad_skeleton(tmp_path):
    data = coco_file()
    data['annotations'][0]['keypoints'] = data['annotations'][0]['keypoints'][:-3]
    one_line_error(tmp_path, data, 'has 39 keypoint values, expected 42')
    names = [f'joint{i}' for i in range(14)]  # not a built-in set: its own skeleton is read
    data = coco_file(names)
    data['categories'][0]['skeleton'] = [[1, 2], [3, 40]]
    one_line_error(tmp_path, data, 'skeleton pair [3, 40]')


def test_missing_area_is_computed_from_the_box_and_said_once(tmp_path):
    data = coco_file()
    for a in data['annotations']:
        del a['area']
    data['annotations'][1]['bbox'] = [50.0, 60.0, 40.0, 50.0]  # reaches outside the 64x80 image: clipped
    gt = load_ground_truth(write(tmp_path, data))
    areas = [a['area'] for a in gt.data['annotations']]
    assert areas[0] == pytest.approx(40 * 50 * AREA_FACTOR)
    assert areas[1] == pytest.approx(14 * 20 * AREA_FACTOR)
    assert box_area([0, 0, 0.5, 0.5], 64, 80) == 1.0  # at least 1
    assert sum("have no 'area'" in n for n in gt.notes) == 1 and '2 annotations' in gt.notes[0]


def test_missing_iscrowd_is_zero_and_crowds_are_counted(tmp_path):
    data = coco_file(n=3)
    del data['annotations'][0]['iscrowd']
    data['annotations'][2]['iscrowd'] = 1
    gt = load_ground_truth(write(tmp_path, data))
    assert [a['iscrowd'] for a in gt.data['annotations']] == [0, 0, 1]
    assert gt.num_crowd == 1
    assert any("1 annotations have no 'iscrowd'" in n for n in gt.notes)
    assert any('1 crowd annotations' in n for n in gt.notes)


def test_a_1_based_skeleton_is_fixed_with_a_note(tmp_path):
    names = [f'part{i}' for i in range(17)]
    data = coco_file(names)
    data['categories'][0]['skeleton'] = [[p - 1 for p in pair] for pair in COCO_SKELETON_1_BASED]  # 0-based
    gt = load_ground_truth(write(tmp_path, data))
    assert [0, 1] in gt.info.skeleton or [1, 0] in gt.info.skeleton
    assert any('numbered from 0, not from 1' in n for n in gt.info.notes)


def test_crowdpose_with_coco_skeleton_uses_its_own(tmp_path):
    data = coco_file()
    data['categories'][0]['skeleton'] = COCO_SKELETON_1_BASED  # 17-joint skeleton on 14 joints
    gt = load_ground_truth(write(tmp_path, data))
    assert np.max(gt.info.skeleton) < 14
    assert any('is not used' in n for n in gt.info.notes)


def test_many_categories_share_one_keypoint_set(tmp_path):
    cats = [dict(id=1, name='dog', keypoints=AP10K), dict(id=2, name='cat', keypoints=AP10K),
            dict(id=3, name='car')]
    data = coco_file(AP10K, n=3, categories=cats)
    data['annotations'][1]['category_id'] = 2
    data['annotations'][2]['category_id'] = 3
    data['annotations'][2].pop('keypoints')  # a box-only category is not checked as keypoints
    gt = load_ground_truth(write(tmp_path, data))
    assert gt.info.name == 'ap10k' and gt.category_ids == [1, 2]
    assert [a['id'] for a in gt.keypoint_annotations()] == [1, 2]
    bad = copy.deepcopy(data)
    bad['categories'].append(dict(id=4, name='bird', keypoints=AP10K[:5]))
    one_line_error(tmp_path, bad, "category 'bird' (id 4) has another keypoint set")


def test_keypoints_and_sigmas_options(tmp_path):
    path = write(tmp_path, coco_file())
    sigmas = [0.05] * 14
    gt = load_ground_truth(path, sigmas=sigmas)
    assert list(gt.info.sigmas) == sigmas and 'OKS sigmas given with --sigmas' in gt.info.notes
    with pytest.raises(ValueError, match='--sigmas has 3 values'):
        load_ground_truth(path, sigmas=[0.1] * 3)
    with pytest.raises(AnnotationError, match='--keypoints coco has 17 joints'):
        load_ground_truth(path, keypoints='coco')
    gt = load_ground_truth(path, keypoints='crowdpose', meta={'sigmas': [0.07] * 14})
    assert list(gt.info.sigmas) == [0.07] * 14


def test_keypoints_by_name_ignore_the_files_own_skeleton(tmp_path):
    names = [f'joint{i}' for i in range(14)]
    data = coco_file(names)
    data['categories'][0]['skeleton'] = COCO_SKELETON_1_BASED  # does not fit 14 joints
    path = write(tmp_path, data)
    with pytest.raises(AnnotationError, match='skeleton pair'):
        load_ground_truth(path)
    gt = load_ground_truth(path, keypoints='crowdpose')  # the named set's values, the file's categories
    assert gt.info.skeleton == keypoint_set('crowdpose').skeleton and gt.category_ids == [1]


def test_a_broken_or_missing_meta_file_is_one_line_naming_it(tmp_path):
    path = write(tmp_path, coco_file())
    broken = tmp_path / 'meta.json'
    broken.write_text('{"sigmas": [')
    for meta, expected in ((broken, 'not readable keypoint metadata'), (tmp_path / 'no.yaml', 'not found')):
        with pytest.raises(AnnotationError) as e:
            load_ground_truth(path, meta=str(meta))
        assert str(meta) in str(e.value) and expected in str(e.value) and '\n' not in str(e.value)
