"""The model as built: registry, parameter counts and names, initialisation, input sizes, custom configs."""
import json

import numpy as np
import pytest
import mindspore as ms

import litehrnet
from litehrnet.models.configs import ModelTypeError

TYPES = ["litehrnet_18", "litehrnet_30", "naive_litehrnet_18", "wider_naive_litehrnet_18"]
OFFICIAL_PARAMS = {"litehrnet_18": 1_130_769, "litehrnet_30": 1_763_717, "naive_litehrnet_18": 760_365,
                   "wider_naive_litehrnet_18": 1_318_625}
TINY = {"stem_channels": 16, "stages": [
    {"num_modules": 1, "num_branches": 2, "num_blocks": 1, "num_channels": [8, 16], "module_type": "lite"},
    {"num_modules": 1, "num_branches": 3, "num_blocks": 1, "num_channels": [8, 16, 32], "module_type": "naive"},
]}


def _count(net):
    return sum(int(np.prod(p.shape)) for p in net.trainable_params())


@pytest.mark.parametrize("model_type", TYPES)
def test_parameter_count_equals_official(model_type):
    assert _count(litehrnet.create_model(model_type, conv_impl="native")) == OFFICIAL_PARAMS[model_type]


def test_parameter_count_mpii_head():
    net = litehrnet.create_model("litehrnet_18", num_joints=16, conv_impl="native")
    assert _count(net) == OFFICIAL_PARAMS["litehrnet_18"] - 41  # 40 weights + 1 bias per joint


@pytest.mark.parametrize("model_type", TYPES)
def test_every_parameter_name_is_its_module_path(model_type):
    net = litehrnet.create_model(model_type, conv_impl="native")
    seen = 0
    for cell_path, cell in net.cells_and_names():
        for attr, param in cell._params.items():  # the parameters a cell owns directly
            expected = f"{cell_path}.{attr}" if cell_path else attr
            assert param.name == expected
            seen += 1
    assert seen == len(list(net.get_parameters()))
    assert not any(p.name[0].isdigit() for p in net.get_parameters())  # no mangled '0.0.layers...'


@pytest.mark.parametrize("alias,canonical", [("lite_18", "litehrnet_18"), ("lite_30", "litehrnet_30"),
                                             ("naive", "naive_litehrnet_18"),
                                             ("wider_naive", "wider_naive_litehrnet_18")])
def test_aliases_of_the_earlier_port(alias, canonical):
    assert litehrnet.canonical_model_type(alias) == canonical
    assert litehrnet.create_model(alias, conv_impl="native").model_type == canonical


def test_unknown_model_type_lists_the_valid_ones():
    with pytest.raises(ModelTypeError) as e:
        litehrnet.create_model("lite_19")
    msg = str(e.value)
    assert "lite_19" in msg and all(t in msg for t in TYPES) and "lite_18" in msg


def test_list_models():
    assert litehrnet.list_models() == TYPES + ["hrnet_w32", "hrnet_w48", "light_hrnet"]


def test_output_shape_and_values_depend_on_input():
    net = litehrnet.create_model("litehrnet_18", conv_impl="native")
    net.set_train(False)
    x = np.random.default_rng(0).standard_normal((2, 3, 128, 96)).astype(np.float32)
    y = net(ms.Tensor(x)).asnumpy()
    assert y.shape == (2, 17, 32, 24)
    assert np.abs(y[0] - y[1]).max() > 0  # the two images give different heatmaps


@pytest.mark.parametrize("hw", [(250, 192), (256, 200), (16, 192)])
def test_input_sizes_not_multiple_of_32_are_refused_clearly(hw):
    net = litehrnet.create_model("naive_litehrnet_18", conv_impl="native")
    with pytest.raises(ValueError, match=r"multiples of 32"):
        net(ms.Tensor(np.zeros((1, 3) + hw, np.float32)))


def test_initialisation_as_official():
    net = litehrnet.create_model("litehrnet_18", conv_impl="native")
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    big = params["backbone.stages.2.0.fuse_layers.0.3.0.weight"]  # 40x320 1x1 conv
    assert 0.0009 < big.std() < 0.0011 and abs(big.mean()) < 1e-4
    head = params["keypoint_head.final_layer.weight"]
    assert 0.0007 < head.std() < 0.0013
    assert np.all(params["keypoint_head.final_layer.bias"] == 0)
    assert all(np.all(v == 1) for k, v in params.items() if k.endswith(".gamma"))
    assert all(np.all(v == 0) for k, v in params.items() if k.endswith(".beta"))
    sw_bias = [v for k, v in params.items() if "spatial_weighting" in k and k.endswith(".bias")]
    assert sw_bias and all(np.all(v == 0) for v in sw_bias)


def test_custom_config_dict_and_file(tmp_path):
    net = litehrnet.create_model(TINY, num_joints=5, conv_impl="native")
    net.set_train(False)
    y = net(ms.Tensor(np.ones((1, 3, 64, 32), np.float32)))
    assert y.shape == (1, 5, 16, 8)
    assert net.backbone.out_channels == 8
    path = tmp_path / "tiny.json"
    path.write_text(json.dumps(TINY))
    net2 = litehrnet.create_model(str(path), num_joints=5, conv_impl="native")
    assert [p.name for p in net2.get_parameters()] == [p.name for p in net.get_parameters()]
    yaml_path = tmp_path / "tiny.yaml"
    import yaml
    yaml_path.write_text(yaml.safe_dump(TINY))
    assert _count(litehrnet.create_model(str(yaml_path), num_joints=5, conv_impl="native")) == _count(net)


@pytest.mark.parametrize("bad,match", [
    ({"stages": [{"num_modules": 1, "num_branches": 3, "num_blocks": 1, "num_channels": [8, 16, 32]}]},
     "exactly one branch"),
    ({"stages": [{"num_modules": 1, "num_branches": 2, "num_blocks": 1, "num_channels": [8, 15]}]}, "even"),
    ({"stages": [{"num_modules": 1, "num_branches": 2, "num_channels": [8, 16]}]}, "num_blocks"),
    ({"stages": [{"num_modules": 1, "num_branches": 2, "num_blocks": 1, "num_channels": [8, 16],
                  "module_type": "fancy"}]}, "module_type"),
])
def test_invalid_custom_configs_are_explained(bad, match):
    with pytest.raises(ModelTypeError, match=match):
        litehrnet.create_model(bad)
