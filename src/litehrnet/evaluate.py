"""Dataset evaluation: a network over a whole annotated split, its results files and its metrics.

`evaluate_coco` (COCO AP; custom COCO-format keypoint sets add PCK/EPE/MRE/SDR), `evaluate_mpii`
(PCKh) and `score_results` (an existing results file) write their results and `metrics.json` and
return the metrics; nothing is printed (`EVALUATORS` pairs each with its text tables and one-line
summary, for the command line and the training log). Training validates through `evaluate_split`.
"""
import contextlib
import io
import json
import warnings
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from pycocotools.coco import COCO
from tqdm import tqdm

from .data.mpii import default_gt_mat, load_mpii_annotations, mpii_center_scale
from .data.transforms import clean_coco_box, preprocess
from .data.validate import load_ground_truth, sigma_record
from .detection import detector_person_records
from .evaluation import (bbox_size, coco_table, epe, load_results, mre, pck, pckh, rescore_and_nms,
                         score_keypoints, sdr, write_results_json)
from .evaluation.pckh import GROUPS
from .fileio import write_json_atomic
from .keypoints import MPII_16
from .predictor import CropBatcher, TopDownPredictor, padded_area, read_image_rgb

BOX_SOURCES = {
    'gt': 'ground-truth boxes (the earlier MindSpore port\'s protocol; not comparable to published numbers)',
    'detector': 'detector boxes (published protocol)',
}
MAX_LISTED_SKIPS = 20  # skipped image names kept in metrics.json


def _predict_images(predictor, jobs, crop_fn, progress):
    """Run jobs [(image path, records)] through the predictor; crop_fn(image, records) -> crops, centres, scales.

    Returns the records that got keypoints and the paths of images that could not be read.
    """
    batcher, done, skipped = CropBatcher(predictor), [], []

    def collect(ready):
        for records, keypoints in ready:
            for record, kpts in zip(records, keypoints):
                record['keypoints'] = kpts
            done.extend(records)

    for path, records in tqdm(jobs, desc='evaluate', unit='img', disable=not progress, dynamic_ncols=True):
        image = read_image_rgb(path)
        if image is None:
            skipped.append(str(path))
            continue
        collect(batcher.add(records, *crop_fn(image, records)))
    if jobs and len(skipped) == len(jobs):
        raise ValueError(f"none of the {len(jobs)} images could be read (first: {skipped[0]}): "
                         f"check the image folder")
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(jobs)} images could not be read and were skipped "
                      f"(first: {skipped[0]})")
    collect(batcher.finish())
    return done, skipped


def load_coco(ann_file, keypoints=None, meta=None, sigmas=None):
    """(pycocotools COCO, data.validate.GroundTruth) of an annotation file checked by the one validator
    (one-line AnnotationError naming the file, the record and the reason)."""
    gt = load_ground_truth(ann_file, keypoints, meta, sigmas)
    coco = COCO()
    coco.dataset = dict(gt.data, annotations=gt.keypoint_annotations())  # the keypoint set's categories only
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco, gt


def gt_person_records(coco, cat_ids):
    """Ground-truth boxes as mmpose 0.13: non-crowd, keypoints not all zero, cleaned box with area > 0,
    of the categories cat_ids (an id or a collection: AP-10K's species share one keypoint set)."""
    cat_ids = {cat_ids} if isinstance(cat_ids, int) else set(cat_ids)
    jobs = defaultdict(list)
    for ann in coco.dataset['annotations']:
        if ann.get('category_id') not in cat_ids:
            continue
        kpts = np.asarray(ann.get('keypoints') or [0], dtype=np.float64)
        if ann.get('iscrowd', 0) or kpts.max() <= 0 or ann.get('num_keypoints', 1) == 0 or ann.get('area', 1) <= 0:
            continue
        img = coco.imgs[ann['image_id']]
        box = clean_coco_box(ann['bbox'], img['width'], img['height'])
        if box is not None:
            jobs[ann['image_id']].append(dict(image_id=ann['image_id'], bbox=box, box_score=1.0,
                                              category_id=ann['category_id'],
                                              gt_keypoints=kpts.reshape(-1, 3), gt_bbox=ann['bbox']))
    return jobs


def _ground_truth_record(gt, info):
    """What metrics.json records about the ground truth and the keypoint set's sigmas."""
    return dict(sigma_record(info), category_ids=list(gt.category_ids), annotation_notes=list(gt.notes),
                num_crowd_annotations=gt.num_crowd)


def _landmark_metrics(records, pck_thresholds, sdr_thresholds):
    """PCK (box-normalised), EPE, and with sdr_thresholds MRE and SDR, of predictions on ground-truth boxes."""
    pred = np.stack([r['keypoints'][:, :2] for r in records])
    gt = np.stack([r['gt_keypoints'][:, :2] for r in records])
    visible = np.stack([r['gt_keypoints'][:, 2] > 0 for r in records])
    norm = bbox_size([r['gt_bbox'] for r in records])
    out = {f'PCK@{t:g}': pck(pred, gt, visible, norm, t) for t in pck_thresholds}
    out['EPE'] = epe(pred, gt, visible)
    if sdr_thresholds:
        out['MRE'] = mre(pred, gt, visible)
        out.update({f'SDR@{t:g}': v for t, v in sdr(pred, gt, visible, sdr_thresholds).items()})
    return out


def _write_json(path, obj):
    write_json_atomic(path, obj, indent=2, allow_nan=True)  # a metric may be undefined (NaN)


def _skip_summary(skipped):
    return dict(num_images_skipped=len(skipped), skipped_images=skipped[:MAX_LISTED_SKIPS])


def evaluate_coco(net, ann_file, img_root, input_size_hw, bbox_file=None, flip_test=True, post_process='default',
                  batch_size=32, oks_thr=0.9, soft_nms=False, output_dir=None, keypoint_info=None, progress=True,
                  pck_thresholds=(), sdr_thresholds=(), keypoints=None, meta=None, sigmas=None,
                  drop_nonpositive=True):
    """COCO keypoint AP of `net` on a COCO-format set, with ground-truth boxes (bbox_file None) or detector boxes.

    Per image: predict every box, rescore, OKS-NMS (the set's sigmas; oks_thr None skips it). Writes
    `results_keypoints.json` and `metrics.json` to output_dir when given; returns the metrics (every
    COCOeval stat by name, box source, settings, counts). With ground-truth boxes, pck_thresholds and
    sdr_thresholds add PCK@t, EPE, MRE and SDR@t of the per-box predictions (custom keypoint sets).
    The network's train/eval mode is restored afterwards.
    """
    coco, gt = load_coco(ann_file, keypoints, meta, sigmas)
    info = keypoint_info or gt.info
    if bbox_file is None:
        jobs, ignored = gt_person_records(coco, gt.category_ids), 0
    else:
        jobs, ignored = detector_person_records(bbox_file, coco, gt.category_ids)
    was_training = bool(getattr(net, 'training', False))
    predictor = TopDownPredictor(net, input_size_hw, info, flip_test, post_process, batch_size)

    def crop_fn(image, records):
        crops, centers, scales = predictor.crops(image, [r['bbox'] for r in records])
        for r, c, s in zip(records, centers, scales):
            r.update(center=c, scale=s, area=padded_area(s))
        return crops, centers, scales

    image_jobs = [(Path(img_root) / coco.imgs[i]['file_name'], recs) for i, recs in jobs.items()]
    try:
        done, skipped = _predict_images(predictor, image_jobs, crop_fn, progress)
    finally:
        net.set_train(was_training)
    persons = [dict(image_id=r['image_id'], keypoints=r['keypoints'], score=r['box_score'], area=r['area'],
                    category_id=r.get('category_id', gt.category_ids[0])) for r in done]
    results = rescore_and_nms(persons, oks_thr, sigmas=info.sigmas, soft=soft_nms)
    metrics, counts = score_keypoints(coco, results, info.sigmas, gt.category_ids, drop_nonpositive)
    if bbox_file is None and (pck_thresholds or sdr_thresholds) and done:
        metrics.update(_landmark_metrics(done, pck_thresholds, sdr_thresholds))
    metrics.update(
        dataset=info.name, keypoint_set_notes=list(info.notes), box_source='gt' if bbox_file is None else 'detector',
        bbox_file=None if bbox_file is None else str(bbox_file), ann_file=str(ann_file), img_root=str(img_root),
        input_size=list(predictor.input_size_hw), flip_test=predictor.flip_test, post_process=post_process,
        oks_thr=oks_thr, soft_nms=bool(soft_nms), num_images=len(image_jobs), num_boxes=len(persons),
        num_boxes_ignored=ignored, **counts, **_ground_truth_record(gt, info), **_skip_summary(skipped))
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_results_json(Path(output_dir) / 'results_keypoints.json', results)
        _write_json(Path(output_dir) / 'metrics.json', metrics)
    return metrics


def score_results(ann_file, results_json, output_dir=None, keypoint_info=None, keypoints=None, meta=None,
                  sigmas=None, drop_nonpositive=True):
    """COCO keypoint AP of an existing results file (both files validated first); writes metrics.json to
    output_dir. The metrics count what was scored and what was dropped, and why."""
    coco, gt = load_coco(ann_file, keypoints, meta, sigmas)
    info = keypoint_info or gt.info
    results = load_results(results_json, coco, info.num_joints)
    metrics, counts = score_keypoints(coco, results, info.sigmas, gt.category_ids, drop_nonpositive)
    metrics.update(dataset=info.name, keypoint_set_notes=list(info.notes), box_source='results file',
                   results_json=str(results_json), ann_file=str(ann_file), **counts,
                   **_ground_truth_record(gt, info))
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _write_json(Path(output_dir) / 'metrics.json', metrics)
    return metrics


def pckh_table(metrics):
    """PCKh per joint group and the means, as mmpose lists them: two lines of text."""
    names = list(GROUPS) + ['Mean', 'Mean@0.1']
    return '\n'.join([' | '.join(f'{n:>8}' for n in names), ' | '.join(f'{metrics[n]:8.2f}' for n in names)])


def evaluate_mpii(net, ann_file, img_root, input_size_hw, gt_mat=None, flip_test=True, post_process='default',
                  batch_size=32, output_dir=None, mean01_thr=0.1, progress=True, keypoint_info=None):
    """MPII PCKh of `net` on the annotated centre/scale boxes (mpii_gt_val.mat beside ann_file by default).

    Writes `results_mpii.json` (per person: index, image, keypoints) and `metrics.json` to output_dir
    when given; returns the metrics. People on unreadable images count as wrong.
    """
    gt_mat = default_gt_mat(ann_file) if gt_mat is None else Path(gt_mat)
    anns = load_mpii_annotations(ann_file, gt_mat)
    jobs = defaultdict(list)
    for i, a in enumerate(anns):
        center, scale = mpii_center_scale(a['center'], a['scale'])
        jobs[a['image']].append(dict(index=i, image=a['image'], center=center, scale=scale))
    was_training = bool(getattr(net, 'training', False))
    predictor = TopDownPredictor(net, input_size_hw, keypoint_info or MPII_16, flip_test, post_process, batch_size)

    def crop_fn(image, records):
        crops = np.stack([preprocess(image, r['center'], r['scale'], predictor.input_size_hw) for r in records])
        return crops, np.stack([r['center'] for r in records]), np.stack([r['scale'] for r in records])

    image_jobs = [(Path(img_root) / name, recs) for name, recs in jobs.items()]
    try:
        done, skipped = _predict_images(predictor, image_jobs, crop_fn, progress)
    finally:
        net.set_train(was_training)
    preds = np.full((len(anns), MPII_16.num_joints, 3), np.nan)
    for r in done:
        preds[r['index']] = r['keypoints']
    metrics = pckh(preds, gt_mat, thr=0.5, mean01_thr=mean01_thr)
    metrics.update(dataset='mpii', box_source='gt', ann_file=str(ann_file), gt_mat=str(gt_mat),
                   img_root=str(img_root), input_size=list(predictor.input_size_hw), flip_test=predictor.flip_test,
                   post_process=post_process, num_images=len(image_jobs), num_people=len(anns),
                   num_predicted=len(done), **_skip_summary(skipped))
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _write_json(Path(output_dir) / 'results_mpii.json',
                    [dict(index=r['index'], image=r['image'], keypoints=r['keypoints'].tolist()) for r in done])
        _write_json(Path(output_dir) / 'metrics.json', metrics)
    return metrics


def _skip_tail(metrics):
    skipped = metrics.get('num_images_skipped', 0)
    return f"; {skipped} unreadable images skipped" if skipped else ""


def pckh_summary(metrics):
    """One line saying what evaluate_mpii measured, on what, with which boxes."""
    tail = _skip_tail(metrics)
    return (f"MPII PCKh@0.5 Mean {metrics['Mean']:.2f}, Mean@0.1 {metrics['Mean@0.1']:.2f} (threshold "
                f"{metrics['Mean@0.1 threshold']}) on {metrics['num_people']} people, annotated centre/scale "
                f"boxes; flip test {'on' if metrics['flip_test'] else 'off'}, {metrics['post_process']} "
                f"decoding{tail}")


def coco_summary(metrics):
    """One line saying what evaluate_coco (or score_results) measured, on what, with which boxes."""
    skipped, tail = metrics.get('num_images_skipped', 0), _skip_tail(metrics)
    name = 'COCO' if metrics.get('dataset') == 'coco' else metrics.get('dataset')
    head = f"{name} keypoint AP {metrics['AP']:.3f} (AP50 {metrics['AP50']:.3f}, " \
           f"AP75 {metrics['AP75']:.3f}, AR {metrics['AR']:.3f})"
    extra = ''.join(f", {k} {v:.3f}" for k, v in metrics.items() if k.startswith(('PCK@', 'SDR@')))
    extra += ''.join(f", {k} {metrics[k]:.2f} px" for k in ('EPE', 'MRE') if k in metrics)
    dropped = metrics.get('num_results_dropped', 0)
    scored = (f"{metrics['num_results_scored']} of {metrics['num_results']} results "
              f"({dropped} with every keypoint score <= 0 dropped, as xtcocotools does)" if dropped
              else f"{metrics['num_results_scored']} results")
    if metrics['box_source'] == 'results file':
        return f"{head}{extra}: scored {scored} from {metrics['results_json']}"
    source = BOX_SOURCES[metrics['box_source']] if name == 'COCO' else \
        f"{'ground-truth' if metrics['box_source'] == 'gt' else 'detector'} boxes"
    return (f"{head}{extra} on {metrics['num_images'] - skipped} images, {metrics['num_boxes']} boxes, "
            f"{source}, scored {scored}; flip test {'on' if metrics['flip_test'] else 'off'}, "
            f"{metrics['post_process']} decoding{tail}")


@dataclass(frozen=True)
class Evaluator:
    """How one kind of dataset is evaluated, reported as tables and summed up in one line."""

    evaluate: Callable   # (net, ann_file, img_root, input_size_hw, **settings) -> metrics
    tables: Callable     # metrics -> text (the standard tables)
    summary: Callable    # metrics -> one line


EVALUATORS = {  # by data.datasets.DatasetSpec.evaluator
    'coco': Evaluator(evaluate_coco, coco_table, coco_summary),
    'mpii': Evaluator(evaluate_mpii, pckh_table, pckh_summary),
}


def evaluate_split(spec, net, ann_file, img_root, input_size_hw, keypoint_info=None, **settings):
    """Evaluate `net` on a split of the dataset `spec` (a data.datasets.DatasetSpec) with its evaluator."""
    return EVALUATORS[spec.evaluator].evaluate(net, ann_file, img_root, input_size_hw, keypoint_info=keypoint_info,
                                               **settings)
