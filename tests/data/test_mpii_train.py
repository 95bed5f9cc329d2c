"""MPII training: the dataset (1-based -> 0-based, box rule, flip pairs, no half-body, seeding, errors) and a run.

The synthetic people are built so that the answer is known by construction: each box is 16 px wide
(scale 0.064 x 1.25 x 200), so at 64x64 the crop magnifies 4x and one image pixel is exactly one
heatmap pixel; the 0-based centre lands on heatmap (8, 8) and joint j on (8, 8) + TEMPLATE[j].
"""
import copy
import json
import logging

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from conftest import run_script
from litehrnet import create_model, load_checkpoint
from litehrnet.data import transforms
from litehrnet.data.coco import AnnotationError
from litehrnet.keypoints import MPII_16, flip_indices
from litehrnet.data.mpii import MpiiKeypointDataset, mpii_center_scale
from litehrnet.data.transforms import TopDownTrainTransform, preprocess
from litehrnet.engine.config import make_config
from litehrnet.engine.state import read_training_checkpoint
from litehrnet.engine.trainer import dataset_splits

SIZE = (64, 64)
SCALE = 0.064            # box 16 px: the crop magnifies 4x, one image pixel = one heatmap pixel at 64x64
IMAGE_HW = (48, 48)
# Joint offsets from the 0-based centre in image pixels, MPII order, left/right deliberately unequal.
TEMPLATE = np.array([[-2, 6], [-2, 3], [-1, 1], [2, 1], [3, 3], [4, 5], [0, 1], [0, -2], [0, -3], [1, -5],
                     [-5, 0], [-4, -1], [-2, -2], [2, -2], [4, -3], [5, -5]])
# (image, 0-based centre); the first person's left ankle (5) is unlabelled, as MPII writes it: (-1, -1), vis 0.
PEOPLE = {'train': [('t0.png', (14, 24)), ('t0.png', (34, 22)), ('t1.png', (24, 24)), ('t2.png', (20, 26)),
                    ('t3.png', (26, 20)), ('t3.png', (12, 18)), ('t4.png', (30, 30)), ('t5.png', (24, 16))],
          'val': [('v0.png', (14, 24)), ('v0.png', (34, 24)), ('v1.png', (24, 22)), ('v2.png', (22, 26))]}
TINY = dict(stem_channels=16, stages=[  # the smallest useful Lite-HRNet (as tests/test_train.py)
    dict(num_modules=1, num_branches=b, num_blocks=1, num_channels=[8, 16, 32, 64][:b]) for b in (2, 3, 4)])


def _records(people):
    """mmpose-style records (1-based centre, scale, joints) of people, and their 0-based joints."""
    records, joints0 = [], []
    for n, (image, (cx, cy)) in enumerate(people):
        xy = np.array([cx, cy]) + TEMPLATE
        vis = np.ones(16, int)
        joints = (xy + 1).astype(float)
        if n == 0:
            vis[5], joints[5] = 0, (-1, -1)
        records.append(dict(image=image, center=[cx + 1, cy + 1 - 15 * SCALE], scale=SCALE,
                            joints=joints.tolist(), joints_vis=vis.tolist()))
        joints0.append(xy)
    return records, joints0


def _draw(path, joints_of_people, seed):
    """A small noisy picture with stick figures (limbs from MPII_16's skeleton) at the joints."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 60, IMAGE_HW + (3,), dtype=np.uint8)
    for xy in joints_of_people:
        for a, b in MPII_16.skeleton:
            cv2.line(image, tuple(map(int, xy[a])), tuple(map(int, xy[b])), (40 * a % 256, 200, 255 - 10 * b), 1)
    cv2.imwrite(str(path), image)


def make_mpii(root):
    """The synthetic set in mmpose's layout under root: annotations/mpii_{train,val}.json, mpii_gt_val.mat, images/."""
    (root / 'annotations').mkdir(parents=True)
    (root / 'images').mkdir()
    for split, people in PEOPLE.items():
        records, joints0 = _records(people)
        (root / 'annotations' / f'mpii_{split}.json').write_text(json.dumps(records))
        for i, name in enumerate(sorted({p[0] for p in people})):
            _draw(root / 'images' / name, [j for p, j in zip(people, joints0) if p[0] == name], i)
        if split == 'val':  # pos_gt_src 16x2xN (1-based), headboxes_src 2x2xN, jnt_missing 16xN
            heads = [[j[9] + 1 - 2, j[9] + 1 + 2] for j in joints0]
            missing = [1 - np.array(r['joints_vis']) for r in records]
            savemat(root / 'annotations' / 'mpii_gt_val.mat',
                    dict(jnt_missing=np.array(missing, float).T, pos_gt_src=np.transpose(np.array(joints0, float) + 1,
                                                                                         (1, 2, 0)),
                         headboxes_src=np.transpose(np.array(heads, float), (1, 2, 0))))
    return root


@pytest.fixture
def mpii(tmp_path):
    return make_mpii(tmp_path / 'mpii')


def _dataset(root, train=True, seed=0, split='train'):
    return MpiiKeypointDataset(root / 'annotations' / f'mpii_{split}.json', root / 'images', SIZE, train=train,
                               seed=seed)


def _peaks(target):
    """(K, 2) integer argmax (x, y) of each heatmap."""
    k, _, w = target.shape
    idx = target.reshape(k, -1).argmax(1)
    return np.stack([idx % w, idx // w], 1)


def test_eval_sample_peaks_sit_on_the_0_based_joints_through_the_box_rule(mpii):
    ds = _dataset(mpii, train=False)
    assert len(ds) == 8 and ds.info is MPII_16
    _, joints0 = _records(PEOPLE['train'])
    for i, (name, centre) in enumerate(PEOPLE['train']):
        np.testing.assert_allclose(ds.centers[i], centre, atol=1e-4)       # (1-based + 15 s) - 1 - 15 s
        np.testing.assert_allclose(ds.scales[i], [SCALE * 1.25] * 2, rtol=1e-6)
        image, target, weight = ds.sample(i)
        visible = np.ones(16, bool)
        visible[5] = i != 0
        np.testing.assert_array_equal(weight, visible.astype(np.float32))  # weight = joints_vis
        np.testing.assert_array_equal(_peaks(target)[visible], (8 + TEMPLATE)[visible])
        assert target[visible].max(axis=(1, 2)).min() == pytest.approx(1.0)
        assert not target[~visible].any()
        np.testing.assert_allclose(ds.joints[i][visible], joints0[i][visible])
        rgb = cv2.cvtColor(cv2.imread(str(mpii / 'images' / name)), cv2.COLOR_BGR2RGB)
        np.testing.assert_array_equal(image, preprocess(rgb, ds.centers[i], ds.scales[i], SIZE))  # = eval crop


def test_mpii_center_scale_rule():
    center, scale = mpii_center_scale([101.0, 51.0], 2.0)
    np.testing.assert_allclose(center, [100.0, 80.0])  # y + 15 s, then both - 1
    np.testing.assert_allclose(scale, [2.5, 2.5])


def test_flip_mirrors_joints_and_swaps_the_pairs(mpii):
    ds = _dataset(mpii, seed=1)
    ds.transform.scale_factor, ds.transform.rot_prob = 0.0, 0.0  # only the flip stays random
    order = flip_indices(16, MPII_16.flip_pairs)
    plain = 8 + TEMPLATE
    flipped = 8 + TEMPLATE[order] * [-1, 1]  # joint j is the mirrored image of its pair
    seen = set()
    for epoch in range(16):
        _, target, weight = ds.sample(0, epoch)
        visible = weight > 0
        peaks = _peaks(target)[visible]
        if np.array_equal(peaks, plain[visible]):
            seen.add('plain')
            assert weight[5] == 0 and weight[0] == 1
        else:
            np.testing.assert_array_equal(peaks, flipped[visible])
            seen.add('flipped')
            assert weight[0] == 0 and weight[5] == 1  # the unlabelled left ankle became the right one
    assert seen == {'plain', 'flipped'}


def test_half_body_is_never_applied(mpii, monkeypatch):
    calls = []
    real = transforms.half_body_box
    monkeypatch.setattr(transforms, 'half_body_box', lambda *a, **k: calls.append(1) or real(*a, **k))
    ds = _dataset(mpii, seed=2)
    assert ds.transform.half_body_prob == 0.0 and ds.visible[1].sum() == 16  # > 8 visible: the gate would pass
    for epoch in range(40):
        ds.sample(1, epoch)
    assert calls == []
    # Control: the COCO default on the same person and seeds takes the half-body branch.
    _, image = ds.read_person_image(1)
    coco_like = TopDownTrainTransform(MPII_16, SIZE)
    for epoch in range(40):
        coco_like(image, ds.joints[1], ds.visible[1], ds.centers[1], ds.scales[1], np.random.default_rng((2, epoch, 1)))
    assert len(calls) > 5


def test_samples_are_seeded_by_seed_epoch_and_index(mpii):
    a, b = _dataset(mpii, seed=3), _dataset(mpii, seed=3)
    for x, y in zip(a.sample(2, epoch=4), b.sample(2, epoch=4)):
        np.testing.assert_array_equal(x, y)
    _, image = a.read_person_image(2)
    again = a.transform(image, a.joints[2], a.visible[2], a.centers[2], a.scales[2], np.random.default_rng((3, 4, 2)))
    np.testing.assert_array_equal(again[0], a.sample(2, epoch=4)[0])  # exactly default_rng((seed, epoch, index))
    assert any(not np.array_equal(a.sample(2, epoch=e)[0], a.sample(2, epoch=4)[0]) for e in range(5, 9))
    other = _dataset(mpii, seed=4)
    assert any(not np.array_equal(other.sample(2, epoch=e)[0], a.sample(2, epoch=e)[0]) for e in range(4))


def _set(records, i, **changes):
    bad = copy.deepcopy(records)
    bad[i].update(changes)
    return bad


def _without(records, i, key):
    bad = copy.deepcopy(records)
    del bad[i][key]
    return bad


@pytest.mark.parametrize('mutate, needles', [
    (lambda r: _set(r, 1, joints=r[1]['joints'][:15]), ('record 1', "'t0.png'", 'has 15 joints', 'expected 16')),
    (lambda r: _set(r, 2, scale=0), ('record 2', 'scale must be a positive number', 'got 0')),
    (lambda r: _set(r, 2, scale=-1.5), ('record 2', 'got -1.5')),
    (lambda r: _without(r, 3, 'joints_vis'), ('record 3', 'lacks joints_vis')),
    (lambda r: _without(r, 0, 'center'), ('record 0', 'lacks center')),
    (lambda r: _set(r, 4, center='middle'), ('record 4', 'center must be 2 finite numbers')),
    (lambda r: _set(r, 5, joints_vis=[2] * 16), ('record 5', 'joints_vis must be 16 values 0 or 1')),
    (lambda r: r + ['t0.png'], ('record 8 is a str',)),
    (lambda r: {'annotations': r}, ('expected a JSON list',)),
])
def test_malformed_records_give_one_line_naming_file_record_and_reason(mpii, mutate, needles):
    records = json.loads((mpii / 'annotations' / 'mpii_train.json').read_text())
    (mpii / 'bad.json').write_text(json.dumps(mutate(records)))
    with pytest.raises(AnnotationError) as e:
        MpiiKeypointDataset(mpii / 'bad.json', mpii / 'images', SIZE)
    message = str(e.value)
    assert '\n' not in message and 'bad.json' in message
    for needle in needles:
        assert needle in message


def test_missing_and_unreadable_images_are_skipped_and_counted(mpii, caplog):
    (mpii / 'images' / 't1.png').unlink()
    (mpii / 'images' / 't2.png').write_bytes(b'not an image')
    with caplog.at_level(logging.WARNING, logger='litehrnet'):
        ds = _dataset(mpii)
        image, _, _ = ds.sample(2)  # t2.png's person: replaced by the next readable one
    assert len(ds) == 7 and image.shape == (3, 64, 64)
    assert '1 of 6 images are missing' in caplog.text and caplog.text.count('unreadable image') == 1
    assert '1 missing' in ds.skip_summary() and '1 unreadable' in ds.skip_summary()


def test_preset_layout_and_up_front_checks(mpii):
    cfg = make_config('mpii', data_root=str(mpii))
    assert (cfg.input_size_hw, cfg.batch_size, cfg.val_interval) == ((256, 256), 32, 5)
    assert (cfg.lr, cfg.warmup_iters, cfg.milestones, cfg.epochs) == (2e-3, 500, (170, 200), 210)
    train_ann, train_img, val_ann, val_img = dataset_splits(cfg)
    assert (train_ann, val_ann) == (mpii / 'annotations' / 'mpii_train.json', mpii / 'annotations' / 'mpii_val.json')
    assert train_img == val_img == mpii / 'images'
    with pytest.raises(ValueError, match='mpii uses its built-in keypoint set'):
        make_config('mpii', meta='x.json')
    records = json.loads(val_ann.read_text())
    val_ann.write_text(json.dumps(records[:3]))
    with pytest.raises(ValueError, match='has 4 people but .*mpii_val.json has 3'):
        dataset_splits(cfg)
    (mpii / 'annotations' / 'mpii_gt_val.mat').unlink()
    with pytest.raises(ValueError, match='MPII ground truth not found'):
        dataset_splits(cfg)


def test_cli_bad_record_exits_2_with_one_line(mpii, tmp_path):
    ann = mpii / 'annotations' / 'mpii_train.json'
    records = json.loads(ann.read_text())
    records[6]['scale'] = -1
    ann.write_text(json.dumps(records))
    result = run_script(['src/train.py', '--dataset', 'mpii', '--data_root', str(mpii),
                         '--checkpoint_path', str(tmp_path / 'out')], timeout=300)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().count('\n') == 0 and 'Traceback' not in result.stderr
    assert 'mpii_train.json: record 6' in result.stderr and 'scale' in result.stderr


@pytest.mark.slow
def test_tiny_mpii_training_validates_with_pckh(mpii, tmp_path):
    out = tmp_path / 'run'
    code = (f"from litehrnet.engine.config import make_config\n"
            f"from litehrnet.engine.trainer import train\n"
            f"train(make_config('mpii', model_type={TINY!r}, input_size_hw=(64, 64), epochs=2, batch_size=2,\n"
            f"                  val_interval=1, workers=1, warmup_iters=2, progress=False, flip_test=False,\n"
            f"                  output_dir={str(out)!r}, data_root={str(mpii)!r}))\n")
    result = run_script(['-c', code], env=dict(GLOG_v='3'))  # a fresh process: one training graph
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((out / 'metrics.json').read_text())
    history = json.loads((out / 'history.json').read_text())
    assert [r['epoch'] for r in history if 'Mean' in r] == [1, 2] and not any('AP' in r for r in history)
    assert metrics['dataset'] == 'mpii' and metrics['epoch'] == 2 and metrics['num_people'] == 4
    assert {'Head', 'Shoulder', 'Ankle', 'Mean', 'Mean@0.1', 'best_Mean', 'best_epoch'} <= set(metrics)
    assert 'best_AP' not in metrics and 0.0 <= metrics['Mean'] <= 100.0
    best = max(history, key=lambda r: r['Mean'])  # the first of equals, as best.ckpt keeps it
    assert (metrics['best_Mean'], metrics['best_epoch']) == (best['Mean'], best['epoch'])
    state = read_training_checkpoint(out / 'last.ckpt')[1]
    assert float(state['best_metric']) == metrics['best_Mean'] and int(state['best_epoch']) == best['epoch']
    assert len(json.loads((out / 'val' / 'results_mpii.json').read_text())) == 4
    assert cv2.imread(str(out / 'curves.png')).shape[0] > 100
    examples = sorted((out / 'examples').glob('*.jpg'))
    assert [p.name for p in examples] == ['v0.jpg', 'v1.jpg', 'v2.jpg']  # validation pictures with poses
    assert 'validation PCKh@0.5 Mean' in (out / 'train.log').read_text()
    load_checkpoint(create_model(TINY, num_joints=16), out / 'best.ckpt')  # bare network, strict
