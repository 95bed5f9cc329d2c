"""A small, learnable COCO-17 keypoint dataset drawn offline: articulated stick figures on cluttered scenes.

Each person is a random pose (torso tilt, arm and leg angles, limb lengths) facing the camera, so the
person's left side is on the image right, as in a photo: the side is read from the pose, and the
labels stay consistent under a horizontal flip only when the flip swaps the left/right pairs (flip
pairs matter). The two sides are drawn in distinct colours (a blue and a red hue, which is which
varies per figure: a colour alone never says the side, as a mirrored figure is an equally valid
figure), so crossing limbs stay separable. Scenes have gradient backgrounds, random shapes, noise,
overlapping people and occluders (occluded joints get visibility 1, joints outside the image 0).
Everything follows from the seed: the same call writes the same files.

The layout is the 'custom' one: annotations/{train,val}.json and images/{train,val}/*.jpg, with the
COCO person category (17 keypoints and skeleton), so every COCO tool reads it.
"""
import fcntl
import json
from pathlib import Path

import cv2
import numpy as np

from ..fileio import write_json_atomic
from ..keypoints import COCO_17

VERSION = 2
IMAGE_SIZE_WH = (256, 192)
SPLITS = {'train': 1200, 'val': 120}  # images; about 1.8 persons each
# COCO persons cover about half of their box; OKS tolerances use this share of the box as the area.
AREA_SHARE = 0.53

# COCO-17 indices.
NOSE, L_EYE, R_EYE, L_EAR, R_EAR, L_SHO, R_SHO, L_ELB, R_ELB, L_WRI, R_WRI, L_HIP, R_HIP, L_KNE, R_KNE, \
    L_ANK, R_ANK = range(17)
LIMBS = ((L_SHO, L_ELB, 'L'), (L_ELB, L_WRI, 'L'), (R_SHO, R_ELB, 'R'), (R_ELB, R_WRI, 'R'),
         (L_HIP, L_KNE, 'L'), (L_KNE, L_ANK, 'L'), (R_HIP, R_KNE, 'R'), (R_KNE, R_ANK, 'R'))


def _direction(angle):
    """Unit vector at `angle` radians from straight down (+y), turning toward +x."""
    return np.array([np.sin(angle), np.cos(angle)])


def random_pose(rng, height):
    """(17, 2) joints of a figure `height` pixels tall, neck at the origin, plus the head radius."""
    jitter = rng.uniform(0.85, 1.15, size=6)
    tilt = rng.normal(0, 0.15)
    down = _direction(tilt)
    across = np.array([down[1], -down[0]])  # toward the person's left (image right when upright)
    torso, shoulders, hips = 0.30 * height * jitter[0], 0.22 * height * jitter[1], 0.15 * height * jitter[2]
    radius = 0.075 * height * jitter[3]
    joints = np.zeros((17, 2))
    head = -down * (0.05 * height + radius)
    joints[NOSE] = head + down * 0.25 * radius
    for idx, sign in ((L_EYE, 1), (R_EYE, -1)):
        joints[idx] = head + sign * across * 0.42 * radius - down * 0.2 * radius
    for idx, sign in ((L_EAR, 1), (R_EAR, -1)):
        joints[idx] = head + sign * across * 1.0 * radius
    pelvis = down * torso
    limb = np.array([0.17, 0.15, 0.24, 0.23]) * height * jitter[4:5].repeat(4) * rng.uniform(0.9, 1.1, 4)
    for sign, (sho, elb, wri, hip, kne, ank) in ((1, (L_SHO, L_ELB, L_WRI, L_HIP, L_KNE, L_ANK)),
                                                  (-1, (R_SHO, R_ELB, R_WRI, R_HIP, R_KNE, R_ANK))):
        out = sign  # turning "outward" for this side, in the image
        joints[sho] = out * across * shoulders / 2
        joints[hip] = pelvis + out * across * hips / 2
        upper = tilt + out * rng.uniform(-0.3, 2.6)
        joints[elb] = joints[sho] + limb[0] * _direction(upper)
        joints[wri] = joints[elb] + limb[1] * _direction(upper + rng.uniform(-2.0, 2.0))
        thigh = tilt + out * rng.uniform(-0.3, 0.9)
        joints[kne] = joints[hip] + limb[2] * _direction(thigh)
        joints[ank] = joints[kne] + limb[3] * _direction(thigh + rng.uniform(-1.0, 1.0))
    return joints, radius


def _hue_colour(hue, rng):
    """A saturated BGR colour of OpenCV hue `hue` (0-179)."""
    hsv = np.uint8([[[hue % 180, rng.integers(150, 256), rng.integers(140, 256)]]])
    return tuple(int(v) for v in cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0])


def _draw_person(canvas, mask, joints, radius, height, rng):
    """Draw one figure on the BGR canvas and its silhouette on `mask`."""
    blue, red = _hue_colour(rng.integers(95, 130), rng), _hue_colour(rng.integers(-8, 12), rng)
    colours = {'L': blue, 'R': red} if rng.random() < 0.5 else {'L': red, 'R': blue}
    body = tuple(int(v) for v in rng.integers(60, 200, 3))
    skin = _hue_colour(rng.integers(8, 22), rng)
    thick = max(2, int(round(0.055 * height)))
    pts = np.round(joints).astype(np.int32)
    torso = pts[[L_SHO, R_SHO, R_HIP, L_HIP]]
    neck = np.round((joints[L_SHO] + joints[R_SHO]) / 2).astype(np.int32)
    head = np.round((joints[L_EAR] + joints[R_EAR]) / 2).astype(np.int32)
    for target, value in ((canvas, None), (mask, 255)):
        cv2.fillConvexPoly(target, torso, value or body, cv2.LINE_AA if value is None else cv2.LINE_8)
        cv2.line(target, tuple(neck), tuple(head), value or body, thick)
        for a, b, s in LIMBS:
            cv2.line(target, tuple(pts[a]), tuple(pts[b]), value or colours[s], thick, cv2.LINE_AA)
        cv2.circle(target, tuple(head), int(round(radius)), value or skin, -1, cv2.LINE_AA)
    dot = max(1, int(round(radius * 0.22)))
    for idx, s in ((L_EYE, 'L'), (R_EYE, 'R'), (L_EAR, 'L'), (R_EAR, 'R')):
        cv2.circle(canvas, tuple(pts[idx]), dot, colours[s], -1, cv2.LINE_AA)
    cv2.circle(canvas, tuple(pts[NOSE]), dot, (20, 20, 20), -1, cv2.LINE_AA)
    for idx in (L_ELB, R_ELB, L_KNE, R_KNE, L_WRI, R_WRI, L_ANK, R_ANK):
        cv2.circle(canvas, tuple(pts[idx]), max(1, thick // 2), (235, 235, 235), -1, cv2.LINE_AA)


def _background(rng, size_wh):
    """A gradient between two random colours with random lines, circles and boxes on it."""
    w, h = size_wh
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    t = np.linspace(0, 1, w if rng.random() < 0.5 else h)
    ramp = a + (b - a) * t[:, None]
    image = np.repeat(ramp[None], h, 0) if len(t) == w else np.repeat(ramp[:, None], w, 1)
    image = np.ascontiguousarray(image.astype(np.uint8))
    for _ in range(rng.integers(3, 10)):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p, q = rng.integers(0, [w, h], size=(2, 2))
        kind = rng.integers(3)
        if kind == 0:
            cv2.line(image, tuple(map(int, p)), tuple(map(int, q)), colour, int(rng.integers(1, 6)))
        elif kind == 1:
            cv2.circle(image, tuple(map(int, p)), int(rng.integers(5, 40)), colour, -1)
        else:
            cv2.rectangle(image, tuple(map(int, p)), tuple(map(int, q)), colour, -1)
    return image


def _occluder(rng, canvas, mask, centre, height):
    """A random box or ellipse over part of a person, drawn on the canvas and its own mask."""
    colour = tuple(int(v) for v in rng.integers(0, 256, 3))
    half = (rng.uniform(0.1, 0.25, 2) * height).astype(int) + 2
    c = (np.asarray(centre) + rng.normal(0, 0.25 * height, 2)).astype(int)
    for target, value in ((canvas, colour), (mask, 255)):
        if rng.random() < 0.5:
            cv2.rectangle(target, tuple(c - half), tuple(c + half), value, -1)
        else:
            cv2.ellipse(target, tuple(map(int, c)), tuple(map(int, half)), 0, 0, 360, value, -1)


def render_image(rng, size_wh=IMAGE_SIZE_WH):
    """One scene: (RGB uint8 image, list of persons as (joints (17, 3) COCO-style, tight box xywh, area))."""
    w, h = size_wh
    canvas = _background(rng, size_wh)
    count = rng.choice([1, 2, 3], p=[0.45, 0.35, 0.2])
    layers, people = [], []  # layers: masks in drawing order; people: (layer index, joints, box)
    for _ in range(count):
        height = rng.uniform(70, 175)
        joints, radius = random_pose(rng, height)
        neck_y = rng.uniform(0.15 * height, max(0.16 * height, h - 0.75 * height))
        joints += [rng.uniform(0.1 * w, 0.9 * w), neck_y]
        mask = np.zeros((h, w), np.uint8)
        _draw_person(canvas, mask, joints, radius, height, rng)
        layers.append(mask)
        people.append((len(layers) - 1, joints, height))
        if rng.random() < 0.3:
            occ = np.zeros((h, w), np.uint8)
            _occluder(rng, canvas, occ, joints[[L_HIP, R_HIP, L_SHO, R_SHO]].mean(0), height)
            layers.append(occ)
    noise = rng.standard_normal(canvas.shape, dtype=np.float32) * np.float32(rng.uniform(2, 12))
    canvas = np.clip(canvas * np.float32(rng.uniform(0.7, 1.2)) + noise, 0, 255).astype(np.uint8)
    persons = []
    for layer, joints, _ in people:
        box = [float(v) for v in cv2.boundingRect(layers[layer])]
        if box[2] == 0:
            continue
        kpts = np.zeros((17, 3))
        for j, (x, y) in enumerate(joints):
            xi, yi = int(round(x)), int(round(y))
            if 0 <= xi < w and 0 <= yi < h:
                covered = any(m[yi, xi] for m in layers[layer + 1:])
                kpts[j] = (x, y, 1 if covered else 2)
        if (kpts[:, 2] > 0).any():
            persons.append((kpts, box, AREA_SHARE * box[2] * box[3]))
    return cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB), persons


def _category():
    return dict(id=1, name='person', supercategory='person', keypoints=list(COCO_17.joint_names),
                skeleton=[[a + 1, b + 1] for a, b in COCO_17.skeleton])


def write_split(root, split, num_images, seed=0):
    """Render and write one split: images/<split>/NNNNNN.jpg and annotations/<split>.json."""
    root = Path(root)
    (root / 'images' / split).mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    split_id = list(SPLITS).index(split) if split in SPLITS else len(SPLITS)
    images, annotations = [], []
    for i in range(num_images):
        image, persons = render_image(np.random.default_rng((seed, split_id, i)))
        name = f"{split}/{i:06d}.jpg"
        cv2.imwrite(str(root / 'images' / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        images.append(dict(id=i + 1, file_name=name, width=image.shape[1], height=image.shape[0]))
        for kpts, box, area in persons:
            annotations.append(dict(
                id=len(annotations) + 1, image_id=i + 1, category_id=1, iscrowd=0,
                bbox=[round(v, 2) for v in box], area=round(area, 2), num_keypoints=int((kpts[:, 2] > 0).sum()),
                keypoints=[round(float(v), 2) for v in kpts.reshape(-1)]))
    data = dict(info=_info(num_images, seed), images=images, annotations=annotations, categories=[_category()])
    path = root / 'annotations' / f'{split}.json'
    write_json_atomic(path, data)  # written last and atomically: its presence means the split is complete
    return path


def _info(num_images, seed):
    return dict(description='Lite-HRNet demo: rendered stick figures (COCO-17)', version=VERSION,
                num_images=num_images, seed=seed)


def ensure_generated(root, splits, seed, info, write_split, files=None):
    """The locked write-unless-complete loop of the generated sets (this demo, demo_landmarks); returns root.

    A split is complete when its annotation file's `info` equals `info(num_images, seed)`. `files` maps
    extra file names to JSON written once when missing (e.g. meta.json). A lock file serialises
    concurrent callers (the ranks of a distributed run): one writes, the others wait and find it complete.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / '.lock', 'w') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, content in (files or {}).items():
            if not (root / name).is_file():
                write_json_atomic(root / name, content, indent=1)
        for split, num_images in splits.items():
            path = root / 'annotations' / f'{split}.json'
            try:
                complete = json.loads(path.read_text()).get('info') == info(num_images, seed)
            except (OSError, ValueError):
                complete = False
            if not complete:
                write_split(root, split, num_images, seed)
    return root


def ensure_demo_dataset(root, splits=None, seed=0):
    """Write the demo dataset under `root` unless an identical one is already there; returns root."""
    return ensure_generated(root, splits or SPLITS, seed, _info, write_split)
