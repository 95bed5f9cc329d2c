"""The field's keypoint datasets as they come, end to end: a CrowdPose-like set (14 joints, no area, COCO's
1-based skeleton) and an AP-10K-like set (two species, no iscrowd, hash-like file names) through eval,
infer, export and (slow) train. Tiny models, 64x64 inputs, PYNATIVE in-process where possible."""
import json

import cv2
import numpy as np
import pytest

from conftest import run_script
from litehrnet import create_model
from litehrnet.checkpoint.io import save_checkpoint
from litehrnet.commands import eval as eval_cmd
from litehrnet.commands import export as export_cmd
from litehrnet.commands import infer as infer_cmd
from litehrnet.keypoint_sets import keypoint_set

TINY = dict(stem_channels=16, stages=[
    dict(num_modules=1, num_branches=b, num_blocks=1, num_channels=[8, 16, 32, 64][:b]) for b in (2, 3, 4)])
COCO_SKELETON_1_BASED = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8],
                         [7, 9], [8, 10], [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]


def make_set(root, names, categories, n_images=6, area=True, iscrowd=True, hashed=False, seed=0):
    """Images with one figure each (dots at the joints) and a COCO-format file; returns (ann file, image dir)."""
    rng = np.random.default_rng(seed)
    img_dir = root / 'images'
    img_dir.mkdir(parents=True)
    k = len(names)
    data = dict(images=[], annotations=[], categories=categories)
    for i in range(n_images):
        name = f"{'%08x' % rng.integers(1 << 31)}.jpg" if hashed else f"{i + 1:06d}.jpg"
        image = np.full((96, 96, 3), 40, np.uint8)
        pts = np.stack([rng.uniform(25, 70, k), np.linspace(20, 80, k)], 1)
        for x, y in pts:
            cv2.circle(image, (int(x), int(y)), 3, (255, 255, 255), -1)
        cv2.imwrite(str(img_dir / name), image)
        data['images'].append(dict(id=i + 1, file_name=name, width=96, height=96))
        x0, y0 = pts.min(0) - 4
        x1, y1 = pts.max(0) + 4
        ann = dict(id=i + 1, image_id=i + 1, category_id=categories[i % len(categories)]['id'],
                   bbox=[float(x0), float(y0), float(x1 - x0), float(y1 - y0)], num_keypoints=k,
                   keypoints=[float(v) for p in pts for v in (*p, 2)])
        if area:
            ann['area'] = float((x1 - x0) * (y1 - y0))
        if iscrowd:
            ann['iscrowd'] = 0
        data['annotations'].append(ann)
    ann_file = root / 'ann.json'
    ann_file.write_text(json.dumps(data))
    return ann_file, img_dir


@pytest.fixture(scope='module')
def crowdpose(tmp_path_factory):
    root = tmp_path_factory.mktemp('crowdpose')
    cats = [dict(id=1, name='person', keypoints=keypoint_set('crowdpose').joint_names,
                 skeleton=COCO_SKELETON_1_BASED)]
    return make_set(root, keypoint_set('crowdpose').joint_names, cats, area=False)


@pytest.fixture(scope='module')
def ap10k(tmp_path_factory):
    root = tmp_path_factory.mktemp('ap10k')
    names = keypoint_set('ap10k').joint_names
    cats = [dict(id=1, name='antelope', keypoints=names), dict(id=2, name='bear', keypoints=names)]
    return make_set(root, names, cats, iscrowd=False, hashed=True)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """The tiny architecture as a .json file and checkpoints of it for 14 and 17 joints."""
    root = tmp_path_factory.mktemp('tiny')
    arch = root / 'tiny.json'
    arch.write_text(json.dumps(TINY))
    for k in (14, 17):
        save_checkpoint(create_model(str(arch), num_joints=k), root / f'tiny{k}.ckpt')
    return root


def gt_as_results(ann_file, zero=0):
    """The ground truth written as results; the last `zero` of them with every keypoint score 0."""
    data = json.loads(ann_file.read_text())
    out = []
    for i, a in enumerate(data['annotations']):
        kpts = list(a['keypoints'])
        if i >= len(data['annotations']) - zero:
            kpts[2::3] = [0.0] * (len(kpts) // 3)
        out.append(dict(image_id=a['image_id'], category_id=a['category_id'], keypoints=kpts, score=1.0))
    return out


def test_results_json_on_crowdpose_counts_zero_score_results_and_records_sigmas(crowdpose, tmp_path, capsys):
    ann, _ = crowdpose
    res = tmp_path / 'res.json'
    res.write_text(json.dumps(gt_as_results(ann, zero=2)))
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(ann), '--output_path', str(tmp_path / 'a')]) == 0
    out = capsys.readouterr().out
    assert 'scored 4 of 6 results (2 with every keypoint score <= 0 dropped' in out
    assert "no 'area'" in out  # the tolerant rule is said
    m = json.loads((tmp_path / 'a' / 'metrics.json').read_text())
    assert m['num_results'] == 6 and m['num_results_scored'] == 4 and m['num_results_dropped'] == 2
    assert 'xtcocotools' in m['dropped_reason']
    assert m['sigmas'] == pytest.approx(list(keypoint_set('crowdpose').sigmas)) and not m['sigmas_uniform']
    # pycocotools' rule: every result is scored (its keypoint scores play no part in OKS: these match)
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(ann), '--output_path', str(tmp_path / 'b'),
                          '--zero_score_results', 'keep']) == 0
    kept = json.loads((tmp_path / 'b' / 'metrics.json').read_text())
    assert kept['num_results_scored'] == 6 and kept['num_results_dropped'] == 0
    assert kept['AP'] == pytest.approx(1.0) and m['AP'] < 0.7  # dropped: 2 of 6 people are never found
    # --sigmas in the results_json mode: used and recorded
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(ann), '--output_path', str(tmp_path / 'c'),
                          '--sigmas', ','.join(['0.2'] * 14)]) == 0
    wide = json.loads((tmp_path / 'c' / 'metrics.json').read_text())
    assert wide['sigmas'] == [0.2] * 14 and 'OKS sigmas given with --sigmas' in wide['keypoint_set_notes']


def test_results_json_uniform_sigma_note_is_shown_and_recorded(tmp_path, capsys):
    names = ['head', 'tail', 'fin']  # not a built-in set, no sigmas
    ann, _ = make_set(tmp_path, names, [dict(id=1, name='fish', keypoints=names)], n_images=3)
    res = tmp_path / 'res.json'
    res.write_text(json.dumps(gt_as_results(ann)))
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(ann), '--output_path', str(tmp_path / 'o')]) == 0
    assert 'uniform sigma' in capsys.readouterr().out
    m = json.loads((tmp_path / 'o' / 'metrics.json').read_text())
    assert m['sigmas_uniform'] and any('uniform sigma' in n for n in m['keypoint_set_notes'])
    assert m['AP'] == pytest.approx(1.0)


def test_results_json_ap10k_scores_every_category(ap10k, tmp_path):
    ann, _ = ap10k
    res = tmp_path / 'res.json'
    res.write_text(json.dumps(gt_as_results(ann)))
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(ann), '--output_path', str(tmp_path)]) == 0
    m = json.loads((tmp_path / 'metrics.json').read_text())
    assert m['category_ids'] == [1, 2] and m['num_results_scored'] == 6
    assert m['AP'] == pytest.approx(1.0)  # both species' ground truth is matched, not only the first's
    assert m['dataset'] == 'ap10k'


@pytest.mark.parametrize('mutate, expected', [
    (lambda d: d['annotations'][0].pop('bbox'), 'annotation 0 (id 1): lacks bbox'),
    (lambda d: d['annotations'][1].update(image_id=999999), 'image_id 999999 has no entry'),
    (lambda d: d['annotations'][0].update(area='big'), "area is the string 'big'"),
])
def test_eval_ground_truth_errors_are_one_line(crowdpose, tmp_path, capsys, mutate, expected):
    ann, _ = crowdpose
    data = json.loads(ann.read_text())
    mutate(data)
    bad = tmp_path / 'bad.json'
    bad.write_text(json.dumps(data))
    res = tmp_path / 'res.json'
    res.write_text(json.dumps(gt_as_results(ann)))
    assert eval_cmd.main(['--results_json', str(res), '--ann_file', str(bad), '--output_path', str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(bad) in err[0] and expected in err[0], err


def test_eval_with_a_model_on_crowdpose_and_ap10k(crowdpose, ap10k, tiny, tmp_path):
    for (ann, img), k, name in ((crowdpose, 14, 'cp'), (ap10k, 17, 'ap')):
        out = tmp_path / name
        args = ['--model_type', str(tiny / 'tiny.json'), '--checkpoint', str(tiny / f'tiny{k}.ckpt'),
                '--dataset', 'custom', '--ann_file', str(ann), '--img_dir', str(img), '--target_res', '64x64',
                '--mode', 'pynative', '--no_progress', '--output_path', str(out)]
        assert eval_cmd.main(args) == 0
        m = json.loads((out / 'metrics.json').read_text())
        assert m['num_boxes'] == 6 and m['num_results'] == 6  # every species' boxes are evaluated
        assert 'PCK@0.1' in m and 'EPE' in m
        results = json.loads((out / 'results_keypoints.json').read_text())
        assert sorted({r['category_id'] for r in results}) == ([1] if k == 14 else [1, 2])


def test_infer_box_file_ids_by_file_name_then_scoreable(ap10k, tiny, tmp_path, capsys):
    ann, img = ap10k
    data = json.loads(ann.read_text())
    dets = [dict(image_id=a['image_id'], category_id=a['category_id'], bbox=a['bbox'], score=0.9)
            for a in data['annotations']]
    boxes = tmp_path / 'dets.json'
    boxes.write_text(json.dumps(dets))
    out = tmp_path / 'out'
    args = ['--model_type', str(tiny / 'tiny.json'), '--checkpoint', str(tiny / 'tiny17.ckpt'), '--target_res',
            '64x64', '--infer_data_root', str(img), '--out_data_root', str(out), '--bbox_file', str(boxes),
            '--ann_file', str(ann), '--mode', 'pynative', '--no_progress']
    assert infer_cmd.main(args) == 0
    results = json.loads((out / 'results_keypoints.json').read_text())
    by_name = {i['file_name']: i['id'] for i in data['images']}
    assert sorted(r['image_id'] for r in results) == sorted(by_name.values())  # the file's ids, not 1, 2, ...
    species = {a['image_id']: a['category_id'] for a in data['annotations']}
    assert all(r['category_id'] == species[r['image_id']] for r in results)  # each under its species
    name = data['images'][2]['file_name']
    per_image = json.loads((out / f'{name}.json').read_text())  # a.jpg -> a.jpg.json
    assert per_image['image_id'] == by_name[name]
    assert list(per_image['persons'][0]['keypoints']) == keypoint_set('ap10k').joint_names
    capsys.readouterr()
    assert eval_cmd.main(['--results_json', str(out / 'results_keypoints.json'), '--ann_file', str(ann),
                          '--output_path', str(tmp_path / 'e')]) == 0
    assert json.loads((tmp_path / 'e' / 'metrics.json').read_text())['num_results'] == 6


def test_native_joint_count_error_suggests_keypoints(tiny, tmp_path, capsys):
    img = tmp_path / 'a.jpg'
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    args = ['--model_type', str(tiny / 'tiny.json'), '--checkpoint', str(tiny / 'tiny14.ckpt'), '--target_res',
            '64x64', '--infer_data_root', str(img), '--out_data_root', str(tmp_path / 'o'), '--mode', 'pynative']
    assert infer_cmd.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'predicts 14 joints' in err[0] and '--keypoints NAME (crowdpose / aic)' in err[0], err


def test_a_custom_export_carries_its_keypoint_set(crowdpose, tiny, tmp_path):
    """A custom set (CrowdPose's names with --meta overrides) exported; infer --backend mindir needs nothing else."""
    ann, img = crowdpose
    meta = tmp_path / 'meta.json'
    meta.write_text(json.dumps(dict(sigmas=[0.05] * 14)))
    model = tmp_path / 'm.mindir'
    assert export_cmd.main(['--model_type', str(tiny / 'tiny.json'), '--target_res', '64x64', '--checkpoint',
                            str(tiny / 'tiny14.ckpt'), '--keypoints', str(ann), '--meta', str(meta),
                            '--output', str(model)]) == 0
    described = json.loads((tmp_path / 'm.mindir.json').read_text())
    kset = described['keypoint_set']
    info = keypoint_set('crowdpose')
    assert kset['joint_names'] == info.joint_names and kset['sigmas'] == [0.05] * 14
    assert kset['flip_pairs'] == info.flip_pairs and kset['skeleton'] == info.skeleton
    out = tmp_path / 'out'
    assert infer_cmd.main(['--backend', 'mindir', '--model', str(model), '--infer_data_root', str(img),
                           '--out_data_root', str(out), '--no_progress']) == 0
    first = sorted(img.iterdir())[0].name
    persons = json.loads((out / f'{first}.json').read_text())['persons']
    assert list(persons[0]['keypoints']) == info.joint_names  # drawn with the 14-joint skeleton, no crash


@pytest.mark.slow
@pytest.mark.parametrize('which', ['crowdpose', 'ap10k'])
def test_train_end_to_end(which, crowdpose, ap10k, tiny, tmp_path):
    ann, img = crowdpose if which == 'crowdpose' else ap10k
    out = tmp_path / 'run'
    result = run_script(['src/train.py', '--dataset', 'custom', '--train_ann', str(ann), '--val_ann', str(ann),
                         '--img_dir', str(img), '--model_type', str(tiny / 'tiny.json'), '--target_res', '64x64',
                         '--train_batch', '3', '--epochs', '1', '--warmup_iters', '1', '--progress', 'false',
                         '--best_metric', 'EPE,PCK@0.1', '--checkpoint_path', str(out)])
    assert result.returncode == 0, result.stderr[-2000:]
    history = json.loads((out / 'history.json').read_text())
    assert {'AP', 'PCK@0.1', 'EPE'} <= set(history[-1])
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['best_metric'] == 'EPE' and metrics['best_EPE'] == pytest.approx(metrics['EPE'])
    assert len(metrics['sigmas']) == len(keypoint_set(which).joint_names)
    for name in ('best.ckpt', 'best_EPE.ckpt', 'best_PCK@0.1.ckpt'):
        assert (out / name).is_file(), name
    assert list((out / 'examples').glob('*.jpg'))  # drawn with the set's own skeleton
    log = (out / 'train.log').read_text()
    assert f"recognised as" in log and f"('{which}')" in log
    if which == 'crowdpose':
        assert log.count("have no 'area'") == 1
    else:
        assert "have no 'iscrowd'" in log and '2 categories share this keypoint set' in log


def test_train_refuses_bad_ground_truth_at_startup(crowdpose, tiny, tmp_path, capsys):
    """A validation file with a problem stops train.py before any training step (not after an epoch)."""
    from litehrnet.commands import train as train_cmd
    ann, img = crowdpose
    data = json.loads(ann.read_text())
    data['annotations'][2]['keypoints'][5] = float('nan')  # keypoint 1's visibility
    bad = tmp_path / 'val.json'
    bad.write_text(json.dumps(data))
    out = tmp_path / 'run'
    rc = train_cmd.main(['--dataset', 'custom', '--train_ann', str(ann), '--val_ann', str(bad), '--img_dir', str(img),
                         '--model_type', str(tiny / 'tiny.json'), '--target_res', '64x64', '--progress', 'false',
                         '--checkpoint_path', str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    assert str(bad) in err[0] and 'annotation 2 (id 3): keypoint 1 v (value 5) is nan (not finite)' in err[0]
    assert not (out / 'last.ckpt').exists()
    rc = train_cmd.main(['--dataset', 'custom', '--train_ann', str(ann), '--val_ann', str(ann), '--img_dir', str(img),
                         '--model_type', str(tiny / 'tiny.json'), '--target_res', '64x64', '--progress', 'false',
                         '--best_metric', 'nonsense', '--checkpoint_path', str(tmp_path / 'run2')])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and "best_metric 'nonsense' is not a validation metric" in err[0], err


def test_an_old_export_without_the_keypoint_set_says_what_to_do(tmp_path):
    from litehrnet.runners import _backend_keypoints
    model = tmp_path / 'm.onnx'
    with pytest.raises(ValueError, match=r"names keypoint set 'person' without its joints.*--keypoints NAME"):
        _backend_keypoints({'keypoints': 'person', 'num_joints': 14}, model, None, None, None)
    assert _backend_keypoints({'keypoints': 'person'}, model, 'crowdpose', None, None).num_joints == 14
