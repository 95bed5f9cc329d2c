"""A small offline landmark dataset: synthetic X-ray-like spines, 10 vertebrae x 4 corners = 40 landmarks.

Each image is a grayscale radiograph look-alike (128 wide, 256 tall): soft tissue, a column of ten
bright vertebral bodies (quadrilaterals with a denser rim) separated by dark disc spaces, along a
spine that curves sideways (scoliosis-like: up to two arcs) with each vertebra tilted to the curve.
Contrast, brightness, blur and noise vary per image, and some images carry occluders (dense
markers, rib-like bands); a landmark under an occluder has visibility 1, otherwise 2. Landmarks are
the vertebrae's corners in image terms (v1 at the top; top_left, top_right, bottom_right, bottom_left
as seen on the image); there are no flip pairs: left and right are not interchangeable here.
Everything follows from the seed: the same call writes the same files.

The layout is the 'custom' one: annotations/{train,val}.json and images/{train,val}/*.png (8-bit
grayscale; OpenCV reads them as 3 equal channels), one annotation per image whose box encloses the
spine, and meta.json (flip_pairs [], uniform sigmas) for the keypoint metadata.
"""
from pathlib import Path

import cv2
import numpy as np

from ..fileio import write_json_atomic
from ..keypoints import from_coco_category
from .demo import ensure_generated

VERSION = 1
IMAGE_SIZE_WH = (128, 256)
SPLITS = {'train': 224, 'val': 40}  # about the 85/15 split of the vertebra recipe's 264 images
NUM_VERTEBRAE = 10
CORNERS = ('top_left', 'top_right', 'bottom_right', 'bottom_left')
JOINT_NAMES = [f'v{i + 1}_{c}' for i in range(NUM_VERTEBRAE) for c in CORNERS]
# each vertebra's outline, then each corner to the same corner of the next vertebra below
SKELETON = [[4 * v + a, 4 * v + (a + 1) % 4] for v in range(NUM_VERTEBRAE) for a in range(4)]
SIGMA = 0.025  # OKS tolerance of every landmark: corners are sharp, far tighter than body joints
META = dict(name='vertebrae', flip_pairs=[], sigmas=[SIGMA] * len(JOINT_NAMES))
PAD = 0.12  # the box: the spine's extent grown by this share of its size on every side


def category():
    """The COCO category of the set (1-based skeleton, as COCO files have it)."""
    return dict(id=1, name='spine', supercategory='spine', keypoints=list(JOINT_NAMES),
                skeleton=[[a + 1, b + 1] for a, b in SKELETON])


def keypoint_info():
    """The KeypointInfo of the set: 40 landmarks, this skeleton, no flip pairs, uniform sigmas."""
    return from_coco_category(category(), META)


def spine_corners(rng, size_wh=IMAGE_SIZE_WH):
    """(40, 2) float corners of one random spine, in image pixels, vertebra by vertebra (CORNERS order)."""
    w, h = size_wh
    top, bottom = rng.uniform(0.05, 0.12) * h, rng.uniform(0.88, 0.95) * h
    pitch = (bottom - top) / NUM_VERTEBRAE  # one vertebra plus one disc
    t = (np.arange(NUM_VERTEBRAE) + 0.5) / NUM_VERTEBRAE
    # a sideways curve: one or two arcs (a C or S curve) of random size, plus a slight lean
    arcs = rng.choice([1, 2], p=[0.6, 0.4])
    amplitude = rng.uniform(0.0, 0.16) * w * rng.choice([-1, 1])
    phase = rng.uniform(-0.3, 0.3)
    lean = rng.uniform(-0.08, 0.08)

    def centre_x(tt):
        return w / 2 + lean * (tt - 0.5) * w + amplitude * np.sin(np.pi * arcs * tt + phase)

    ys = top + t * (bottom - top)
    xs = centre_x(t)
    slope = (centre_x(t + 1e-3) - centre_x(t - 1e-3)) / (2e-3 * (bottom - top))  # dx/dy of the curve
    corners = np.zeros((NUM_VERTEBRAE, 4, 2))
    for i in range(NUM_VERTEBRAE):
        grow = 1 + 0.35 * t[i]  # vertebrae get larger down the spine
        height = pitch * rng.uniform(0.62, 0.72)
        width = min(0.5 * w, pitch * rng.uniform(1.35, 1.6) * grow)
        wedge = rng.uniform(-0.08, 0.08) * height  # one side taller than the other
        angle = -np.arctan(slope[i]) + rng.normal(0, 0.03)  # endplates square to the curve
        local = np.array([[-width / 2, -height / 2 + wedge], [width / 2, -height / 2 - wedge],
                          [width / 2, height / 2 + wedge], [-width / 2, height / 2 - wedge]])
        local += rng.normal(0, 0.02 * height, local.shape)
        c, s = np.cos(angle), np.sin(angle)
        rot = np.array([[c, -s], [s, c]])  # turns +x toward +y by angle
        corners[i] = local @ rot.T + [xs[i], ys[i]]
    return corners.reshape(-1, 2)


def _soft_tissue(rng, size_wh):
    """A dark radiograph background: a brighter body band down the middle, a vertical gradient."""
    w, h = size_wh
    x = np.linspace(-1, 1, w)[None, :]
    y = np.linspace(0, 1, h)[:, None]
    band = np.exp(-(x / rng.uniform(0.5, 0.8)) ** 2)
    base = rng.uniform(15, 40) + rng.uniform(25, 55) * band * (1 + rng.uniform(-0.3, 0.3) * (y - 0.5))
    return np.broadcast_to(base, (h, w)).astype(np.float32).copy()


def _draw_vertebrae(image, corners, rng):
    """Bright vertebral bodies with a denser rim (cortical bone) on `image` (float32, in place)."""
    h, w = image.shape
    for quad in corners.reshape(NUM_VERTEBRAE, 4, 2):
        body = np.zeros((h, w), np.uint8)
        cv2.fillConvexPoly(body, np.round(quad * 16).astype(np.int32), 255, cv2.LINE_AA, shift=4)
        rim = np.zeros((h, w), np.uint8)
        cv2.polylines(rim, [np.round(quad * 16).astype(np.int32)], True, 255, 2, cv2.LINE_AA, shift=4)
        inner = rng.uniform(70, 110)
        texture = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 1.5) * 6
        image += (body / 255.0) * (inner + texture) + (rim / 255.0) * rng.uniform(25, 45) * (body > 0)


def _occluders(rng, image, corners):
    """Dense markers (bright discs or boxes) and rib-like bands; returns the mask of what they cover."""
    h, w = image.shape
    mask = np.zeros((h, w), np.uint8)
    for _ in range(rng.choice([0, 1, 2], p=[0.5, 0.35, 0.15])):
        layer = np.zeros((h, w), np.uint8)
        centre = corners[rng.integers(len(corners))] + rng.normal(0, 6, 2)
        half = rng.uniform(4, 12, 2)
        if rng.random() < 0.5:
            cv2.ellipse(layer, tuple(int(v) for v in centre), tuple(int(v) for v in half), 0, 0, 360, 255, -1)
        else:
            cv2.rectangle(layer, tuple(int(v) for v in centre - half), tuple(int(v) for v in centre + half), 255, -1)
        image[layer > 0] = rng.uniform(200, 250)  # a metal marker saturates the film
        mask |= layer
    for _ in range(rng.integers(0, 4)):  # ribs: faint curved bands across the spine (not occluding)
        y0 = rng.uniform(0.1, 0.6) * h
        xs = np.arange(w)
        ys = y0 + rng.uniform(10, 30) * ((xs - w / 2) / (w / 2)) ** 2 * rng.choice([-1, 1])
        band = np.zeros((h, w), np.uint8)
        cv2.polylines(band, [np.stack([xs, ys], 1).astype(np.int32)], False, 255, int(rng.integers(2, 5)))
        image += cv2.GaussianBlur(band.astype(np.float32), (0, 0), 1.0) / 255.0 * rng.uniform(8, 20)
    return mask


def render_image(rng, size_wh=IMAGE_SIZE_WH):
    """One radiograph: (grayscale uint8 image (h, w), keypoints (40, 3) as x, y, visibility)."""
    w, h = size_wh
    corners = spine_corners(rng, size_wh)
    image = _soft_tissue(rng, size_wh)
    _draw_vertebrae(image, corners, rng)
    covered = _occluders(rng, image, corners)
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.0))
    gain, offset, gamma = rng.uniform(0.75, 1.3), rng.uniform(-15, 15), rng.uniform(0.8, 1.25)
    image = 255.0 * (np.clip(image * gain + offset, 0, 255) / 255.0) ** gamma
    image += rng.standard_normal(image.shape).astype(np.float32) * rng.uniform(2, 9)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    kpts = np.zeros((len(corners), 3))
    for j, (x, y) in enumerate(corners):
        xi, yi = int(round(x)), int(round(y))
        inside = 0 <= xi < w and 0 <= yi < h
        kpts[j] = (x, y, (1 if covered[yi, xi] else 2)) if inside else (0, 0, 0)
    return image, kpts


def spine_box(kpts, size_wh=IMAGE_SIZE_WH):
    """The box (x, y, w, h) around the labelled corners, grown by PAD on every side, clipped to the image."""
    pts = kpts[kpts[:, 2] > 0, :2]
    lo, hi = pts.min(0), pts.max(0)
    grow = PAD * (hi - lo)
    lo, hi = np.maximum(lo - grow, 0), np.minimum(hi + grow, np.asarray(size_wh, float) - 1)
    return [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]


def write_split(root, split, num_images, seed=0):
    """Render and write one split: images/<split>/NNNNNN.png and annotations/<split>.json."""
    root = Path(root)
    (root / 'images' / split).mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(parents=True, exist_ok=True)
    split_id = list(SPLITS).index(split) if split in SPLITS else len(SPLITS)
    images, annotations = [], []
    for i in range(num_images):
        image, kpts = render_image(np.random.default_rng((seed, 40, split_id, i)))
        name = f"{split}/{i:06d}.png"
        target = root / 'images' / name
        temporary = target.with_name(target.stem + '.tmp.png')  # whole files only, even if interrupted
        cv2.imwrite(str(temporary), image)
        temporary.replace(target)
        images.append(dict(id=i + 1, file_name=name, width=image.shape[1], height=image.shape[0]))
        box = spine_box(kpts)
        annotations.append(dict(id=i + 1, image_id=i + 1, category_id=1, iscrowd=0,
                                bbox=[round(v, 2) for v in box], area=round(box[2] * box[3], 2),
                                num_keypoints=int((kpts[:, 2] > 0).sum()),
                                keypoints=[round(float(v), 2) for v in kpts.reshape(-1)]))
    data = dict(info=_info(num_images, seed), images=images, annotations=annotations, categories=[category()])
    path = root / 'annotations' / f'{split}.json'
    write_json_atomic(path, data)  # written last and atomically: its presence means the split is complete
    return path


def _info(num_images, seed):
    return dict(description='Lite-HRNet landmark demo: synthetic spine radiographs (10 vertebrae x 4 corners)',
                version=VERSION, num_images=num_images, seed=seed)


def ensure_landmark_dataset(root, splits=None, seed=0):
    """Write the landmark demo under `root` unless an identical one is already there; returns root.

    meta.json beside the annotations holds the keypoint metadata (no flip pairs).
    """
    return ensure_generated(root, splits or SPLITS, seed, _info, write_split, files={'meta.json': META})
