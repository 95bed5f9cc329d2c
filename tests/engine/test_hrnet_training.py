"""HRNet training: the official HRNet recipe as preset, --pretrained_backbone, targets at the head's stride."""
import json

import numpy as np
import pytest
import yaml

import litehrnet
from conftest import ROOT, run_script, shared_path
from litehrnet.commands.train import check_flags, config_from_args, parse_args
from litehrnet.data.demo import ensure_demo_dataset
from litehrnet.engine.config import make_config
from litehrnet.checkpoint.hrnet_weights import read_pose_weights

TINY_YAML = ROOT / "src" / "litehrnet" / "configs" / "models" / "hrnet_tiny.yaml"


def test_hrnet_recipe_is_the_preset_of_the_hrnet_family():
    for dataset, size in (("coco", (256, 192)), ("mpii", (256, 256)), ("custom", (256, 192))):
        for model in ("hrnet_w32", "hrnet_w48", "light_hrnet", str(TINY_YAML)):
            c = make_config(dataset, model_type=model)
            assert (c.lr, c.epochs, c.milestones, c.batch_size, c.warmup_iters) == (1e-3, 210, (170, 200), 32, 0)
            assert c.input_size_hw == size
    lite = make_config("coco", model_type="litehrnet_18")
    assert (lite.lr, lite.batch_size, lite.warmup_iters) == (2e-3, 64, 500)
    assert make_config("coco", model_type="hrnet_w32", warmup_iters=500).warmup_iters == 500  # mmpose's warm-up
    assert make_config("coco", model_type="hrnet_w32", lr=5e-4).lr == 5e-4
    demo = make_config("demo", model_type="hrnet_w32")  # the demo keeps its small preset
    assert (demo.batch_size, demo.lr, demo.input_size_hw) == (16, 4e-3, (128, 96))
    args = parse_args(["--model_type", "hrnet_w32", "--dataset", "mpii", "--pretrained_backbone", "x.pth"])
    c = config_from_args(args)
    assert c.pretrained_backbone == "x.pth" and c.input_size_hw == (256, 256) and c.lr == 1e-3
    with pytest.raises(ValueError, match="x.pth: no such file"):
        check_flags(c)


def test_light_hrnet_sizes_follow_its_own_multiple():
    make_config("coco", model_type="light_hrnet", input_size_hw=(72, 56))  # multiples of 8 (2 branches)
    with pytest.raises(ValueError, match="multiples of 8"):
        make_config("coco", model_type="light_hrnet", input_size_hw=(68, 56))
    with pytest.raises(ValueError, match="multiples of 32"):
        make_config("coco", model_type="hrnet_w32", input_size_hw=(72, 56))


def test_pretrained_backbone_conflicts_are_refused():
    with pytest.raises(ValueError, match="not both"):
        make_config("coco", model_type="hrnet_w32", pretrained="a.ckpt", pretrained_backbone="b.pth")
    with pytest.raises(ValueError, match="not both"):
        make_config("coco", model_type="hrnet_w32", resume="auto", pretrained_backbone="b.pth")
    with pytest.raises(ValueError, match="HRNet family"):
        make_config("coco", model_type="litehrnet_18", pretrained_backbone="b.pth")


@pytest.mark.parametrize("name", ["tiny_cls_timm.safetensors", "tiny_cls_mindcv.ckpt", "tiny_cls_official.pth"])
def test_create_model_with_pretrained_backbone(name):
    path = shared_path("fixtures", "hrnet", "tiny", name)
    official, _ = read_pose_weights(shared_path("fixtures", "hrnet", "tiny", "tiny_official.pth"))
    net = litehrnet.create_model(str(TINY_YAML), num_joints=17, pretrained_backbone=str(path), conv_impl="native")
    params = {p.name: p.asnumpy() for p in net.get_parameters()}
    for k, v in params.items():
        if k.startswith("backbone."):
            np.testing.assert_array_equal(v, official[k], err_msg=k)  # the same backbone as the pose fixture
    assert "\n" not in net.pretrained_report and "dropped: " in net.pretrained_report and name in net.pretrained_report
    gray = litehrnet.create_model(str(TINY_YAML), pretrained_backbone=str(path), n_channels_in=1, conv_impl="native")
    conv1 = {p.name: p.asnumpy() for p in gray.get_parameters()}["backbone.conv1.weight"]
    np.testing.assert_allclose(conv1, official["backbone.conv1.weight"].sum(1, keepdims=True), rtol=1e-6, atol=1e-7)
    with pytest.raises(litehrnet.ModelTypeError, match="HRNet family"):
        litehrnet.create_model("litehrnet_18", pretrained_backbone=str(path))
    with pytest.raises(ValueError, match="not both"):
        litehrnet.create_model(str(TINY_YAML), pretrained=str(path), pretrained_backbone=str(path))


def test_load_errors_describe_both_sides_as_hrnet():
    path = shared_path("fixtures", "hrnet", "tiny", "tiny_official.pth")
    net = litehrnet.create_model("light_hrnet", n_channels=8, conv_impl="native")
    with pytest.raises(litehrnet.CheckpointError) as err:
        litehrnet.load_checkpoint(net, str(path))
    message = str(err.value)
    assert "\n" not in message
    assert "the file holds a custom HRNet (width 4, stage modules (1, 1, 1)) (17 joints)" in message
    assert "you built a light_hrnet (width 8, 2 stages, 17 joints)" in message
    w32 = litehrnet.create_model("hrnet_w32", num_joints=16, conv_impl="native")
    with pytest.raises(litehrnet.CheckpointError, match=r"you built HRNet-W32 \(16 joints\)"):
        litehrnet.load_checkpoint(w32, str(path))


@pytest.mark.slow
def test_tiny_full_resolution_hrnet_trains_from_an_imagenet_backbone(tmp_path):
    """train.py end to end: a tiny HRNet with the full-resolution head, its backbone from a timm file."""
    backbone = shared_path("fixtures", "hrnet", "tiny", "tiny_cls_timm.safetensors")
    ensure_demo_dataset(tmp_path / "data", {"train": 12, "val": 4})
    config = yaml.safe_load(TINY_YAML.read_text())
    config["head"] = dict(type="full_resolution", sigma=3)
    (tmp_path / "tiny_full.yaml").write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    result = run_script(["src/train.py", "--dataset", "custom", "--data_root", str(tmp_path / "data"),
                         "--model_type", str(tmp_path / "tiny_full.yaml"), "--target_res", "64x64",
                         "--train_batch", "4", "--epochs", "1", "--pretrained_backbone", str(backbone),
                         "--checkpoint_path", str(out), "--progress", "false"])
    assert result.returncode == 0, result.stderr[-3000:]
    log = (out / "train.log").read_text() if (out / "train.log").is_file() else result.stdout + result.stderr
    assert "backbone loaded" in log and "dropped: " in log
    assert "heatmaps 64x64 (stride 1, sigma 3)" in log
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["warmup_iters"] == 0 and saved["pretrained_backbone"] == str(backbone)
    weights = litehrnet.read_checkpoint(str(out / "last.ckpt"))[0]
    assert weights["keypoint_head.final_layer.weight"].shape == (17, 4, 1, 1)


@pytest.mark.slow
def test_msrun_two_cpu_workers_train_a_tiny_hrnet_to_identical_weights(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path
    ensure_demo_dataset(tmp_path / "data", {"train": 12, "val": 4})
    out, logs = tmp_path / "dist", tmp_path / "logs"
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               LOG_DIR=str(logs))
    cmd = ["bash", "scripts/run_distribute_train.sh", "2", "--dataset", "custom", "--data_root", str(tmp_path / "data"),
           "--model_type", str(TINY_YAML), "--target_res", "64x64", "--train_batch", "4", "--epochs", "1",
           "--checkpoint_path", str(out), "--progress", "false"]
    result = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prints = []
    for rank in (0, 1):
        text = (logs / f"worker_{rank}.log").read_text()
        prints += [line.split()[-1] for line in text.splitlines() if "weights fingerprint" in line]
    assert len(prints) == 2 and prints[0] == prints[1]
    saved = json.loads((out / "config.json").read_text())
    assert saved["lr"] == 1e-3 and saved["batch_size"] == 4
    assert litehrnet.read_checkpoint(str(out / "last.ckpt"))[0]["keypoint_head.final_layer.weight"].shape == (17, 4, 1, 1)
