"""Heads at output stride 1 (full resolution), 2 (light_hrnet's concat head) and 4 (official): the codec,
the flip test and the predictor follow the stride, and the heatmap sigma comes from the model's config."""
import mindspore as ms
import numpy as np
import pytest
from mindspore import nn

from litehrnet.codec import codec_for, codec_of_heatmaps, default_sigma, flip_shift
from litehrnet.keypoints import COCO_17, flip_indices
from litehrnet.models.registry import create_model, heatmap_sigma, output_stride
from litehrnet.predictor import TopDownPredictor

SIZE = (64, 64)
# keypoints on the grid of every stride (multiples of 4), inside the 64x64 crop
KEYPOINTS = np.array([[8 + 4 * (j % 6), 8 + 4 * (j // 3)] for j in range(17)], np.float64)


@pytest.mark.parametrize("stride", [1, 2, 4])
def test_round_trip_at_every_stride(stride):
    codec = codec_for(SIZE, post_process=None, output_stride=stride, sigma=2)
    assert codec.heatmap_size_hw == (64 // stride, 64 // stride)
    heatmaps, weights = codec.encode(KEYPOINTS, np.ones(17))
    assert heatmaps.shape == (17, 64 // stride, 64 // stride) and weights.tolist() == [1.0] * 17
    ys, xs = np.unravel_index(heatmaps.reshape(17, -1).argmax(1), heatmaps.shape[1:])
    np.testing.assert_array_equal(np.c_[xs, ys], KEYPOINTS / stride)  # the peak in heatmap pixels
    for post in (None, 'default', 'dark'):
        decoded, scores = codec_for(SIZE, post, stride, sigma=2).decode(heatmaps[None])
        # back in input pixels; DARK only where the Gaussian is not clipped by the border (its blur sees that)
        hm = KEYPOINTS / stride
        inner = ((hm >= 6) & (hm <= 64 // stride - 7)).all(1) if post == 'dark' else np.ones(17, bool)
        np.testing.assert_allclose(decoded[0][inner], KEYPOINTS[inner], atol=1e-3)
        np.testing.assert_allclose(scores, 1.0)


def test_off_grid_keypoints_decode_within_half_a_heatmap_pixel():
    rng = np.random.default_rng(0)
    pts = rng.uniform(6, 58, (17, 2))
    for stride in (1, 2):
        codec = codec_for(SIZE, output_stride=stride, sigma=2)
        decoded, _ = codec.decode(codec.encode(pts, np.ones(17))[0][None])
        assert np.abs(decoded[0] - pts).max() <= 0.5 * stride + 1e-6
        # the stride-4 codec would put the same target 4x too coarse: its error is larger
    coarse = codec_for(SIZE, output_stride=4, sigma=2)
    assert np.abs(coarse.decode(coarse.encode(pts, np.ones(17))[0][None])[0][0] - pts).max() > 0.5


def test_sigma_defaults_and_config():
    assert default_sigma((256, 192)) == 2 and default_sigma((384, 288)) == 3  # the published rule
    assert default_sigma((256, 192), 1) == 8 and default_sigma((256, 192), 2) == 4  # same Gaussian in input px
    assert codec_for((256, 192), output_stride=1).sigma == 8
    assert codec_for((256, 192), output_stride=1, sigma=3).sigma == 3
    assert output_stride("hrnet_w32") == 4 and output_stride("light_hrnet") == 2 and output_stride("litehrnet_18") == 4
    full = dict(create_model("light_hrnet", head=dict(type="full_resolution", sigma=2.5), conv_impl="native").config)
    assert output_stride(full) == 1 and heatmap_sigma(full) == 2.5
    assert heatmap_sigma("hrnet_w32") is None and heatmap_sigma("src/litehrnet/configs/models/hrnet_tiny.yaml") == 2
    with pytest.raises(ValueError, match="output stride"):
        codec_for((66, 64), output_stride=4)
    with pytest.raises(ValueError, match="one integer output stride"):
        codec_of_heatmaps((64, 64), (32, 16))


def test_flip_shift_per_stride():
    assert [flip_shift(s) for s in (1, 2, 4)] == [0, 1, 1]


class PerfectNet(nn.Cell):
    """Returns the heatmaps of KEYPOINTS for the crop it was shown, and of the mirrored pose for its mirror."""

    def __init__(self, crop, stride, declare=True):
        super().__init__()
        codec = codec_for(SIZE, output_stride=stride, sigma=2)
        order = flip_indices(17, COCO_17.flip_pairs)
        mirrored = np.c_[SIZE[1] - 1 - KEYPOINTS[order, 0], KEYPOINTS[order, 1]]
        self.crop = crop
        self.plain = codec.encode(KEYPOINTS, np.ones(17))[0]
        self.flipped = codec.encode(mirrored, np.ones(17))[0]
        if declare:
            self.output_stride = stride
        self.calls = 0

    def construct(self, x):
        x = x.asnumpy()
        self.calls += 1
        out = [self.plain if np.array_equal(c, self.crop) else self.flipped if np.array_equal(c, self.crop[..., ::-1])
               else np.zeros_like(self.plain) for c in x]
        return ms.Tensor(np.stack(out))


def _image_and_crop():
    rng = np.random.default_rng(1)
    image = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    box = [6.4, 6.4, 51.2, 51.2]  # padded by 1.25 to the whole 64x64 image: crop pixels are image pixels
    predictor = TopDownPredictor(PerfectNet(None, 4), SIZE, COCO_17, flip_test=False)
    crops, centers, scales = predictor.crops(image, [box])
    np.testing.assert_allclose(centers[0], [32, 32]) and np.testing.assert_allclose(scales[0] * 200, [64, 64])
    return image, box, crops[0]


@pytest.mark.parametrize("stride", [1, 2, 4])
@pytest.mark.parametrize("declare", [True, False])  # a Cell states its stride; an exported model may not
def test_predictor_decodes_at_the_network_stride(stride, declare):
    image, box, crop = _image_and_crop()
    for flip in (False, True):
        net = PerfectNet(crop, stride, declare)
        predictor = TopDownPredictor(net, SIZE, COCO_17, flip_test=flip)
        (person,) = predictor.predict(image, [box])
        np.testing.assert_allclose(person["keypoints"][:, :2], KEYPOINTS, atol=1e-3)
        np.testing.assert_allclose(person["keypoints"][:, 2], 1.0, atol=1e-6)
        assert predictor.codec.heatmap_size_hw == (64 // stride, 64 // stride)
        assert net.calls == 1


def test_predictor_refuses_heatmaps_off_the_declared_stride():
    image, box, crop = _image_and_crop()
    net = PerfectNet(crop, 2)
    net.output_stride = 4  # says 4, returns 32x32
    with pytest.raises(ValueError, match="32x32 heatmaps .* output stride 4"):
        TopDownPredictor(net, SIZE, COCO_17, flip_test=False).predict(image, [box])


@pytest.mark.parametrize("head, stride", [("full_resolution", 1), ("concat", 2)])
def test_tiny_light_hrnet_through_the_predictor(head, stride):
    ms.set_seed(0)
    net = create_model("light_hrnet", n_channels=8, num_blocks=1, head=head, conv_impl="native")
    assert net.output_stride == stride
    image, box, crop = _image_and_crop()
    predictor = TopDownPredictor(net, SIZE, COCO_17, flip_test=False)
    (person,) = predictor.predict(image, [box])
    heatmaps = net(ms.Tensor(crop[None])).asnumpy()
    assert heatmaps.shape == (1, 17, 64 // stride, 64 // stride)
    # the box maps crop pixels 1:1 to image pixels, so the keypoints are the heatmaps' maxima x stride
    flat = heatmaps[0].reshape(17, -1)
    ys, xs = np.unravel_index(flat.argmax(1), heatmaps.shape[2:])
    np.testing.assert_allclose(person["keypoints"][:, 2], flat.max(1), rtol=1e-5)
    # (random weights: a joint whose maximum is not > 0 has no location, -1 heatmap pixel, as mmpose)
    xs, ys = np.where(flat.max(1) > 0, xs, -1), np.where(flat.max(1) > 0, ys, -1)
    assert np.abs(person["keypoints"][:, 0] - xs * stride).max() <= 0.25 * stride + 1e-4
    assert np.abs(person["keypoints"][:, 1] - ys * stride).max() <= 0.25 * stride + 1e-4
