"""OKS non-maximum suppression over person keypoints, as mmpose 0.13 (greedy and soft/gaussian).

Each instance is a dict with 'keypoints' (K, 3) = x, y, score, 'score' (the rescored instance score)
and 'area' (the padded box area: scale x 200 in both directions, as mmpose 0.13 stores it).
"""
import numpy as np

from ..keypoints import COCO_17

COCO_SIGMAS = COCO_17.sigmas


def oks_iou(g, d, a_g, a_d, sigmas=None, vis_thr=None):
    """OKS of instance g (K, 3) against instances d (M, K, 3), areas a_g and a_d (M,): the NMS overlap.

    With vis_thr, only joints whose *detected* score is above it count: mmpose 0.13 wrote
    ``list(vg > vis_thr) and list(vd > vis_thr)``, which evaluates to the second mask alone.
    """
    sigmas = COCO_SIGMAS if sigmas is None else np.asarray(sigmas, dtype=np.float64)
    g = np.asarray(g, dtype=np.float64).reshape(-1, 3)
    d = np.asarray(d, dtype=np.float64).reshape(-1, len(g), 3)
    a_d = np.asarray(a_d, dtype=np.float64).reshape(-1, 1)
    dist2 = ((d[..., :2] - g[:, :2]) ** 2).sum(-1)
    e = dist2 / (2 * sigmas) ** 2 / ((a_g + a_d) / 2 + np.spacing(1)) / 2
    used = np.ones(e.shape, dtype=bool) if vis_thr is None else d[..., 2] > vis_thr
    count = used.sum(1)
    ious = np.where(count > 0, (np.exp(-e) * used).sum(1) / np.maximum(count, 1), 0.0)
    return ious.astype(np.float32)


def _unpack(kpts_db):
    """Scores (N,), keypoints (N, K, 3) and areas (N,) of a list of instances."""
    scores = np.array([k['score'] for k in kpts_db], dtype=np.float64)
    kpts = np.stack([np.asarray(k['keypoints'], dtype=np.float64).reshape(-1, 3) for k in kpts_db])
    areas = np.array([k['area'] for k in kpts_db], dtype=np.float64)
    return scores, kpts, areas


def oks_nms(kpts_db, thr=0.9, sigmas=None, vis_thr=None):
    """Greedy OKS-NMS: indices of the instances kept, best score first; drops those with OKS > thr."""
    if len(kpts_db) == 0:
        return np.zeros(0, dtype=np.intp)
    scores, kpts, areas = _unpack(kpts_db)
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        i = order[0]
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order = order[1:][ovr <= thr]
    return np.array(keep, dtype=np.intp)


def soft_oks_nms(kpts_db, thr=0.9, max_dets=20, sigmas=None, vis_thr=None):
    """Soft OKS-NMS (mmpose's gaussian rescoring, score x exp(-oks^2 / thr)): at most max_dets indices."""
    if len(kpts_db) == 0:
        return np.zeros(0, dtype=np.intp)
    scores, kpts, areas = _unpack(kpts_db)
    order = scores.argsort()[::-1]
    scores = scores[order]
    keep = []
    while len(order) > 0 and len(keep) < max_dets:
        i = order[0]
        keep.append(i)
        ovr = oks_iou(kpts[i], kpts[order[1:]], areas[i], areas[order[1:]], sigmas, vis_thr)
        order, scores = order[1:], scores[1:] * np.exp(-ovr ** 2 / thr)
        resort = scores.argsort()[::-1]
        order, scores = order[resort], scores[resort]
    return np.array(keep, dtype=np.intp)
