"""create_model / list_models, the published checkpoints (URL, input size, joints, sha256) and load_checkpoint."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import yaml

from ..checkpoint.download import download
from ..checkpoint.io import read_checkpoint
from ..errors import CheckpointError
from .configs import MODEL_CONFIGS, ModelTypeError, canonical_model_type, get_config, validate_config
from .layers import conv_implementation
from .inputs import check_input_size as check_size
from .litehrnet import PoseNet
from .weights import load_weights

BASE_URL = "https://download.mindspore.cn/vision/litehrnet/ckpts/"


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A checkpoint published by the earlier MindSpore port (its own protocol: GT boxes, no flip)."""
    name: str
    model_type: str
    dataset: str
    input_size: tuple  # (height, width)
    num_joints: int
    metric: str
    value: float
    sha256: str = None  # not published; downloads say they cannot verify

    @property
    def url(self):
        return BASE_URL + self.name + ".ckpt"


def _published():
    coco = [("naive_litehrnet_18", 256, 0.608), ("wider_naive_litehrnet_18", 256, 0.643),
            ("litehrnet_18", 256, 0.624), ("litehrnet_18", 384, 0.668),
            ("litehrnet_30", 256, 0.655), ("litehrnet_30", 384, 0.698)]
    mpii = [("naive_litehrnet_18", 0.842), ("wider_naive_litehrnet_18", 0.859),
            ("litehrnet_18", 0.842), ("litehrnet_30", 0.861)]
    out = {}
    for model, h, ap in coco:
        size = (256, 192) if h == 256 else (384, 288)
        name = f"{model}_coco_{size[0]}x{size[1]}"
        out[name] = PublishedCheckpoint(name, model, "coco", size, 17, "AP", ap)
    for model, mean in mpii:
        name = f"{model}_mpii_256x256"
        out[name] = PublishedCheckpoint(name, model, "mpii", (256, 256), 16, "PCKh@0.5", mean)
    return out


PUBLISHED = _published()


def list_models():
    """Canonical model type names (aliases of the earlier port are accepted everywhere too)."""
    return list(MODEL_CONFIGS)


def list_pretrained():
    """Names of the published checkpoints, usable as ``pretrained=`` or ``--checkpoint``."""
    return list(PUBLISHED)


def default_checkpoint_dir():
    """Where downloads go: $LITEHRNET_CKPT_DIR, else the repository's ckpts/, else ~/.cache/litehrnet."""
    env = os.environ.get("LITEHRNET_CKPT_DIR")
    if env:
        return env
    repo_ckpts = Path(__file__).resolve().parents[3] / "ckpts"
    if repo_ckpts.is_dir():
        return str(repo_ckpts)
    return str(Path.home() / ".cache" / "litehrnet")


def resolve_checkpoint(path_or_name, ckpt_dir=None):
    """A local file path for a file, a published checkpoint name, or an http(s) URL (downloaded)."""
    ref = os.fspath(path_or_name)
    if os.path.isfile(ref):
        return ref
    name = ref[:-5] if ref.endswith(".ckpt") else ref
    if name in PUBLISHED or ref.startswith(("http://", "https://")):
        entry = PUBLISHED.get(name)
        url = entry.url if entry else ref
        return download(url, ckpt_dir or default_checkpoint_dir(), sha256=entry.sha256 if entry else None)
    raise CheckpointError(f"{ref}: no such file, and not a published checkpoint name or URL "
                          f"(published: {', '.join(PUBLISHED)})")


def load_checkpoint(net, path_or_name, reset_head=False, verbose=True):
    """Load a checkpoint (a file, or a published name / URL that is downloaded) into ``net``, strictly."""
    path = resolve_checkpoint(path_or_name)
    weights, _, _ = read_checkpoint(path)
    load_weights(net, weights, source=path, reset_head=reset_head, verbose=verbose)
    return net


def load_config_file(path):
    """An architecture config from a .json or .yaml file (see README: custom widths and depths)."""
    with open(path) as f:
        if str(path).endswith((".yaml", ".yml")):
            return yaml.safe_load(f)
        return json.load(f)


def _resolve_config(model_type):
    if isinstance(model_type, dict):
        return "custom", validate_config(model_type)
    if isinstance(model_type, (str, os.PathLike)) and str(model_type).endswith((".json", ".yaml", ".yml")):
        if not os.path.isfile(model_type):
            raise ModelTypeError(f"{model_type}: architecture config file not found")
        return "custom", validate_config(load_config_file(model_type))
    name = canonical_model_type(model_type)
    return name, get_config(name)


def model_family(model_type):
    """The network class a model type builds (each family states its own input-size rule)."""
    _resolve_config(model_type)
    return PoseNet


def check_input_size(model_type, height, width):
    """One-line ValueError when the model type cannot take (height, width) input (its family's multiple)."""
    family = model_family(model_type)
    check_size(height, width, family.input_multiple)


def default_conv_impl():
    """'fast' on CPU (MindSpore's 3x3 CPU convolutions use a slow reference kernel), else 'native'."""
    return "fast" if ms.get_context("device_target") == "CPU" else "native"


def create_model(model_type="litehrnet_18", num_joints=17, pretrained=None, conv_impl="auto",
                 reset_head=False):
    """Build a Lite-HRNet pose network and optionally load weights.

    model_type: a name from ``list_models()`` (or an alias such as ``lite_18``), an
    architecture config dict, or a .json/.yaml file holding one. pretrained: a checkpoint
    file, a published checkpoint name (``list_pretrained()``) or a URL. conv_impl: 'auto'
    (fast on CPU), 'fast' or 'native'; both compute the same function with the same
    parameter names. reset_head: when the checkpoint has another joint count, keep the
    fresh final layer instead of failing (fine-tuning on a new keypoint set).
    """
    name, config = _resolve_config(model_type)
    impl = default_conv_impl() if conv_impl == "auto" else conv_impl
    with conv_implementation(impl):
        net = PoseNet(config, num_joints=num_joints, model_type=name)
    net.conv_impl = impl
    if pretrained:
        load_checkpoint(net, pretrained, reset_head=reset_head)
    return net
