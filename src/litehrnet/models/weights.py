"""Weights to network, strictly: every tensor of the network present with its shape, nothing else.

MindSpore's ``load_param_into_net`` is never used (it silently suffix-matches and ignores missing
names). A mismatch is one `CheckpointError` naming the first offenders and describing both the file's
architecture and the network's (`describe_weights`, `describe_network`).
"""
import os
import re
import warnings

import mindspore as ms
import numpy as np

from ..checkpoint.hrnet_weights import describe_hrnet_weights, read_backbone_weights, summarize_dropped
from ..errors import CheckpointError
from .configs import MODEL_CONFIGS
from .fold import refold


class HeadResetWarning(UserWarning):
    """A checkpoint of another joint count was loaded with reset_head: only its final layer was left fresh."""


def describe_weights(weights):
    """A short description of the architecture a set of weights belongs to (for error messages)."""
    if any(k.startswith(("backbone.layer1.", "backbone.transition1.")) for k in weights):
        return describe_hrnet_weights(weights)  # the HRNet family (official, custom, light_hrnet)
    if not any(k.startswith("backbone.") for k in weights):
        return "not a Lite-HRNet or HRNet checkpoint"
    stages = {}
    for k in weights:
        m = re.match(r"^backbone\.stages\.(\d+)\.(\d+)\.", k)
        if m:
            stages.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    modules = tuple(len(stages[s]) for s in sorted(stages))
    lite = any("cross_resolution_weighting" in k for k in weights)
    widths = []
    for i in range(8):
        w = weights.get(f"backbone.head_layer.projects.{i}.depthwise_conv.conv.weight")
        if w is None:
            break
        widths.append(int(w.shape[0]))
    widths = tuple(widths[::-1])
    head = weights.get("keypoint_head.final_layer.weight")
    joints = f"{head.shape[0]} joints" if head is not None else "no keypoint head"
    for name, cfg in MODEL_CONFIGS.items():
        if (tuple(s["num_modules"] for s in cfg["stages"]) == modules
                and tuple(cfg["stages"][-1]["num_channels"]) == widths
                and (cfg["stages"][0]["module_type"] == "lite") == lite):
            return f"a {name} ({joints})"
    kind = "conditional-channel-weighting" if lite else "naive"
    return f"a custom {kind} Lite-HRNet (modules {modules}, widths {widths}, {joints})"


def describe_network(net):
    """The same description for a built network."""
    return describe_weights({p.name: p for p in net.get_parameters()})


def _first(names, n=3):
    names = sorted(names)
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def load_weights(net, weights, source="weights", reset_head=False, verbose=True):
    """Strictly copy ``weights`` (project names -> arrays) into ``net``.

    With ``reset_head`` a keypoint head of a different joint count is left at its fresh
    initialisation (fine-tuning on another keypoint set); anything else must match exactly.
    """
    own = {p.name: p for p in net.get_parameters()}
    missing = [n for n in own if n not in weights]
    unexpected = [n for n in weights if n not in own]
    wrong = [n for n in own if n in weights and tuple(weights[n].shape) != tuple(own[n].shape)]
    skipped = []
    if reset_head:
        skipped = [n for n in wrong if n.startswith("keypoint_head.final_layer.")]
        wrong = [n for n in wrong if n not in skipped]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing ({_first(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected ({_first(unexpected)})")
        if wrong:
            n = wrong[0]
            parts.append(f"{len(wrong)} wrongly shaped ({n}: file {tuple(weights[n].shape)}, "
                         f"network {tuple(own[n].shape)}{'...' if len(wrong) > 1 else ''})")
        raise CheckpointError(f"{source}: does not fit the network: {'; '.join(parts)}; "
                              f"the file holds {describe_weights(weights)}, you built {describe_network(net)}")
    for name, param in own.items():
        if name in skipped:
            continue
        param.set_data(ms.Tensor(np.asarray(weights[name]), dtype=param.dtype))
    refold(net)  # an eval-mode network's folded BatchNorms follow the new weights
    if skipped and verbose:
        old = weights["keypoint_head.final_layer.weight"].shape[0]
        warnings.warn(f"{source}: keypoint head has {old} joints, the network {net.num_joints}: "
                      f"the final layer was re-initialised, everything else loaded", HeadResetWarning, stacklevel=2)
    return skipped


def load_backbone(net, path):
    """Strictly load an HRNet backbone file into ``net``; the head keeps its initialisation.

    Every ``backbone.`` parameter of the network must be in the file with its shape, and the file may hold
    no other backbone tensor. conv1 is adapted to the network's input channels. Returns the one-line
    report of what was dropped from the file.
    """
    own = {p.name: p for p in net.get_parameters()}
    conv1 = own.get("backbone.conv1.weight")
    n_channels_in = int(conv1.shape[1]) if conv1 is not None else 3
    backbone, dropped = read_backbone_weights(path, n_channels_in)
    # the strict loader wants every parameter: the head is given its own current values
    weights = dict(backbone, **{n: p.asnumpy() for n, p in own.items() if not n.startswith("backbone.")})
    load_weights(net, weights, source=os.fspath(path), verbose=False)
    return f"{path}: backbone loaded ({len(backbone)} tensors); dropped: {summarize_dropped(dropped)}"
