"""MPII PCKh from mpii_gt_val.mat, as mmpose 0.13 reports it (per joint group, Mean, Mean@0.1), in percent.

Joint order (MPII): 0 r_ankle, 1 r_knee, 2 r_hip, 3 l_hip, 4 l_knee, 5 l_ankle, 6 pelvis, 7 thorax,
8 upper_neck, 9 head_top, 10 r_wrist, 11 r_elbow, 12 r_shoulder, 13 l_shoulder, 14 l_elbow, 15 l_wrist.
"""
from pathlib import Path

import numpy as np
from scipy.io import loadmat

HEAD_SIZE_FACTOR = 0.6  # head size = 0.6 x the head box diagonal
EXCLUDED = (6, 7)       # pelvis and thorax are left out of the means
GROUPS = {'Head': (9,), 'Shoulder': (13, 12), 'Elbow': (14, 11), 'Wrist': (15, 10),
          'Hip': (3, 2), 'Knee': (4, 1), 'Ankle': (5, 0)}


def load_mpii_gt(mat_file):
    """jnt_missing (16, N), pos_gt_src (16, 2, N), headboxes_src (2, 2, N) from mpii_gt_val.mat."""
    if not Path(mat_file).is_file():
        raise ValueError(f"MPII ground truth not found: {mat_file}")
    gt = loadmat(str(mat_file))
    missing = [k for k in ('jnt_missing', 'pos_gt_src', 'headboxes_src') if k not in gt]
    if missing:
        raise ValueError(f"{mat_file}: lacks {', '.join(missing)}")
    return gt['jnt_missing'], gt['pos_gt_src'], gt['headboxes_src']


def pckh(preds, mat_file, thr=0.5, mean01_thr=0.1):
    """PCKh of 0-based predictions (N, 16, 2+) in mpii_gt_val.mat order; percentages by joint group and mean.

    Returns 'Head', 'Shoulder', 'Elbow', 'Wrist', 'Hip', 'Knee', 'Ankle' (left/right averaged), 'Mean'
    (at thr) and 'Mean@0.1' (at mean01_thr), both weighted by joint counts without pelvis and thorax,
    and 'Mean@0.1 threshold', a string naming the threshold used: 0.1 by default; 0.11 reproduces the
    official README, whose figures came from an old mmpose indexing bug.
    """
    jnt_missing, pos_gt, headboxes = load_mpii_gt(mat_file)
    preds = np.asarray(preds, dtype=np.float64)
    if preds.ndim != 3 or preds.shape[1:2] != (16,) or preds.shape[0] != pos_gt.shape[2]:
        raise ValueError(f"{mat_file}: predictions have shape {preds.shape}, expected "
                         f"({pos_gt.shape[2]}, 16, 2 or 3)")
    pos_pred = np.transpose(preds[..., :2] + 1.0, (1, 2, 0))
    visible = 1 - jnt_missing
    head_size = HEAD_SIZE_FACTOR * np.linalg.norm(headboxes[1] - headboxes[0], axis=0)
    err = np.linalg.norm(pos_pred - pos_gt, axis=1) / head_size * visible
    count = visible.sum(1)
    weights = count.astype(np.float64)
    weights[list(EXCLUDED)] = 0
    weights /= weights.sum()

    def per_joint(t):
        with np.errstate(invalid='ignore', divide='ignore'):
            return 100.0 * ((err <= t) * visible).sum(1) / count

    at_thr = per_joint(thr)
    result = {name: float(np.mean(at_thr[list(j)])) for name, j in GROUPS.items()}
    result['Mean'] = float(np.nansum(at_thr * weights))
    result['Mean@0.1'] = float(np.nansum(per_joint(mean01_thr) * weights))
    note = " (as the official README: an old mmpose bug)" if np.isclose(mean01_thr, 0.11) else ""
    result['Mean@0.1 threshold'] = f"{mean01_thr:g}{note}"
    return result
