"""HRNets through export.py: MINDIR reloaded with GraphCell and ONNX (onnxruntime, when installed) match the
network to 1e-5, plain and with the flip test folded in, at each head's output stride (4, 2, 1).

Random weights and BatchNorm statistics, the final layer scaled so that the largest heatmap value is 1.
Every export compiles a graph: these tests are slow and run the CLI in subprocesses.
"""
import mindspore as ms
import numpy as np
import pytest
import yaml

from conftest import ROOT, run_script
from litehrnet import create_model, save_checkpoint
from litehrnet.exporting import FlipTestNet, output_path
from litehrnet.keypoints import COCO_17
from litehrnet.predictor import TopDownPredictor
from litehrnet.runners import OnnxRunner, read_export_meta

SIZE = (64, 64)
BATCH = 2
ATOL = 1e-5
try:
    import onnxruntime  # noqa: F401  (optional)
    HAS_ONNXRUNTIME = True
except ImportError:
    HAS_ONNXRUNTIME = False
NO_ONNXRUNTIME = 'onnxruntime is not installed (optional: pip install onnxruntime): ONNX numerics are not checked'

MINDIR_CHECK = """
import sys
import mindspore as ms, numpy as np
from mindspore import nn
x = np.load(sys.argv[1])['x']
np.savez(sys.argv[2], **{f'y{i}': nn.GraphCell(ms.load(p))(ms.Tensor(x)).asnumpy() for i, p in enumerate(sys.argv[3:])})
"""


def _model_file(folder, head):
    """configs/hrnet_tiny.yaml (official head, stride 4), or it with another head, as a file."""
    if head == 'official':
        return str(ROOT / 'src' / 'litehrnet' / 'configs' / 'models' / 'hrnet_tiny.yaml')
    config = yaml.safe_load((ROOT / 'src' / 'litehrnet' / 'configs' / 'models' / 'hrnet_tiny.yaml').read_text())
    config['head'] = dict(type=head, sigma=2)
    path = folder / f'tiny_{head}.yaml'
    path.write_text(yaml.safe_dump(config))
    return str(path)


MODELS = {'official': 4, 'light_hrnet': 2, 'full_resolution': 1}  # model -> output stride


def _lively(model_type, seed=0):
    net = create_model(model_type, conv_impl='native')
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
    head = net.keypoint_head.final_layer
    peak = float(np.abs(net(ms.Tensor(x)).asnumpy()).max())
    for p in (head.weight, head.bias):
        p.set_data(ms.Tensor(p.asnumpy() / peak))
    return net, x


@pytest.fixture(scope='module', params=list(MODELS))
def exported(request, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f'export_{request.param}')
    model_type = 'light_hrnet' if request.param == 'light_hrnet' else _model_file(folder, request.param)
    net, x = _lively(model_type)
    assert net.output_stride == MODELS[request.param]
    ckpt = folder / 'lively.ckpt'
    save_checkpoint(net, ckpt)
    ref = net(ms.Tensor(x)).asnumpy()
    assert ref.shape == (BATCH, 17, 64 // net.output_stride, 64 // net.output_stride)
    ref_flip = TopDownPredictor(net, SIZE, COCO_17, flip_test=True, batch_size=2 * BATCH).heatmaps(x)
    folded = FlipTestNet(net, COCO_17.flip_pairs, COCO_17.num_joints)
    np.testing.assert_allclose(folded(ms.Tensor(x)).asnumpy(), ref_flip, rtol=0, atol=1e-6)
    paths = {}
    for fmt, flip in (('MINDIR', False), ('MINDIR', True), ('ONNX', True)):
        out = folder / f"m_{fmt.lower()}_{'flip' if flip else 'plain'}"
        proc = run_script(['src/export.py', '--model_type', model_type, '--target_res', '64x64', '--checkpoint', ckpt,
                           '--file_format', fmt, '--batch_size', BATCH, '--output', out,
                           '--flip_test', str(flip).lower()])
        assert proc.returncode == 0, proc.stderr[-2000:]
        paths[fmt, flip] = output_path(out, fmt)
        assert paths[fmt, flip].is_file()
    return dict(net=net, x=x, ref=ref, ref_flip=ref_flip, paths=paths, folder=folder, stride=net.output_stride)


@pytest.mark.slow
def test_mindir_reloads_with_the_networks_outputs(exported, tmp_path):
    np.savez(tmp_path / 'x.npz', x=exported['x'])
    proc = run_script(['-c', MINDIR_CHECK, tmp_path / 'x.npz', tmp_path / 'y.npz',
                       exported['paths']['MINDIR', False], exported['paths']['MINDIR', True]])
    assert proc.returncode == 0, proc.stderr[-2000:]
    y = np.load(tmp_path / 'y.npz')
    np.testing.assert_allclose(y['y0'], exported['ref'], rtol=0, atol=ATOL)
    np.testing.assert_allclose(y['y1'], exported['ref_flip'], rtol=0, atol=ATOL)
    meta = read_export_meta(exported['paths']['MINDIR', True])
    s = exported['stride']
    assert meta['output_stride'] == s and meta['heatmap_size'] == [64 // s, 64 // s] and meta['flip_test'] is True


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ONNXRUNTIME, reason=NO_ONNXRUNTIME)
def test_onnx_runs_on_onnxruntime_with_the_networks_outputs(exported):
    folded = OnnxRunner(exported['paths']['ONNX', True])
    assert folded.batch_size == BATCH and folded.input_size_hw == SIZE
    np.testing.assert_allclose(folded(exported['x']), exported['ref_flip'], rtol=0, atol=ATOL)
