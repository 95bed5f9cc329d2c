"""Evaluation: COCO keypoint AP (pycocotools), OKS-NMS, MPII PCKh and landmark metrics of predictions
(no network: see litehrnet.evaluate for running one over a dataset)."""
from .coco import (STAT_NAMES, ZERO_SCORE_RULE, coco_keypoint_eval, coco_table, load_results, rescore, rescore_and_nms,
                   score_keypoints, write_results_json)
from .landmarks import bbox_size, epe, mre, pck, sdr
from .nms import COCO_SIGMAS, oks_iou, oks_nms, soft_oks_nms
from .pckh import load_mpii_gt, pckh

__all__ = ["COCO_SIGMAS", "STAT_NAMES", "ZERO_SCORE_RULE", "bbox_size", "coco_keypoint_eval", "coco_table", "epe", "load_mpii_gt",
           "load_results", "mre", "oks_iou", "oks_nms", "pck", "pckh", "rescore", "rescore_and_nms",
           "score_keypoints", "sdr", "soft_oks_nms", "write_results_json"]
