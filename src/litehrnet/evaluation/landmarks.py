"""Metrics for custom keypoint sets: box-normalised PCK and EPE (as mmpose), medical MRE and SDR.

Arrays: pred and gt (N, K, 2) in pixels, visible (N, K) bool (only visible joints are scored).
"""
import numpy as np


def bbox_size(boxes_xywh):
    """PCK normaliser of each box (N, 4) x, y, w, h: max(w, h), mmpose's convention for bbox PCK."""
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4)
    return boxes[:, 2:].max(1)


def _errors(pred, gt, visible, spacing=None):
    """Radial errors (N, K) in pixels (mm with spacing, mm/pixel scalar or (N,)) and the mask that counts."""
    err = np.linalg.norm(np.asarray(pred, np.float64)[..., :2] - np.asarray(gt, np.float64)[..., :2], axis=-1)
    if spacing is not None:
        err = err * np.asarray(spacing, dtype=np.float64).reshape(-1, 1)
    return err, np.asarray(visible, dtype=bool)


def pck(pred, gt, visible, norm, thr=0.2):
    """PCK as mmpose: per joint, the fraction of error / norm < thr; averaged over joints seen at least once.

    norm (N,) is each instance's box size (see bbox_size); instances with norm 0 are left out.
    """
    err, mask = _errors(pred, gt, visible)
    norm = np.asarray(norm, dtype=np.float64).reshape(-1, 1)
    mask = mask & (norm > 0)
    hit = (err / np.where(norm > 0, norm, 1) < thr) & mask
    count = mask.sum(0)
    seen = count > 0
    return float((hit.sum(0)[seen] / count[seen]).mean()) if seen.any() else 0.0


def epe(pred, gt, visible):
    """End-point error (mmpose's EPE): mean pixel distance over visible joints, 0 when none."""
    return mre(pred, gt, visible)


def mre(pred, gt, visible, spacing=None):
    """Mean radial error over visible landmarks in pixels, or mm given spacing (mm/pixel, scalar or (N,))."""
    err, mask = _errors(pred, gt, visible, spacing)
    return float(err[mask].mean()) if mask.any() else 0.0


def sdr(pred, gt, visible, thresholds, spacing=None):
    """Successful detection rate: {threshold: fraction of visible landmarks with radial error <= threshold}.

    Thresholds are in mm when spacing (mm/pixel, scalar or (N,)) is given (e.g. 2, 2.5, 3, 4), else pixels.
    """
    err, mask = _errors(pred, gt, visible, spacing)
    err = err[mask]
    return {t: float((err <= t).mean()) if err.size else 0.0 for t in thresholds}
