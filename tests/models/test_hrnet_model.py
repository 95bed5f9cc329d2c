"""The HRNet family without fixtures: configs and their validation, light_hrnet, heads, names, fast path, complexity.

Small networks (narrow widths, 64x64 inputs) in PYNATIVE mode.
"""
import copy
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import mindspore as ms
from mindspore import nn, ops

import litehrnet
from litehrnet.models import fast_conv
from litehrnet.models.complexity import model_complexity, verify_params
from litehrnet.models.hrnet_config import (HRNET_CONFIGS, HRNetConfigError, input_multiple, light_hrnet_config,
                                           validate_hrnet_config)
from litehrnet.models.layers import bilinear_half_pixel_matrix, upsample_bilinear
from litehrnet.models.registry import input_multiple as model_input_multiple

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def narrow_hrnet(head="official", **head_extra):
    """A small custom HRNet: official stem layout at width 8, Bottleneck stage 1, then 2-4 branches of 4..32."""
    return dict(family="hrnet", stem_channels=8, stem_convs=2, stages=[
        dict(num_modules=1, num_branches=1, num_blocks=1, num_channels=[4], block="bottleneck"),
        dict(num_modules=1, num_branches=2, num_blocks=1, num_channels=[4, 8]),
        dict(num_modules=2, num_branches=3, num_blocks=[1, 1, 2], num_channels=[4, 8, 16]),
        dict(num_modules=1, num_branches=4, num_blocks=1, num_channels=[4, 8, 16, 32]),
    ], head=dict(type=head, **head_extra))


def _randomize(net, seed=0):
    """Non-trivial weights and BN statistics, so that value checks mean something."""
    rng = np.random.default_rng(seed)
    for p in net.get_parameters():
        if p.name.endswith("moving_variance"):
            value = rng.uniform(0.5, 2.0, p.shape)
        elif p.name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, p.shape)
        else:
            fan_in = int(np.prod(p.shape[1:])) if len(p.shape) > 1 else 10
            value = rng.standard_normal(p.shape) / np.sqrt(fan_in)
        p.set_data(ms.Tensor(value.astype(np.float32)))
    return net


def _image(c=3, h=64, w=64, n=1, seed=1):
    return ms.Tensor(np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32))


def np_bilinear(x, size):
    """Independent reference: PyTorch's bilinear align_corners=False, pixel by pixel."""
    n, c, h, w = x.shape
    out = np.zeros((n, c) + tuple(size))

    def taps(i, n_in, n_out):
        s = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        i0 = int(np.floor(s))
        return i0, min(i0 + 1, n_in - 1), s - i0

    for i in range(size[0]):
        y0, y1, ly = taps(i, h, size[0])
        for j in range(size[1]):
            x0, x1, lx = taps(j, w, size[1])
            out[:, :, i, j] = ((1 - ly) * ((1 - lx) * x[:, :, y0, x0] + lx * x[:, :, y0, x1])
                               + ly * ((1 - lx) * x[:, :, y1, x0] + lx * x[:, :, y1, x1]))
    return out


def np_conv1x1(x, conv):
    w = conv.weight.asnumpy()[:, :, 0, 0]
    return np.einsum("oc,nchw->nohw", w, x) + conv.bias.asnumpy()[None, :, None, None]


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["hrnet_w32", "light_hrnet", "narrow-official", "narrow-concat", "narrow-full"])
def test_every_parameter_name_is_its_module_path(model):
    config = narrow_hrnet(model.split("-")[1].replace("full", "full_resolution")) if "-" in model else model
    net = litehrnet.create_model(config, conv_impl="fast")
    seen = 0
    for path, cell in net.cells_and_names():
        for key, param in cell.parameters_and_names(expand=False):
            assert param.name == (f"{path}.{key}" if path else key)
            seen += 1
    assert seen == len(list(net.get_parameters())) > 0


def test_official_layout_names():
    names = {p.name: tuple(p.shape) for p in litehrnet.create_model("hrnet_w32", conv_impl="native").get_parameters()}
    assert names["backbone.conv1.weight"] == (64, 3, 3, 3)
    assert names["backbone.layer1.0.downsample.0.weight"] == (256, 64, 1, 1)
    assert "backbone.layer1.1.downsample.0.weight" not in names
    assert names["backbone.transition1.0.0.weight"] == (32, 256, 3, 3)
    assert names["backbone.transition1.1.0.0.weight"] == (64, 256, 3, 3)
    assert names["backbone.transition3.3.0.1.moving_variance"] == (256,)
    assert not any(n.startswith("backbone.transition2.0.") for n in names)  # unchanged width: identity
    assert names["backbone.stage3.0.fuse_layers.2.0.1.0.weight"] == (128, 32, 3, 3)
    assert names["backbone.stage3.0.fuse_layers.0.2.1.gamma"] == (32,)
    # The last module computes only the top branch: fuse row 0 only.
    assert any(n.startswith("backbone.stage4.2.fuse_layers.0.3.") for n in names)
    assert not any(n.startswith("backbone.stage4.2.fuse_layers.1.") for n in names)
    assert any(n.startswith("backbone.stage4.1.fuse_layers.3.") for n in names)
    assert names["keypoint_head.final_layer.weight"] == (17, 32, 1, 1)
    assert names["keypoint_head.final_layer.bias"] == (17,)


# ---------------------------------------------------------------------------------------------
# light_hrnet
# ---------------------------------------------------------------------------------------------

def test_light_hrnet_from_python_keywords():
    net = litehrnet.create_model("light_hrnet", n_channels=64, num_stages=2, num_branches=2, num_blocks=2,
                                 n_channels_in=3)
    names = {p.name: tuple(p.shape) for p in net.get_parameters()}
    assert names["backbone.conv1.weight"] == (64, 3, 3, 3)
    assert "backbone.conv2.weight" not in names                       # one stem conv: stride 2
    assert names["backbone.layer1.1.conv2.weight"] == (64, 64, 3, 3)  # stage 1: BasicBlocks, one branch
    assert "backbone.layer1.2.conv1.weight" not in names
    assert names["backbone.stage2.0.branches.1.1.conv2.weight"] == (128, 128, 3, 3)
    assert "backbone.stage3.0.branches.0.0.conv1.weight" not in names
    assert names["backbone.stage2.0.fuse_layers.1.0.0.0.weight"] == (128, 64, 3, 3)  # concat head: all rows
    assert names["keypoint_head.final_layer.weight"] == (17, 64 + 128, 1, 1)
    net.set_train(False)
    y = net(_image())
    assert y.shape == (1, 17, 32, 32) and net.output_stride == 2
    assert np.isfinite(y.asnumpy()).all()


@pytest.mark.parametrize("stages,branches,widths", [(3, 3, [8, 16, 32]), (3, 2, [8, 16]), (2, 2, [8, 16])])
def test_light_hrnet_stages_add_branches_up_to_num_branches(stages, branches, widths):
    cfg = light_hrnet_config(n_channels=8, num_stages=stages, num_branches=branches, num_blocks=1)
    assert [s["num_branches"] for s in cfg["stages"]] == [1] + [min(k + 1, branches) for k in range(1, stages)]
    assert cfg["stages"][-1]["num_channels"] == widths
    assert input_multiple(cfg) == 2 ** (branches + 1)
    net = litehrnet.create_model("light_hrnet", n_channels=8, num_stages=stages, num_branches=branches, num_blocks=1)
    assert net.backbone.out_channels == widths
    y = net(_image(h=32, w=64))
    assert y.shape == (1, 17, 16, 32)


def test_light_hrnet_defaults_and_config_file(tmp_path):
    assert HRNET_CONFIGS["light_hrnet"] == validate_hrnet_config(light_hrnet_config(32, 2, 2, 2))
    path = tmp_path / "light.json"
    path.write_text(json.dumps(light_hrnet_config(n_channels=8, num_blocks=1, n_channels_in=1)))
    net = litehrnet.create_model(str(path), num_joints=5)
    assert tuple(net.backbone.conv1.weight.shape) == (8, 1, 3, 3)
    assert net(_image(c=1)).shape == (1, 5, 32, 32)


@pytest.mark.parametrize("kwargs,field", [
    (dict(num_branches=5), "num_branches"), (dict(num_stages=1), "num_stages"), (dict(num_stages=4), "num_stages"),
    (dict(num_branches=3, num_stages=2), "num_branches"), (dict(n_channels=0), "n_channels"),
    (dict(num_blocks=1.5), "num_blocks"), (dict(n_channels_in=0), "n_channels_in"),
])
def test_light_hrnet_refuses_bad_settings_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        litehrnet.create_model("light_hrnet", **kwargs)


def test_overrides_are_checked():
    with pytest.raises(ValueError, match="only for model type light_hrnet"):
        litehrnet.create_model("hrnet_w32", num_branches=2)
    with pytest.raises(ValueError, match="unknown model settings: widths"):
        litehrnet.create_model("light_hrnet", widths=3)
    with pytest.raises(ValueError, match="unknown model settings for litehrnet_18: num_stages"):
        litehrnet.create_model("litehrnet_18", num_stages=2)


def test_n_channels_in_for_every_family():
    for model_type in ("litehrnet_18", "naive_litehrnet_18"):
        net = litehrnet.create_model(model_type, n_channels_in=1)
        assert tuple(net.backbone.stem.conv1.conv.weight.shape) == (32, 1, 3, 3)
    net = litehrnet.create_model(narrow_hrnet(), n_channels_in=1)
    assert tuple(net.backbone.conv1.weight.shape) == (8, 1, 3, 3)
    assert net(_image(c=1)).shape == (1, 17, 16, 16)


# ---------------------------------------------------------------------------------------------
# Config validation
# ---------------------------------------------------------------------------------------------

def _broken(edit):
    cfg = copy.deepcopy(narrow_hrnet())
    edit(cfg)
    return cfg


@pytest.mark.parametrize("edit,message", [
    (lambda c: c["stages"][2].update(num_channels=[4, 8]), r"stage 3: num_channels needs 3"),
    (lambda c: c["stages"][1].update(num_blocks=[1, 1, 1]), r"stage 2: num_blocks"),
    (lambda c: c["stages"][3].update(block="dense"), r"stage 4: block must be one of"),
    (lambda c: c["stages"][2].update(num_modules=0), r"stage 3: num_modules"),
    (lambda c: c["stages"][2].pop("num_branches"), r"stage 3 lacks num_branches"),
    (lambda c: c["stages"][0].update(num_branches=2, num_channels=[4, 8]), r"stage 1: num_branches must be 1"),
    (lambda c: c["stages"][3].update(num_branches=2, num_channels=[4, 8], num_blocks=1), r"stage 4: num_branches"),
    (lambda c: c["stages"].append(dict(c["stages"][3])), r"1 to 4 stages"),
    (lambda c: c.update(stem_convs=3), r"stem_convs"),
    (lambda c: c.update(n_channels_in=0), r"n_channels_in"),
    (lambda c: c["head"].update(type="deconv"), r"head: type must be one of"),
    (lambda c: c["head"].update(final_conv_kernel=5), r"head: final_conv_kernel"),
    (lambda c: c["head"].update(sigma=-1), r"head: sigma"),
])
def test_config_errors_name_stage_and_field(edit, message):
    with pytest.raises(HRNetConfigError, match=message):
        litehrnet.create_model(_broken(edit))


def test_num_blocks_per_branch_and_head_sigma():
    cfg = validate_hrnet_config(narrow_hrnet(sigma=1.5))
    assert cfg["stages"][1]["num_blocks"] == [1, 1] and cfg["stages"][2]["num_blocks"] == [1, 1, 2]
    assert cfg["head"]["sigma"] == 1.5
    net = litehrnet.create_model(cfg)
    names = {p.name for p in net.get_parameters()}
    assert "backbone.stage3.1.branches.2.1.conv1.weight" in names
    assert "backbone.stage3.1.branches.1.1.conv1.weight" not in names
    assert net.config["head"]["sigma"] == 1.5


# ---------------------------------------------------------------------------------------------
# Input size rule and output stride
# ---------------------------------------------------------------------------------------------

def test_input_multiple_follows_the_branches():
    assert model_input_multiple("hrnet_w32") == 32 and model_input_multiple("litehrnet_18") == 32
    assert model_input_multiple("light_hrnet") == 8
    net = litehrnet.create_model("light_hrnet", n_channels=8, num_blocks=1)
    assert net.input_multiple == 8
    assert net(_image(h=40, w=24)).shape == (1, 17, 20, 12)
    with pytest.raises(ValueError, match="multiples of 8"):
        net(_image(h=36, w=24))
    with pytest.raises(ValueError, match="multiples of 32"):
        litehrnet.create_model(narrow_hrnet())(_image(h=48, w=40))


# ---------------------------------------------------------------------------------------------
# Heads
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_in,n_out", [(4, 8), (8, 32), (5, 12), (7, 3), (6, 6), (1, 4), (12, 64)])
def test_bilinear_matrix_equals_pixelwise_reference(n_in, n_out):
    x = np.random.default_rng(0).standard_normal((1, 2, n_in, n_in + 1))
    m_rows, m_cols = bilinear_half_pixel_matrix(n_in, n_out), bilinear_half_pixel_matrix(n_in + 1, n_out + 2)
    got = np.einsum("ih,nchw,jw->ncij", m_rows, x, m_cols)
    np.testing.assert_allclose(got, np_bilinear(x, (n_out, n_out + 2)), atol=1e-6)
    y = upsample_bilinear(ms.Tensor(x.astype(np.float32)), (n_out, n_out + 2)).asnumpy()
    np.testing.assert_allclose(y, np_bilinear(x, (n_out, n_out + 2)), atol=1e-5)


def test_bilinear_matches_mindspore_interpolate():
    x = ms.Tensor(np.random.default_rng(3).standard_normal((1, 3, 8, 6)).astype(np.float32))
    ref = ops.interpolate(x, size=(32, 24), mode="bilinear", align_corners=False).asnumpy()
    np.testing.assert_allclose(upsample_bilinear(x, (32, 24)).asnumpy(), ref, atol=1e-5)


def test_concat_head_equals_numpy_reference():
    net = _randomize(litehrnet.create_model(narrow_hrnet("concat"), num_joints=3, conv_impl="fast"))
    net.set_train(False)
    x = _image()
    ys = [y.asnumpy().astype(np.float64) for y in net.backbone(x)]
    assert [y.shape[1] for y in ys] == [4, 8, 16, 32] and net.output_stride == 4
    top = ys[0].shape[2:]
    cat = np.concatenate([ys[0]] + [np_bilinear(y, top) for y in ys[1:]], axis=1)
    ref = np_conv1x1(cat, net.keypoint_head.final_layer)
    out = net(x).asnumpy()
    assert out.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(out, ref, atol=1e-4 * np.abs(ref).max())


def test_full_resolution_head_upsamples_heatmaps_to_the_input():
    net = _randomize(litehrnet.create_model(narrow_hrnet("full_resolution", channels=6), num_joints=3))
    net.set_train(False)
    assert net.output_stride == 1
    x = _image(h=64, w=32)
    head = net.keypoint_head
    assert tuple(head.conv_layers[0].weight.shape) == (6, 4, 3, 3)
    low = head.final_layer(head.conv_layers(net.backbone(x)[0])).asnumpy()
    assert low.shape == (1, 3, 16, 8)
    out = net(x).asnumpy()
    assert out.shape == (1, 3, 64, 32)
    np.testing.assert_allclose(out, np_bilinear(low.astype(np.float64), (64, 32)), atol=1e-5 * np.abs(low).max())


def test_official_head_kernel_3_and_head_override():
    net = litehrnet.create_model(narrow_hrnet(final_conv_kernel=3), num_joints=2)
    assert tuple(net.keypoint_head.final_layer.weight.shape) == (2, 4, 3, 3)
    assert net(_image()).shape == (1, 2, 16, 16)
    tiny = os.path.join(ROOT, "src", "litehrnet", "configs", "models", "hrnet_tiny.yaml")
    full = litehrnet.create_model(tiny, head="full_resolution")
    assert full.output_stride == 1 and full.config["head"]["sigma"] == 2
    assert "keypoint_head.conv_layers.1.moving_mean" in {p.name for p in full.get_parameters()}


# ---------------------------------------------------------------------------------------------
# CPU fast path: every 3x3 conv of an HRNet (dense, stride 1 and 2), forward and backward
# ---------------------------------------------------------------------------------------------

def test_fast_path_covers_every_3x3_conv():
    net = litehrnet.create_model(narrow_hrnet(), conv_impl="fast")
    fast = [c for _, c in net.cells_and_names() if isinstance(c, fast_conv._Conv3x3)]
    assert not [n for n, c in net.cells_and_names() if isinstance(c, nn.Conv2d) and c.kernel_size == (3, 3)]
    assert {c.s for c in fast} == {1, 2} and all(c.group == 1 for c in fast)
    backend = fast_conv.DenseConv3x3Aot if fast_conv.kernel_library() else fast_conv.DenseConv3x3MatMul
    assert all(isinstance(c, backend) for c in fast)


def test_fast_and_native_agree_in_train_mode_with_gradients():
    x = _image(n=2)
    results = []
    for impl in ("native", "fast"):
        net = _randomize(litehrnet.create_model(narrow_hrnet(), num_joints=3, conv_impl=impl))
        net.set_train(True)
        params = net.trainable_params()
        r = ms.Tensor(np.random.default_rng(5).standard_normal((2, 3, 16, 16)).astype(np.float32))

        def loss_fn(inp):
            return (net(inp) * r).sum()

        loss, grads = ms.value_and_grad(loss_fn, None, params)(x)
        results.append((float(loss.asnumpy()), {p.name: g.asnumpy() for p, g in zip(params, grads)},
                        {p.name: p.asnumpy() for p in net.get_parameters() if "moving_" in p.name}))
    (l0, g0, s0), (l1, g1, s1) = results
    assert abs(l0 - l1) < 1e-4 * abs(l0)
    assert sorted(g0) == sorted(g1)
    for name in g0:
        scale = np.abs(g0[name]).max()
        assert np.abs(g1[name] - g0[name]).max() <= 1e-3 * scale + 1e-7, name
    for name in s0:
        np.testing.assert_allclose(s1[name], s0[name], rtol=1e-4, atol=1e-5, err_msg=name)


# ---------------------------------------------------------------------------------------------
# Complexity
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model_type,hw,joints,params,gmacs", [
    ("hrnet_w32", (256, 192), 17, 28_536_113, 7.120), ("hrnet_w32", (384, 288), 17, 28_536_113, 16.020),
    ("hrnet_w48", (256, 192), 17, 63_595_745, 14.614), ("hrnet_w48", (384, 288), 17, 63_595_745, 32.882),
    ("hrnet_w32", (256, 256), 16, 28_536_080, 9.493),
])
def test_hrnet_params_and_macs_equal_the_official_figures(model_type, hw, joints, params, gmacs):
    info = model_complexity(model_type, hw, joints)
    assert info["params"] == params
    assert round(info["macs"] / 2 ** 30, 3) == gmacs
    assert info["official_flops"] == info["macs"]


def test_hrnet_analytic_counts_match_built_networks():
    for config in (narrow_hrnet(), narrow_hrnet("concat"), narrow_hrnet("full_resolution", channels=6),
                   light_hrnet_config(8, 3, 3, 1)):
        check = verify_params(config, 5)
        assert check["ok"] and check["mismatches"] == [], check
    assert verify_params("hrnet_w32", 17)["real"] == 28_536_113


def test_model_info_prints_hrnet_macs():
    """The official README's "GFLOPs" (MACs / 2^30): JSON at 256x192, the printed table at 384x288."""
    script = os.path.join(ROOT, "scripts", "model_info.py")
    out = subprocess.run([sys.executable, script, "--target_res", "256x192", "--model_type", "hrnet_w32", "hrnet_w48",
                          "--json"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True).stdout
    rows = {r["model_type"]: r for r in json.loads(out)}
    assert {k: round(r["macs_g"], 3) for k, r in rows.items()} == {"hrnet_w32": 7.12, "hrnet_w48": 14.614}
    assert rows["hrnet_w32"]["params"] == 28_536_113 and rows["hrnet_w32"]["published_flops_m"] == 7.1
    table = subprocess.run([sys.executable, script, "--target_res", "384x288", "--model_type", "hrnet_w32",
                            "hrnet_w48"], capture_output=True, text=True, cwd=ROOT, timeout=120, check=True).stdout
    lines = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith("hrnet_")}
    assert lines["hrnet_w32"][3] == "16.020" and lines["hrnet_w48"][3] == "32.882"
    assert lines["hrnet_w48"][1] == "63,595,745"


@pytest.mark.slow
def test_upsampling_heads_export_and_reload(tmp_path):
    """Concat and full-resolution heads (bilinear as matrix products) export to ONNX and MINDIR (GRAPH, subprocess);
    the reloaded MINDIR gives the network's output."""
    script = tmp_path / "export_heads.py"
    script.write_text(
        "import os, sys, numpy as np, mindspore as ms\n"
        "from mindspore import nn\n"
        "import litehrnet\n"
        "from test_hrnet_model import narrow_hrnet, _randomize\n"
        "ms.set_context(mode=ms.GRAPH_MODE)\n"
        "x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32))\n"
        "for head in ('concat', 'full_resolution'):\n"
        "    net = _randomize(litehrnet.create_model(narrow_hrnet(head), num_joints=3, conv_impl='native'))\n"
        "    net.set_train(False)\n"
        f"    base = os.path.join({str(tmp_path)!r}, head)\n"
        "    ms.export(net, x, file_name=base, file_format='ONNX')\n"
        "    ms.export(net, x, file_name=base, file_format='MINDIR')\n"
        "    y = nn.GraphCell(ms.load(base + '.mindir'))(x).asnumpy()\n"
        "    ref = net(x).asnumpy()\n"
        "    rel = float(np.abs(y - ref).max() / np.abs(ref).max())\n"
        "    print(head, y.shape, os.path.getsize(base + '.onnx') > 0, rel)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "src"), os.path.dirname(os.path.abspath(__file__))]))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if line.startswith(("concat", "full_")))
    assert lines["concat"].startswith("(1, 3, 16, 16) True")
    assert lines["full_resolution"].startswith("(1, 3, 64, 64) True")
    assert all(float(v.split()[-1]) < 1e-5 for v in lines.values())


def test_train_cli_light_hrnet_flags(capsys):
    """train.py --n_channels/--num_stages/--num_branches/--num_blocks build a light_hrnet without a file."""
    from litehrnet.commands import train as cli
    cfg = cli.config_from_args(cli.parse_args(["--n_channels", "64", "--num_stages", "2", "--num_branches", "2",
                                               "--num_blocks", "2", "--dataset", "demo"]))
    assert cfg.model_type == light_hrnet_config(64, 2, 2, 2)
    assert cli.parse_args(["--num_blocks", "3"]).model_type == light_hrnet_config(num_blocks=3)
    assert cli.parse_args(["--model_type", "hrnet_w32"]).model_type == "hrnet_w32"
    for argv, message in ((["--num_branches", "5"], "num_branches must be 2-4"),
                          (["--num_stages", "1"], "num_stages must be 2-3"),
                          (["--num_stages", "3", "--model_type", "hrnet_w32"], "not --model_type hrnet_w32")):
        with pytest.raises(SystemExit) as e:
            cli.parse_args(argv)
        assert e.value.code == 2 and message in capsys.readouterr().err


def test_official_yaml_extra_errors_name_the_stage():
    from litehrnet.models.hrnet_config import from_official_extra
    extra = dict(STAGE2=dict(NUM_MODULES=1, NUM_BRANCHES=2, BLOCK="BASIC", NUM_BLOCKS=[1, 1], NUM_CHANNELS=[4, 8]))
    assert from_official_extra(extra)["stages"][1]["num_channels"] == [4, 8]
    with pytest.raises(HRNetConfigError, match="STAGE2 lacks NUM_CHANNELS"):
        from_official_extra(dict(STAGE2={k: v for k, v in extra["STAGE2"].items() if k != "NUM_CHANNELS"}))
    with pytest.raises(HRNetConfigError, match="STAGE2: FUSE_METHOD must be SUM"):
        from_official_extra(dict(STAGE2=dict(extra["STAGE2"], FUSE_METHOD="CAT")))


def test_project_checkpoint_round_trip(tmp_path):
    """An HRNet saved by this project loads back strictly (its names are read as this project's scheme)."""
    net = _randomize(litehrnet.create_model(narrow_hrnet("concat"), num_joints=3))
    path = litehrnet.save_checkpoint(net, tmp_path / "hrnet.ckpt")
    other = litehrnet.create_model(narrow_hrnet("concat"), num_joints=3, pretrained=str(path))
    mine = {p.name: p.asnumpy() for p in net.get_parameters()}
    theirs = {p.name: p.asnumpy() for p in other.get_parameters()}
    assert sorted(mine) == sorted(theirs)
    assert all(np.array_equal(mine[k], theirs[k]) for k in mine)
    with pytest.raises(ValueError, match="does not fit the network"):
        litehrnet.create_model(narrow_hrnet("official"), num_joints=3, pretrained=str(path))
