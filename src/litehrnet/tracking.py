"""People tracked across video frames, keypoint smoothing (One-Euro filter), boxes from tracked keypoints.

`PoseTracker.update(boxes, keypoints)` gives each person of a frame a track id. A frame's people are
matched to the live tracks by a similarity that mixes box IoU and keypoint OKS,

    similarity = (iou_weight * IoU + oks_weight * OKS) / (iou_weight + oks_weight),

with Hungarian assignment (scipy's linear_sum_assignment, maximising the total similarity); a pair
not above `sim_thr` is no match. With `motion=True` a track is compared where it should be now: its last
box and keypoints moved by its box centre's velocity (pixels per frame, from its last two sightings)
times the frames since it was last seen. This is what keeps two people apart when they cross: just
after the crossing each one's last box overlaps the *other* person best. OKS tells apart people whose
boxes coincide (same place and size, different poses). A person not matched gets a new id (ids are
never reused); a track survives `max_missed` frames without a match and is dropped after that.

With `smooth=True` every track's keypoint coordinates go through their own `OneEuroFilter`
(Casiez, Roussel and Vogel, CHI 2012); matching always uses the raw keypoints.

`box_from_keypoints` and `PoseTracker.keypoint_boxes` give boxes from tracked keypoints, for running
the detector only every N frames (`--det_interval N`) and taking the boxes in between from the tracks.
"""
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .evaluation.nms import oks_iou


class OneEuroFilter:
    """The One-Euro filter, element-wise over an array of any shape (e.g. K x 2 keypoint coordinates).

    For a sample x at time t (seconds), Te = t - t_prev:
        dx      = (x - x_hat_prev) / Te
        dx_hat  = a(Te, d_cutoff) * dx + (1 - a(Te, d_cutoff)) * dx_hat_prev
        fc      = min_cutoff + beta * |dx_hat|
        x_hat   = a(Te, fc) * x + (1 - a(Te, fc)) * x_hat_prev
    with a(Te, fc) = 1 / (1 + tau / Te), tau = 1 / (2 pi fc). The first sample passes through
    (x_hat = x, dx_hat = 0). The derivative is taken against the previous *filtered* value, as in the
    paper's definition. min_cutoff and d_cutoff are in Hz, beta in 1 / (units of x): lower min_cutoff
    for less jitter at rest, higher beta for less lag in fast motion.
    """

    def __init__(self, min_cutoff=1.0, beta=0.01, d_cutoff=1.0):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError(f"One-Euro filter needs min_cutoff > 0, d_cutoff > 0, beta >= 0; got "
                             f"{min_cutoff}, {d_cutoff}, {beta}")
        self.min_cutoff, self.beta, self.d_cutoff = float(min_cutoff), float(beta), float(d_cutoff)
        self.reset()

    def reset(self):
        """Forget the past: the next sample passes through."""
        self.x_hat = self.dx_hat = self.t = None

    @staticmethod
    def alpha(te, cutoff):
        """Smoothing factor of a first-order low-pass filter at `cutoff` Hz for a sampling period te."""
        tau = 1.0 / (2 * math.pi * np.asarray(cutoff, dtype=np.float64))
        return 1.0 / (1.0 + tau / te)

    def __call__(self, x, t):
        """The filtered value of sample x taken at time t (seconds, increasing)."""
        x = np.asarray(x, dtype=np.float64)
        if self.x_hat is None:
            self.x_hat, self.dx_hat, self.t = x.copy(), np.zeros_like(x), float(t)
            return x.copy()
        if x.shape != self.x_hat.shape:
            raise ValueError(f"One-Euro filter got shape {x.shape} after {self.x_hat.shape}")
        te = float(t) - self.t
        if te <= 0:
            raise ValueError(f"One-Euro filter needs increasing timestamps, got {t} after {self.t}")
        dx = (x - self.x_hat) / te
        a_d = self.alpha(te, self.d_cutoff)
        self.dx_hat = a_d * dx + (1 - a_d) * self.dx_hat
        a = self.alpha(te, self.min_cutoff + self.beta * np.abs(self.dx_hat))
        self.x_hat = a * x + (1 - a) * self.x_hat
        self.t = float(t)
        return self.x_hat.copy()


def box_iou_matrix(a, b):
    """IoU of every box of a (M, 4) with every box of b (N, 4), both x, y, w, h: (M, N)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = (x2 - x1).clip(0) * (y2 - y1).clip(0)
    union = a[:, None, 2] * a[:, None, 3] + b[None, :, 2] * b[None, :, 3] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def box_from_keypoints(keypoints, kpt_thr=0.3, scale=1.2, min_keypoints=2, image_hw=None):
    """Boxes (N, 4) x, y, w, h around keypoints (N, K, 3) (or one person (K, 3)), and a valid mask (N,).

    The tight box of the keypoints scoring above kpt_thr, enlarged `scale` times about its centre
    (keypoints stop at the eyes and ankles; a detector's box reaches the top of the head and the
    feet), clipped to the image when image_hw = (H, W) is given. A person with fewer than
    min_keypoints such keypoints, or whose box is empty, has valid False and a zero box.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    kpts = kpts.reshape((1,) + kpts.shape) if kpts.ndim == 2 else kpts
    boxes = np.zeros((len(kpts), 4))
    valid = np.zeros(len(kpts), dtype=bool)
    for i, person in enumerate(kpts):
        pts = person[person[:, 2] > kpt_thr, :2]
        if len(pts) < min_keypoints:
            continue
        lo, hi = pts.min(0), pts.max(0)
        centre, half = (lo + hi) / 2, (hi - lo) * scale / 2
        lo, hi = centre - half, centre + half
        if image_hw is not None:
            limit = np.array([image_hw[1], image_hw[0]], dtype=np.float64)
            lo, hi = lo.clip(0, limit), hi.clip(0, limit)
        if (hi > lo).all():
            boxes[i] = (*lo, *(hi - lo))
            valid[i] = True
    return boxes, valid


def _as_keypoints(keypoints, n):
    """Keypoints of n people as (n, K, 3) float64 (None stays None); ValueError on a mismatch."""
    if keypoints is None:
        return None
    kpts = np.asarray(keypoints, dtype=np.float64)
    if kpts.ndim != 3 or kpts.shape[0] != n or kpts.shape[2] != 3:
        raise ValueError(f"expected keypoints (N={n}, K, 3), got shape {kpts.shape}")
    return kpts


@dataclass
class Track:
    """One tracked person: last seen box (x, y, w, h) and keypoints (K, 3) at frame `frame`."""

    track_id: int
    box: np.ndarray
    keypoints: object
    frame: int
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    smoother: object = None

    def predicted(self, frame, motion):
        """Box and keypoints expected at `frame`: moved by velocity x frames since last seen (if motion)."""
        shift = self.velocity * (frame - self.frame) if motion else np.zeros(2)
        box = self.box + np.array([shift[0], shift[1], 0, 0])
        kpts = None
        if self.keypoints is not None:
            kpts = self.keypoints.copy()
            kpts[:, :2] += shift
        return box, kpts


@dataclass
class FrameTracks:
    """What `PoseTracker.update` returns for a frame: ids (N,) and keypoints (N, K, 3), smoothed if asked."""

    ids: np.ndarray
    keypoints: object


class PoseTracker:
    """Frame-to-frame identities of people by box IoU + keypoint OKS with Hungarian assignment.

    iou_weight, oks_weight: the mix of the similarity (OKS needs keypoints; without them IoU alone).
    sim_thr: a pair must score above it to match. max_missed: consecutive frames a track survives
    unmatched (a person unseen for up to max_missed frames keeps the id; ids are never reused).
    motion: compare tracks at their constant-velocity predicted places. sigmas: OKS sigmas per keypoint
    (default COCO's 17). kpt_thr: only detected keypoints scoring above it count in OKS (None: all).
    smooth: One-Euro filter per track (min_cutoff, beta, d_cutoff); fps gives the filter's timestamps
    when update is called without one.
    """

    def __init__(self, iou_weight=0.5, oks_weight=0.5, sim_thr=0.3, max_missed=5, motion=True, sigmas=None,
                 kpt_thr=None, smooth=False, fps=30.0, min_cutoff=1.0, beta=0.01, d_cutoff=1.0):
        if iou_weight < 0 or oks_weight < 0 or iou_weight + oks_weight <= 0:
            raise ValueError(f"tracking weights must be >= 0 with a positive sum, got IoU {iou_weight}, "
                             f"OKS {oks_weight}")
        if max_missed < 0 or fps <= 0:
            raise ValueError(f"max_missed must be >= 0 and fps > 0, got {max_missed} and {fps}")
        self.iou_weight, self.oks_weight, self.sim_thr = float(iou_weight), float(oks_weight), float(sim_thr)
        self.max_missed, self.motion, self.sigmas, self.kpt_thr = int(max_missed), bool(motion), sigmas, kpt_thr
        self.smooth, self.fps = bool(smooth), float(fps)
        self.filter_args = (min_cutoff, beta, d_cutoff)
        OneEuroFilter(*self.filter_args)  # validates the filter parameters now
        self.reset()

    def reset(self):
        """Forget every track (a new video); ids start again from 0."""
        self.tracks, self.frame, self.next_id = [], -1, 0

    def similarity(self, boxes, keypoints=None):
        """(tracks, people) similarity of the live tracks, predicted to the coming frame, with these people."""
        frame = self.frame + 1
        predicted = [t.predicted(frame, self.motion) for t in self.tracks]
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if not predicted or not len(boxes):
            return np.zeros((len(predicted), len(boxes)))
        iou = box_iou_matrix([p[0] for p in predicted], boxes)
        if keypoints is None or self.oks_weight == 0:
            return iou
        kpts = _as_keypoints(keypoints, len(boxes))
        areas = boxes[:, 2] * boxes[:, 3]
        oks = np.zeros_like(iou)
        for i, (box, tk) in enumerate(predicted):
            if tk is not None:
                oks[i] = oks_iou(tk, kpts, box[2] * box[3], areas, self.sigmas, self.kpt_thr)
        return (self.iou_weight * iou + self.oks_weight * oks) / (self.iou_weight + self.oks_weight)

    def update(self, boxes, keypoints=None, timestamp=None):
        """Track ids of a frame's people (boxes (N, 4) x, y, w, h; keypoints (N, K, 3) or None).

        Call once per frame, also for frames with nobody (N = 0). timestamp (seconds) is only used by
        the smoother; by default frame index / fps.
        """
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        kpts = _as_keypoints(keypoints, len(boxes))
        sim = self.similarity(boxes, kpts)
        self.frame += 1
        t = self.frame / self.fps if timestamp is None else float(timestamp)
        rows, cols = linear_sum_assignment(-sim) if sim.size else (np.zeros(0, int), np.zeros(0, int))
        matched = {c: self.tracks[r] for r, c in zip(rows, cols) if sim[r, c] > self.sim_thr}
        ids = np.zeros(len(boxes), dtype=np.int64)
        out = None if kpts is None else kpts.copy()
        for j in range(len(boxes)):
            track = matched.get(j)
            person_kpts = None if kpts is None else kpts[j].copy()
            if track is None:
                track = Track(self.next_id, boxes[j].copy(), person_kpts, self.frame,
                              smoother=OneEuroFilter(*self.filter_args) if self.smooth else None)
                self.next_id += 1
                self.tracks.append(track)
            else:
                old_centre = track.box[:2] + track.box[2:] / 2
                track.velocity = (boxes[j, :2] + boxes[j, 2:] / 2 - old_centre) / (self.frame - track.frame)
                track.box, track.keypoints, track.frame = boxes[j].copy(), person_kpts, self.frame
            ids[j] = track.track_id
            if track.smoother is not None and out is not None:
                out[j, :, :2] = track.smoother(kpts[j, :, :2], t)
        self.tracks = [tr for tr in self.tracks if self.frame - tr.frame <= self.max_missed]
        return FrameTracks(ids, out)

    def keypoint_boxes(self, kpt_thr=0.3, scale=1.2, image_hw=None):
        """Boxes for the coming frame from the tracks seen in the last one: (boxes (N, 4), scores (N,), ids (N,)).

        Each box is `box_from_keypoints` of the track's keypoints moved by its motion (when motion is
        on); its score is the mean score of the keypoints used. For the frames between detector runs.
        """
        boxes, scores, ids = [], [], []
        for tr in self.tracks:
            if tr.frame != self.frame or tr.keypoints is None:
                continue
            _, kpts = tr.predicted(self.frame + 1, self.motion)
            box, valid = box_from_keypoints(kpts, kpt_thr, scale, image_hw=image_hw)
            if valid[0]:
                boxes.append(box[0])
                scores.append(float(kpts[kpts[:, 2] > kpt_thr, 2].mean()))
                ids.append(tr.track_id)
        return (np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(scores, dtype=np.float64),
                np.array(ids, dtype=np.int64))
