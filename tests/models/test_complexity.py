"""Analytic parameters, MACs and official "FLOPs" (litehrnet.models.complexity, scripts/model_info.py)."""
import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from litehrnet.models.complexity import (PUBLISHED_FLOPS_M, PUBLISHED_PARAMS, model_complexity,
                                         parse_input_hw, verify_params)
from litehrnet.models.configs import ModelTypeError, get_config

TYPES = ["litehrnet_18", "litehrnet_30", "naive_litehrnet_18", "wider_naive_litehrnet_18"]

@pytest.mark.parametrize("key", sorted(PUBLISHED_FLOPS_M), ids=lambda k: f"{k[0]}-{k[1][0]}x{k[1][1]}-{k[2]}")
def test_official_flops_reproduce_published(key):
    """The official counter's rules reproduce every published "FLOPs" figure to the printed digit."""
    model_type, hw, joints = key
    got = model_complexity(model_type, hw, joints)["official_flops_m"]
    assert round(got, 1) == PUBLISHED_FLOPS_M[key]


def test_macs_and_raw_counts_litehrnet_18():
    info = model_complexity("litehrnet_18", (256, 192), 17)
    assert abs(info["macs"] / 1e6 - 242.3) < 0.05       # MACs are in units of 10**6 ...
    assert abs(info["macs"] / 2 ** 20 - 242.3) > 5       # ... not 2**20 (that would be 231.1)
    assert info["macs_m"] == info["macs"] / 1e6
    assert info["macs"] == 242_345_088
    assert info["official_flops"] == 215_202_112  # = 213,402,432 without the global pools + 1,799,680
    assert info["official_flops_m"] == info["official_flops"] / 2 ** 20


def test_fuse_layers_from_branch_0_run_twice():
    info = model_complexity("litehrnet_18", (256, 192), 17, per_layer=True)
    twice = [r for r in info["per_layer"] if r["calls"] == 2]
    assert twice and all(".fuse_layers." in r["name"] and r["name"].split(".fuse_layers.")[1].split(".")[1] == "0"
                         and r["name"].split(".fuse_layers.")[1].split(".")[0] != "0" for r in twice)
    once_macs = sum(r["macs"] // r["calls"] for r in info["per_layer"])
    assert info["macs"] - once_macs == sum(r["macs"] // 2 for r in twice) > 0
    assert sum(r["official_flops"] for r in info["per_layer"]) == info["official_flops"]
    assert sum(r["params"] for r in info["per_layer"]) == info["params"]


@pytest.mark.parametrize("model_type", TYPES)
def test_params_analytic(model_type):
    assert model_complexity(model_type, (256, 192), 17)["params"] == PUBLISHED_PARAMS[model_type]
    # One joint fewer removes one input-width kernel and a bias: 41 (40-wide heads), 31 for naive (30 wide).
    fewer = 31 if model_type == "naive_litehrnet_18" else 41
    assert model_complexity(model_type, (256, 256), 16)["params"] == PUBLISHED_PARAMS[model_type] - fewer
    # Parameters do not depend on the input size.
    assert model_complexity(model_type, (384, 288), 17)["params"] == PUBLISHED_PARAMS[model_type]


@pytest.mark.parametrize("model_type", TYPES)
def test_params_match_built_posenet(model_type):
    check = verify_params(model_type, 17)
    assert check["mismatches"] == []
    assert check["analytic"] == check["real"] == PUBLISHED_PARAMS[model_type]
    assert check["ok"]


def test_aliases_configs_and_custom_config():
    assert model_complexity("lite_18") == model_complexity("litehrnet_18")
    by_config = model_complexity(get_config("naive"), "256x192")
    assert by_config["official_flops"] == model_complexity("naive_litehrnet_18")["official_flops"]
    assert by_config["model_type"] is None
    # A smaller custom architecture costs less.
    cfg = get_config("litehrnet_18")
    for stage in cfg["stages"]:
        stage["num_modules"] = 1
    assert model_complexity(cfg)["macs"] < model_complexity("litehrnet_18")["macs"]


def test_bad_inputs():
    with pytest.raises(ValueError, match="multiples of 32"):
        model_complexity("litehrnet_18", (250, 192))
    with pytest.raises(ValueError, match="HxW"):
        parse_input_hw("256")
    with pytest.raises(ModelTypeError, match="valid model types"):
        model_complexity("litehrnet_99")
    with pytest.raises(ValueError, match="num_joints"):
        model_complexity("litehrnet_18", num_joints=0)


def test_model_info_script_json():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "model_info.py"), "--target_res",
                          "256x256", "--num_joints", "16", "--model_type", "naive", "lite_30", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True).stdout
    rows = {r["model_type"]: r for r in json.loads(out)}
    assert set(rows) == {"naive_litehrnet_18", "litehrnet_30"}
    assert rows["naive_litehrnet_18"]["params"] == 760_365 - 31
    assert rows["naive_litehrnet_18"]["published_flops_m"] == 259.6
    assert abs(rows["naive_litehrnet_18"]["official_flops_m"] - 259.6) < 0.05


def test_model_info_script_rejects_bad_size():
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "model_info.py"), "--target_res", "250x192"],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert proc.returncode == 2 and "multiples of 32" in proc.stderr
