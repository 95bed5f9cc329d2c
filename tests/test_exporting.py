"""Export (src/export.py, litehrnet.exporting) and the exported-model backends give the network's outputs.

The network has random weights and BatchNorm statistics, with the final layer scaled so that the
largest heatmap value is 1 (as trained heatmaps), so the 1e-5 tolerance means something. Exports
compile a graph (~30 s each on a CPU): those tests are slow and run the CLI in subprocesses.
"""
import json
import sys

import mindspore as ms
import numpy as np
import pytest

from litehrnet.commands import export
from litehrnet import create_model, save_checkpoint
from litehrnet.annotate import Annotator, plan_inputs
from litehrnet.keypoints import COCO_17
from litehrnet.detection import WholeImage
from litehrnet.exporting import FlipTestNet, output_path
from litehrnet.predictor import TopDownPredictor
from litehrnet.runners import CellRunner, OnnxRunner, make_predictor, open_backend, read_export_meta

from conftest import run_script

SIZE = (64, 64)
BATCH = 2
ATOL = 1e-5
try:
    import onnxruntime  # noqa: F401  (optional)
    HAS_ONNXRUNTIME = True
except ImportError:
    HAS_ONNXRUNTIME = False
NO_ONNXRUNTIME = 'onnxruntime is not installed (optional: pip install onnxruntime): the ONNX backend is not tested'

MINDIR_CHECK = """
import sys
import mindspore as ms, numpy as np
from mindspore import nn
x = np.load(sys.argv[1])['x']
out = {}
for i, path in enumerate(sys.argv[3:]):
    out[f'y{i}'] = nn.GraphCell(ms.load(path))(ms.Tensor(x)).asnumpy()
np.savez(sys.argv[2], **out)
"""


def _lively_net(seed=0):
    """A native litehrnet_18 with random weights and BatchNorm statistics, heatmaps peaking at 1; and inputs."""
    net = create_model('litehrnet_18', conv_impl='native')
    net.set_train(False)
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        v = p.asnumpy()
        if p.name.endswith('.weight') and v.ndim == 4:
            p.set_data(ms.Tensor((rng.standard_normal(v.shape) / np.sqrt(v[0].size)).astype(np.float32)))
        elif p.name.endswith('moving_variance'):
            p.set_data(ms.Tensor(rng.uniform(0.5, 2, v.shape).astype(np.float32)))
        elif p.name.endswith(('moving_mean', '.beta', '.bias')):
            p.set_data(ms.Tensor((rng.standard_normal(v.shape) * 0.1).astype(np.float32)))
    x = rng.standard_normal((BATCH, 3) + SIZE).astype(np.float32)
    peak = float(np.abs(net(ms.Tensor(x)).asnumpy()).max())
    head = net.keypoint_head.final_layer
    for p in (head.weight, head.bias):
        p.set_data(ms.Tensor(p.asnumpy() / peak))
    return net, x


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    """Checkpoint, network, inputs, its heatmaps, and the predictor's flip-test heatmaps."""
    net, x = _lively_net()
    folder = tmp_path_factory.mktemp('export')
    ckpt = folder / 'lively.ckpt'
    save_checkpoint(net, ckpt)
    ref = net(ms.Tensor(x)).asnumpy()
    assert 0.99 < np.abs(ref).max() < 1.01
    ref_flip = TopDownPredictor(net, SIZE, COCO_17, flip_test=True, batch_size=2 * BATCH).heatmaps(x)
    return dict(ckpt=ckpt, folder=folder, net=net, x=x, ref=ref, ref_flip=ref_flip)


@pytest.fixture(scope='module')
def exported(model):
    """The exports (MINDIR, ONNX when onnxruntime can run it; with and without flip test) made by the CLI."""
    paths = {}
    for fmt in ('MINDIR', 'ONNX') if HAS_ONNXRUNTIME else ('MINDIR',):
        for flip in (False, True):
            out = model['folder'] / f"m_{fmt.lower()}_{'flip' if flip else 'plain'}"
            proc = run_script(['src/export.py', '--model_type', 'litehrnet_18', '--target_res', '64x64',
                               '--checkpoint', model['ckpt'], '--file_format', fmt, '--batch_size', BATCH,
                               '--output', out, '--flip_test', str(flip).lower()])
            assert proc.returncode == 0, proc.stderr[-2000:]
            paths[fmt, flip] = output_path(out, fmt)
            assert paths[fmt, flip].is_file() and str(paths[fmt, flip]) in proc.stdout
    return paths


def test_flip_test_net_equals_the_predictors_flip_test(model):
    folded = FlipTestNet(model['net'], COCO_17.flip_pairs, COCO_17.num_joints)
    np.testing.assert_allclose(folded(ms.Tensor(model['x'])).asnumpy(), model['ref_flip'], rtol=0, atol=1e-6)


@pytest.mark.parametrize('args, message', [
    (['--checkpoint', 'missing_file.ckpt'], 'missing_file'),
    (['--checkpoint', 'any.ckpt', '--target_res', '100x64'], 'multiples of 32'),
    (['--checkpoint', 'any.ckpt', '--model_type', 'litehrnet_99'], 'litehrnet_99'),
])
def test_export_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    assert export.main(['--output', str(tmp_path / 'm')] + args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('export.py: error:') and message in err[-1]
    assert not list(tmp_path.iterdir())


def test_export_cli_unknown_format_is_an_argparse_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        export.main(['--checkpoint', 'any.ckpt', '--output', str(tmp_path / 'm'), '--file_format', 'TFLITE'])
    assert exited.value.code == 2
    assert "export.py: error: argument --file_format: invalid choice: 'TFLITE'" in capsys.readouterr().err


def test_onnx_backend_without_onnxruntime_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # makes `import onnxruntime` fail
    with pytest.raises(ValueError, match='pip install onnxruntime'):
        OnnxRunner(tmp_path / 'm.onnx')


@pytest.mark.slow
def test_mindir_export_reloads_with_the_networks_outputs(model, exported, tmp_path):
    """mindspore.load + nn.GraphCell in a fresh process: plain export = network, folded = flip test."""
    np.savez(tmp_path / 'x.npz', x=model['x'])
    proc = run_script(['-c', MINDIR_CHECK, tmp_path / 'x.npz', tmp_path / 'y.npz',
                       exported['MINDIR', False], exported['MINDIR', True]])
    assert proc.returncode == 0, proc.stderr[-2000:]
    y = np.load(tmp_path / 'y.npz')
    np.testing.assert_allclose(y['y0'], model['ref'], rtol=0, atol=ATOL)
    np.testing.assert_allclose(y['y1'], model['ref_flip'], rtol=0, atol=ATOL)
    meta = read_export_meta(exported['MINDIR', True])
    assert meta['input_size'] == list(SIZE) and meta['batch_size'] == BATCH and meta['flip_test'] is True


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNXRUNTIME, reason=NO_ONNXRUNTIME)
def test_onnx_export_runs_on_onnxruntime_with_the_networks_outputs(model, exported):
    plain, folded = OnnxRunner(exported['ONNX', False]), OnnxRunner(exported['ONNX', True])
    assert plain.batch_size == BATCH and plain.input_size_hw == SIZE
    np.testing.assert_allclose(plain(model['x']), model['ref'], rtol=0, atol=ATOL)
    np.testing.assert_allclose(folded(model['x']), model['ref_flip'], rtol=0, atol=ATOL)


@pytest.mark.slow
def test_backends_give_the_same_keypoints(model, exported, tmp_path):
    """Network + flip test, folded ONNX, folded MINDIR: same crops, decoding and keypoints on an image file."""
    import cv2
    image = np.random.default_rng(5).integers(0, 256, (90, 70, 3), dtype=np.uint8)
    (tmp_path / 'in').mkdir()
    cv2.imwrite(str(tmp_path / 'in' / 'p.png'), image)
    runners = {'mindspore': (CellRunner(model['net']), dict(input_size_hw=SIZE, keypoint_info=COCO_17, flip_test=True))}
    for backend, fmt in (('mindir', 'MINDIR'), ('onnx', 'ONNX')):
        if backend == 'onnx' and not HAS_ONNXRUNTIME:
            continue  # the MINDIR comparison still runs
        runner, cfg = open_backend(backend, exported[fmt, True], flip_test=True)
        assert cfg['flip_in_model'] and not cfg['flip_test'] and cfg['input_size_hw'] == SIZE
        runners[backend] = (runner, cfg)
    keypoints = {}
    for backend, (runner, cfg) in runners.items():
        predictor = make_predictor(runner, cfg['input_size_hw'], cfg['keypoint_info'], cfg['flip_test'])
        out = tmp_path / backend
        Annotator(predictor, WholeImage(), out, progress=False).run(plan_inputs(tmp_path / 'in', out))
        keypoints[backend] = np.array(json.loads((out / 'results_keypoints.json').read_text())[0]['keypoints'])
    for backend, kpts in keypoints.items():
        np.testing.assert_allclose(kpts, keypoints['mindspore'], rtol=0, atol=1e-3, err_msg=backend)
