"""Built-in keypoint sets (published values), their recognition from annotation files and by name, flip
pairs for mid-name left/right, multi-category files and skeleton numbering."""
import json
import re

import numpy as np
import pytest

from litehrnet.data.keypoints import (COCO_17, MPII_16, from_coco_category, infer_flip_pairs,
                                      keypoint_categories, read_skeleton)
from litehrnet.keypoint_sets import (AIC_14, ANIMALPOSE_20, AP10K_17, ATRW_15, COCO_WHOLEBODY_BODY_17,
                                     CROWDPOSE_14, KNOWN_SETS, MPII_TRB_40, OCHUMAN_17, UnknownKeypointSet,
                                     keypoint_info, keypoint_info_of_categories, keypoint_set)

SIDES = {'left': 'right', 'right': 'left', 'l': 'r', 'r': 'l'}


def words(name):
    return [w.lower() for w in re.sub(r'([a-z])([A-Z])', r'\1_\2', name).split('_')]


def mirrored(name):
    """The name with its left/right word swapped (written independently of the library's rule), or None."""
    swapped = [SIDES.get(w, w) for w in words(name)]
    return '_'.join(swapped) if swapped != words(name) else None


def category(info, name='person', spell=lambda n: n, skeleton=True, cat_id=1):
    cat = {'id': cat_id, 'name': name, 'keypoints': [spell(n) for n in info.joint_names]}
    if skeleton:
        cat['skeleton'] = [[a + 1, b + 1] for a, b in info.skeleton]
    return cat


@pytest.mark.parametrize('key', list(KNOWN_SETS))
def test_builtin_entry_is_consistent(key):
    info = KNOWN_SETS[key].info
    k = info.num_joints
    assert info.name == key and KNOWN_SETS[key].source.startswith('mmpose configs/_base_/datasets/')
    assert len(info.sigmas) == k and len(info.joint_weights) == k and len(set(info.joint_names)) == k
    assert (info.sigmas > 0).all() and (info.joint_weights > 0).all()
    # flip pairs: in range, disjoint, and exactly the joints whose names say left/right
    flat = [j for pair in info.flip_pairs for j in pair]
    assert len(flat) == len(set(flat)) and all(0 <= j < k for j in flat)
    keys = ['_'.join(words(n)) for n in info.joint_names]
    expected = sorted({tuple(sorted((i, keys.index(mirrored(n))))) for i, n in enumerate(info.joint_names)
                       if mirrored(n) in keys})
    assert [list(p) for p in expected] == info.flip_pairs
    # skeleton: in range, no self links, no repeats
    assert info.skeleton and all(0 <= j < k for link in info.skeleton for j in link)
    assert all(a != b for a, b in info.skeleton)
    assert len({tuple(sorted(link)) for link in info.skeleton}) == len(info.skeleton)
    # upper/lower body: a partition of the joints, both halves non-empty, mirrored joints in the same half
    upper, lower = set(info.upper_body_ids), set(info.lower_body_ids)
    assert upper and lower and not upper & lower and upper | lower == set(range(k))
    assert all((a in upper) == (b in upper) for a, b in info.flip_pairs)


def test_published_values():
    assert CROWDPOSE_14.joint_names[12:] == ['top_head', 'neck']
    np.testing.assert_allclose(CROWDPOSE_14.sigmas, [.079, .079, .072, .072, .062, .062, .107, .107, .087,
                                                     .087, .089, .089, .079, .079])
    assert CROWDPOSE_14.flip_pairs == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [10, 11]]
    assert [12, 13] in CROWDPOSE_14.skeleton and CROWDPOSE_14.lower_body_ids == tuple(range(6, 12))
    np.testing.assert_allclose(AIC_14.sigmas[[0, 6, 13]], [0.01388152, 0.03909642, 0.01236173])
    assert AIC_14.flip_pairs == [[0, 3], [1, 4], [2, 5], [6, 9], [7, 10], [8, 11]]
    np.testing.assert_allclose(ATRW_15.sigmas[[0, 1, 2, 14]], [0.0277, 0.0823, 0.0831, 0.0539])
    assert ATRW_15.flip_pairs == [[0, 1], [3, 5], [4, 6], [7, 10], [8, 11], [9, 12]]
    assert AP10K_17.flip_pairs == [[0, 1], [5, 8], [6, 9], [7, 10], [11, 14], [12, 15], [13, 16]]
    np.testing.assert_allclose(AP10K_17.sigmas[:5], [.025, .025, .026, .035, .035])
    assert ANIMALPOSE_20.flip_pairs == [[0, 1], [2, 3], [8, 9], [10, 11], [12, 13], [14, 15], [16, 17],
                                        [18, 19]]
    np.testing.assert_allclose(ANIMALPOSE_20.sigmas[5:8], [.10, .10, .10])
    # MPII-TRB: mmpose's swaps, e.g. medial_right_shoulder (16) <-> medial_left_shoulder (22)
    assert MPII_TRB_40.num_joints == 40 and len(MPII_TRB_40.flip_pairs) == 19
    assert [16, 22] in MPII_TRB_40.flip_pairs and [14, 15] in MPII_TRB_40.flip_pairs
    assert 'no published OKS sigmas' in ' '.join(MPII_TRB_40.notes)
    # OCHuman and COCO-WholeBody's body part are COCO's joints (WholeBody weights every joint 1)
    for info in (OCHUMAN_17, COCO_WHOLEBODY_BODY_17):
        assert info.joint_names == COCO_17.joint_names and info.skeleton == COCO_17.skeleton
        np.testing.assert_array_equal(info.sigmas, COCO_17.sigmas)
    np.testing.assert_array_equal(OCHUMAN_17.joint_weights, COCO_17.joint_weights)
    np.testing.assert_array_equal(COCO_WHOLEBODY_BODY_17.joint_weights, np.ones(17))


def title_case(name):
    return name.replace('_', ' ').title()  # AIC's files: 'Right Shoulder', 'Head top'


def mmpose_abbrev(name):
    return '_'.join({'left': 'L', 'right': 'R', 'front': 'F', 'back': 'B'}.get(w, w.capitalize())
                    for w in name.split('_'))  # AP-10K as mmpose writes it: L_F_Paw


@pytest.mark.parametrize('key, cat_name, file_name, spell', [
    ('coco', 'person', 'person_keypoints_val2017.json', str),
    ('mpii', 'person', 'mpii_val.json', str),
    ('mpii_trb', 'person', 'mpii_trb_val.json', str),
    ('crowdpose', 'person', 'mmpose_crowdpose_test.json', lambda n: 'head' if n == 'top_head' else n),
    ('aic', 'person', 'aic_val.json', title_case),
    ('ochuman', 'person', 'ochuman_coco_format_val_range_0.00_1.00.json', str),
    ('coco_wholebody_body', 'person', 'coco_wholebody_val_v1.0.json', str),
    ('atrw', 'tiger', 'keypoint_val.json', str),
    ('animalpose', 'cat', 'animalpose_val.json', str),
    ('ap10k', 'antelope', 'ap10k-val-split1.json', mmpose_abbrev),
])
def test_recognised_from_categories(key, cat_name, file_name, spell):
    builtin = KNOWN_SETS[key].info
    info, ids = keypoint_info_of_categories([{'id': 7, 'name': 'background'},
                                             category(builtin, cat_name, spell)], file_name)
    assert ids == [1] and info.name == key and info.joint_names == builtin.joint_names
    assert info.flip_pairs == builtin.flip_pairs and info.skeleton == builtin.skeleton
    np.testing.assert_array_equal(info.sigmas, builtin.sigmas)
    assert f"recognised as {KNOWN_SETS[key].title}" in info.notes[0] and file_name in info.notes[0]
    assert KNOWN_SETS[key].source in info.notes[0]
    assert builtin.notes == KNOWN_SETS[key].info.notes  # the built-in entry is not changed by the notes


def test_same_names_told_apart_by_file_name():
    cats = [category(COCO_17)]
    assert keypoint_info_of_categories(cats, 'ochuman_val.json')[0].name == 'ochuman'
    assert keypoint_info_of_categories(cats, 'train.json')[0].name == 'coco'
    assert 'file name' in keypoint_info_of_categories(cats, 'ochuman_val.json')[0].notes[0]


def test_unknown_set_is_inferred_with_notes():
    cat = {'id': 3, 'name': 'fish', 'keypoints': ['mouth', 'left_fin', 'right_fin', 'tail'],
           'skeleton': [[1, 2], [1, 3], [1, 4]]}
    info, ids = keypoint_info_of_categories([cat], 'fish.json')
    assert ids == [3] and info.name == 'fish' and info.flip_pairs == [[1, 2]]
    assert info.skeleton == [[0, 1], [0, 2], [0, 3]]
    assert 'not recognised' in info.notes[0] and 'fish.json' in info.notes[0]
    assert any('uniform sigma' in n for n in info.notes) and any('flip pairs inferred' in n for n in info.notes)


def test_unknown_names_of_a_known_category_suggest_keypoints():
    cat = {'id': 1, 'name': 'tiger', 'keypoints': [f'point{i}' for i in range(15)]}
    info, _ = keypoint_info_of_categories([cat], 'tigers.json')
    assert info.name == 'tiger' and 'atrw' in info.notes[0] and '--keypoints' in info.notes[0]


def test_keypoints_by_name():
    assert keypoint_set('coco') is COCO_17 and keypoint_set('MPII') is MPII_16
    assert keypoint_set('AP-10K') is AP10K_17 and keypoint_set('mpii-trb') is MPII_TRB_40
    assert keypoint_set('coco_wholebody') is COCO_WHOLEBODY_BODY_17
    named = keypoint_info('CrowdPose')
    assert named.joint_names == CROWDPOSE_14.joint_names and named.skeleton == CROWDPOSE_14.skeleton
    assert named.notes[0] == ("keypoint set CrowdPose ('crowdpose') chosen by name; values from "
                              "mmpose configs/_base_/datasets/crowdpose.py")
    with pytest.raises(UnknownKeypointSet) as err:
        keypoint_set('person')
    assert isinstance(err.value, KeyError) and isinstance(err.value, ValueError)
    message = str(err.value)
    assert message.startswith("unknown keypoint set 'person'")
    assert all(key in message for key in KNOWN_SETS)


def test_keypoint_info_from_annotation_file(tmp_path):
    path = tmp_path / 'crowd.json'
    cat = category(CROWDPOSE_14, spell=lambda n: 'head' if n == 'top_head' else n)
    path.write_text(json.dumps({'images': [], 'annotations': [], 'categories': [cat]}))
    info = keypoint_info(str(path))
    assert info.name == 'crowdpose' and str(path) in info.notes[0]
    broken = tmp_path / 'broken.json'
    broken.write_text('{"categories": [')
    with pytest.raises(ValueError, match='broken.json: not a readable JSON file'):
        keypoint_info(str(broken))


def test_mid_name_left_right_flip_pairs():
    names = ['head', 'medial_left_wrist', 'lateral_left_wrist', 'medial_right_wrist', 'lateral_right_wrist',
             'front_l_paw', 'front_r_paw', 'left_neck', 'right_neck', 'mid_center_point']
    assert infer_flip_pairs(names) == [[1, 3], [2, 4], [5, 6], [7, 8]]
    info = from_coco_category({'name': 'trb-like', 'keypoints': names})
    assert info.flip_pairs == [[1, 3], [2, 4], [5, 6], [7, 8]]
    assert 'medial_left_wrist<->medial_right_wrist' in info.notes[0]
    # MPII-TRB's own names give mmpose's 19 swaps
    assert infer_flip_pairs(MPII_TRB_40.joint_names) == MPII_TRB_40.flip_pairs


def test_categories_sharing_keypoints_are_one_set():
    dog, cat = category(AP10K_17, 'dog', cat_id=1), category(AP10K_17, 'cat', cat_id=2)
    info, ids = keypoint_info_of_categories([dog, {'id': 9, 'name': 'no keypoints'}, cat], 'ap10k.json')
    assert ids == [1, 2] and info.name == 'ap10k'
    assert any("2 categories share" in n and "'dog'" in n and "'cat'" in n for n in info.notes)
    # the same for a set that is not built in
    names = ['a', 'left_b', 'right_b']
    info, ids = keypoint_info_of_categories([{'id': 4, 'name': 'x', 'keypoints': names},
                                             {'id': 5, 'name': 'y', 'keypoints': names}], 'xy.json')
    assert ids == [4, 5] and info.flip_pairs == [[1, 2]]


def test_category_with_other_keypoints_is_refused():
    bird = {'id': 3, 'name': 'bird', 'keypoints': ['beak', 'left_wing', 'right_wing']}
    with pytest.raises(ValueError, match=r"animals\.json: category 'bird' \(id 3\) has another keypoint set "
                                         r"than category 'dog' \(id 1\): 3 keypoints against 17"):
        keypoint_info_of_categories([category(AP10K_17, 'dog'), category(AP10K_17, 'cat', cat_id=2), bird],
                                    'animals.json')
    renamed = dict(category(AP10K_17, 'cat', cat_id=2))
    renamed['keypoints'] = ['snout'] + renamed['keypoints'][1:]
    with pytest.raises(ValueError, match=r"keypoint 0 is 'snout' against 'left_eye'"):
        keypoint_categories([category(AP10K_17, 'dog'), renamed], 'animals.json')
    with pytest.raises(ValueError, match='empty.json: no category has keypoints'):
        keypoint_categories([{'id': 1, 'name': 'person'}], 'empty.json')


COCO_SKELETON_1BASED = [[a + 1, b + 1] for a, b in COCO_17.skeleton]
FOURTEEN = [f'j{i}' for i in range(14)]


def test_out_of_range_skeleton_is_refused_naming_file_and_pair():
    cat = {'id': 1, 'name': 'crowd-like', 'keypoints': FOURTEEN, 'skeleton': COCO_SKELETON_1BASED}
    first_bad = next(p for p in COCO_SKELETON_1BASED if max(p) > 14)
    with pytest.raises(ValueError, match=re.escape(f"crowd.json: skeleton pair {first_bad} refers to a joint "
                                                   "the set does not have (14 joints, numbered from 1)")):
        keypoint_info_of_categories([cat], 'crowd.json')


def test_crowdpose_as_it_comes_uses_its_own_skeleton():
    # CrowdPose's files carry COCO's 1-based 17-joint skeleton on 14 joints
    cat = category(CROWDPOSE_14, spell=lambda n: 'head' if n == 'top_head' else n, skeleton=False)
    cat['skeleton'] = COCO_SKELETON_1BASED[:12]
    info, _ = keypoint_info_of_categories([cat], 'crowdpose_test.json')
    assert info.name == 'crowdpose' and info.skeleton == CROWDPOSE_14.skeleton
    assert any("file's skeleton (12 links, not all within 1..14) is not used" in n for n in info.notes)


def test_skeleton_in_the_other_numbering_is_fixed_with_a_note():
    zero_based = [[0, 1], [1, 2], [2, 13]]  # ATRW's files write 0-based pairs in COCO's 1-based field
    cat = {'id': 1, 'name': 'beast', 'keypoints': FOURTEEN, 'skeleton': zero_based}
    info, _ = keypoint_info_of_categories([cat], 'beast.json')
    assert info.skeleton == zero_based
    assert any('beast.json: the skeleton is numbered from 0, not from 1' in n for n in info.notes)
    # metadata skeletons are 0-based: an exact 1-based version of a valid one is shifted, with a note
    one_based = [[1, 2], [2, 3], [3, 14]]
    info = from_coco_category({'name': 'beast', 'keypoints': FOURTEEN}, meta={'skeleton': one_based})
    assert info.skeleton == zero_based and any('numbered from 1, not from 0' in n for n in info.notes)
    info = from_coco_category({'name': 'beast', 'keypoints': FOURTEEN}, meta={'skeleton': [['j0', 'j13']]})
    assert info.skeleton == [[0, 13]] and not any('skeleton' in n for n in info.notes)
    # a skeleton that fits 1-based numbering is read 1-based, even when it would also fit 0-based
    assert read_skeleton([[1, 2]], 14, True, 'f.json') == ([[0, 1]], [])
    with pytest.raises(ValueError, match=r"f\.json: skeleton pair \[0, 15\]"):
        read_skeleton([[1, 2], [0, 15]], 14, True, 'f.json')
    with pytest.raises(ValueError, match='f.json: the skeleton must be a list'):
        read_skeleton([[1, 2.5]], 14, True, 'f.json')


@pytest.mark.parametrize('as_file', [False, True])
def test_meta_overrides_builtin_values(tmp_path, as_file):
    sigmas = [0.05] * 14
    meta = {'sigmas': sigmas}
    if as_file:
        meta = tmp_path / 'meta.json'
        meta.write_text(json.dumps({'sigmas': sigmas}))
    info, _ = keypoint_info_of_categories([category(CROWDPOSE_14)], 'crowd.json', meta=meta)
    np.testing.assert_allclose(info.sigmas, sigmas)
    assert info.flip_pairs == CROWDPOSE_14.flip_pairs and info.skeleton == CROWDPOSE_14.skeleton
    assert info.upper_body_ids == CROWDPOSE_14.upper_body_ids
    np.testing.assert_array_equal(info.joint_weights, CROWDPOSE_14.joint_weights)
    assert 'recognised as CrowdPose' in info.notes[0]
    assert any('overrides the built-in CrowdPose values for: sigmas' in n for n in info.notes)
    np.testing.assert_allclose(CROWDPOSE_14.sigmas[0], 0.079)  # the built-in entry is untouched


def test_meta_on_a_named_set():
    info = keypoint_info('mpii_trb', meta={'sigmas': [0.07] * 40, 'lower_body_ids': ['left_hip', 'right_hip']})
    np.testing.assert_allclose(info.sigmas, 0.07)
    assert info.lower_body_ids == (6, 7) and len(info.upper_body_ids) == 38
    assert not any('no published OKS sigmas' in n for n in info.notes)
    assert info.flip_pairs == MPII_TRB_40.flip_pairs
