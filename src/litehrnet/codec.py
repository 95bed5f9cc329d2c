"""The heatmap codec: keypoints <-> Gaussian heatmaps, with mmpose 0.13's numbers in mmpose 1.x's shape.

`MSRAHeatmap.encode` makes the training target, `MSRAHeatmap.decode` turns network heatmaps back into
keypoints in input-image pixels; both live in one object so they cannot drift apart. Going back to
the original image (`keypoints_to_image`) and the flip test (`flip_back`, `shift_heatmap`) are
separate steps.
"""
import cv2
import numpy as np

from .keypoints import flip_indices

PIXEL_STD = 200.0  # a centre/scale box's scale is its size in units of 200 pixels (mmpose)


def get_heatmap_maximum(heatmaps):
    """Argmax (x, y) and maximum of each (N, K, H, W) heatmap; location -1 where the maximum is not > 0."""
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(n, k, -1)
    idx = np.argmax(flat, axis=2)
    vals = np.take_along_axis(flat, idx[..., None], axis=2)[..., 0]
    locs = np.stack([idx % w, idx // w], axis=-1).astype(np.float32)
    locs[~(vals > 0)] = -1
    return locs, vals


def _gather(heatmaps, x, y):
    """heatmaps[n, k, y[n, k], x[n, k]] for every n, k."""
    n, k = np.indices(x.shape)
    return heatmaps[n, k, y, x]


def refine_keypoints(keypoints, heatmaps):
    """Move each argmax a quarter pixel toward its higher neighbour where 1 < x < W-1 and 1 < y < H-1."""
    h, w = heatmaps.shape[2:]
    x, y = keypoints[..., 0].astype(int), keypoints[..., 1].astype(int)
    inside = (1 < x) & (x < w - 1) & (1 < y) & (y < h - 1)
    x, y = np.clip(x, 1, w - 2), np.clip(y, 1, h - 2)
    dx = _gather(heatmaps, x + 1, y) - _gather(heatmaps, x - 1, y)
    dy = _gather(heatmaps, x, y + 1) - _gather(heatmaps, x, y - 1)
    offset = np.stack([np.sign(dx), np.sign(dy)], axis=-1) * 0.25
    return keypoints + np.where(inside[..., None], offset, 0).astype(np.float32)


def gaussian_blur(heatmaps, kernel=11):
    """Blur each heatmap (zero-padded, as mmpose) and rescale it to keep its original maximum."""
    border = (kernel - 1) // 2
    n, k, h, w = heatmaps.shape
    out = np.zeros((n, k, h, w), dtype=np.float32)
    padded = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
    for i, j in np.ndindex(n, k):
        padded[border:-border, border:-border] = heatmaps[i, j]
        blurred = cv2.GaussianBlur(padded, (kernel, kernel), 0)[border:-border, border:-border]
        peak = blurred.max()
        out[i, j] = blurred * (heatmaps[i, j].max() / peak) if peak != 0 else blurred
    return out


def refine_keypoints_dark(keypoints, heatmaps, blur_kernel_size):
    """DARK: one Newton step on the log of the blurred heatmap around each argmax (mmpose 'unbiased')."""
    h, w = heatmaps.shape[2:]
    hm = np.log(np.maximum(gaussian_blur(heatmaps, blur_kernel_size), 1e-10))
    x, y = keypoints[..., 0].astype(int), keypoints[..., 1].astype(int)
    inside = (1 < x) & (x < w - 2) & (1 < y) & (y < h - 2)
    x, y = np.clip(x, 2, w - 3), np.clip(y, 2, h - 3)

    def at(ox, oy):
        return _gather(hm, x + ox, y + oy).astype(np.float64)

    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * at(0, 0) + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    dyy = 0.25 * (at(0, 2) - 2 * at(0, 0) + at(0, -2))
    det = dxx * dyy - dxy ** 2
    inside &= det != 0
    det = np.where(inside, det, 1.0)
    offset = np.stack([-(dyy * dx - dxy * dy) / det, -(dxx * dy - dxy * dx) / det], axis=-1)
    return keypoints + np.where(inside[..., None], offset, 0).astype(np.float32)


class MSRAHeatmap:
    """Gaussian-heatmap codec (sigma in heatmap pixels, peak 1, window radius 3 sigma).

    post_process: 'default' (quarter-pixel shift), 'dark' (Taylor refinement on the blurred heatmap,
    kernel 6 sigma - 1: 11 for sigma 2, 17 for sigma 3) or None (plain argmax).
    """

    def __init__(self, input_size_hw, heatmap_size_hw, sigma, post_process='default',
                 blur_kernel_size=None):
        if post_process not in ('default', 'dark', None):
            raise ValueError(f"post_process must be 'default', 'dark' or None, got {post_process!r}")
        self.input_size_hw = tuple(int(v) for v in input_size_hw)
        self.heatmap_size_hw = tuple(int(v) for v in heatmap_size_hw)
        self.sigma = sigma
        self.post_process = post_process
        self.blur_kernel_size = blur_kernel_size or 2 * int(3 * sigma) - 1
        # input pixels per heatmap pixel, (x, y)
        self.stride = np.array([self.input_size_hw[1] / self.heatmap_size_hw[1],
                                self.input_size_hw[0] / self.heatmap_size_hw[0]])
        radius = sigma * 3
        size = 2 * radius + 1
        x = np.arange(0, size, 1, np.float32)
        c = size // 2
        self._gaussian = np.exp(-((x - c) ** 2 + (x[:, None] - c) ** 2) / (2 * sigma ** 2))

    def encode(self, keypoints, visible):
        """(K, 2) keypoints in input pixels, (K,) visibility -> heatmaps (K, H, W), weights (K,), float32.

        Peak at (int(x / stride + 0.5), int(y / stride + 0.5)); weight = visibility, 0 when the
        Gaussian window lies fully outside the heatmap (mmpose `_msra_generate_target`).
        """
        h, w = self.heatmap_size_hw
        radius = self.sigma * 3
        num = len(keypoints)
        heatmaps = np.zeros((num, h, w), dtype=np.float32)
        weights = np.clip(np.asarray(visible, dtype=np.float32).reshape(num), 0, 1)
        for j in range(num):
            mu_x = int(keypoints[j][0] / self.stride[0] + 0.5)
            mu_y = int(keypoints[j][1] / self.stride[1] + 0.5)
            left, top = int(mu_x - radius), int(mu_y - radius)
            right, bottom = int(mu_x + radius + 1), int(mu_y + radius + 1)
            if left >= w or top >= h or right < 0 or bottom < 0:
                weights[j] = 0
            if weights[j] > 0.5:
                heatmaps[j, max(0, top):min(bottom, h), max(0, left):min(right, w)] = self._gaussian[
                    max(0, -top):min(bottom, h) - top, max(0, -left):min(right, w) - left]
        return heatmaps, weights

    def decode(self, heatmaps):
        """(N, K, H, W) heatmaps -> keypoints (N, K, 2) in input pixels, scores (N, K) = heatmap maxima."""
        heatmaps = np.asarray(heatmaps, dtype=np.float32)
        keypoints, scores = get_heatmap_maximum(heatmaps)
        if self.post_process == 'default':
            keypoints = refine_keypoints(keypoints, heatmaps)
        elif self.post_process == 'dark':
            keypoints = refine_keypoints_dark(keypoints, heatmaps, self.blur_kernel_size)
        return keypoints * self.stride.astype(np.float32), scores


def codec_for(input_size_hw, post_process='default', stride=4, sigma=None):
    """The published codec for an input size: heatmap = input / stride (4; 1 for a full-resolution head),
    sigma (heatmap pixels) 3 if the heatmap is >= 72 wide, else 2, unless given."""
    heatmap_size_hw = (input_size_hw[0] // stride, input_size_hw[1] // stride)
    if sigma is None:
        sigma = 3 if heatmap_size_hw[1] >= 72 else 2
    return MSRAHeatmap(input_size_hw, heatmap_size_hw, sigma, post_process)


def keypoints_to_image(keypoints, center, scale, size_wh):
    """Map (..., K, 2) keypoints from a crop `size_wh` big (the codec's input size for decode output)
    back to the original image through the centre/scale box (mmpose transform_preds, non-UDP)."""
    scale = np.asarray(scale, dtype=np.float64) * PIXEL_STD
    center = np.asarray(center, dtype=np.float64)
    factor = scale / np.asarray(size_wh, dtype=np.float64)
    return keypoints * factor[..., None, :] + (center - scale * 0.5)[..., None, :]


def flip_back(heatmaps, flip_pairs):
    """Heatmaps of a mirrored input -> heatmaps of the original: swap left/right channels, mirror x."""
    order = flip_indices(heatmaps.shape[1], flip_pairs)
    return np.ascontiguousarray(heatmaps[:, order, :, ::-1])


def shift_heatmap(heatmaps):
    """Shift heatmaps one pixel right (hm[..., 1:] = hm[..., :-1]): aligns flipped output (flip test)."""
    shifted = heatmaps.copy()
    shifted[..., 1:] = heatmaps[..., :-1]
    return shifted
