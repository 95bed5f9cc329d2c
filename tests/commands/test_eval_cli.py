"""src/eval.py as a user runs it: scoring a results file, bad input (exit 2, one line), a real model run."""
import json
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import pytest

import litehrnet
from conftest import ROOT, SHARED

TINY = SHARED / 'data' / 'coco-tiny'
ANN_FILE = TINY / 'test_coco.json'
BBOX_FILE = TINY / 'test_coco_det_AP_H_56.json'

pytestmark = pytest.mark.skipif(not ANN_FILE.is_file(), reason=f"shared test data not found: {TINY}")


def eval_py(*args, timeout=120):
    """Run src/eval.py from the repository root; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, str(ROOT / 'src' / 'eval.py'), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope='module')
def gt_results(tmp_path_factory):
    """The ground truth as a COCO results file (score 1): AP 1.000 by the spec's known answer."""
    data = json.loads(ANN_FILE.read_text())
    results = [dict(image_id=a['image_id'], category_id=1, keypoints=a['keypoints'], score=1.0)
               for a in data['annotations'] if a['num_keypoints'] > 0]
    path = tmp_path_factory.mktemp('results') / 'gt_results.json'
    path.write_text(json.dumps(results))
    return path


def test_results_json_is_scored_without_a_model(gt_results, tmp_path):
    out = eval_py('--results_json', gt_results, '--ann_file', ANN_FILE, '--output_path', tmp_path)
    assert out.returncode == 0, out.stderr
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ] = 1.000' in out.stdout
    assert 'COCO keypoint AP 1.000' in out.stdout
    metrics = json.loads((tmp_path / 'metrics.json').read_text())
    assert metrics['AP'] == pytest.approx(1.0) and metrics['num_results'] == 12
    assert metrics['box_source'] == 'results file'


def _bad_inputs(tmp_path):
    bad_json = tmp_path / 'bad.json'
    bad_json.write_text('[{"image_id": 785, "category_id": 1, "keypoints": [1, 2, 1], "score": 1}]')
    not_ckpt = tmp_path / 'not.ckpt'
    not_ckpt.write_text('not a checkpoint')
    model = ['--model_type', 'litehrnet_18', '--target_res', '128x96', '--ann_file', ANN_FILE, '--img_dir', TINY]
    return {
        'results with 3 keypoint values': (['--results_json', bad_json, '--ann_file', ANN_FILE], 'expected 51'),
        'results file missing': (['--results_json', tmp_path / 'no.json', '--ann_file', ANN_FILE], 'not found'),
        'unknown model type': (['--model_type', 'hrnet_w99', '--checkpoint', not_ckpt, *model[2:]],
                               'unknown model type'),
        'not a checkpoint': ([*model, '--checkpoint', not_ckpt], 'not a readable checkpoint'),
        'checkpoint missing': ([*model, '--checkpoint', tmp_path / 'no.ckpt'], 'no such file'),
        'bad resolution': ([*model, '--checkpoint', not_ckpt, '--target_res', '100x75'], 'multiples of 32'),
        'image folder missing': ([*model, '--checkpoint', not_ckpt, '--img_dir', tmp_path / 'no'], 'not found'),
        'flag not a boolean': ([*model, '--checkpoint', not_ckpt, '--flip_test', 'maybe'], 'true or false'),
    }


@pytest.mark.parametrize('case', ['results with 3 keypoint values', 'results file missing', 'unknown model type',
                                  'not a checkpoint', 'checkpoint missing', 'bad resolution',
                                  'image folder missing', 'flag not a boolean'])
def test_bad_input_exits_2_with_one_line(case, tmp_path):
    args, expected = _bad_inputs(tmp_path)[case]
    out = eval_py(*args, '--output_path', tmp_path / 'out')
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert lines[0].startswith('eval.py: error:') and expected in lines[0]


@pytest.mark.slow
def test_real_model_on_detector_boxes(tmp_path):
    """A random-weight Lite-HRNet-18 checkpoint at 128x96 on the 118 detector boxes (GRAPH mode, ~70 s)."""
    previous = ms.get_context('mode')
    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        litehrnet.save_checkpoint(litehrnet.create_model('litehrnet_18', conv_impl='native'), tmp_path / 'r.ckpt')
    finally:
        ms.set_context(mode=previous)
    out = eval_py('--model_type', 'litehrnet_18', '--target_res', '128x96', '--checkpoint', tmp_path / 'r.ckpt',
                  '--dataset', 'coco', '--data_root', TINY, '--ann_file', ANN_FILE, '--img_dir', TINY,
                  '--bbox_file', BBOX_FILE, '--output_path', tmp_path / 'out', '--no_progress', timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = out.stdout.strip().splitlines()[-2]
    assert 'detector boxes (published protocol)' in summary and 'flip test on' in summary
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert (metrics['box_source'], metrics['num_boxes'], metrics['input_size']) == ('detector', 118, [128, 96])
    results = json.loads((tmp_path / 'out' / 'results_keypoints.json').read_text())
    assert 0 < len(results) <= 118 and all(len(r['keypoints']) == 51 for r in results)
