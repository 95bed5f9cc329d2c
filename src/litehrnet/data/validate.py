"""The one ground-truth validator of COCO-format keypoint annotation files, run up front by train, eval and infer.

`load_ground_truth(ann_file, keypoints=None, meta=None, sigmas=None)` reads the file, checks every record
and returns a `GroundTruth`: the (completed) data, the keypoint set with its category ids, and notes for
the log. A problem is an `AnnotationError` whose one line names the file, the record and the reason:
a top-level list, a missing field, a string where a number is due ('640' for a width), a non-finite value
(which one), a visibility outside 0/1/2, duplicate image or annotation ids, an unknown image_id or
category, a skeleton pair the set does not have.

Tolerated, each said once in the notes: a missing `area` is computed from the box as mmpose 1.x does
(the box clipped to the image, w x h x 0.53, at least 1); a missing `iscrowd` is 0; a missing
`num_keypoints` is the count of labelled keypoints; crowd annotations are counted (training leaves
them out; COCOeval ignores them).
"""
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..errors import AnnotationError
from ..fileio import read_json
from ..keypoint_sets import keypoint_info as named_keypoint_info, keypoint_info_of_categories
from ..keypoints import UNIFORM_SIGMA, from_coco_category, keypoint_categories, keypoint_info_dict, load_meta

AREA_FACTOR = 0.53  # mmpose 1.x: the area of a box-only annotation is 0.53 of its (clipped) box


@dataclass
class GroundTruth:
    """A validated COCO-format keypoint file: data (completed), keypoint set, its categories, notes, counts."""

    path: Path
    data: dict
    info: object
    category_ids: list
    notes: list = field(default_factory=list)
    num_crowd: int = 0

    @property
    def images(self):
        """image id -> image record."""
        return {img['id']: img for img in self.data['images']}

    def keypoint_annotations(self):
        """The annotations of the keypoint set's categories, in file order."""
        ids = set(self.category_ids)
        return [a for a in self.data['annotations'] if a['category_id'] in ids]


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _describe(v):
    return f"the string {v!r}" if isinstance(v, str) else (type(v).__name__ if not _is_number(v) else repr(v))


def _numbers(where, name, values, n=None):
    """A list of finite numbers, or an AnnotationError naming the first value that is not one."""
    if not isinstance(values, list):
        raise AnnotationError(f"{where}: {name} must be a list of numbers, got {_describe(values)}")
    if n is not None and len(values) != n:
        raise AnnotationError(f"{where}: {name} has {len(values)} values, expected {n}")
    for j, v in enumerate(values):
        _number(where, f"{name}[{j}]", v)
    return values


def _number(where, name, value):
    if not _is_number(value):
        raise AnnotationError(f"{where}: {name} is {_describe(value)}, expected a number")
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: {name} is {value} (not finite)")
    return value


def _check_keypoints(where, values, num_joints):
    """Keypoints as 3K finite numbers with visibility 0/1/2; the message names the joint and its value."""
    if not isinstance(values, list):
        raise AnnotationError(f"{where}: keypoints must be a list of numbers, got {_describe(values)}")
    if len(values) != 3 * num_joints:
        raise AnnotationError(f"{where}: has {len(values)} keypoint values, expected {3 * num_joints} "
                              f"({num_joints} joints x 3)")
    for j, v in enumerate(values):
        joint, part = divmod(j, 3)
        label = f"keypoint {joint} {'xyv'[part]}"
        if not _is_number(v):
            raise AnnotationError(f"{where}: {label} (value {j}) is {_describe(v)}, expected a number")
        if not math.isfinite(v):
            raise AnnotationError(f"{where}: {label} (value {j}) is {v} (not finite)")
        if part == 2 and v not in (0, 1, 2):
            raise AnnotationError(f"{where}: {label} (visibility) is {v}, expected 0, 1 or 2")


def box_area(bbox, width, height):
    """mmpose 1.x's area of an annotation without one: its box clipped to the image, x 0.53, at least 1."""
    x, y, w, h = bbox
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return max((x2 - x1) * (y2 - y1) * AREA_FACTOR, 1.0)


def _duplicates(where, records, what):
    seen = {}
    for i, rec in enumerate(records):
        key = rec['id']
        if key in seen:
            raise AnnotationError(f"{where}: duplicate {what} id {key!r} (records {seen[key]} and {i})")
        seen[key] = i


def _check_images(path, images):
    for i, img in enumerate(images):
        where = f"{path}: image record {i}"
        if not isinstance(img, dict):
            raise AnnotationError(f"{where}: is {_describe(img)}, expected an object")
        where += f" (id {img.get('id')!r})"
        missing = [k for k in ('id', 'file_name', 'width', 'height') if k not in img]
        if missing:
            raise AnnotationError(f"{where}: lacks {', '.join(missing)} (needs id, file_name, width and height)")
        if not isinstance(img['id'], int) or isinstance(img['id'], bool):
            raise AnnotationError(f"{where}: id is {_describe(img['id'])}, expected an integer")
        for k in ('width', 'height'):
            if _number(where, k, img[k]) <= 0:
                raise AnnotationError(f"{where}: {k} is {img[k]}, expected a positive number")
    _duplicates(f"{path}", images, 'image')


def _check_annotation(where, ann, images, num_joints, tally):
    """Check one annotation of the keypoint set and complete it (area, iscrowd, num_keypoints)."""
    if not _is_number(ann['image_id']) or ann['image_id'] not in images:
        raise AnnotationError(f"{where}: image_id {ann['image_id']!r} has no entry in 'images'")
    if 'bbox' not in ann:
        raise AnnotationError(f"{where}: lacks bbox (needs [x, y, w, h])")
    box = _numbers(where, 'bbox', ann['bbox'], 4)
    _check_keypoints(where, ann.get('keypoints'), num_joints)
    if max(ann['keypoints']) > 0 and (box[2] <= 0 or box[3] <= 0):
        raise AnnotationError(f"{where}: non-positive box {box} for a person with keypoints")
    img = images[ann['image_id']]
    if 'area' not in ann:
        ann['area'] = box_area(box, img['width'], img['height'])
        tally['area'] += 1
    else:
        _number(where, 'area', ann['area'])
    if 'iscrowd' not in ann:
        ann['iscrowd'] = 0
        tally['iscrowd'] += 1
    elif ann['iscrowd'] not in (0, 1) or isinstance(ann['iscrowd'], bool):
        raise AnnotationError(f"{where}: iscrowd is {_describe(ann['iscrowd'])}, expected 0 or 1")
    if 'num_keypoints' not in ann:
        ann['num_keypoints'] = sum(1 for v in ann['keypoints'][2::3] if v > 0)
        tally['num_keypoints'] += 1
    else:
        _number(where, 'num_keypoints', ann['num_keypoints'])
    tally['crowd'] += int(ann['iscrowd'] == 1)


def _keypoint_info(path, data, keypoints, meta, sigmas):
    """(KeypointInfo, category ids) of the file, a built-in set by name, meta and sigmas applied."""
    categories = data['categories']
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or 'id' not in c:
            raise AnnotationError(f"{path}: category record {i}: needs an object with an id")
    _duplicates(f"{path}", categories, 'category')
    try:
        if keypoints:  # named: the file's categories give the ids (and must agree), not the values
            cats = keypoint_categories(categories, str(path))
            info = apply_keypoint_options(keypoints, meta)
            if info.num_joints != len(cats[0]['keypoints']):
                raise AnnotationError(f"{path}: --keypoints {keypoints} has {info.num_joints} joints, the file's "
                                      f"categories have {len(cats[0]['keypoints'])}")
            cat_ids = [c['id'] for c in cats]
            if len(cats) > 1:
                info.notes.append(f"{path}: {len(cats)} categories share this keypoint set: "
                                  + ', '.join(repr(c.get('name')) for c in cats))
        else:
            info, cat_ids = keypoint_info_of_categories(categories, str(path), meta)
    except (ValueError, OSError) as e:
        if isinstance(e, AnnotationError):
            raise
        raise AnnotationError(str(e)) from None
    return with_sigmas(info, sigmas), cat_ids


def with_sigmas(info, sigmas):
    """The keypoint set with --sigmas in place of its OKS sigmas (a note says so), or itself."""
    if sigmas is None:
        return info
    sigmas = [float(s) for s in sigmas]
    if len(sigmas) != info.num_joints:
        raise ValueError(f"--sigmas has {len(sigmas)} values, the keypoint set '{info.name}' has "
                         f"{info.num_joints} joints")
    if not all(s > 0 and math.isfinite(s) for s in sigmas):
        raise ValueError("--sigmas must be positive numbers")
    notes = [n for n in info.notes if 'uniform sigma' not in n] + ["OKS sigmas given with --sigmas"]
    return replace(info, sigmas=np.asarray(sigmas, np.float64), notes=notes)


def apply_keypoint_options(keypoints=None, meta=None, sigmas=None):
    """The keypoint set of --keypoints NAME (built in, or a COCO-format annotation json) with --meta and
    --sigmas applied; COCO's when no name is given."""
    try:
        return with_sigmas(named_keypoint_info(keypoints or 'coco', meta), sigmas)
    except KeyError as e:
        raise ValueError(str(e.args[0])) from None


def override_with_meta(info, meta, source='the metadata'):
    """A keypoint set with what a metadata file (dict or json/yaml path) gives in place of its values."""
    if meta is None:
        return info
    given = load_meta(meta) if not isinstance(meta, dict) else dict(meta)
    merged = {k: v for k, v in keypoint_info_dict(info).items() if k != 'joint_names'}
    if {'upper_body_ids', 'lower_body_ids'} & set(given):
        merged.pop('upper_body_ids')
        merged.pop('lower_body_ids')
    merged.update(given)
    out = from_coco_category({'name': info.name, 'keypoints': info.joint_names}, merged,
                             source=str(meta) if not isinstance(meta, dict) else source)
    out.notes[:0] = list(info.notes) + [f"{meta if not isinstance(meta, dict) else source} overrides: "
                                        + (', '.join(sorted(given)) or 'nothing')]
    return out


def sigma_record(info):
    """What metrics.json records about the OKS sigmas: the values and whether they are the uniform default."""
    values = [float(s) for s in info.sigmas]
    uniform = all(abs(s - UNIFORM_SIGMA) < 1e-12 for s in values)
    return dict(sigmas=values, sigmas_uniform=uniform)


def load_ground_truth(ann_file, keypoints=None, meta=None, sigmas=None):
    """Read and check a COCO-format keypoint annotation file (see the module docstring): a GroundTruth."""
    path = Path(ann_file)
    data = read_json(path, "annotation file", error=AnnotationError)
    if isinstance(data, list):
        raise AnnotationError(f"{path}: the top level is a JSON list; a COCO annotation file is an object "
                              f"with lists 'images', 'annotations' and 'categories' (a results file goes to "
                              f"--results_json)")
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: the top level is {_describe(data)}, expected an object")
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            got = 'missing' if key not in data else _describe(data[key])
            raise AnnotationError(f"{path}: '{key}' must be a list ({got}); not a COCO annotation file")
    info, cat_ids = _keypoint_info(path, data, keypoints, meta, sigmas)
    _check_images(path, data['images'])
    images = {img['id']: img for img in data['images']}
    known_cats = {c['id'] for c in data['categories']}
    tally = dict(area=0, iscrowd=0, num_keypoints=0, crowd=0, other=0)
    wanted = set(cat_ids)
    for i, ann in enumerate(data['annotations']):
        where = f"{path}: annotation {i}"
        if not isinstance(ann, dict):
            raise AnnotationError(f"{where}: is {_describe(ann)}, expected an object")
        where += f" (id {ann.get('id')!r})"
        missing = [k for k in ('id', 'image_id', 'category_id') if k not in ann]
        if missing:
            raise AnnotationError(f"{where}: lacks {', '.join(missing)}")
        if ann['category_id'] not in known_cats:
            raise AnnotationError(f"{where}: category_id {ann['category_id']!r} has no entry in 'categories'")
        if ann['category_id'] in wanted:
            _check_annotation(where, ann, images, info.num_joints, tally)
        else:
            tally['other'] += 1
    _duplicates(f"{path}", data['annotations'], 'annotation')
    notes = []
    if tally['area']:
        notes.append(f"{path}: {tally['area']} annotations have no 'area': computed from the box as mmpose "
                     f"does (clipped box x {AREA_FACTOR}, at least 1)")
    if tally['iscrowd']:
        notes.append(f"{path}: {tally['iscrowd']} annotations have no 'iscrowd': read as 0 (not crowd)")
    if tally['other']:
        notes.append(f"{path}: {tally['other']} annotations of categories without this keypoint set ignored")
    if tally['crowd']:
        notes.append(f"{path}: {tally['crowd']} crowd annotations (iscrowd 1): left out of training, "
                     f"ignored by COCOeval")
    return GroundTruth(path, data, info, cat_ids, notes, tally['crowd'])
