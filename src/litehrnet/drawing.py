"""Draw poses on images: skeleton limbs in per-limb colours, confident keypoints only, person boxes.

Colours are RGB (images are RGB throughout the package); line widths grow with the image so that
drawings stay legible on small and large pictures alike.
"""
import colorsys

import cv2
import numpy as np

BOX_COLOR = (255, 255, 255)


def limb_colors(num_limbs):
    """One saturated RGB colour per limb, spread evenly around the hue circle."""
    return [tuple(int(c * 255) for c in colorsys.hsv_to_rgb(i / max(num_limbs, 1), 0.9, 1.0))
            for i in range(num_limbs)]


def joint_colors(num_joints, skeleton):
    """Each joint takes the colour of the first limb that ends in it (white when in none).

    Limbs naming a joint the set does not have colour nothing (skeletons are checked where they are
    read; drawing never fails on one).
    """
    colors = [(255, 255, 255)] * num_joints
    for (a, b), color in reversed(list(zip(skeleton, limb_colors(len(skeleton))))):
        if 0 <= a < num_joints and 0 <= b < num_joints:
            colors[a] = colors[b] = color
    return colors


def _point(xy):
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def track_color(track_id):
    """A stable RGB colour per track id (golden-ratio hue steps, so neighbouring ids differ)."""
    hue = (int(track_id) * 0.618033988749895) % 1.0
    return tuple(int(c * 255) for c in colorsys.hsv_to_rgb(hue, 0.85, 1.0))


def draw_poses(image_rgb, persons, skeleton, kpt_thr=0.3, draw_boxes=True, radius=None, thickness=None):
    """A copy of the RGB image with each person's box, limbs and keypoints whose score is >= kpt_thr.

    A person is a dict with 'keypoints' (K, 3) = x, y, score in image pixels and, for the box,
    'bbox' [x, y, w, h] and optionally 'box_score' and 'track_id' (the box then takes the track's
    colour and is labelled with the id). radius / thickness: keypoint radius and limb thickness in
    pixels (default: growing with the image). No persons: an unchanged copy.
    """
    canvas = np.ascontiguousarray(image_rgb).copy()
    unit = max(1, int(round(max(canvas.shape[:2]) / 300)))
    radius = 2 * unit + 1 if radius is None else int(radius)
    thickness = 2 * unit if thickness is None else int(thickness)
    limb_palette = limb_colors(len(skeleton))
    num_joints = len(np.asarray(persons[0]['keypoints']).reshape(-1, 3)) if persons else 0
    joint_palette = joint_colors(num_joints, skeleton)
    for person in persons:
        kpts = np.asarray(person['keypoints'], dtype=np.float64).reshape(-1, 3)
        shown = np.isfinite(kpts).all(axis=1) & (kpts[:, 2] >= kpt_thr)
        if draw_boxes and person.get('bbox') is not None:
            x, y, w, h = (float(v) for v in person['bbox'])
            tid = person.get('track_id')
            color = BOX_COLOR if tid is None else track_color(tid)
            cv2.rectangle(canvas, _point((x, y)), _point((x + w, y + h)), color, unit, cv2.LINE_AA)
            label = ' '.join(([f"id {tid}"] if tid is not None else []) +
                             ([f"{person['box_score']:.2f}"] if person.get('box_score') is not None else []))
            if label:
                cv2.putText(canvas, label, _point((x + 2, y + 12 * unit)),
                            cv2.FONT_HERSHEY_SIMPLEX, 0.4 * unit, color, max(1, unit // 2), cv2.LINE_AA)
        for (a, b), color in zip(skeleton, limb_palette):
            if 0 <= a < len(shown) and 0 <= b < len(shown) and shown[a] and shown[b]:
                cv2.line(canvas, _point(kpts[a]), _point(kpts[b]), color, thickness, cv2.LINE_AA)
        for j, color in enumerate(joint_palette):
            if shown[j]:
                cv2.circle(canvas, _point(kpts[j]), radius, color, -1, cv2.LINE_AA)
    return canvas
