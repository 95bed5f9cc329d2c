"""The top-down predictor and dataset evaluation, end to end with a perfect fake network on tiny COCO.

The fake network returns, for each crop it knows, the heatmaps the codec encodes from the ground truth
(and for a mirrored crop, those of the mirrored pose): any error in cropping, flip test, decoding,
mapping back, rescoring, NMS, the results file or COCOeval shows up as AP below 1.
"""
import hashlib
import json
import shutil
from dataclasses import replace
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import nn
from scipy.io import savemat
from conftest import SHARED

from litehrnet.codec import codec_for
from litehrnet.keypoints import COCO_17, MPII_16, flip_indices, from_coco_category
from litehrnet.data.transforms import affine_points, clean_coco_box, get_affine_transform, preprocess, \
    preprocess_box
from litehrnet.evaluate import coco_summary, evaluate_coco, evaluate_mpii, pckh_summary
from litehrnet.predictor import TopDownPredictor, read_image_rgb

TINY = SHARED / 'data' / 'coco-tiny'
ANN_FILE = TINY / 'test_coco.json'
SIZE = (256, 192)
# COCO joint (or pair of joints, averaged) for each MPII joint, in MPII order
MPII_FROM_COCO = [16, 14, 12, 11, 13, 15, (11, 12), (5, 6), (5, 6), 0, 10, 8, 6, 5, 7, 9]

pytestmark = pytest.mark.skipif(not ANN_FILE.is_file(), reason=f"shared test data not found: {TINY}")


def _key(crop):
    return hashlib.sha1(np.ascontiguousarray(crop, dtype=np.float32).tobytes()).hexdigest()


class TableNet(nn.Cell):
    """A 'network' that returns the heatmaps stored for each known crop (zeros otherwise); records inputs."""

    def __init__(self, num_joints, heatmap_hw):
        super().__init__()
        self.table = {}
        self.zeros = np.zeros((num_joints,) + tuple(heatmap_hw), np.float32)
        self.inputs = []

    def learn(self, crop, keypoints, visible, codec, info):
        """Store the heatmaps of keypoints (input pixels) for the crop, and of the mirrored pose for its mirror."""
        self.table[_key(crop)] = codec.encode(keypoints, visible)[0]
        order = flip_indices(len(keypoints), info.flip_pairs)
        mirrored = np.c_[crop.shape[-1] - 1 - keypoints[order, 0], keypoints[order, 1]]
        self.table[_key(crop[..., ::-1])] = codec.encode(mirrored, visible[order])[0]

    def construct(self, x):
        x = x.asnumpy()
        self.inputs.append(x)
        return ms.Tensor(np.stack([self.table.get(_key(c), self.zeros) for c in x]))


def coco_people():
    """(image file, cleaned box, keypoints (K, 3)) of every non-crowd person with keypoints."""
    data = json.loads(ANN_FILE.read_text())
    images = {im['id']: im for im in data['images']}
    people = []
    for ann in data['annotations']:
        if ann['num_keypoints'] == 0 or ann['iscrowd']:
            continue
        im = images[ann['image_id']]
        box = clean_coco_box(ann['bbox'], im['width'], im['height'])
        people.append((im['file_name'], box, np.array(ann['keypoints'], np.float64).reshape(-1, 3)))
    return people


def perfect_coco_net(info=COCO_17, size=SIZE):
    """A TableNet that knows the crop of every ground-truth box of the tiny COCO set."""
    codec = codec_for(size)
    net = TableNet(info.num_joints, codec.heatmap_size_hw)
    for file_name, box, kpts in coco_people():
        crop, center, scale = preprocess_box(read_image_rgb(TINY / file_name), box, size)
        mat = get_affine_transform(center, scale, 0, size[::-1])
        net.learn(crop, affine_points(kpts[:, :2], mat), kpts[:, 2] > 0, codec, info)
    return net


def test_predictor_feeds_the_shared_preprocess_crops():
    image = read_image_rgb(TINY / '000000040083.jpg')
    boxes = [[30.5, 40.25, 120.0, 200.0], [200.0, 10.0, 80.0, 90.0], [-10.0, 100.0, 60.0, 300.0]]
    net = TableNet(17, (64, 48))
    predictor = TopDownPredictor(net, SIZE, COCO_17, flip_test=True, batch_size=8)
    people = predictor.predict(image, boxes, box_scores=[0.9, 0.8, 0.7])
    fed = net.inputs[0]
    assert fed.shape == (6, 3, 256, 192)
    for i, box in enumerate(boxes):
        crop, center, scale = preprocess_box(image, box, SIZE)
        np.testing.assert_array_equal(fed[i], crop)
        np.testing.assert_array_equal(fed[3 + i], crop[..., ::-1])
        np.testing.assert_array_equal(people[i]['center'], center)
        np.testing.assert_array_equal(people[i]['scale'], scale)
        assert people[i]['area'] == pytest.approx(scale[0] * 200 * scale[1] * 200)
        assert people[i]['keypoints'].shape == (17, 3) and people[i]['keypoints'].dtype == np.float32
    assert [p['box_score'] for p in people] == pytest.approx([0.9, 0.8, 0.7])
    assert predictor.predict(image, []) == []


def test_fixed_batches_pad_and_give_the_same_keypoints():
    file_name, box, _ = coco_people()[0]
    image = read_image_rgb(TINY / file_name)
    net = perfect_coco_net()
    plain = TopDownPredictor(net, SIZE, COCO_17, batch_size=4).predict(image, [box] * 3)
    padded = TopDownPredictor(net, SIZE, COCO_17, batch_size=4)
    padded.fixed_batch = True  # what GRAPH mode does: one input shape, compiled once
    net.inputs.clear()
    again = padded.predict(image, [box] * 3)
    assert [x.shape[0] for x in net.inputs] == [4, 4]
    for a, b in zip(plain, again):
        np.testing.assert_array_equal(a['keypoints'], b['keypoints'])


def test_flip_test_is_off_without_flip_pairs():
    info = replace(COCO_17, flip_pairs=[])
    assert not TopDownPredictor(TableNet(17, (64, 48)), SIZE, info).flip_test
    assert TopDownPredictor(TableNet(17, (64, 48)), SIZE, 'coco').flip_test


def test_gt_boxes_give_ap_1(tmp_path):
    metrics = evaluate_coco(perfect_coco_net(), ANN_FILE, TINY, SIZE, flip_test=False, output_dir=tmp_path,
                            progress=False)
    assert metrics['AP'] == pytest.approx(1.0, abs=1e-6)
    assert metrics['box_source'] == 'gt' and metrics['num_boxes'] == 12 and metrics['num_results'] == 12
    assert metrics['flip_test'] is False and metrics['num_images_skipped'] == 0
    assert json.loads((tmp_path / 'metrics.json').read_text()) == metrics
    results = json.loads((tmp_path / 'results_keypoints.json').read_text())
    assert len(results) == 12 and all(len(r['keypoints']) == 51 and r['category_id'] == 1 for r in results)
    assert 'ground-truth boxes' in coco_summary(metrics)


def test_flip_test_with_a_symmetric_fake_is_consistent(tmp_path):
    net = perfect_coco_net()
    metrics = evaluate_coco(net, ANN_FILE, TINY, SIZE, flip_test=True, progress=False)
    assert metrics['AP'] == pytest.approx(1.0, abs=1e-6) and metrics['flip_test'] is True
    for file_name, box, kpts in coco_people():
        image = read_image_rgb(TINY / file_name)
        on, off = (TopDownPredictor(net, SIZE, COCO_17, flip_test=f).predict(image, [box])[0] for f in (True, False))
        visible = kpts[:, 2] > 0
        pixel = on['scale'][0] * 200 / SIZE[1]  # image pixels per input pixel
        diff = np.abs(on['keypoints'][visible, :2] - off['keypoints'][visible, :2]) / pixel
        assert diff.max() <= 1.01  # within a quarter heatmap pixel (4 input pixels)
        assert np.abs(off['keypoints'][visible, :2] - kpts[visible, :2]).max() / pixel < 2.5  # codec error
        np.testing.assert_allclose(on['keypoints'][visible, 2], off['keypoints'][visible, 2], atol=0.1)


def test_detector_boxes_category_filter_and_nms(tmp_path):
    data = json.loads(ANN_FILE.read_text())
    ids = {im['file_name']: im['id'] for im in data['images']}
    dets = []
    for file_name, box, _ in coco_people():
        dets += [dict(image_id=ids[file_name], category_id=1, bbox=box, score=0.9),
                 dict(image_id=ids[file_name], category_id=1, bbox=box, score=0.5),  # duplicate: NMS
                 dict(image_id=ids[file_name], category_id=2, bbox=box, score=0.99)]  # not a person
    dets.append(dict(image_id=123456789, category_id=1, bbox=[0, 0, 10, 10], score=1.0))  # another split
    bbox_file = tmp_path / 'dets.json'
    bbox_file.write_text(json.dumps(dets))
    metrics = evaluate_coco(perfect_coco_net(), ANN_FILE, TINY, SIZE, bbox_file=bbox_file, flip_test=False,
                            output_dir=tmp_path, progress=False)
    assert metrics['AP'] == pytest.approx(1.0, abs=1e-6)
    assert (metrics['box_source'], metrics['num_boxes'], metrics['num_boxes_ignored'], metrics['num_results']) \
        == ('detector', 24, 1, 12)
    assert 'detector boxes (published protocol)' in coco_summary(metrics)
    with pytest.raises(ValueError, match='not found') as err:
        evaluate_coco(TableNet(17, (64, 48)), ANN_FILE, TINY, SIZE, bbox_file=tmp_path / 'nope.json')
    assert '\n' not in str(err.value)


def test_unreadable_images_are_counted_and_skipped(tmp_path):
    data = json.loads(ANN_FILE.read_text())
    data['images'][0]['file_name'] = 'missing.jpg'
    ann = tmp_path / 'ann.json'
    ann.write_text(json.dumps(data))
    net = perfect_coco_net()
    net.set_train(True)
    with pytest.warns(UserWarning, match='1 of 4 images could not be read'):
        metrics = evaluate_coco(net, ann, TINY, SIZE, flip_test=False, progress=False)
    assert net.training  # the caller's mode is restored (training validates with this function)
    assert metrics['num_images_skipped'] == 1 and metrics['skipped_images'] == [str(TINY / 'missing.jpg')]
    assert metrics['num_boxes'] == 11 and 0.5 < metrics['AP'] < 1.0
    assert 'unreadable images skipped' in coco_summary(metrics)
    empty = tmp_path / 'empty'
    empty.mkdir()
    with pytest.raises(ValueError, match='none of the 4 images could be read'):
        evaluate_coco(net, ANN_FILE, empty, SIZE, progress=False)


def test_custom_keypoint_set_gets_landmark_metrics():
    category = json.loads(ANN_FILE.read_text())['categories'][0]
    info = from_coco_category(category, {'name': 'custom', 'sigmas': list(COCO_17.sigmas)})
    metrics = evaluate_coco(perfect_coco_net(info), ANN_FILE, TINY, SIZE, keypoint_info=info, progress=False,
                            pck_thresholds=(0.05, 0.1, 0.2), sdr_thresholds=(2, 4, 8))
    assert metrics['dataset'] == 'custom' and metrics['AP'] == pytest.approx(1.0, abs=1e-6)
    assert metrics['PCK@0.2'] == 1.0 and metrics['PCK@0.05'] > 0.9
    assert 0 < metrics['EPE'] == metrics['MRE'] < 4 and metrics['SDR@8'] == 1.0
    assert 'PCK@0.1' in coco_summary(metrics)


def test_mpii_pckh_with_a_perfect_fake(tmp_path):
    """A tiny MPII-format set made from the COCO persons: annotations, mpii_gt_val.mat, PCKh ~ 100 %."""
    size = (256, 256)
    codec = codec_for(size)
    net = TableNet(16, codec.heatmap_size_hw)
    anns, joints, missing, heads = [], [], [], []
    for file_name, box, kpts in coco_people():
        xy = np.stack([kpts[list(np.atleast_1d(j)), :2].mean(0) for j in MPII_FROM_COCO])
        vis = np.array([kpts[list(np.atleast_1d(j)), 2].min() > 0 for j in MPII_FROM_COCO])
        s = max(box[2], box[3]) / 200
        cx, cy = box[0] + box[2] / 2, box[1] + box[3] / 2
        anns.append(dict(image=file_name, center=[cx + 1, cy + 1 - 15 * s], scale=s))  # 1-based, as MPII
        center, scale = np.array([cx, cy], np.float32), np.array([s, s], np.float32) * 1.25
        crop = preprocess(read_image_rgb(TINY / file_name), center, scale, size)
        net.learn(crop, affine_points(xy, get_affine_transform(center, scale, 0, size[::-1])), vis, codec, MPII_16)
        joints.append(xy + 1)
        missing.append(~vis)
        half = 0.1 * max(box[2], box[3])
        heads.append([xy[9] + 1 - half, xy[9] + 1 + half])
    (tmp_path / 'mpii_val.json').write_text(json.dumps(anns))
    savemat(tmp_path / 'mpii_gt_val.mat', dict(jnt_missing=np.array(missing, float).T,
                                               pos_gt_src=np.transpose(joints, (1, 2, 0)),
                                               headboxes_src=np.transpose(heads, (1, 2, 0))))
    metrics = evaluate_mpii(net, tmp_path / 'mpii_val.json', TINY, size, output_dir=tmp_path, progress=False)
    assert metrics['Mean'] == pytest.approx(100.0) and metrics['Mean@0.1'] > 50
    assert metrics['num_predicted'] == 12 and (tmp_path / 'metrics.json').is_file()
    assert len(json.loads((tmp_path / 'results_mpii.json').read_text())) == 12
    assert pckh_summary(metrics).startswith('MPII PCKh@0.5 Mean 100.00')
    shutil.copy(tmp_path / 'mpii_val.json', tmp_path / 'other.json')
    with pytest.raises(ValueError, match='MPII ground truth not found'):
        evaluate_mpii(net, tmp_path / 'other.json', TINY, size, gt_mat=tmp_path / 'nope.mat')
