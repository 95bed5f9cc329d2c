"""Top-down inference and dataset evaluation: boxes -> shared crops -> heatmaps -> keypoints -> metrics.

`TopDownPredictor` runs any pose network on person boxes of one image (flip test and decoding as
mmpose 0.13). `evaluate_coco` (COCO AP, also custom COCO-format keypoint sets with PCK/EPE/MRE/SDR),
`evaluate_mpii` (PCKh) and `score_results` (an existing results file) evaluate whole datasets and
write their results and `metrics.json`; training calls `evaluate_coco` for validation.
"""
import contextlib
import io
import json
import os
import warnings
from collections import defaultdict
from pathlib import Path

import cv2
import mindspore as ms
import numpy as np
from pycocotools.coco import COCO
from tqdm import tqdm

from .codec import codec_for, flip_back, keypoints_to_image, shift_heatmap
from .data.keypoints import COCO_17, MPII_16, from_coco_category, get_keypoint_info
from .data.images import warn_if_truncated
from .data.mpii import default_gt_mat, load_mpii_annotations, mpii_center_scale
from .data.transforms import PIXEL_STD, clean_coco_box, preprocess, preprocess_box
from .evaluation import (bbox_size, coco_keypoint_eval, epe, load_results, mre, pck, pckh,
                         rescore_and_nms, sdr, write_results_json)
from .evaluation.pckh import GROUPS
from .fileio import read_json, write_json_atomic

BOX_SOURCES = {
    'gt': 'ground-truth boxes (the earlier MindSpore port\'s protocol; not comparable to published numbers)',
    'detector': 'detector boxes (published protocol)',
}
MAX_LISTED_SKIPS = 20  # skipped image names kept in metrics.json


class TopDownPredictor:
    """Keypoints of the people in boxes of one image: crop, run (with flip test), decode, map back.

    The network maps (N, 3, H, W) float32 crops to (N, K, H/4, W/4) heatmaps. In GRAPH mode every
    batch is padded to `batch_size`, so the graph is compiled once (a new shape costs ~45 s on CPU).
    Flip test is switched off for keypoint sets without left/right pairs.
    """

    def __init__(self, net, input_size_hw, keypoint_info=COCO_17, flip_test=True, post_process='default',
                 batch_size=32):
        self.net = net
        self.net.set_train(False)
        self.input_size_hw = (int(input_size_hw[0]), int(input_size_hw[1]))
        self.info = get_keypoint_info(keypoint_info) if isinstance(keypoint_info, str) else keypoint_info
        self.flip_test = bool(flip_test) and bool(self.info.flip_pairs)
        self.post_process = post_process
        self.codec = codec_for(self.input_size_hw, post_process)
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.fixed_batch = ms.get_context('mode') == ms.GRAPH_MODE  # pad every batch to batch_size

    def crops(self, image_rgb, boxes_xywh):
        """Crops (N, 3, H, W), centres (N, 2) and scales (N, 2) of boxes, through the shared preprocess_box."""
        out = [preprocess_box(image_rgb, box, self.input_size_hw) for box in boxes_xywh]
        if not out:
            return (np.zeros((0, 3) + self.input_size_hw, np.float32), np.zeros((0, 2), np.float32),
                    np.zeros((0, 2), np.float32))
        crops, centers, scales = zip(*out)
        return np.stack(crops), np.stack(centers), np.stack(scales)

    def _forward(self, crops):
        """Network heatmaps of crops, batch_size at a time (padded to batch_size when fixed_batch)."""
        out = []
        for start in range(0, len(crops), self.batch_size):
            batch = crops[start:start + self.batch_size]
            n = len(batch)
            if self.fixed_batch and n < self.batch_size:
                batch = np.concatenate([batch, np.zeros((self.batch_size - n,) + batch.shape[1:], np.float32)])
            out.append(self.net(ms.Tensor(np.ascontiguousarray(batch))).asnumpy()[:n])
        heatmaps = np.concatenate(out)
        if heatmaps.shape[1] != self.info.num_joints:
            raise ValueError(f"the network predicts {heatmaps.shape[1]} joints but the keypoint set "
                             f"'{self.info.name}' has {self.info.num_joints}")
        return heatmaps

    def heatmaps(self, crops):
        """Heatmaps of (N, 3, H, W) crops; with flip test, averaged with the mirrored crops' (shifted 1 px)."""
        crops = np.asarray(crops, dtype=np.float32)
        if not self.flip_test:
            return self._forward(crops)
        both = self._forward(np.concatenate([crops, crops[..., ::-1]]))
        flipped = shift_heatmap(flip_back(both[len(crops):], self.info.flip_pairs))
        return (both[:len(crops)] + flipped) * 0.5

    def predict_crops(self, crops, centers, scales):
        """Keypoints (N, K, 3) = x, y, score in image pixels of crops cut at the given centres/scales."""
        if len(crops) == 0:
            return np.zeros((0, self.info.num_joints, 3), np.float32)
        coords, scores = self.codec.decode(self.heatmaps(crops))
        coords = keypoints_to_image(coords, centers, scales, self.input_size_hw[::-1])
        return np.concatenate([coords, scores[..., None]], axis=-1).astype(np.float32)

    def predict(self, image_rgb, boxes_xywh, box_scores=None):
        """One dict per box: keypoints (K, 3), box_score, center, scale, area (the padded box area)."""
        boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
        scores = np.ones(len(boxes)) if box_scores is None else np.asarray(box_scores, np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} box scores")
        crops, centers, scales = self.crops(image_rgb, boxes)
        keypoints = self.predict_crops(crops, centers, scales)
        return [dict(keypoints=k, box_score=float(s), center=c, scale=sc, area=padded_area(sc))
                for k, s, c, sc in zip(keypoints, scores, centers, scales)]


def padded_area(scale):
    """Area of the padded centre/scale box in pixels (what OKS-NMS uses, as mmpose 0.13)."""
    return float(scale[0] * PIXEL_STD * scale[1] * PIXEL_STD)


def read_image_rgb(path):
    """An image file as RGB uint8 HWC, or None when it is missing or unreadable."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is not None:
        warn_if_truncated(path)
    return None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class _CropQueue:
    """Crops of many images run through the predictor in full batches; each record gets its keypoints."""

    def __init__(self, predictor):
        self.predictor = predictor
        self.pending = []  # (crops, centers, scales, records) per image
        self.count = 0
        self.done = []

    def add(self, crops, centers, scales, records):
        self.pending.append((crops, centers, scales, records))
        self.count += len(records)
        bs = self.predictor.batch_size
        if self.count >= bs:
            self._run(self.count // bs * bs)

    def finish(self):
        self._run(self.count)
        return self.done

    def _run(self, n):
        if n == 0:
            return
        crops, centers, scales = (np.concatenate([p[i] for p in self.pending]) for i in range(3))
        records = [r for p in self.pending for r in p[3]]
        for record, kpts in zip(records[:n], self.predictor.predict_crops(crops[:n], centers[:n], scales[:n])):
            record['keypoints'] = kpts
        self.done += records[:n]
        self.pending = [(crops[n:], centers[n:], scales[n:], records[n:])]
        self.count -= n


def _predict_images(predictor, jobs, crop_fn, progress):
    """Run jobs [(image path, records)] through the predictor; crop_fn(image, records) -> crops, centres, scales.

    Returns the records that got keypoints and the paths of images that could not be read.
    """
    queue, skipped = _CropQueue(predictor), []
    for path, records in tqdm(jobs, desc='evaluate', unit='img', disable=not progress, dynamic_ncols=True):
        image = read_image_rgb(path)
        if image is None:
            skipped.append(str(path))
            continue
        queue.add(*crop_fn(image, records), records)
    if jobs and len(skipped) == len(jobs):
        raise ValueError(f"none of the {len(jobs)} images could be read (first: {skipped[0]}): "
                         f"check the image folder")
    if skipped:
        warnings.warn(f"{len(skipped)} of {len(jobs)} images could not be read and were skipped "
                      f"(first: {skipped[0]})")
    return queue.finish(), skipped


def _load_coco(ann_file):
    """pycocotools COCO of an annotation file, quietly; a one-line ValueError when missing or broken."""
    if not Path(ann_file).is_file():
        raise ValueError(f"{ann_file}: annotation file not found")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(ann_file))
    except (json.JSONDecodeError, UnicodeDecodeError, AssertionError, KeyError, TypeError) as e:
        raise ValueError(f"{ann_file}: not a COCO annotation file ({type(e).__name__} {e})") from None


def keypoint_category(coco):
    """The first category with keypoints of a COCO object (the keypoint set being evaluated)."""
    cats = [c for c in coco.dataset.get('categories', []) if c.get('keypoints')]
    if not cats:
        raise ValueError("the annotation file has no category with keypoints")
    return cats[0]


def keypoint_info_for(coco, meta=None):
    """COCO_17 for COCO's person category, else the set described by the category (and `meta`)."""
    category = keypoint_category(coco)
    if meta is None and list(category['keypoints']) == COCO_17.joint_names:
        return COCO_17
    return from_coco_category(category, meta)


def gt_person_records(coco, cat_id):
    """Ground-truth boxes as mmpose 0.13: non-crowd, keypoints not all zero, cleaned box with area > 0."""
    jobs = defaultdict(list)
    for ann in coco.dataset['annotations']:
        kpts = np.asarray(ann.get('keypoints') or [0], dtype=np.float64)
        if (ann.get('category_id') != cat_id or ann.get('iscrowd', 0) or kpts.max() <= 0
                or ann.get('num_keypoints', 1) == 0 or ann.get('area', 1) <= 0):
            continue
        img = coco.imgs[ann['image_id']]
        box = clean_coco_box(ann['bbox'], img['width'], img['height'])
        if box is not None:
            jobs[ann['image_id']].append(dict(image_id=ann['image_id'], bbox=box, box_score=1.0,
                                              gt_keypoints=kpts.reshape(-1, 3), gt_bbox=ann['bbox']))
    return jobs


def _bad(path, i, what):
    return ValueError(f"{path}: detection {i} {what}")


def detector_person_records(bbox_file, coco, cat_id=1):
    """Detector boxes of category cat_id from a COCO detection-results JSON, by image; the count ignored.

    Boxes of images absent from the annotations (a detection file for a larger split) and boxes of
    zero width or height are ignored and counted.
    """
    path = Path(bbox_file)
    dets = read_json(path, "detection (bbox) file")
    if not isinstance(dets, list):
        raise ValueError(f"{path}: expected a JSON list of detections, got {type(dets).__name__}")
    jobs, ignored = defaultdict(list), 0
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or any(k not in det for k in ('bbox', 'category_id', 'image_id', 'score')):
            raise _bad(path, i, "is not an object with bbox, category_id, image_id and score")
        if det['category_id'] != cat_id:
            continue
        try:
            box = np.asarray(det['bbox'], dtype=np.float64)
            score = float(det['score'])
        except (TypeError, ValueError):
            raise _bad(path, i, "has a non-numeric bbox or score") from None
        if box.shape != (4,) or not np.isfinite(box).all() or not np.isfinite(score):
            raise _bad(path, i, "needs a finite bbox [x, y, w, h] and score")
        if det['image_id'] not in coco.imgs or box[2] <= 0 or box[3] <= 0:
            ignored += 1
            continue
        jobs[det['image_id']].append(dict(image_id=det['image_id'], bbox=box, box_score=score))
    if not jobs:
        raise ValueError(f"{path}: no detection of category {cat_id} on an image of the annotations")
    return jobs, ignored


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
                  pck_thresholds=(), sdr_thresholds=()):
    """COCO keypoint AP of `net` on a COCO-format set, with ground-truth boxes (bbox_file None) or detector boxes.

    Per image: predict every box, rescore, OKS-NMS (the set's sigmas; oks_thr None skips it). Writes
    `results_keypoints.json` and `metrics.json` to output_dir when given; returns the metrics (every
    COCOeval stat by name, box source, settings, counts). With ground-truth boxes, pck_thresholds and
    sdr_thresholds add PCK@t, EPE, MRE and SDR@t of the per-box predictions (custom keypoint sets).
    The network's train/eval mode is restored afterwards.
    """
    coco = _load_coco(ann_file)
    info = keypoint_info or keypoint_info_for(coco)
    cat_id = keypoint_category(coco)['id']
    if bbox_file is None:
        jobs, ignored = gt_person_records(coco, cat_id), 0
    else:
        jobs, ignored = detector_person_records(bbox_file, coco, cat_id)
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
    persons = [dict(image_id=r['image_id'], keypoints=r['keypoints'], score=r['box_score'], area=r['area'])
               for r in done]
    results = rescore_and_nms(persons, oks_thr, sigmas=info.sigmas, soft=soft_nms)
    for r in results:
        r['category_id'] = cat_id
    metrics = coco_keypoint_eval(coco, results, sigmas=info.sigmas)
    if bbox_file is None and (pck_thresholds or sdr_thresholds) and done:
        metrics.update(_landmark_metrics(done, pck_thresholds, sdr_thresholds))
    metrics.update(
        dataset=info.name, keypoint_set_notes=list(info.notes), box_source='gt' if bbox_file is None else 'detector',
        bbox_file=None if bbox_file is None else str(bbox_file), ann_file=str(ann_file), img_root=str(img_root),
        input_size=list(predictor.input_size_hw), flip_test=predictor.flip_test, post_process=post_process,
        oks_thr=oks_thr, soft_nms=bool(soft_nms), num_images=len(image_jobs), num_boxes=len(persons),
        num_boxes_ignored=ignored, num_results=len(results), **_skip_summary(skipped))
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        write_results_json(Path(output_dir) / 'results_keypoints.json', results)
        _write_json(Path(output_dir) / 'metrics.json', metrics)
    return metrics


def score_results(ann_file, results_json, output_dir=None, keypoint_info=None):
    """COCO keypoint AP of an existing results file (validated first); writes metrics.json to output_dir."""
    coco = _load_coco(ann_file)
    info = keypoint_info or keypoint_info_for(coco)
    results = load_results(results_json, coco, info.num_joints)
    metrics = coco_keypoint_eval(coco, results, sigmas=info.sigmas)
    metrics.update(dataset=info.name, box_source='results file', results_json=str(results_json),
                   ann_file=str(ann_file), num_results=len(results))
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        _write_json(Path(output_dir) / 'metrics.json', metrics)
    return metrics


def print_pckh_table(result):
    """Print PCKh per joint group and the means, as mmpose lists them."""
    names = list(GROUPS) + ['Mean', 'Mean@0.1']
    print(' | '.join(f'{n:>8}' for n in names))
    print(' | '.join(f'{result[n]:8.2f}' for n in names))


def evaluate_mpii(net, ann_file, img_root, input_size_hw=(256, 256), gt_mat=None, flip_test=True,
                  post_process='default', batch_size=32, output_dir=None, mean01_thr=0.1, progress=True):
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
    predictor = TopDownPredictor(net, input_size_hw, MPII_16, flip_test, post_process, batch_size)

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
    print_pckh_table(metrics)
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


def summary_line(metrics):
    """One line saying what was measured, on what, and with which boxes."""
    skipped = metrics.get('num_images_skipped', 0)
    tail = f"; {skipped} unreadable images skipped" if skipped else ""
    if metrics.get('dataset') == 'mpii':
        return (f"MPII PCKh@0.5 Mean {metrics['Mean']:.2f}, Mean@0.1 {metrics['Mean@0.1']:.2f} (threshold "
                f"{metrics['Mean@0.1 threshold']}) on {metrics['num_people']} people, annotated centre/scale "
                f"boxes; flip test {'on' if metrics['flip_test'] else 'off'}, {metrics['post_process']} "
                f"decoding{tail}")
    name = 'COCO' if metrics.get('dataset') == 'coco' else metrics.get('dataset')
    head = f"{name} keypoint AP {metrics['AP']:.3f} (AP50 {metrics['AP50']:.3f}, " \
           f"AP75 {metrics['AP75']:.3f}, AR {metrics['AR']:.3f})"
    extra = ''.join(f", {k} {v:.3f}" for k, v in metrics.items() if k.startswith(('PCK@', 'SDR@')))
    extra += ''.join(f", {k} {metrics[k]:.2f} px" for k in ('EPE', 'MRE') if k in metrics)
    if metrics['box_source'] == 'results file':
        return f"{head}{extra}: scored {metrics['num_results']} results from {metrics['results_json']}"
    source = BOX_SOURCES[metrics['box_source']] if name == 'COCO' else \
        f"{'ground-truth' if metrics['box_source'] == 'gt' else 'detector'} boxes"
    return (f"{head}{extra} on {metrics['num_images'] - skipped} images, {metrics['num_boxes']} boxes, "
            f"{source}; flip test {'on' if metrics['flip_test'] else 'off'}, "
            f"{metrics['post_process']} decoding{tail}")
