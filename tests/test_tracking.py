"""Tracking people across frames, the One-Euro filter, and boxes from tracked keypoints.

The synthetic videos: two figures of the same box size at the same height walk towards each other
at 10 px per frame and cross. Figure A raises its arms and stands with its legs together, figure B
hangs its arms and stands with its legs apart, so their boxes cannot tell them apart where they
overlap, their poses can.
"""
import math

import numpy as np
import pytest

from litehrnet.tracking import OneEuroFilter, PoseTracker, box_from_keypoints, box_iou_matrix

BOX_W, BOX_H, TOP = 60.0, 120.0, 100.0

# (dx from the box centre, dy from the box top) of the 17 COCO keypoints
BODY = {'nose': (0, 10), 'left_eye': (-4, 7), 'right_eye': (4, 7), 'left_ear': (-8, 9), 'right_ear': (8, 9),
        'left_shoulder': (-15, 30), 'right_shoulder': (15, 30), 'left_hip': (-10, 65), 'right_hip': (10, 65)}
ARMS_UP = {'left_elbow': (-22, 14), 'right_elbow': (22, 14), 'left_wrist': (-24, 2), 'right_wrist': (24, 2)}
ARMS_DOWN = {'left_elbow': (-20, 50), 'right_elbow': (20, 50), 'left_wrist': (-22, 70), 'right_wrist': (22, 70)}
LEGS_TOGETHER = {'left_knee': (-8, 90), 'right_knee': (8, 90), 'left_ankle': (-7, 115), 'right_ankle': (7, 115)}
LEGS_APART = {'left_knee': (-18, 90), 'right_knee': (18, 90), 'left_ankle': (-27, 115), 'right_ankle': (27, 115)}
ORDER = ['nose', 'left_eye', 'right_eye', 'left_ear', 'right_ear', 'left_shoulder', 'right_shoulder',
         'left_elbow', 'right_elbow', 'left_wrist', 'right_wrist', 'left_hip', 'right_hip', 'left_knee',
         'right_knee', 'left_ankle', 'right_ankle']
POSES = {'A': {**BODY, **ARMS_UP, **LEGS_TOGETHER}, 'B': {**BODY, **ARMS_DOWN, **LEGS_APART}}


def person(name, cx):
    """Box (x, y, w, h) and keypoints (17, 3) of figure `name` centred at x = cx."""
    pose = POSES[name]
    kpts = np.array([[cx + pose[k][0], TOP + pose[k][1], 0.9] for k in ORDER])
    return np.array([cx - BOX_W / 2, TOP, BOX_W, BOX_H]), kpts


def video(positions, order_seed=0):
    """Frames of [(name, box, keypoints), ...] from {frame: {name: cx}}, people in a shuffled order."""
    rng = np.random.default_rng(order_seed)
    frames = []
    for t in range(max(positions) + 1):
        people = [(name, *person(name, cx)) for name, cx in positions.get(t, {}).items()]
        frames.append([people[i] for i in rng.permutation(len(people))])
    return frames


def run(tracker, frames):
    """[{name: track id}, ...] per frame."""
    out = []
    for people in frames:
        boxes = np.array([p[1] for p in people]).reshape(-1, 4)
        kpts = np.array([p[2] for p in people]).reshape(-1, 17, 3)
        ids = tracker.update(boxes, kpts).ids
        out.append({p[0]: int(i) for p, i in zip(people, ids)})
    return out


def crossing(a_start, b_start, frames=21):
    return {t: {'A': a_start + 10 * t, 'B': b_start - 10 * t} for t in range(frames)}


def assert_constant_ids(ids, frames_range):
    for name in ('A', 'B'):
        seen = {ids[t][name] for t in frames_range if name in ids[t]}
        assert len(seen) == 1, f"{name} changed id within frames {frames_range}: {[ids[t] for t in frames_range]}"


def test_crossing_where_last_boxes_point_to_the_other_person():
    """Half-step crossing: just after it, each track's last box overlaps the *other* person best."""
    positions = crossing(100, 295)  # frame 9: A at 190, B at 205; frame 10: A at 200, B at 195
    frames = video(positions)
    # pure IoU against the last box swaps the two at frame 10 (IoU 55/65 against 50/70): the scene is hard
    naive = run(PoseTracker(iou_weight=1, oks_weight=0, motion=False, max_missed=3), frames)
    assert naive[9]['A'] == naive[10]['B'] and naive[9]['B'] == naive[10]['A']
    for tracker in (PoseTracker(max_missed=3), PoseTracker(iou_weight=1, oks_weight=0, max_missed=3)):
        ids = run(tracker, frames)
        assert_constant_ids(ids, range(21))
        assert ids[0]['A'] != ids[0]['B']


@pytest.mark.parametrize('b_first', [False, True])
def test_boxes_coincide_and_keypoints_tell_who_is_who(b_first):
    """Frame 10: both figures exactly at x = 200, identical boxes; only OKS on the poses separates them."""
    frames = video(crossing(100, 300))
    names = [p[0] for p in frames[10]]
    if names.index('B') != (0 if b_first else 1):
        frames[10] = frames[10][::-1]
    np.testing.assert_array_equal(frames[10][0][1], frames[10][1][1])  # same box
    ids = run(PoseTracker(max_missed=3), frames)
    assert_constant_ids(ids, range(21))
    assert ids[0]['A'] != ids[0]['B']


def test_iou_alone_cannot_resolve_coinciding_boxes():
    """The same frame 10 with IoU only: the assignment follows the detection order, so one order is wrong."""
    outcomes = set()
    for flip in (False, True):
        frames = video(crossing(100, 300))
        if flip:
            frames[10] = frames[10][::-1]
        ids = run(PoseTracker(iou_weight=1, oks_weight=0, max_missed=3), frames)
        outcomes.add(ids[10]['A'] == ids[0]['A'])
    assert outcomes == {True, False}


def test_leaving_and_coming_back_within_and_after_max_missed():
    """Crossing at frame 10; B unseen in frames 13-16 (4 = max_missed), A unseen in frames 18-22 (5)."""
    positions = crossing(100, 300, frames=30)
    for t in range(13, 17):
        del positions[t]['B']
    for t in range(18, 23):
        del positions[t]['A']
    ids = run(PoseTracker(max_missed=4), video(positions, order_seed=3))
    first_a, first_b = ids[0]['A'], ids[0]['B']
    assert first_a != first_b
    assert all(ids[t]['B'] == first_b for t in range(30) if 'B' in ids[t])  # back after 4 missed frames
    assert all(ids[t]['A'] == first_a for t in range(18))
    later_a = {ids[t]['A'] for t in range(23, 30)}
    assert len(later_a) == 1 and later_a.pop() not in (first_a, first_b)  # back after 5: a new id


def test_unmatched_person_gets_a_new_id_and_dissimilar_is_not_matched():
    tracker = PoseTracker(max_missed=2)
    box_a, kpts_a = person('A', 100)
    box_b, kpts_b = person('B', 400)
    assert tracker.update(box_a[None], kpts_a[None]).ids.tolist() == [0]
    # far away: similarity 0 < sim_thr, so B is a new person, and A (unmatched) is kept
    assert tracker.update(box_b[None], kpts_b[None]).ids.tolist() == [1]
    assert tracker.update(np.stack([box_b, box_a]), np.stack([kpts_b, kpts_a])).ids.tolist() == [1, 0]
    assert tracker.update(np.zeros((0, 4)), np.zeros((0, 17, 3))).ids.tolist() == []


def test_box_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [5, 0, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [10, 10, 5, 5], [0, 0, 0, 0]], float)
    np.testing.assert_allclose(box_iou_matrix(a, b), [[1, 0, 0], [50 / 150, 0, 0]])


def one_euro_reference(xs, ts, min_cutoff, beta, d_cutoff):
    """The One-Euro filter of a scalar sequence, written out from the paper's equations."""
    def alpha(te, fc):
        tau = 1 / (2 * math.pi * fc)
        return 1 / (1 + tau / te)
    out, x_hat, dx_hat = [xs[0]], xs[0], 0.0
    for i in range(1, len(xs)):
        te = ts[i] - ts[i - 1]
        dx = (xs[i] - x_hat) / te
        ad = alpha(te, d_cutoff)
        dx_hat = ad * dx + (1 - ad) * dx_hat
        fc = min_cutoff + beta * abs(dx_hat)
        a = alpha(te, fc)
        x_hat = a * xs[i] + (1 - a) * x_hat
        out.append(x_hat)
    return out


def test_one_euro_filter_against_its_equations():
    # changing speed (still, slow, fast, reversing) and uneven sampling periods
    ts = [0.0, 1 / 30, 2 / 30, 3 / 30, 0.2, 0.25, 0.3, 0.4]
    xs = np.array([[10.0, 10, 12, 15, 40, 80, 60, 61],      # accelerating, then back
                   [-5.0, -5, -5, -5, -5, -5, -5, -5],      # at rest
                   [50.0, 50, 45, 30, 10, 0, -5, -5]]).T    # falling: a negative derivative
    f = OneEuroFilter(min_cutoff=1.2, beta=0.05, d_cutoff=1.5)
    got = np.array([f(x, t) for x, t in zip(xs, ts)])
    for k in range(3):
        np.testing.assert_allclose(got[:, k], one_euro_reference(xs[:, k], ts, 1.2, 0.05, 1.5), rtol=1e-12)
    assert got[0, 0] == 10 and np.allclose(got[:, 1], -5)  # first sample passes; a constant stays
    # one step by hand: sample 2 (x 10 -> 12 after x_hat 10, Te 1/30)
    te, x_hat1 = 1 / 30, got[1, 0]
    a_d = 1 / (1 + (1 / (2 * math.pi * 1.5)) / te)
    dx_hat2 = a_d * (12 - x_hat1) / te + (1 - a_d) * (a_d * (10 - 10) / te)
    a = 1 / (1 + (1 / (2 * math.pi * (1.2 + 0.05 * abs(dx_hat2)))) / te)
    assert got[2, 0] == pytest.approx(a * 12 + (1 - a) * x_hat1, rel=1e-12)
    # beta > 0: the cutoff rises with speed, so the fast part lags less than with beta = 0
    slow = OneEuroFilter(min_cutoff=1.2, beta=0.0, d_cutoff=1.5)
    lag0 = [abs(x - slow(x, t)) for x, t in zip(xs[:, 0], ts)]
    assert abs(xs[5, 0] - got[5, 0]) < lag0[5]
    with pytest.raises(ValueError, match="increasing timestamps"):
        f(xs[0], 0.4)


def test_smoothing_filters_each_track_with_its_own_filter():
    frames = video(crossing(100, 300))
    tracker = PoseTracker(max_missed=3, smooth=True, fps=25.0, min_cutoff=0.5, beta=0.002)
    ref = {'A': OneEuroFilter(0.5, 0.002, 1.0), 'B': OneEuroFilter(0.5, 0.002, 1.0)}
    for t, people in enumerate(frames):
        out = tracker.update(np.array([p[1] for p in people]), np.array([p[2] for p in people]))
        for (name, _, kpts), smoothed in zip(people, out.keypoints):
            np.testing.assert_allclose(smoothed[:, :2], ref[name](kpts[:, :2], t / 25.0), rtol=1e-12)
            np.testing.assert_array_equal(smoothed[:, 2], kpts[:, 2])
            if t > 1:  # moving at 10 px per frame: the low cutoff lags behind
                assert np.abs(smoothed[:, 0] - kpts[:, 0]).min() > 1


def test_box_from_keypoints():
    kpts = np.array([[10, 20, 0.9], [30, 60, 0.8], [100, 100, 0.1], [20, 40, 0.5]], float)
    boxes, valid = box_from_keypoints(kpts, kpt_thr=0.3, scale=1.5)
    # tight box x 10..30, y 20..60 (the 0.1 point ignored), centre (20, 40), enlarged 1.5x: 30 x 60
    np.testing.assert_allclose(boxes, [[5, 10, 30, 60]])
    assert valid.tolist() == [True]
    boxes, valid = box_from_keypoints(kpts[None], kpt_thr=0.3, scale=1.5, image_hw=(50, 25))
    np.testing.assert_allclose(boxes, [[5, 10, 20, 40]])  # clipped to x <= 25, y <= 50
    boxes, valid = box_from_keypoints(kpts[None], kpt_thr=0.85)
    assert valid.tolist() == [False] and not boxes.any()  # one keypoint only


def test_keypoint_boxes_follow_the_tracks_motion():
    tracker = PoseTracker()
    for cx in (100, 110):
        box, kpts = person('A', cx)
        tracker.update(box[None], kpts[None])
    boxes, scores, ids = tracker.keypoint_boxes(kpt_thr=0.3, scale=1.0)
    _, next_kpts = person('A', 120)  # where A will be: 10 px further
    want, _ = box_from_keypoints(next_kpts, kpt_thr=0.3, scale=1.0)
    np.testing.assert_allclose(boxes, want)
    np.testing.assert_allclose(scores, [0.9])
    assert ids.tolist() == [0]
    tracker.update(np.zeros((0, 4)), np.zeros((0, 17, 3)))
    assert len(tracker.keypoint_boxes()[0]) == 0  # not seen in the last frame: no box
