"""The command lines with HRNets: each model's own input-size rule, and infer.py on the tiny official HRNet."""
import json

import cv2
import numpy as np
import pytest

from conftest import ROOT, run_script, shared_path
from litehrnet import create_model
from litehrnet.commands import eval as eval_cmd, export, infer
from litehrnet.keypoints import COCO_17
from litehrnet.predictor import TopDownPredictor

TINY_YAML = ROOT / 'src' / 'litehrnet' / 'configs' / 'models' / 'hrnet_tiny.yaml'


def _last_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert 'Traceback' not in '\n'.join(err)
    return err[-1]


@pytest.mark.parametrize('command, argv', [
    (export, ['--checkpoint', '{tmp}/none.ckpt', '--output', '{tmp}/m']),
    (infer, ['--infer_data_root', '{tmp}/in', '--out_data_root', '{tmp}/out', '--checkpoint', '{tmp}/none.ckpt',
             '--mode', 'pynative', '--no_progress']),
    (eval_cmd, ['--dataset', 'coco', '--ann_file', '{tmp}/a.json', '--img_dir', '{tmp}/in',
                '--checkpoint', '{tmp}/none.ckpt', '--mode', 'pynative']),
])
def test_input_size_follows_the_model(command, argv, tmp_path, capsys):
    """light_hrnet (2 branches) takes multiples of 8: 72x56 gets past the size check (to the missing
    checkpoint), 68x56 is refused naming the multiple; HRNet-W32 wants multiples of 32."""
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'a.png'), np.zeros((20, 20, 3), np.uint8))
    (tmp_path / 'a.json').write_text(json.dumps(dict(images=[], annotations=[], categories=[])))
    argv = [a.format(tmp=tmp_path) for a in argv]
    for model, size, message in (('light_hrnet', '68x56', 'multiples of 8'), ('hrnet_w32', '72x56', 'multiples of 32'),
                                 ('light_hrnet', '72x56', 'none.ckpt')):
        assert command.main(argv + ['--model_type', model, '--target_res', size]) == 2
        assert message in _last_error(capsys)


@pytest.mark.slow
def test_infer_on_a_folder_with_the_tiny_official_hrnet(tmp_path):
    """As a new user: infer.py --model_type configs/hrnet_tiny.yaml --checkpoint tiny_official.pth on a folder;
    the keypoints written are the predictor's on the same network (flip test on)."""
    ckpt = shared_path('fixtures', 'hrnet', 'tiny', 'tiny_official.pth')
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (96, 64, 3), dtype=np.uint8)
    (tmp_path / 'imgs').mkdir()
    cv2.imwrite(str(tmp_path / 'imgs' / 'p.png'), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    proc = run_script(['src/infer.py', '--model_type', 'src/litehrnet/configs/models/hrnet_tiny.yaml', '--checkpoint', ckpt,
                       '--infer_data_root', tmp_path / 'imgs', '--out_data_root', tmp_path / 'out',
                       '--target_res', '64x64', '--mode', 'pynative', '--no_progress'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = json.loads((tmp_path / 'out' / 'run.json').read_text())
    assert run['output_stride'] == 4 and run['persons'] == 1 and run['random_weights'] is False
    written = json.loads((tmp_path / 'out' / 'p.png.json').read_text())['persons'][0]['keypoints']
    net = create_model(str(TINY_YAML), pretrained=str(ckpt))
    (person,) = TopDownPredictor(net, (64, 64), COCO_17, flip_test=True).predict(image, [[0, 0, 64, 96]])
    got = np.array([written[name] for name in COCO_17.joint_names])
    np.testing.assert_allclose(got, person['keypoints'], rtol=0, atol=1e-3)


@pytest.mark.slow
def test_convert_checkpoint_turns_an_mmpose_hrnet_file_into_a_project_ckpt(tmp_path):
    from litehrnet import read_checkpoint
    from litehrnet.checkpoint.hrnet_weights import read_pose_weights
    tiny = shared_path('fixtures', 'hrnet', 'tiny')
    out = tmp_path / 'tiny.ckpt'
    proc = run_script(['scripts/convert_checkpoint.py', '--model_type', 'src/litehrnet/configs/models/hrnet_tiny.yaml', '--input',
                       tiny / 'tiny_mmpose0.pth', '--output', out, '--verify', '--target_res', '64x64'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'max |difference| between the two files\' outputs at 64x64 = 0' in proc.stdout
    official, _ = read_pose_weights(tiny / 'tiny_official.pth')
    converted = read_checkpoint(str(out))[0]
    assert set(converted) == set(official)
    assert all(np.array_equal(np.asarray(converted[k]), official[k]) for k in official)


@pytest.mark.slow
def test_eval_on_tiny_coco_with_the_tiny_official_hrnet(tmp_path):
    """eval.py with an HRNet on ground-truth boxes: every result's keypoints are the predictor's for its box."""
    from litehrnet.predictor import read_image_rgb
    from test_evaluate import ANN_FILE, TINY, coco_people
    ckpt = shared_path('fixtures', 'hrnet', 'tiny', 'tiny_official.pth')
    shared_path('data', 'coco-tiny', 'test_coco.json')
    proc = run_script(['src/eval.py', '--model_type', 'src/litehrnet/configs/models/hrnet_tiny.yaml', '--checkpoint', ckpt,
                       '--target_res', '64x64', '--dataset', 'coco', '--ann_file', ANN_FILE, '--img_dir', TINY,
                       '--output_path', tmp_path / 'out', '--mode', 'pynative', '--no_progress'])
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / 'out' / 'metrics.json').read_text())
    assert metrics['input_size'] == [64, 64] and 0.0 <= metrics['AP'] <= 1.0
    results = json.loads((tmp_path / 'out' / 'results_keypoints.json').read_text())
    assert results
    net = create_model(str(TINY_YAML), pretrained=str(ckpt))
    predictor = TopDownPredictor(net, (64, 64), COCO_17, flip_test=True)
    images = {im['id']: im['file_name'] for im in json.loads(ANN_FILE.read_text())['images']}
    people = coco_people()
    for image_id in sorted({r['image_id'] for r in results})[:2]:
        file_name = images[image_id]
        boxes = [box for f, box, _ in people if f == file_name]
        predicted = [p['keypoints'][:, :2] for p in predictor.predict(read_image_rgb(TINY / file_name), boxes)]
        for r in (r for r in results if r['image_id'] == image_id):
            got = np.array(r['keypoints'], np.float64).reshape(17, 3)[:, :2]
            assert min(np.abs(got - p).max() for p in predicted) < 1e-3
