"""Top-down crops and training augmentation, as mmpose 0.13 does them (classic, non-UDP).

A person is a centre and a scale (box size / 200 pixels, aspect fixed to the input's); the crop is
the classic three-point affine warp of that box onto the input. Evaluation, inference and export
all crop through `preprocess` / `preprocess_box`; training goes through `TopDownTrainTransform`.
Images are RGB uint8 HWC; sizes are written `_hw` (height, width) or `_wh` where OpenCV wants it.
"""
import cv2
import numpy as np

from ..codec import PIXEL_STD
from ..keypoints import flip_indices

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def clean_coco_box(box, img_w, img_h):
    """mmpose's COCO box sanitising: clip to the image, keep [x1, y1, x2 - x1, y2 - y1] or None if empty."""
    x, y, w, h = box[:4]
    x1, y1 = max(0, x), max(0, y)
    x2 = min(img_w - 1, x1 + max(0, w - 1))
    y2 = min(img_h - 1, y1 + max(0, h - 1))
    if x2 > x1 and y2 > y1:
        return [x1, y1, x2 - x1, y2 - y1]
    return None


def _fix_aspect(w, h, aspect_ratio):
    """Enlarge the short side so that w / h == aspect_ratio."""
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    return w, h


def box_to_center_scale(box_xywh, aspect_ratio, padding=1.25, rng=None):
    """Centre and scale (in units of 200 px) of a box, aspect fixed, padded (mmpose `_xywh2cs`).

    With an `rng`, the centre moves as mmpose 0.13's COCO training set did: with probability 0.3 by
    up to +-20 % of the box width/height (mmpose drew this once per sample when loading the dataset).
    """
    x, y, w, h = box_xywh[:4]
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if rng is not None and rng.random() < 0.3:
        center += 0.4 * (rng.random(2) - 0.5) * [w, h]
    w, h = _fix_aspect(w, h, aspect_ratio)
    scale = np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * padding
    return center, scale


def _rotate_point(pt, angle_rad):
    sn, cs = np.sin(angle_rad), np.cos(angle_rad)
    return np.array([pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs])


def _get_3rd_point(a, b):
    """The point that makes a right angle at b, turning a - b by 90 degrees."""
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def get_affine_transform(center, scale, rot, output_size_wh, shift=(0., 0.), inv=False):
    """2x3 matrix mapping the centre/scale box, rotated by `rot` degrees, onto the output (non-UDP)."""
    scale_tmp = np.asarray(scale, dtype=np.float64) * PIXEL_STD
    center = np.asarray(center, dtype=np.float64)
    shift = np.asarray(shift, dtype=np.float64)
    dst_w, dst_h = output_size_wh
    src_dir = _rotate_point([0., scale_tmp[0] * -0.5], np.pi * rot / 180)
    dst_dir = np.array([0., dst_w * -0.5])

    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = center + scale_tmp * shift
    src[1] = center + src_dir + scale_tmp * shift
    src[2] = _get_3rd_point(src[0], src[1])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [dst_w * 0.5, dst_h * 0.5]
    dst[1] = dst[0] + dst_dir
    dst[2] = _get_3rd_point(dst[0], dst[1])
    return cv2.getAffineTransform(dst, src) if inv else cv2.getAffineTransform(src, dst)


def affine_points(points, mat):
    """Apply a 2x3 affine matrix to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ mat[:, :2].T + mat[:, 2]


def _warp(image, mat, output_size_wh):
    return cv2.warpAffine(image, mat, (int(output_size_wh[0]), int(output_size_wh[1])),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def warp_crop(image, center, scale, rot, output_size_wh):
    """Crop the centre/scale box out of `image` at `output_size_wh`: bilinear, black outside."""
    return _warp(image, get_affine_transform(center, scale, rot, output_size_wh), output_size_wh)


def flip_joints(joints, visible, width, flip_pairs):
    """Mirror (K, 2) joints in an image `width` wide, swap pairs, zero invisible joints (fliplr_joints)."""
    order = flip_indices(len(joints), flip_pairs)
    joints = np.array(joints, dtype=np.float32)[order]
    visible = np.array(visible, dtype=np.float32)[order]
    joints[:, 0] = width - 1 - joints[:, 0]
    return joints * visible[:, None], visible


def half_body_box(joints, visible, info, aspect_ratio, rng):
    """Centre/scale around the visible upper or lower body, or None (mmpose half_body_transform).

    The caller applies the gate (more than 8 visible joints and rand < 0.3). The upper body is taken
    when randn < 0.5 (sic, about 69 %) and more than 2 of its joints are visible, else the lower body
    when more than 2 of its joints are visible, else the upper body; fewer than 2 joints give None.
    (mmpose's lower body is "every joint not upper": the same for COCO and MPII, whose ids partition.)
    """
    joints = np.asarray(joints, dtype=np.float32)
    upper = joints[[i for i in info.upper_body_ids if visible[i] > 0]]
    lower = joints[[i for i in info.lower_body_ids if visible[i] > 0]]
    if rng.standard_normal() < 0.5 and len(upper) > 2:
        selected = upper
    elif len(lower) > 2:
        selected = lower
    else:
        selected = upper
    if len(selected) < 2:
        return None
    w, h = selected.max(axis=0) - selected.min(axis=0)
    w, h = _fix_aspect(w, h, aspect_ratio)
    return selected.mean(axis=0), np.array([w / PIXEL_STD, h / PIXEL_STD], dtype=np.float32) * 1.5


def random_scale_rotation(rng, scale_factor=0.25, rot_factor=30, rot_prob=0.6):
    """Scale factor N(1, sf) clipped to 1 +- sf; rotation N(0, rf) clipped to +-2rf degrees w.p. rot_prob."""
    s = np.clip(rng.standard_normal() * scale_factor + 1, 1 - scale_factor, 1 + scale_factor)
    r = np.clip(rng.standard_normal() * rot_factor, -2 * rot_factor, 2 * rot_factor)
    return float(s), (float(r) if rng.random() <= rot_prob else 0.0)


def normalize(image_rgb):
    """RGB HWC (0-255) -> float32 CHW with ImageNet mean/std, as the backbone was trained."""
    image = np.asarray(image_rgb).transpose(2, 0, 1).astype(np.float32, order='C')
    image /= 255.0
    image -= MEAN[:, None, None]
    image /= STD[:, None, None]
    return image


def preprocess(image_rgb, center, scale, input_size_hw):
    """Crop and normalise one person given its centre/scale: the shared evaluation/inference/export path."""
    return normalize(warp_crop(image_rgb, center, scale, 0, input_size_hw[::-1]))


def preprocess_box(image_rgb, box_xywh, input_size_hw, padding=1.25):
    """Crop and normalise one person given its box; returns (CHW float32, center, scale)."""
    center, scale = box_to_center_scale(box_xywh, input_size_hw[1] / input_size_hw[0], padding)
    return preprocess(image_rgb, center, scale, input_size_hw), center, scale


class TopDownTrainTransform:
    """Training augmentation: random flip -> half-body -> scale/rotation -> affine warp -> jitter -> normalise.

brightness / contrast (default 0: off, and no random number drawn, so other streams are unchanged):
the warped crop becomes crop x c + 255 b, c uniform in 1 +- contrast, b uniform in +- brightness.

    All randomness comes from the `rng` (np.random.Generator) passed per call, so a seeded run is
    reproducible. Returns the CHW float32 input, the joints in input pixels (K, 2) and their
    visibility (K,), ready for the codec. MPII trains with half_body_prob=0.
    """

    def __init__(self, info, input_size_hw, flip_prob=0.5, half_body_prob=0.3,
                 num_joints_half_body=8, scale_factor=0.25, rot_factor=30, rot_prob=0.6, brightness=0.0,
                 contrast=0.0):
        self.info = info
        self.input_size_wh = (int(input_size_hw[1]), int(input_size_hw[0]))
        self.aspect_ratio = input_size_hw[1] / input_size_hw[0]
        self.flip_prob = flip_prob
        self.half_body_prob = half_body_prob if info.upper_body_ids else 0.0
        self.num_joints_half_body = num_joints_half_body
        self.scale_factor = scale_factor
        self.rot_factor = rot_factor
        self.rot_prob = rot_prob
        self.brightness = brightness
        self.contrast = contrast

    def __call__(self, image_rgb, joints, visible, center, scale, rng):
        """Augment one person: image RGB HWC, joints (K, 2) image pixels, visible (K,) in {0, 1}."""
        joints = np.array(joints, dtype=np.float32)[:, :2]
        visible = np.array(visible, dtype=np.float32)
        center = np.array(center, dtype=np.float32)
        scale = np.array(scale, dtype=np.float32)

        if rng.random() <= self.flip_prob:
            image_rgb = cv2.flip(image_rgb, 1)
            joints, visible = flip_joints(joints, visible, image_rgb.shape[1], self.info.flip_pairs)
            center[0] = image_rgb.shape[1] - center[0] - 1

        if (self.half_body_prob > 0 and np.sum(visible > 0) > self.num_joints_half_body
                and rng.random() < self.half_body_prob):
            half = half_body_box(joints, visible, self.info, self.aspect_ratio, rng)
            if half is not None:
                center, scale = half

        s, rot = random_scale_rotation(rng, self.scale_factor, self.rot_factor, self.rot_prob)
        scale = scale * s

        mat = get_affine_transform(center, scale, rot, self.input_size_wh)
        image = _warp(image_rgb, mat, self.input_size_wh)
        if self.brightness > 0 or self.contrast > 0:
            c = rng.uniform(1 - self.contrast, 1 + self.contrast) if self.contrast > 0 else 1.0
            b = rng.uniform(-self.brightness, self.brightness) * 255 if self.brightness > 0 else 0.0
            image = np.clip(image.astype(np.float32) * c + b, 0, 255).astype(np.uint8)
        joints = np.where(visible[:, None] > 0, affine_points(joints, mat), joints).astype(np.float32)
        return normalize(image), joints, visible
