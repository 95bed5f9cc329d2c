"""Keypoint-set metadata: names, skeleton, flip pairs, half-body split and OKS sigmas.

COCO-17 and MPII-16 are built in (values as in mmpose's dataset classes); any other COCO-format
keypoint set is described by `from_coco_category`, which infers what the category does not say and
records each guess in `notes` so the training log can print it.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

# Mean of the 17 COCO sigmas: a custom set without sigmas gets COCO-like OKS tolerances on average.
UNIFORM_SIGMA = 0.0669

# Left/right spellings in lower-cased joint names ('left' also covers 'left_' and '_left').
_PREFIXES = (('left', 'right'), ('l_', 'r_'))
_SUFFIXES = (('left', 'right'), ('_l', '_r'))
# ... and in the middle of a name, between separators (MPII-TRB's medial_left_wrist, lateral_right_hip).
_INFIXES = (('_left_', '_right_'), ('_l_', '_r_'))


@dataclass
class KeypointInfo:
    """Everything the pipeline needs to know about one keypoint set (all indices 0-based)."""

    name: str
    joint_names: list
    skeleton: list
    flip_pairs: list
    upper_body_ids: tuple
    lower_body_ids: tuple
    sigmas: np.ndarray
    joint_weights: np.ndarray
    notes: list = field(default_factory=list)

    @property
    def num_joints(self):
        """Number of keypoints K."""
        return len(self.joint_names)


COCO_17 = KeypointInfo(
    name='coco',
    joint_names=['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder',
                 'right_shoulder', 'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist',
                 'left_hip', 'right_hip', 'left_knee', 'right_knee', 'left_ankle', 'right_ankle'],
    skeleton=[[15, 13], [13, 11], [16, 14], [14, 12], [11, 12], [5, 11], [6, 12], [5, 6], [5, 7],
              [6, 8], [7, 9], [8, 10], [1, 2], [0, 1], [0, 2], [1, 3], [2, 4], [3, 5], [4, 6]],
    flip_pairs=[[1, 2], [3, 4], [5, 6], [7, 8], [9, 10], [11, 12], [13, 14], [15, 16]],
    upper_body_ids=tuple(range(0, 11)),
    lower_body_ids=tuple(range(11, 17)),
    sigmas=np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07,
                     .87, .87, .89, .89]) / 10.0,
    joint_weights=np.array([1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2,
                            1.5, 1.5], dtype=np.float32),
)

MPII_16 = KeypointInfo(
    name='mpii',
    joint_names=['right_ankle', 'right_knee', 'right_hip', 'left_hip', 'left_knee', 'left_ankle',
                 'pelvis', 'thorax', 'upper_neck', 'head_top', 'right_wrist', 'right_elbow',
                 'right_shoulder', 'left_shoulder', 'left_elbow', 'left_wrist'],
    skeleton=[[0, 1], [1, 2], [2, 6], [6, 3], [3, 4], [4, 5], [6, 7], [7, 8], [8, 9], [8, 12],
              [12, 11], [11, 10], [8, 13], [13, 14], [14, 15]],
    flip_pairs=[[0, 5], [1, 4], [2, 3], [10, 15], [11, 14], [12, 13]],
    upper_body_ids=tuple(range(7, 16)),
    lower_body_ids=tuple(range(0, 7)),
    sigmas=np.array([.089, .083, .107, .107, .083, .089, .026, .026, .026, .026, .062, .072,
                     .179, .179, .072, .062]),
    joint_weights=np.array([1.5, 1.2, 1., 1., 1.2, 1.5, 1., 1., 1., 1., 1.5, 1.2, 1., 1., 1.2,
                            1.5], dtype=np.float32),
)

BUILTIN = {'coco': COCO_17, 'mpii': MPII_16}


def flip_indices(num_joints, flip_pairs):
    """Permutation that swaps each left/right pair: joints[flip_indices(...)] is the mirrored order."""
    indices = np.arange(num_joints)
    for left, right in flip_pairs:
        indices[left], indices[right] = right, left
    return indices


def infer_flip_pairs(joint_names):
    """Pair joints whose names differ only by a left/right prefix, suffix or middle word
    (left/right, l_/r_, _l/_r, _left_/_right_, _l_/_r_)."""
    index = {n.lower(): i for i, n in enumerate(joint_names)}
    pairs = []
    for i, name in enumerate(n.lower() for n in joint_names):
        candidates = [right + name[len(left):] for left, right in _PREFIXES if name.startswith(left)]
        candidates += [name[:-len(left)] + right for left, right in _SUFFIXES if name.endswith(left)]
        candidates += [name.replace(left, right, 1) for left, right in _INFIXES if left in name]
        j = next((index[c] for c in candidates if c in index), None)
        if j is not None and j != i and not any(j in p for p in pairs):
            pairs.append(sorted((i, j)))
    return sorted(pairs)


def _ids(values, joint_names):
    """Joint indices from a list of indices or joint names."""
    return tuple(v if isinstance(v, int) else joint_names.index(v) for v in values)


def load_meta(path):
    """Read a keypoint metadata dict from a .json or .yaml/.yml file."""
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.safe_load(f) if path.suffix in ('.yaml', '.yml') else json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{path}: keypoint metadata file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as e:
        raise ValueError(f"{path}: not readable keypoint metadata ({str(e).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: keypoint metadata must be a mapping (flip_pairs, sigmas, ...), "
                         f"got {type(data).__name__}")
    return data


def read_skeleton(pairs, num_joints, one_based, source):
    """(0-based skeleton, notes) from index pairs written 1-based (COCO files) or 0-based (metadata).

    A skeleton that fits only the other numbering is read in that numbering, with a note; one that
    fits neither (CrowdPose's 17-joint COCO skeleton on 14 joints) is a ValueError naming `source`
    and the first pair that does not fit.
    """
    try:
        arr = np.asarray(pairs if len(pairs) else np.zeros((0, 2)), dtype=np.float64).reshape(-1, 2)
    except (TypeError, ValueError):
        raise ValueError(f"{source}: the skeleton must be a list of [joint, joint] index pairs") from None
    if not (np.isfinite(arr).all() and (arr == np.round(arr)).all()):
        raise ValueError(f"{source}: the skeleton must be a list of [joint, joint] index pairs")
    arr = arr.astype(np.int64)

    def first_bad(base):
        bad = ((arr < base) | (arr >= num_joints + base)).any(axis=1)
        return arr[np.argmax(bad)].tolist() if bad.any() else None

    base = 1 if one_based else 0
    pair = first_bad(base)
    if pair is None:
        return (arr - base).tolist(), []
    if first_bad(1 - base) is None:
        return (arr - (1 - base)).tolist(), [
            f"{source}: the skeleton is numbered from {1 - base}, not from {base}: read as such "
            f"(pair {pair} does not fit {num_joints} joints numbered from {base})"]
    raise ValueError(f"{source}: skeleton pair {pair} refers to a joint the set does not have "
                     f"({num_joints} joints, numbered from {base})")


def keypoint_categories(categories, source='annotation file'):
    """The categories with keypoints, which must all share one keypoint set (AP-10K's and AnimalPose's
    species); a category with other keypoint names is a ValueError naming it."""
    cats = [c for c in categories if isinstance(c, dict) and c.get('keypoints')]
    if not cats:
        raise ValueError(f"{source}: no category has keypoints (not a keypoint annotation file)")
    names = list(cats[0]['keypoints'])
    for cat in cats[1:]:
        other = list(cat['keypoints'])
        if other != names:
            diff = (f"{len(other)} keypoints against {len(names)}" if len(other) != len(names) else
                    "keypoint {} is {!r} against {!r}".format(
                        *next((i, b, a) for i, (a, b) in enumerate(zip(names, other)) if a != b)))
            raise ValueError(f"{source}: category {cat.get('name')!r} (id {cat.get('id')}) has another "
                             f"keypoint set than category {cats[0].get('name')!r} (id {cats[0].get('id')}): "
                             f"{diff}; one file holds one keypoint set (split the file or remove the category)")
    return cats


def from_coco_category(category, meta=None, source=None):
    """KeypointInfo for a COCO-format category; `meta` (dict or json/yaml path) may give
    flip_pairs, upper_body_ids, lower_body_ids (indices or names), sigmas, joint_weights, and a
    0-based skeleton (indices or names). `source` names the file in messages."""
    meta_source = str(meta) if isinstance(meta, (str, Path)) else 'the metadata'
    meta = load_meta(meta) if isinstance(meta, (str, Path)) else dict(meta or {})
    names = list(category['keypoints'])
    k = len(names)
    source = source or f"category {category.get('name', '?')!r}"
    if 'skeleton' in meta:
        skeleton, notes = read_skeleton([_ids(p, names) for p in meta['skeleton']], k, False, meta_source)
    else:
        skeleton, notes = read_skeleton(category.get('skeleton') or [], k, True, source)

    if 'flip_pairs' in meta:
        flip_pairs = [list(_ids(p, names)) for p in meta['flip_pairs']]
    else:
        flip_pairs = infer_flip_pairs(names)
        if flip_pairs:
            notes.append('flip pairs inferred from left/right joint names: '
                         + ', '.join(f'{names[a]}<->{names[b]}' for a, b in flip_pairs))
        else:
            notes.append('no left/right joint names found: flipping mirrors the image without '
                         'swapping any joints (give flip_pairs in the metadata if the set is chiral)')

    upper = _ids(meta.get('upper_body_ids', ()), names)
    lower = _ids(meta.get('lower_body_ids', ()), names)
    if upper and not lower:
        lower = tuple(i for i in range(k) if i not in upper)
    elif lower and not upper:
        upper = tuple(i for i in range(k) if i not in lower)
    if not upper:
        notes.append('no upper/lower body ids given: half-body augmentation disabled')

    if 'sigmas' in meta:
        sigmas = np.asarray(meta['sigmas'], dtype=np.float64)
    else:
        sigmas = np.full(k, UNIFORM_SIGMA)
        notes.append(f'no OKS sigmas given: using a uniform sigma of {UNIFORM_SIGMA} '
                     '(the mean COCO sigma) for every joint; OKS/AP are not comparable to COCO')
    joint_weights = np.asarray(meta.get('joint_weights', np.ones(k)), dtype=np.float32)
    if len(sigmas) != k or len(joint_weights) != k:
        raise ValueError(f'sigmas/joint_weights need {k} entries, one per keypoint')

    return KeypointInfo(name=meta.get('name', category.get('name', 'custom')), joint_names=names,
                        skeleton=skeleton, flip_pairs=flip_pairs, upper_body_ids=upper,
                        lower_body_ids=lower, sigmas=sigmas, joint_weights=joint_weights,
                        notes=notes)


def keypoint_info_dict(info):
    """A keypoint set as JSON-ready data (what exports carry, so a model file needs nothing else)."""
    return dict(name=info.name, joint_names=list(info.joint_names), skeleton=[list(map(int, p)) for p in info.skeleton],
                flip_pairs=[list(map(int, p)) for p in info.flip_pairs],
                upper_body_ids=[int(i) for i in info.upper_body_ids], lower_body_ids=[int(i) for i in info.lower_body_ids],
                sigmas=[float(s) for s in info.sigmas], joint_weights=[float(w) for w in info.joint_weights])


def keypoint_info_from_dict(data, source='keypoint set'):
    """The KeypointInfo of `keypoint_info_dict`'s data; a one-line ValueError naming `source` when it is not."""
    try:
        names = [str(n) for n in data['joint_names']]
        k = len(names)
        skeleton, _ = read_skeleton(data.get('skeleton', []), k, False, source)
        flip_pairs = [[int(a), int(b)] for a, b in data.get('flip_pairs', [])]
        info = KeypointInfo(name=str(data.get('name', 'custom')), joint_names=names, skeleton=skeleton,
                            flip_pairs=flip_pairs, upper_body_ids=tuple(int(i) for i in data.get('upper_body_ids', ())),
                            lower_body_ids=tuple(int(i) for i in data.get('lower_body_ids', ())),
                            sigmas=np.asarray(data.get('sigmas', [UNIFORM_SIGMA] * k), dtype=np.float64),
                            joint_weights=np.asarray(data.get('joint_weights', [1.0] * k), dtype=np.float32))
    except (KeyError, TypeError, ValueError) as e:
        if isinstance(e, ValueError) and str(e).startswith(str(source)):
            raise
        raise ValueError(f"{source}: not a keypoint set description ({type(e).__name__}: {e})") from None
    bad = [p for p in flip_pairs if not all(0 <= j < k for j in p)]
    if bad or len(info.sigmas) != k or len(info.joint_weights) != k:
        raise ValueError(f"{source}: flip pairs, sigmas or joint_weights do not fit {k} joints")
    return info


def get_keypoint_info(name, meta=None):
    """'coco' / 'mpii', or a COCO-format annotation json whose keypoint category is described."""
    if name in BUILTIN:
        return BUILTIN[name]
    path = Path(name)
    if path.suffix == '.json' and path.is_file():
        with open(path) as f:
            categories = [c for c in json.load(f)['categories'] if c.get('keypoints')]
        if not categories:
            raise ValueError(f'{path} has no category with keypoints')
        return from_coco_category(categories[0], meta)
    raise KeyError(f'unknown keypoint set {name!r}: use one of {sorted(BUILTIN)} '
                   'or a COCO-format annotation json')
