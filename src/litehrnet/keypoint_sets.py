"""The field's keypoint sets, built in, and their recognition from an annotation file or a name.

COCO, MPII, MPII-TRB, CrowdPose, AIC, OCHuman, ATRW, AnimalPose, AP-10K and COCO-WholeBody's body part:
joint names, skeleton, flip pairs, upper/lower body and OKS sigmas with their published values. The
values are those of mmpose's dataset metainfo files (`configs/_base_/datasets/<name>.py`, named per set
below), written here as data. Flip pairs come from the joint names (`infer_flip_pairs`): in every one of
these sets the published swaps are exactly the left/right-named joints, which the tests check.

An annotation file's set is recognised from its keypoint names (spelling-tolerant: case, spaces,
CamelCase and L_/R_/F_/B_ abbreviations), with the category name and the file name to tell apart sets
that share names (COCO, OCHuman and COCO-WholeBody's body part); anything else is described from the
category by `from_coco_category`. Every decision is a note for the log.
"""
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .keypoints import (COCO_17, MPII_16, UNIFORM_SIGMA, KeypointInfo, from_coco_category,
                             infer_flip_pairs, keypoint_categories, load_meta)


class UnknownKeypointSet(KeyError, ValueError):
    """A keypoint-set name that is not built in; the message lists the names that are."""

    def __str__(self):
        return str(self.args[0])


@dataclass(frozen=True)
class KnownSet:
    """A built-in keypoint set: its metadata and what recognises it."""

    key: str
    title: str
    info: KeypointInfo
    source: str                 # where the published values come from
    category_names: tuple = ()  # category names its annotation files use
    file_hint: str = ''         # a word its annotation file names contain
    spellings: dict = field(default_factory=dict)  # other joint spellings in its files -> the built-in one


def _build(name, joints, links, lower, sigmas, joint_weights, notes=()):
    """KeypointInfo from whitespace-separated joint names, 'a-b' links and the lower-body joint names."""
    names = joints.split()
    index = {n: i for i, n in enumerate(names)}
    lower_ids = tuple(index[n] for n in lower.split())
    return KeypointInfo(
        name=name, joint_names=names,
        skeleton=[[index[a], index[b]] for a, b in (link.split('-') for link in links.split())],
        flip_pairs=infer_flip_pairs(names),
        upper_body_ids=tuple(i for i in range(len(names)) if i not in lower_ids),
        lower_body_ids=tuple(sorted(lower_ids)),
        sigmas=np.asarray(sigmas, dtype=np.float64),
        joint_weights=np.asarray(joint_weights, dtype=np.float32), notes=list(notes))


_LIMBS = 'shoulder elbow wrist hip knee ankle'.split()
_HUMAN_14 = ' '.join(f'{side}_{limb}' for limb in _LIMBS for side in ('left', 'right'))

# mmpose configs/_base_/datasets/mpii_trb.py. mmpose publishes no OKS sigmas for MPII-TRB (it is scored
# by PCK): a uniform sigma stands in, and the set says so.
_TRB_PARTS = [f'{side}_{part}' for side in ('right', 'left') for part in ('shoulder', 'bow', 'wrist')]
_TRB_PARTS += [f'{side}_{part}' for side in ('right', 'left') for part in ('hip', 'knee', 'ankle')]
MPII_TRB_40 = _build(
    'mpii_trb',
    _HUMAN_14 + ' head neck right_neck left_neck '
    + ' '.join(f'{kind}_{part}' for part in _TRB_PARTS for kind in ('medial', 'lateral')),
    'head-neck neck-left_shoulder neck-right_shoulder left_shoulder-left_elbow right_shoulder-right_elbow '
    'left_elbow-left_wrist right_elbow-right_wrist left_shoulder-left_hip right_shoulder-right_hip '
    'left_hip-right_hip left_hip-left_knee right_hip-right_knee left_knee-left_ankle right_knee-right_ankle '
    'right_neck-left_neck ' + ' '.join(f'medial_{part}-lateral_{part}' for part in _TRB_PARTS),
    'left_hip right_hip left_knee right_knee left_ankle right_ankle '
    + ' '.join(f'{kind}_{part}' for part in _TRB_PARTS[6:] for kind in ('medial', 'lateral')),
    sigmas=np.full(40, UNIFORM_SIGMA), joint_weights=np.ones(40),
    notes=[f'MPII-TRB has no published OKS sigmas: using a uniform sigma of {UNIFORM_SIGMA} for every '
           'joint; OKS/AP are not comparable to other sets (give sigmas with --meta to change them)'])

# mmpose configs/_base_/datasets/crowdpose.py (joint weights as published there).
CROWDPOSE_14 = _build(
    'crowdpose', _HUMAN_14 + ' top_head neck',
    'left_ankle-left_knee left_knee-left_hip right_ankle-right_knee right_knee-right_hip left_hip-right_hip '
    'left_shoulder-left_hip right_shoulder-right_hip left_shoulder-right_shoulder left_shoulder-left_elbow '
    'right_shoulder-right_elbow left_elbow-left_wrist right_elbow-right_wrist top_head-neck '
    'right_shoulder-neck left_shoulder-neck',
    'left_hip right_hip left_knee right_knee left_ankle right_ankle',
    sigmas=[.079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089, .079, .079],
    joint_weights=[.2, .2, .2, 1.3, 1.5, .2, 1.3, 1.5, .2, .2, .5, .2, .2, .5])

# mmpose configs/_base_/datasets/aic.py (sigmas from AI Challenger's keypoint_eval.py, delta = 2 sigma).
AIC_14 = _build(
    'aic',
    'right_shoulder right_elbow right_wrist left_shoulder left_elbow left_wrist right_hip right_knee '
    'right_ankle left_hip left_knee left_ankle head_top neck',
    'right_wrist-right_elbow right_elbow-right_shoulder right_shoulder-neck neck-left_shoulder '
    'left_shoulder-left_elbow left_elbow-left_wrist right_ankle-right_knee right_knee-right_hip '
    'right_hip-left_hip left_hip-left_knee left_knee-left_ankle head_top-neck right_shoulder-right_hip '
    'left_shoulder-left_hip',
    'right_hip right_knee right_ankle left_hip left_knee left_ankle',
    sigmas=[0.01388152, 0.01515228, 0.01057665, 0.01417709, 0.01497891, 0.01402144, 0.03909642,
            0.03686941, 0.01981803, 0.03843971, 0.03412318, 0.02415081, 0.01291456, 0.01236173],
    joint_weights=[1., 1.2, 1.5] * 4 + [1., 1.])

# mmpose configs/_base_/datasets/ochuman.py: COCO's 17 joints with COCO's values throughout.
OCHUMAN_17 = replace(COCO_17, name='ochuman', notes=[])

# mmpose configs/_base_/datasets/coco_wholebody.py, its first 17 joints (the body part): COCO's joints,
# skeleton and sigmas (COCO-WholeBody's myeval_wholebody.py), every joint weight 1.
COCO_WHOLEBODY_BODY_17 = replace(COCO_17, name='coco_wholebody_body', notes=[],
                                 joint_weights=np.ones(17, dtype=np.float32))

# mmpose configs/_base_/datasets/atrw.py.
ATRW_15 = _build(
    'atrw',
    'left_ear right_ear nose right_shoulder right_front_paw left_shoulder left_front_paw right_hip right_knee '
    'right_back_paw left_hip left_knee left_back_paw tail center',
    'left_ear-nose right_ear-nose nose-center left_shoulder-left_front_paw left_shoulder-center '
    'right_shoulder-right_front_paw right_shoulder-center tail-center right_back_paw-right_knee '
    'right_knee-right_hip right_hip-tail left_back_paw-left_knee left_knee-left_hip left_hip-tail',
    'right_hip right_knee right_back_paw left_hip left_knee left_back_paw tail center',
    sigmas=[0.0277, 0.0823, 0.0831, 0.0202, 0.0716, 0.0263, 0.0646, 0.0302, 0.0440, 0.0316, 0.0333,
            0.0547, 0.0263, 0.0683, 0.0539],
    joint_weights=np.ones(15))

# mmpose configs/_base_/datasets/animalpose.py (its sigmas adapted there from COCO's).
ANIMALPOSE_20 = _build(
    'animalpose',
    'L_Eye R_Eye L_EarBase R_EarBase Nose Throat TailBase Withers L_F_Elbow R_F_Elbow L_B_Elbow R_B_Elbow '
    'L_F_Knee R_F_Knee L_B_Knee R_B_Knee L_F_Paw R_F_Paw L_B_Paw R_B_Paw',
    'L_Eye-R_Eye L_Eye-L_EarBase R_Eye-R_EarBase L_Eye-Nose R_Eye-Nose Nose-Throat Throat-Withers '
    'TailBase-Withers Throat-L_F_Elbow L_F_Elbow-L_F_Knee L_F_Knee-L_F_Paw Throat-R_F_Elbow '
    'R_F_Elbow-R_F_Knee R_F_Knee-R_F_Paw TailBase-L_B_Elbow L_B_Elbow-L_B_Knee L_B_Knee-L_B_Paw '
    'TailBase-R_B_Elbow R_B_Elbow-R_B_Knee R_B_Knee-R_B_Paw',
    'TailBase L_B_Elbow R_B_Elbow L_B_Knee R_B_Knee L_B_Paw R_B_Paw',
    sigmas=[.025, .025, .026, .035, .035, .10, .10, .10, .107, .107, .107, .107, .087, .087, .087, .087,
            .089, .089, .089, .089],
    joint_weights=[1.] * 12 + [1.2] * 4 + [1.5] * 4)

# mmpose configs/_base_/datasets/ap10k.py (sigmas adapted there from COCO's), joint names as AP-10K's
# annotation files spell them. ap10k.py marks R_F_Paw 'lower' while its mirror L_F_Paw is 'upper': a
# slip, so both front paws are upper body here.
AP10K_17 = _build(
    'ap10k',
    'left_eye right_eye nose neck root_of_tail left_shoulder left_elbow left_front_paw right_shoulder '
    'right_elbow right_front_paw left_hip left_knee left_back_paw right_hip right_knee right_back_paw',
    'left_eye-right_eye left_eye-nose right_eye-nose nose-neck neck-root_of_tail neck-left_shoulder '
    'left_shoulder-left_elbow left_elbow-left_front_paw neck-right_shoulder right_shoulder-right_elbow '
    'right_elbow-right_front_paw root_of_tail-left_hip left_hip-left_knee left_knee-left_back_paw '
    'root_of_tail-right_hip right_hip-right_knee right_knee-right_back_paw',
    'root_of_tail left_hip left_knee left_back_paw right_hip right_knee right_back_paw',
    sigmas=[.025, .025, .026, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087,
            .089, .089],
    joint_weights=[1., 1., 1., 1., 1., 1., 1., 1.2, 1.2, 1.5, 1.5, 1., 1., 1.2, 1.2, 1.5, 1.5])

_MMPOSE = 'mmpose configs/_base_/datasets/'
# Registry order decides between sets with the same joint names when nothing else does (COCO first).
KNOWN_SETS = {s.key: s for s in (
    KnownSet('coco', 'COCO', COCO_17, _MMPOSE + 'coco.py', ('person',), 'coco'),
    KnownSet('mpii', 'MPII', MPII_16, _MMPOSE + 'mpii.py', ('person',), 'mpii'),
    KnownSet('mpii_trb', 'MPII-TRB', MPII_TRB_40, _MMPOSE + 'mpii_trb.py', ('person',), 'trb'),
    KnownSet('crowdpose', 'CrowdPose', CROWDPOSE_14, _MMPOSE + 'crowdpose.py', ('person',), 'crowdpose',
             spellings={'head': 'top_head'}),
    KnownSet('aic', 'AI Challenger (AIC)', AIC_14, _MMPOSE + 'aic.py', ('person',), 'aic'),
    KnownSet('ochuman', 'OCHuman', OCHUMAN_17, _MMPOSE + 'ochuman.py', ('person',), 'ochuman'),
    KnownSet('coco_wholebody_body', 'COCO-WholeBody (body part)', COCO_WHOLEBODY_BODY_17,
             _MMPOSE + 'coco_wholebody.py', ('person',), 'wholebody'),
    KnownSet('atrw', 'ATRW', ATRW_15, _MMPOSE + 'atrw.py', ('tiger',), 'atrw'),
    KnownSet('animalpose', 'AnimalPose', ANIMALPOSE_20, _MMPOSE + 'animalpose.py',
             ('cat', 'dog', 'sheep', 'cow', 'horse'), 'animalpose'),
    KnownSet('ap10k', 'AP-10K', AP10K_17, _MMPOSE + 'ap10k.py', (), 'ap10k'),
)}

# Other names accepted by --keypoints (compared without case and punctuation).
_ALIASES = {'cocowholebody': 'coco_wholebody_body', 'wholebody': 'coco_wholebody_body', 'trb': 'mpii_trb',
            'aichallenger': 'aic'}

_TOKENS = {'l': 'left', 'r': 'right', 'f': 'front', 'b': 'back'}


def _squash(text):
    return re.sub(r'[^a-z0-9]', '', str(text).lower())


def joint_key(name):
    """A spelling-free form of a joint name: 'L_F_Paw', 'left front paw', 'LeftFrontPaw' -> 'left_front_paw'."""
    spaced = re.sub(r'([a-z0-9])([A-Z])', r'\1_\2', str(name))
    return '_'.join(_TOKENS.get(t, t) for t in re.split(r'[^a-z0-9]+', spaced.lower()) if t)


def set_names():
    """The names `keypoint_set` accepts (the built-in keys)."""
    return list(KNOWN_SETS)


def keypoint_set(name):
    """The built-in KeypointInfo called `name` (case and punctuation ignored: 'AP-10K' is 'ap10k');
    UnknownKeypointSet, listing the built-in names, otherwise."""
    wanted = _squash(name)
    for key in KNOWN_SETS:
        if _squash(key) == wanted:
            return KNOWN_SETS[key].info
    if wanted in _ALIASES:
        return KNOWN_SETS[_ALIASES[wanted]].info
    raise UnknownKeypointSet(f"unknown keypoint set {name!r}: built-in sets are {', '.join(KNOWN_SETS)} "
                             "(or give a COCO-format annotation json)")


def _matches(known, keys):
    own = [joint_key(n) for n in known.info.joint_names]
    spelled = {joint_key(k): joint_key(v) for k, v in known.spellings.items()}
    return [spelled.get(k, k) for k in keys] == own


def find_set(joint_names, category_names=(), file_name=''):
    """(KnownSet, what recognised it) for joint names in a file's order, or (None, '') when no built-in
    set has them. Sets sharing the names are told apart by the category and file names."""
    keys = [joint_key(n) for n in joint_names]
    found = [s for s in KNOWN_SETS.values() if _matches(s, keys)]
    if not found:
        return None, ''
    cats = {str(c).lower() for c in category_names}
    squashed = _squash(Path(str(file_name)).name)

    def score(s):
        return (len(s.file_hint) if s.file_hint and s.file_hint in squashed else 0,
                bool(cats & set(s.category_names)))
    best = max(found, key=score)  # max keeps the first of equals: registry order
    how = 'its keypoint names'
    if len(found) > 1 and score(best)[0]:
        how += ' and the file name'
    elif len(found) > 1 and score(best)[1] and not all(score(s)[1] for s in found):
        how += ' and the category name'
    return best, how


def _with_meta(known, meta):
    """The built-in set with what a metadata file (dict or path) gives in place of its values."""
    meta_path = meta if isinstance(meta, (str, Path)) else None
    given = load_meta(meta) if meta_path else dict(meta)
    info = known.info
    merged = dict(name=info.name, skeleton=info.skeleton, flip_pairs=info.flip_pairs,
                  sigmas=info.sigmas.tolist(), joint_weights=info.joint_weights.tolist())
    if not ({'upper_body_ids', 'lower_body_ids'} & set(given)):
        merged.update(upper_body_ids=list(info.upper_body_ids), lower_body_ids=list(info.lower_body_ids))
    merged.update(given)
    out = from_coco_category({'name': info.name, 'keypoints': info.joint_names}, merged, source=meta_path)
    kept = [] if 'sigmas' in given else info.notes
    out.notes[:0] = kept + [f"{meta_path or 'the metadata'} overrides the built-in {known.title} values for: "
                            + (', '.join(sorted(given)) or 'nothing')]
    return out


def keypoint_info_of_categories(categories, source='annotation file', meta=None):
    """(KeypointInfo, category ids) of a COCO-format file's categories with keypoints.

    All those categories must share one keypoint set (each one is a species of AP-10K or AnimalPose);
    one with other keypoints is a ValueError naming it. A built-in set is recognised from the keypoint
    names (the file's own skeleton is then not used); otherwise the set is described from the first
    category. `meta` (dict or json/yaml path) overrides either. The notes say what was decided and why.
    """
    cats = keypoint_categories(categories, source)
    first = cats[0]
    names = list(first['keypoints'])
    cat_names = [c.get('name', '') for c in cats]
    known, how = find_set(names, cat_names, source)
    if known is None:
        info = from_coco_category(first, meta, source=source)
        note = (f"{source}: keypoint set not recognised as a built-in one ({len(names)} keypoints of "
                f"category {first.get('name')!r}): described from the category")
        alike = [s.key for s in KNOWN_SETS.values() if s.info.num_joints == len(names)
                 and set(map(str.lower, cat_names)) & set(s.category_names)]
        if alike:
            note += f" (its names differ from {' / '.join(alike)}'s: --keypoints NAME uses built-in values)"
        info.notes.insert(0, note)
    else:
        info = _with_meta(known, meta) if meta is not None else replace(known.info, notes=list(known.info.notes))
        info.notes.insert(0, f"{source}: keypoint set recognised as {known.title} ('{known.key}') from {how} "
                             f"(category {first.get('name')!r}); values from {known.source}")
        file_skeleton = first.get('skeleton') or []
        if file_skeleton:
            fits = _skeleton_fits(file_skeleton, len(names))
            if not fits or _links(np.asarray(file_skeleton) - 1) != _links(info.skeleton):
                beyond = '' if fits else f', not all within 1..{len(names)}'
                info.notes.append(f"{source}: the file's skeleton ({len(file_skeleton)} links{beyond}) "
                                  f"is not used: {known.title}'s is")
    if len(cats) > 1:
        info.notes.append(f"{source}: {len(cats)} categories share this keypoint set: "
                          + ', '.join(repr(n) for n in cat_names))
    return info, [c.get('id') for c in cats]


def _links(pairs):
    return sorted(tuple(sorted(p)) for p in np.asarray(pairs).tolist())


def _skeleton_fits(pairs, num_joints):
    try:
        arr = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    except (TypeError, ValueError):
        return False
    return bool(((arr >= 1) & (arr <= num_joints)).all())


def keypoint_info(name, meta=None):
    """KeypointInfo for --keypoints NAME (a built-in set) or a COCO-format annotation json; `meta` (dict
    or json/yaml path) overrides the values."""
    path = Path(str(name))
    if path.suffix == '.json' and path.is_file():
        try:
            with open(path) as f:
                data = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path}: not a readable JSON file ({type(e).__name__}: {e})") from None
        categories = data.get('categories') if isinstance(data, dict) else None
        if not isinstance(categories, list):
            raise ValueError(f"{path}: not a COCO annotation file (no 'categories' list)")
        return keypoint_info_of_categories(categories, str(path), meta)[0]
    info = keypoint_set(name)
    known = next(s for s in KNOWN_SETS.values() if s.info is info)
    out = replace(info, notes=list(info.notes)) if meta is None else _with_meta(known, meta)
    out.notes.insert(0, f"keypoint set {known.title} ('{known.key}') chosen by name; values from {known.source}")
    return out
