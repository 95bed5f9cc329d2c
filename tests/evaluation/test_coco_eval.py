"""Known answers of the COCO keypoint evaluation on the tiny COCO set (pipeline.md, Testing)."""
import contextlib
import copy
import io
import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from conftest import SHARED

from litehrnet.evaluation import (COCO_SIGMAS, STAT_NAMES, coco_keypoint_eval, load_results, rescore,
                                  rescore_and_nms, write_results_json)

TINY = SHARED / 'data' / 'coco-tiny'
ANN_FILE = TINY / 'test_coco.json'


@pytest.fixture(scope='module')
def gt():
    if not ANN_FILE.is_file():
        pytest.skip(f"shared test data not found: {ANN_FILE}")
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(ANN_FILE))


def gt_predictions(gt, jitter=0.0, seed=0):
    """Ground truth as predictions: visible joints (score 1) moved by N(0, jitter x sqrt(w h)) of the box."""
    rng = np.random.default_rng(seed)
    results = []
    for ann in gt.dataset['annotations']:
        if ann['num_keypoints'] == 0:
            continue
        kpts = np.array(ann['keypoints'], dtype=np.float64).reshape(-1, 3)
        visible = kpts[:, 2] > 0
        _, _, w, h = ann['bbox']
        xy = kpts[:, :2] + rng.normal(0, jitter * np.sqrt(w * h), kpts[:, :2].shape)
        kpts = np.c_[np.where(visible[:, None], xy, 0), visible]
        results.append(dict(image_id=ann['image_id'], category_id=1, keypoints=kpts.reshape(-1).tolist(),
                            score=1.0))
    return results


def padded_area(bbox, aspect=192 / 256, padding=1.25):
    """Area of the padded box: the aspect ratio fixed to the input's by enlarging, then x 1.25 per side."""
    _, _, w, h = bbox
    w, h = max(w, h * aspect), max(h, w / aspect)
    return w * h * padding ** 2


def pycocotools_ap(gt, results):
    """AP straight from pycocotools, without any of our filtering."""
    coco_eval = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), 'keypoints')
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval.stats[0]


def test_ground_truth_gives_ap_1(gt):
    results = gt_predictions(gt)
    assert len(results) == 12
    stats = coco_keypoint_eval(gt, results)
    assert tuple(stats) == STAT_NAMES
    assert stats['AP'] == pytest.approx(1.0) and stats['AR'] == pytest.approx(1.0)


@pytest.mark.parametrize('jitter, expected, tol', [(0.02, 0.83, 0.03), (0.05, 0.37, 0.05)])
def test_jittered_ground_truth(gt, jitter, expected, tol):
    results = gt_predictions(gt, jitter, seed=0)
    ap = coco_keypoint_eval(ANN_FILE, results)['AP']
    assert ap == pytest.approx(expected, abs=tol)
    assert ap == pycocotools_ap(gt, results)


def test_custom_sigmas(gt):
    results = gt_predictions(gt, 0.02)
    ap = coco_keypoint_eval(gt, results)['AP']
    assert coco_keypoint_eval(gt, results, sigmas=COCO_SIGMAS)['AP'] == ap
    assert coco_keypoint_eval(gt, results, sigmas=2 * COCO_SIGMAS)['AP'] > ap


def test_all_zero_score_predictions_are_dropped(gt):
    results = gt_predictions(gt, 0.02)
    exact = gt_predictions(gt)[0]
    zero = dict(exact, score=2.0,
                keypoints=[v if i % 3 < 2 else 0.0 for i, v in enumerate(exact['keypoints'])])
    assert pycocotools_ap(gt, results + [zero]) != pycocotools_ap(gt, results)  # it would count if kept
    assert coco_keypoint_eval(gt, results + [zero])['AP'] == coco_keypoint_eval(gt, results)['AP']


def test_empty_results_score_zero_with_warning(gt):
    with pytest.warns(UserWarning, match='no keypoint predictions'):
        stats = coco_keypoint_eval(gt, [])
    assert stats == {name: 0.0 for name in STAT_NAMES}


def test_missing_annotation_file(tmp_path):
    missing = tmp_path / 'nope.json'
    with pytest.raises(ValueError, match='annotation file not found') as err:
        coco_keypoint_eval(missing, [])
    assert str(missing) in str(err.value)


def test_rescore():
    assert rescore([0.1, 0.2, 0.5, 0.9], 0.8) == pytest.approx(0.8 * 0.7)  # 0.2 is not above 0.2
    assert rescore(np.array([[0.1], [0.2]]), 0.8) == 0.0
    assert rescore([0.3, 0.5], 0.5, thr=0.4) == pytest.approx(0.25)


def test_rescore_and_nms_removes_duplicates(gt):
    persons = []
    anns = [a for a in gt.dataset['annotations'] if a['num_keypoints'] > 0]
    for ann, r in zip(anns, gt_predictions(gt)):
        kpts = np.array(r['keypoints']).reshape(-1, 3)
        area = padded_area(ann['bbox'])
        persons += [dict(image_id=r['image_id'], keypoints=kpts, score=1.0, area=area),
                    dict(image_id=r['image_id'], keypoints=kpts.copy(), score=0.5, area=area)]
    results = rescore_and_nms(persons)
    assert len(results) == 12 and all(r['score'] == 1.0 for r in results)
    assert len(rescore_and_nms(persons, oks_thr=None)) == 24
    assert len(rescore_and_nms(persons, soft=True)) == 24
    assert coco_keypoint_eval(gt, results)['AP'] == pytest.approx(1.0)


def test_results_file_round_trip(gt, tmp_path):
    path = tmp_path / 'results.json'
    results = [dict(r, keypoints=np.array(r['keypoints'], dtype=np.float32).reshape(-1, 3),
                    image_id=np.int64(r['image_id']), score=np.float32(r['score']))
               for r in gt_predictions(gt)]
    write_results_json(path, results)
    assert [p.name for p in tmp_path.iterdir()] == ['results.json']
    loaded = load_results(path, gt, num_joints=17)
    assert loaded == json.loads(json.dumps(gt_predictions(gt)))
    assert coco_keypoint_eval(ANN_FILE, loaded)['AP'] == pytest.approx(1.0)
    results[0]['score'] = float('nan')
    with pytest.raises(ValueError, match='NaN'):
        write_results_json(path, results)
    assert load_results(path, gt, num_joints=17) == loaded  # the earlier file is untouched


def _corrupt(results, how):
    """Write-ready text of results spoiled in one way."""
    first = results[0]
    if how == 'unknown image_id':
        first['image_id'] = 123456789
    elif how == 'wrong keypoint count':
        first['keypoints'] = first['keypoints'][:-3]
    elif how == 'NaN':
        first['keypoints'][4] = float('nan')
    elif how == 'missing field':
        del first['score']
    elif how == 'not a list':
        return json.dumps({'results': results})
    elif how == 'not JSON':
        return '[{"image_id": 785,'
    return json.dumps(results)


@pytest.mark.parametrize('how, message', [
    ('unknown image_id', 'image_id 123456789'), ('wrong keypoint count', '48 keypoint values, expected 51'),
    ('NaN', 'NaN'), ('missing field', 'lacks field'), ('not a list', 'JSON list'),
    ('not JSON', 'not valid JSON'), ('missing file', 'not found')])
def test_invalid_results_file(gt, tmp_path, how, message):
    path = tmp_path / 'results.json'
    if how != 'missing file':
        path.write_text(_corrupt(gt_predictions(gt), how))
    with pytest.raises(ValueError, match=message) as err:
        load_results(path, gt, num_joints=17)
    assert str(path) in str(err.value) and '\n' not in str(err.value)
