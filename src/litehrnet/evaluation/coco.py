"""COCO keypoint evaluation: rescoring, OKS-NMS, the results file and pycocotools' COCOeval, as mmpose 0.13.

``coco_keypoint_eval`` returns COCOeval's ten statistics under these keys (COCOeval's printed names in
brackets): AP (AP @[IoU=0.50:0.95]), AP50 (AP @0.50), AP75 (AP @0.75), APm (AP medium), APl (AP large),
AR (AR @[0.50:0.95]), AR50, AR75, ARm, ARl. As in COCOeval, -1 means no ground truth in that area range.
"""
import contextlib
import io
import json
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .nms import oks_nms, soft_oks_nms
from ..fileio import read_json, write_text_atomic

STAT_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
RESULT_FIELDS = ("image_id", "category_id", "keypoints", "score")


def rescore(keypoint_scores, box_score, thr=0.2):
    """Instance score = box score x mean of the keypoint scores above thr (0 when none), as mmpose 0.13."""
    confident = [s for s in np.asarray(keypoint_scores, dtype=np.float64).reshape(-1).tolist() if s > thr]
    return sum(confident) / len(confident) * float(box_score) if confident else 0.0


def rescore_and_nms(persons, oks_thr=0.9, vis_thr=0.2, sigmas=None, soft=False):
    """Per-person predictions to COCO results: rescore, OKS-NMS per image, then the results-file format.

    A person is a dict with 'image_id', 'keypoints' (K, 3) in image pixels, 'score' (the box score) and
    'area' (padded box area), and optionally 'category_id' (default 1). ``oks_thr=None`` skips NMS; ``soft=True`` uses soft OKS-NMS.
    """
    by_image = defaultdict(list)
    for p in persons:
        kpts = np.asarray(p['keypoints'], dtype=np.float64).reshape(-1, 3)
        by_image[p['image_id']].append(dict(keypoints=kpts, area=p['area'], category_id=p.get('category_id', 1),
                                            score=rescore(kpts[:, 2], p['score'], vis_thr)))
    nms = soft_oks_nms if soft else oks_nms
    results = []
    for image_id, people in by_image.items():
        keep = range(len(people)) if oks_thr is None else nms(people, oks_thr, sigmas=sigmas)
        results += [dict(image_id=image_id, category_id=people[i]['category_id'], score=people[i]['score'],
                         keypoints=people[i]['keypoints'].reshape(-1).tolist()) for i in keep]
    return results


def _plain(result):
    """A result with plain Python numbers, ready for json."""
    return dict(image_id=int(result['image_id']), category_id=int(result.get('category_id', 1)),
                keypoints=[float(v) for v in np.asarray(result['keypoints']).reshape(-1)],
                score=float(result['score']))


def write_results_json(path, results):
    """Write results atomically (temp file in the same folder, then os.replace): no half-written files."""
    path = Path(path)
    try:
        text = json.dumps([_plain(r) for r in results], allow_nan=False)
    except ValueError:
        raise ValueError(f"{path}: results contain NaN or infinite values, not written") from None
    write_text_atomic(path, text)


def _as_coco(ann_file_or_coco):
    """A pycocotools COCO object from itself or from an annotation file (one-line error when missing)."""
    if isinstance(ann_file_or_coco, COCO):
        return ann_file_or_coco
    if not Path(ann_file_or_coco).is_file():
        raise ValueError(f"annotation file not found: {ann_file_or_coco}")
    return COCO(str(ann_file_or_coco))


def _check_result(path, i, r, image_ids, num_joints):
    """Raise a one-line ValueError naming the file when result i is malformed."""
    if not isinstance(r, dict):
        raise ValueError(f"{path}: result {i} is not a JSON object")
    missing = [k for k in RESULT_FIELDS if k not in r]
    if missing:
        raise ValueError(f"{path}: result {i} lacks field(s) {', '.join(missing)}")
    if r['image_id'] not in image_ids:
        raise ValueError(f"{path}: result {i} has image_id {r['image_id']!r}, not in the annotations")
    kpts = r['keypoints']
    if not isinstance(kpts, list) or len(kpts) != 3 * num_joints:
        n = len(kpts) if isinstance(kpts, list) else type(kpts).__name__
        raise ValueError(f"{path}: result {i} has {n} keypoint values, expected {3 * num_joints} "
                         f"({num_joints} joints x 3)")
    try:
        values = np.array(kpts + [r['score']], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: result {i} has non-numeric keypoints or score") from None
    if not np.isfinite(values).all():
        raise ValueError(f"{path}: result {i} has NaN or infinite keypoints or score")


def load_results(path, coco_gt, num_joints):
    """Read and validate a keypoint results file against the annotations (one-line ValueError naming it)."""
    path = Path(path)
    results = read_json(path, "results file")
    if not isinstance(results, list):
        raise ValueError(f"{path}: expected a JSON list of results, got {type(results).__name__}")
    image_ids = set(_as_coco(coco_gt).getImgIds())
    for i, r in enumerate(results):
        _check_result(path, i, r, image_ids, num_joints)
    return results


ZERO_SCORE_RULE = ('every keypoint score <= 0: dropped before COCOeval, as xtcocotools (mmpose\'s evaluator, '
                   'the official protocol) does; pycocotools would score them (--zero_score_results keep)')


def score_keypoints(ann_file_or_coco, results, sigmas=None, category_ids=None, drop_nonpositive=True):
    """(COCOeval's stats by STAT_NAMES, counts) of keypoint results; see `coco_keypoint_eval`.

    `counts` says what was scored and what was not: num_results, num_results_scored, and
    num_results_dropped with dropped_reason. ``category_ids`` are the categories evaluated (default:
    every category of the annotations); several (AP-10K's species, one keypoint set) are each evaluated
    on their own and averaged, as COCOeval does (a result counts for its own category_id).
    """
    gt = _as_coco(ann_file_or_coco)
    plain = list(map(_plain, results))
    nonpositive = [r for r in plain if not any(s > 0 for s in r['keypoints'][2::3])]
    kept = [r for r in plain if any(s > 0 for s in r['keypoints'][2::3])] if drop_nonpositive else plain
    counts = dict(num_results=len(plain), num_results_scored=len(kept), num_results_dropped=len(plain) - len(kept),
                  num_results_all_scores_nonpositive=len(nonpositive),
                  dropped_reason=ZERO_SCORE_RULE if len(plain) > len(kept) else None)
    if category_ids is not None:
        wanted = set(category_ids)
        other = sum(1 for r in kept if r['category_id'] not in wanted)
        if other:
            counts.update(num_results_other_category=other)
    if not kept:
        warnings.warn("no keypoint predictions to evaluate (empty or all keypoint scores <= 0): AP = 0")
        return {name: 0.0 for name in STAT_NAMES}, counts
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints; coco_table gives its table
        coco_eval = COCOeval(gt, gt.loadRes(kept), 'keypoints')
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.asarray(sigmas, dtype=np.float64)
        if category_ids is not None:
            coco_eval.params.catIds = sorted(category_ids)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return {name: float(v) for name, v in zip(STAT_NAMES, coco_eval.stats)}, counts


def coco_keypoint_eval(ann_file_or_coco, results, sigmas=None, category_ids=None, drop_nonpositive=True):
    """COCO keypoint AP/AR of results with pycocotools keys in STAT_NAMES (`coco_table` prints them).

    Predictions whose keypoint scores are all <= 0 are dropped first, as xtcocotools (used by mmpose)
    does, unless drop_nonpositive is False (pycocotools' own rule: every result is scored);
    `score_keypoints` also returns the counts. ``sigmas`` sets ``params.kpt_oks_sigmas`` for custom
    keypoint sets (default: COCO's 17). An empty result list scores 0 everywhere, with a warning.
    """
    return score_keypoints(ann_file_or_coco, results, sigmas, category_ids, drop_nonpositive)[0]


def coco_table(metrics):
    """COCOeval's standard keypoint table (the ten AP/AR lines pycocotools prints) of coco_keypoint_eval's metrics."""
    rows = []
    for name in STAT_NAMES:
        recall = name.startswith('AR')
        kind = 'Average Recall' if recall else 'Average Precision'
        suffix = name[2:]
        iou = {'50': '0.50', '75': '0.75'}.get(suffix, '0.50:0.95')
        area = {'m': 'medium', 'l': 'large'}.get(suffix, 'all')
        rows.append(f" {kind:<18} {'(AR)' if recall else '(AP)'} @[ IoU={iou:<9} | area={area:>6s} | "
                    f"maxDets={20:>3d} ] = {metrics[name]:0.3f}")
    return '\n'.join(rows)
