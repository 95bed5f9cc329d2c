"""create_model / list_models, the published checkpoints (URL, input size, joints, sha256) and load_checkpoint."""
import json
import os
from dataclasses import dataclass
from pathlib import Path

import mindspore as ms
import yaml

from ..checkpoint.download import download, url_cache_dir
from ..checkpoint.io import read_checkpoint, read_tensors
from ..errors import CheckpointError
from .configs import MODEL_CONFIGS, ModelTypeError, canonical_model_type, get_config, validate_config
from .hrnet import HRNetPoseNet
from .hrnet_config import HRNET_CONFIGS, apply_overrides, is_hrnet_config
from .hrnet_config import input_multiple as hrnet_input_multiple
from .hrnet_config import output_stride as hrnet_output_stride
from .inputs import check_input_size as check_size
from .layers import conv_implementation
from .litehrnet import PoseNet
from .weights import load_backbone, load_weights

BASE_URL = "https://download.mindspore.cn/vision/litehrnet/ckpts/"
MMPOSE_URL = "https://download.openmmlab.com/mmpose/"
OFFICIAL_HRNET_ZOO = ("the model zoo links (Google Drive / OneDrive) in the README of "
                      "https://github.com/leoxiaobin/deep-high-resolution-net.pytorch")
_GT_NO_FLIP = "the earlier port's protocol: ground-truth boxes, no flip test"
_DET_FLIP = "COCO val2017, detector boxes, flip test"
_MPII_VAL = "MPII val"


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A published checkpoint: where it is, what it holds and its published accuracy.

    source: 'mindspore' (the earlier MindSpore port's server; its names have no suffix), 'mmpose' (mmpose
    0.x model zoo, names end in ``_mmpose``), 'mmpose1' (``_mmpose1``) or 'official' (``_official``: the
    official HRNet files, published only on Google Drive / OneDrive, which cannot be downloaded here).
    sha256 is the full digest or, for mmpose files, the 8 hex digits their file names carry (its start).
    """
    name: str
    model_type: str
    dataset: str
    input_size: tuple  # (height, width)
    num_joints: int
    metric: str
    value: float  # None when the source publishes no figure for this file
    sha256: str = None  # None: not published; downloads say they cannot verify
    source: str = "mindspore"
    file_url: str = None  # the download address, when not BASE_URL + name + ".ckpt"
    filename: str = None  # the file name of a file that cannot be downloaded
    where: str = None  # where to get a file that cannot be downloaded
    protocol: str = _GT_NO_FLIP  # how ``value`` was measured

    @property
    def url(self):
        """The download address, or None for a file that cannot be downloaded (see ``where``)."""
        if self.where:
            return None
        return self.file_url or BASE_URL + self.name + ".ckpt"


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


def _zoo_entry(model_type, dataset, size, value, source, path=None, filename=None):
    """One mmpose (``path`` under MMPOSE_URL) or official (``filename``, not downloadable) HRNet-family file."""
    h, w = size
    name = f"{model_type}_{dataset}_{h}x{w}_{source}"
    metric, joints = ("AP", 17) if dataset == "coco" else ("PCKh@0.5", 16)
    protocol = _DET_FLIP if dataset == "coco" else _MPII_VAL
    if source == "official":
        return PublishedCheckpoint(name, model_type, dataset, size, joints, metric, value, source=source,
                                   filename=filename, where=OFFICIAL_HRNET_ZOO, protocol=protocol)
    prefix = path.rsplit("-", 1)[1].split("_", 1)[0]  # the 8 hex digits after the last '-' of the file name
    return PublishedCheckpoint(name, model_type, dataset, size, joints, metric, value, sha256=prefix,
                               source=source, file_url=MMPOSE_URL + path, protocol=protocol)


def _zoo():
    """The HRNet and Lite-HRNet files of the mmpose model zoo, and the official HRNet files (Google Drive only).

    Figures are the sources' own tables (../shared/spec/hrnet_checkpoints.md); None where none is given.
    """
    hr0, lite0 = "top_down/hrnet/", "top_down/litehrnet/"
    hr1 = "v1/body_2d_keypoint/topdown_heatmap/coco/td-hm_hrnet-w"
    c1, c2, mp = (256, 192), (384, 288), (256, 256)
    entries = [
        _zoo_entry("hrnet_w32", "coco", c1, None, "mmpose", hr0 + "hrnet_w32_coco_256x192-c78dce93_20200708.pth"),
        _zoo_entry("hrnet_w48", "coco", c1, None, "mmpose", hr0 + "hrnet_w48_coco_256x192-b9e0b3ab_20200708.pth"),
        _zoo_entry("hrnet_w32", "mpii", mp, 0.900, "mmpose", hr0 + "hrnet_w32_mpii_256x256-6c4f923f_20200812.pth"),
        _zoo_entry("hrnet_w48", "mpii", mp, 0.901, "mmpose", hr0 + "hrnet_w48_mpii_256x256-92cab7bd_20200812.pth"),
        _zoo_entry("litehrnet_18", "coco", c1, 0.642, "mmpose",
                   lite0 + "litehrnet18_coco_256x192-6bace359_20211230.pth"),
        _zoo_entry("litehrnet_18", "coco", c2, 0.676, "mmpose",
                   lite0 + "litehrnet18_coco_384x288-8d4dac48_20211230.pth"),
        _zoo_entry("litehrnet_30", "coco", c1, 0.676, "mmpose",
                   lite0 + "litehrnet30_coco_256x192-4176555b_20210626.pth"),
        _zoo_entry("litehrnet_30", "coco", c2, 0.700, "mmpose",
                   lite0 + "litehrnet30_coco_384x288-a3aef5c4_20210626.pth"),
        _zoo_entry("litehrnet_18", "mpii", mp, None, "mmpose",
                   lite0 + "litehrnet18_mpii_256x256-cabd7984_20210623.pth"),
        _zoo_entry("litehrnet_30", "mpii", mp, None, "mmpose",
                   lite0 + "litehrnet30_mpii_256x256-faae8bd8_20210622.pth"),
        _zoo_entry("hrnet_w32", "coco", c1, 0.749, "mmpose1", hr1 + "32_8xb64-210e_coco-256x192-81c58e40_20220909.pth"),
        _zoo_entry("hrnet_w32", "coco", c2, 0.761, "mmpose1", hr1 + "32_8xb64-210e_coco-384x288-ca5956af_20220909.pth"),
        _zoo_entry("hrnet_w48", "coco", c1, 0.756, "mmpose1", hr1 + "48_8xb32-210e_coco-256x192-0e67c616_20220913.pth"),
        _zoo_entry("hrnet_w48", "coco", c2, 0.767, "mmpose1", hr1 + "48_8xb32-210e_coco-384x288-c161b7de_20220915.pth"),
        _zoo_entry("hrnet_w32", "coco", c1, 0.744, "official", filename="pose_hrnet_w32_256x192.pth"),
        _zoo_entry("hrnet_w32", "coco", c2, 0.758, "official", filename="pose_hrnet_w32_384x288.pth"),
        _zoo_entry("hrnet_w48", "coco", c1, 0.751, "official", filename="pose_hrnet_w48_256x192.pth"),
        _zoo_entry("hrnet_w48", "coco", c2, 0.763, "official", filename="pose_hrnet_w48_384x288.pth"),
        _zoo_entry("hrnet_w32", "mpii", mp, 0.903, "official", filename="pose_hrnet_w32_256x256.pth"),
    ]
    return {e.name: e for e in entries}


PUBLISHED = {**_published(), **_zoo()}

# The names a pose service uses for the official HRNet files (hrnet_w32_256x256: the MPII model, 16 joints).
PRETRAINED_ALIASES = {
    "hrnet_w48_384x288": "hrnet_w48_coco_384x288_official",
    "hrnet_w32_256x192": "hrnet_w32_coco_256x192_official",
    "hrnet_w32_256x256": "hrnet_w32_mpii_256x256_official",
}


def list_models():
    """Canonical model type names (aliases of the earlier port are accepted everywhere too)."""
    return list(MODEL_CONFIGS) + list(HRNET_CONFIGS)


def input_multiple(model_type):
    """What input height and width must be multiples of for ``model_type`` (a name, config or file)."""
    _, config = _resolve_config(model_type)
    return hrnet_input_multiple(config) if is_hrnet_config(config) else PoseNet.input_multiple


def output_stride(model_type):
    """Input pixels per heatmap pixel of ``model_type``'s head (4 official, 2 concat, 1 full resolution)."""
    _, config = _resolve_config(model_type)
    return hrnet_output_stride(config) if is_hrnet_config(config) else 4


def heatmap_sigma(model_type):
    """The heatmap sigma ``model_type``'s config gives (heatmap pixels), or None (the presets' default)."""
    _, config = _resolve_config(model_type)
    return config["head"]["sigma"] if is_hrnet_config(config) else None


def list_pretrained():
    """Names of the published checkpoints, usable as ``pretrained=`` or ``--checkpoint`` (so are the aliases
    in ``PRETRAINED_ALIASES``)."""
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


def _downloadable_alternative(entry):
    """The downloadable file with the same model, data set and input size and the best published figure."""
    key = (entry.model_type, entry.dataset, entry.input_size)
    same = [o for o in PUBLISHED.values() if o.url and (o.model_type, o.dataset, o.input_size) == key]
    best = max(same, key=lambda o: -1.0 if o.value is None else o.value, default=None)
    return best.name if best else None


def resolve_checkpoint(path_or_name, ckpt_dir=None):
    """A local file path for a file, a published checkpoint name (or alias), or an http(s) URL (downloaded).

    A published checkpoint is cached under its file name (``<ckpt_dir>/<name>.ckpt``), any other URL in a
    folder of its own (``<ckpt_dir>/urls/<host>-<hash of the URL>/``), so that it can never take a published
    name's place. A fresh download is read once before it is kept: an unreadable file is deleted, never cached.
    A published file that cannot be downloaded (the official HRNet ones) is taken from the checkpoint
    folder when it was put there; otherwise the error says where to get it and how to pass it.
    """
    ref = os.fspath(path_or_name)
    if os.path.isfile(ref):
        return ref
    name = ref[:-5] if ref.endswith(".ckpt") else ref
    name = PRETRAINED_ALIASES.get(name, name)
    entry = PUBLISHED.get(name)
    folder = ckpt_dir or default_checkpoint_dir()
    if entry is not None and entry.url is None:
        local = os.path.join(folder, entry.filename)
        if os.path.isfile(local):
            return local
        alternative = _downloadable_alternative(entry)
        raise CheckpointError(f"{ref}: {entry.filename} is published only on Google Drive / OneDrive and cannot "
                              f"be downloaded here; get it from {entry.where}, then pass --checkpoint PATH "
                              f"(or put it at {local})"
                              + (f"; downloadable instead: {alternative}" if alternative else ""))
    if entry is not None or ref.startswith(("http://", "https://")):
        if entry is not None:
            return download(entry.url, folder, sha256=entry.sha256, validate=read_tensors)
        return download(ref, url_cache_dir(folder, ref), validate=read_tensors)
    raise CheckpointError(f"{ref}: no such file, and not a published checkpoint name or URL "
                          f"(published: {', '.join(PUBLISHED)}; aliases: {', '.join(PRETRAINED_ALIASES)})")


def load_checkpoint(net, path_or_name, reset_head=False, verbose=True):
    """Load a checkpoint (a file, or a published name / URL that is downloaded) into ``net``, strictly."""
    path = resolve_checkpoint(path_or_name)
    weights, _, _ = read_checkpoint(path)
    load_weights(net, weights, source=path, reset_head=reset_head, verbose=verbose)
    return net


def load_config_file(path):
    """An architecture config from a .json or .yaml file (see README: custom widths and depths).

    A file that is not valid JSON/YAML is a one-line ModelTypeError naming it and the place of the error.
    """
    try:
        with open(path) as f:
            if str(path).endswith((".yaml", ".yml")):
                return yaml.safe_load(f)
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ModelTypeError(f"{path}: not valid JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1} column {mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ModelTypeError(f"{path}: not valid YAML ({problem}{where})") from None
    except UnicodeDecodeError as e:
        raise ModelTypeError(f"{path}: not a text file ({e.reason} at byte {e.start})") from None


def check_model_type(model_type):
    """Refuse an unknown model type or a broken architecture file (one-line ModelTypeError) without building."""
    _resolve_config(model_type)


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
    _, config = _resolve_config(model_type)
    return HRNetPoseNet if is_hrnet_config(config) else PoseNet


def check_input_size(model_type, height, width):
    """One-line ValueError when the model type cannot take (height, width) input (its family's multiple)."""
    family = "this HRNet" if model_family(model_type) is HRNetPoseNet else "Lite-HRNet"
    check_size(height, width, input_multiple(model_type), family)


def default_conv_impl():
    """'fast' on CPU (MindSpore's 3x3 CPU convolutions use a slow reference kernel), else 'native'."""
    return "fast" if ms.get_context("device_target") == "CPU" else "native"


def create_model(model_type="litehrnet_18", num_joints=17, pretrained=None, conv_impl="auto",
                 reset_head=False, pretrained_backbone=None, **overrides):
    """Build a Lite-HRNet pose network and optionally load weights.

    model_type: a name from ``list_models()`` (or an alias such as ``lite_18``), an
    architecture config dict, or a .json/.yaml file holding one. pretrained: a checkpoint
    file, a published checkpoint name (``list_pretrained()``) or a URL. conv_impl: 'auto'
    (fast on CPU), 'fast' or 'native'; both compute the same function with the same
    parameter names. reset_head: when the checkpoint has another joint count, keep the
    fresh final layer instead of failing (fine-tuning on a new keypoint set). overrides: config
    settings, e.g. ``create_model('light_hrnet', n_channels=64, num_stages=2, num_branches=2,
    num_blocks=2, n_channels_in=1)``; ``n_channels_in`` (image channels) applies to every family.
    pretrained_backbone (HRNet family): an ImageNet HRNet file (official or timm .pth/.safetensors,
    mindcv .ckpt) loaded strictly into the backbone, conv1 adapted to n_channels_in; the head keeps its
    initialisation. The one-line report (what was dropped) is ``net.pretrained_report``.
    """
    if pretrained and pretrained_backbone:
        raise ValueError("give pretrained (the whole network) or pretrained_backbone (ImageNet backbone), not both")
    name, config = _resolve_config(model_type)
    if is_hrnet_config(config):
        config = apply_overrides(name, config, overrides)
    elif overrides:
        extra = {k: v for k, v in overrides.items() if k != "n_channels_in"}
        if extra:
            raise ModelTypeError(f"unknown model settings for {name}: {', '.join(sorted(extra))}")
        config = dict(config, n_channels_in=overrides["n_channels_in"])
    impl = default_conv_impl() if conv_impl == "auto" else conv_impl
    with conv_implementation(impl):
        cls = HRNetPoseNet if is_hrnet_config(config) else PoseNet
        net = cls(config, num_joints=num_joints, model_type=name)
    net.conv_impl = impl
    net.pretrained_report = None
    if pretrained:
        load_checkpoint(net, pretrained, reset_head=reset_head)
    if pretrained_backbone:
        if not isinstance(net, HRNetPoseNet):
            raise ModelTypeError(f"pretrained_backbone is for the HRNet family (hrnet_w32, hrnet_w48, light_hrnet, "
                                 f"HRNet configs), not {name}")
        net.pretrained_report = load_backbone(net, pretrained_backbone)
    return net
