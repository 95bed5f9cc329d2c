"""HRNet weights from files: pose checkpoints of every scheme, and ImageNet backbones for initialisation.

Pure functions return numpy arrays under the project's names (see ``formats.hrnet_to_project``):

- ``read_pose_weights(path)``: an official / simple-HRNet / official-training / mmpose 0.x / mmpose 1.x /
  project HRNet pose file -> (weights, description);
- ``read_backbone_weights(path, n_channels_in=3)``: an ImageNet classification HRNet (official
  HRNet-Image-Classification or timm ``.pth``, timm ``.safetensors``, mindcv ``.ckpt``), or a pose file
  whose backbone is wanted -> (``backbone.*`` weights, names dropped);
- ``load_backbone(net, path)``: strictly loads every ``backbone.`` tensor into a built network and leaves
  the rest (the keypoint head) as initialised.
Formats and schemes are recognised by content, never by file name.
"""
import os
import re
from collections import Counter

import numpy as np

from .formats import HRNET_BACKBONE_ROOTS, hrnet_to_project, is_hrnet
from .io import CheckpointError, read_tensors
from .safetensors_reader import is_safetensors, read_safetensors

__all__ = ["read_pose_weights", "read_backbone_weights", "describe_hrnet_weights",
           "summarize_dropped"]

_SCHEMES = {
    "hrnet-official": "official / simple-HRNet state dict",
    "hrnet-official-train": "official training checkpoint (its 'state_dict', 'module.' prefix removed; "
                            "'best_state_dict', which holds the same weights, and the optimizer are not read)",
    "hrnet-mmpose0": "mmpose 0.x checkpoint (backbone., keypoint_head.)",
    "hrnet-mmpose1": "mmpose 1.x checkpoint (backbone., head.)",
    "hrnet-mindspore": "MindSpore-named HRNet state dict",
    "project": "this project's checkpoint",
    "hrnet-imagenet": "ImageNet classification HRNet",
}
_BN_LEAVES = ("gamma", "beta", "moving_mean", "moving_variance")


def _read_file(path):
    path = os.fspath(path)
    if is_safetensors(path):
        try:
            return read_safetensors(path)
        except ValueError as err:
            raise CheckpointError(str(err)) from None
    return read_tensors(path)


def _convert(path):
    tensors = _read_file(path)
    if not is_hrnet(tensors):
        raise CheckpointError(f"{path}: not an HRNet checkpoint (no 'layer1' tensors under any known prefix)")
    return hrnet_to_project(tensors)


def describe_hrnet_weights(weights):
    """A short description of the HRNet that project-named ``weights`` belong to, e.g. 'HRNet-W32 (17 joints)',
    'a custom HRNet (width 4, stage modules (1, 1, 1)) (17 joints)' or 'a light_hrnet (width 8, 2 stages, ...)'."""
    branch0 = weights.get("backbone.transition1.0.0.weight")
    if branch0 is None:  # the top branch keeps stage 1's width (light_hrnet): its first block says it
        branch0 = weights.get("backbone.stage2.0.branches.0.0.conv1.weight")
    width = int(branch0.shape[0]) if branch0 is not None else None
    modules = tuple(len({m.group(1) for m in (re.match(rf"^backbone\.stage{s}\.(\d+)\.", k) for k in weights) if m})
                    for s in (2, 3, 4))
    head = weights.get("keypoint_head.final_layer.weight")
    joints = f"{head.shape[0]} joints" if head is not None else "no keypoint head"
    conv1 = weights.get("backbone.conv1.weight")
    channels = "" if conv1 is None or conv1.shape[1] == 3 else f", {conv1.shape[1]} input channels"
    light = "backbone.layer1.0.conv1.weight" in weights and not any(
        k in weights for k in ("backbone.conv2.weight", "backbone.layer1.0.conv3.weight"))
    if light:  # one stem conv and BasicBlocks in stage 1
        stages = 1 + sum(1 for m in modules if m)
        return f"a light_hrnet (width {width}, {stages} stages, {joints}{channels})"
    used = modules[:max([i + 1 for i, m in enumerate(modules) if m], default=0)]
    name = f"HRNet-W{width}" if modules == (1, 4, 3) else f"a custom HRNet (width {width}, stage modules {used})"
    return f"{name} ({joints}{channels})"


def read_pose_weights(path):
    """A pose HRNet file of any scheme -> (weights under the project names, one-line description).

    Optimizer state and other training records beside the weights are not returned. An ImageNet
    classification file is refused here (it has no pose head: use it with ``read_backbone_weights``).
    """
    weights, scheme, other, classification_only = _convert(path)
    if scheme == "hrnet-imagenet":
        raise CheckpointError(f"{path}: an ImageNet classification HRNet ({len(classification_only)} "
                              "classification-only tensors), not a pose checkpoint: pass it as "
                              "--pretrained_backbone to initialise the backbone")
    description = f"{_SCHEMES[scheme]}: {describe_hrnet_weights(weights)}"
    if other:
        description += f"; {len(other)} training-state tensors ignored"
    return weights, description


def _conv_of(bn_module):
    """The convolution a BatchNorm follows: ``x.bnK`` after ``x.convK``, ``x.<d>`` after ``x.<d-1>``."""
    parent, _, last = bn_module.rpartition(".")
    conv = f"conv{last[2:]}" if last.startswith("bn") else str(int(last) - 1)
    return f"{parent}.{conv}" if parent else conv


def _bn_of(conv_module):
    """The BatchNorm that follows a convolution (the inverse of ``_conv_of``)."""
    parent, _, last = conv_module.rpartition(".")
    bn = f"bn{last[4:]}" if last.startswith("conv") else str(int(last) + 1)
    return f"{parent}.{bn}" if parent else bn


def _check_complete(path, backbone):
    """Every backbone part is present, and every convolution has its BatchNorm (all four tensors) and back.

    In HRNet's backbone every convolution is followed by a BatchNorm, so a file cut down by hand (or a
    tensor lost in conversion) is found without the network.
    """
    roots = {k.split(".", 2)[1] for k in backbone}
    missing_roots = [r for r in HRNET_BACKBONE_ROOTS if r not in roots]
    bns = {k.rsplit(".", 1)[0] for k in backbone if k.rsplit(".", 1)[1] in _BN_LEAVES}
    convs = {k[: -len(".weight")] for k in backbone if k.endswith(".weight") and backbone[k].ndim == 4}
    wanted = {f"{_conv_of(m)}.weight" for m in bns}
    wanted |= {f"{m}.{leaf}" for m in bns | {_bn_of(c) for c in convs} for leaf in _BN_LEAVES}
    missing = sorted(wanted - set(backbone))
    if missing_roots or missing:
        what = [f"no {', '.join(missing_roots)}"] if missing_roots else []
        if missing:
            what.append(f"{len(missing)} tensors missing ({', '.join(missing[:3])}"
                        f"{' ...' if len(missing) > 3 else ''})")
        raise CheckpointError(f"{path}: incomplete HRNet backbone: {'; '.join(what)}")


def _adapt_first_conv(path, backbone, n_channels_in):
    """Adapt ``conv1`` to ``n_channels_in`` inputs: summed over the file's input channels, shared equally.

    For one channel (grayscale) this is the sum over RGB; in general each of the n channels gets sum/n,
    which gives the same response as the original conv on an image whose channels are all equal.
    """
    weight = backbone["backbone.conv1.weight"]
    if weight.ndim != 4:
        raise CheckpointError(f"{path}: conv1.weight has shape {weight.shape}, not a 2-D convolution")
    if isinstance(n_channels_in, bool) or not isinstance(n_channels_in, (int, np.integer)) or n_channels_in < 1:
        raise CheckpointError(f"n_channels_in must be a positive integer, got {n_channels_in!r}")
    if n_channels_in == weight.shape[1]:
        return
    summed = weight.astype(np.float64).sum(axis=1, keepdims=True) / n_channels_in
    backbone["backbone.conv1.weight"] = np.repeat(summed, n_channels_in, axis=1).astype(weight.dtype)


def read_backbone_weights(path, n_channels_in=3):
    """An HRNet backbone for initialisation -> (``backbone.*`` weights, names dropped).

    Reads the ImageNet classification HRNet of the official code, timm (.pth or .safetensors) and
    mindcv (.ckpt), and the backbone of any pose file. The dropped names (original spelling) are the
    classification-only tensors, or a pose file's ``keypoint_head.final_layer.*``; ``summarize_dropped``
    puts them in one line. Every backbone tensor is required; with ``n_channels_in`` other than the
    file's, ``conv1`` is adapted.
    """
    weights, _, _, classification_only = _convert(path)
    unknown = sorted(k for k in weights if not k.startswith(("backbone.", "keypoint_head.")))
    if unknown:
        raise CheckpointError(f"{path}: {len(unknown)} tensors that belong to no HRNet part "
                              f"({', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''})")
    backbone = {k: v for k, v in weights.items() if k.startswith("backbone.")}
    dropped = list(classification_only) + sorted(k for k in weights if k.startswith("keypoint_head."))
    _check_complete(path, backbone)
    _adapt_first_conv(path, backbone, n_channels_in)
    return backbone, dropped


def summarize_dropped(dropped):
    """One line naming dropped tensors by part, e.g. 'incre_modules.* (40), classifier.* (2)'."""
    if not dropped:
        return "nothing dropped"
    parts = Counter()
    for name in dropped:
        body = name[len("backbone."):] if name.startswith("backbone.") else name
        m = re.match(r"^(stage4\.\d+\.fuse_layers)\.\d+\.", body)
        parts[f"{m.group(1)}.1-3.*" if m else body.split(".", 1)[0] + ".*"] += 1
    return ", ".join(f"{part} ({n})" for part, n in parts.items())
