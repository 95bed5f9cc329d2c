"""Inference on files (src/infer.py, litehrnet.annotate): boxes, shared crops, drawing, outputs, safety, exit codes.

Most tests run the pipeline with a recording numpy 'network' (no MindSpore graph), so they are fast;
one slow test runs the real command line on a folder tree in a subprocess.
"""
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from litehrnet.commands import infer
from litehrnet.annotate import Annotator, plan_inputs, run_summary
from litehrnet.keypoints import COCO_17
from litehrnet.data.transforms import preprocess_box
from litehrnet.detection import BoxFile, HogDetector, WholeImage, clean_boxes, make_box_source
from litehrnet.drawing import draw_poses, joint_colors, limb_colors
from litehrnet.runners import make_predictor

from conftest import run_script

SIZE = (64, 48)  # network input (H, W) of the fake runner


class RecordingRunner:
    """A fixed-batch 'network': records every batch, returns heatmaps peaking at the crop centre."""

    def __init__(self, batch_size=4, num_joints=17):
        self.batch_size = batch_size
        self.num_joints = num_joints
        self.batches = []

    def __call__(self, batch):
        self.batches.append(np.array(batch))
        h, w = batch.shape[2] // 4, batch.shape[3] // 4
        heatmaps = np.zeros((len(batch), self.num_joints, h, w), np.float32)
        heatmaps[:, :, h // 2, w // 2] = 0.9
        return heatmaps


def _image(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write(path, image_rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))


def _tree_hash(root):
    """sha256 of every file (name and bytes) under root: any change to the input tree changes it."""
    digest = hashlib.sha256()
    for p in sorted(Path(root).rglob('*')):
        digest.update(p.relative_to(root).as_posix().encode())
        if p.is_file():
            digest.update(p.read_bytes())
    return digest.hexdigest()


def _input_tree(root):
    """Three images in a tree, a text file and a corrupt .jpg: (root, the image names)."""
    _write(root / 'a.jpg', _image(120, 90, 1))
    _write(root / 'sub' / 'b.png', _image(80, 100, 2))
    _write(root / 'sub' / 'deeper' / 'c.jpg', _image(96, 64, 3))
    (root / 'notes.txt').write_text('not an image')
    (root / 'sub' / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 this is no jpeg')
    return ['a.jpg', 'sub/b.png', 'sub/deeper/c.jpg']


def _annotator(out, runner=None, boxes=None, flip_test=True, progress=False):
    runner = runner or RecordingRunner()
    predictor = make_predictor(runner, SIZE, COCO_17, flip_test=flip_test)
    return Annotator(predictor, boxes or WholeImage(), out, kpt_thr=0.3, progress=progress), runner


# --- boxes -----------------------------------------------------------------------------------------------

def test_hog_finds_nobody_on_a_blank_image_and_the_default_is_the_whole_image():
    blank = np.full((480, 640, 3), 128, np.uint8)
    boxes, scores = HogDetector().boxes(blank, 'blank.jpg')
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    default = make_box_source()
    assert isinstance(default, WholeImage)
    boxes, scores = default.boxes(blank, 'blank.jpg')
    np.testing.assert_array_equal(boxes, [[0, 0, 640, 480]])
    np.testing.assert_array_equal(scores, [1.0])


def test_box_file_layouts_threshold_and_errors(tmp_path):
    by_name = tmp_path / 'boxes.json'
    by_name.write_text(json.dumps({'sub/x.jpg': [[1, 2, 30, 40, 0.9], [0, 0, 5, 5, 0.1]],
                                   'y.png': [[3, 4, 10, 20]], 'z.jpg': [[1, 1, 0, 10, 0.9]]}))
    source = BoxFile(by_name, bbox_thr=0.3)
    boxes, scores = source.boxes(None, Path('sub/x.jpg'))
    np.testing.assert_array_equal(boxes, [[1, 2, 30, 40]])
    np.testing.assert_array_equal(scores, [0.9])
    np.testing.assert_array_equal(source.boxes(None, 'other/y.png')[1], [1.0])  # bare name, no score = 1
    z_boxes, z_scores = source.boxes(None, 'z.jpg')
    assert len(clean_boxes(z_boxes, z_scores, (100, 100))[0]) == 0  # zero width dropped before OpenCV
    assert len(source.boxes(None, 'unknown.jpg')[0]) == 0

    coco = tmp_path / 'dets.json'
    coco.write_text(json.dumps([
        dict(image_id=785, category_id=1, bbox=[10, 20, 30, 60], score=0.8),
        dict(image_id=785, category_id=2, bbox=[10, 20, 30, 60], score=0.99),  # not a person
        dict(image_id=785, category_id=1, bbox=[1, 2, 3, 4], score=0.2)]))
    boxes, scores = BoxFile(coco, bbox_thr=0.3).boxes(None, 'val/000000000785.jpg')
    np.testing.assert_array_equal(boxes, [[10, 20, 30, 60]])

    bad = tmp_path / 'bad.json'
    bad.write_text('[{"bbox": [1, 2]}]')
    with pytest.raises(ValueError, match='expected'):
        BoxFile(bad)
    with pytest.raises(ValueError, match='not found'):
        BoxFile(tmp_path / 'missing.json')
    with pytest.raises(ValueError, match='either'):
        make_box_source(by_name, detector='hog')


# --- the shared preprocessing --------------------------------------------------------------------------

@pytest.mark.parametrize('box', [None, [12.5, 7.0, 40.0, 90.0]])
def test_infer_crops_equal_evaluation_preprocess(tmp_path, box):
    """What reaches the network is bit-for-bit evaluation's preprocess_box of the same box (and its mirror)."""
    image = _image(120, 90)
    _write(tmp_path / 'in' / 'p.png', image)  # lossless, so the file reads back as `image`
    if box is None:
        boxes, expected_box = None, [0, 0, 90, 120]
    else:
        (tmp_path / 'boxes.json').write_text(json.dumps({'p.png': [box + [0.9]]}))
        boxes, expected_box = BoxFile(tmp_path / 'boxes.json'), box
    annotator, runner = _annotator(tmp_path / 'out', boxes=boxes)
    annotator.run(plan_inputs(tmp_path / 'in', tmp_path / 'out'))
    crop = preprocess_box(image, expected_box, SIZE)[0]
    first = runner.batches[0]
    assert first.dtype == np.float32 and first.shape == (4, 3) + SIZE
    np.testing.assert_array_equal(first[0], crop)
    np.testing.assert_array_equal(first[1], crop[..., ::-1])  # the flip test's mirrored crop
    np.testing.assert_array_equal(first[2:], 0)  # padding up to the fixed batch size


def test_crops_of_several_images_share_batches(tmp_path):
    for i in range(5):
        _write(tmp_path / 'in' / f'{i}.png', _image(50, 40, i))
    annotator, runner = _annotator(tmp_path / 'out', RecordingRunner(batch_size=4), flip_test=False)
    stats = annotator.run(plan_inputs(tmp_path / 'in', tmp_path / 'out'))
    assert stats['persons'] == 5
    assert [len(b) for b in runner.batches] == [4, 4]  # 4 crops, then 1 padded to 4


# --- outputs --------------------------------------------------------------------------------------------

def test_folder_tree_outputs_mirror_the_input_and_bad_files_are_counted(tmp_path):
    src, out = tmp_path / 'in', tmp_path / 'out'
    names = _input_tree(src)
    before = _tree_hash(src)
    annotator, _ = _annotator(out)
    stats = annotator.run(plan_inputs(src, out, recursive=True), dict(backend='recording'))
    assert _tree_hash(src) == before
    assert [im['file_name'] for im in stats['images']] == names
    assert sorted((s['file'], s['reason']) for s in stats['skipped']) == [
        ('notes.txt', 'not an image'), ('sub/broken.jpg', 'unreadable image')]
    for image_id, name in enumerate(names, 1):
        drawn = cv2.imread(str(out / name))
        assert drawn is not None and drawn.shape[:2] == cv2.imread(str(src / name)).shape[:2]
        record = json.loads((out / (name + '.json')).read_text())
        assert record['file_name'] == name and record['image_id'] == image_id
        (person,) = record['persons']
        assert list(person['keypoints']) == COCO_17.joint_names
        assert all(len(v) == 3 for v in person['keypoints'].values())
        assert person['box_score'] == 1.0 and len(person['bbox']) == 4
    assert not (out / 'notes.txt').exists() and not (out / 'sub' / 'broken.jpg').exists()
    results = json.loads((out / 'results_keypoints.json').read_text())
    assert [r['image_id'] for r in results] == [1, 2, 3]
    assert all(len(r['keypoints']) == 51 and r['category_id'] == 1 for r in results)
    run = json.loads((out / 'run.json').read_text())
    assert [im['id'] for im in run['images']] == [1, 2, 3] and run['backend'] == 'recording'
    line = run_summary(stats, out)
    assert line.startswith('3 images, 3 persons, 2 skipped (1 not an image, 1 unreadable image)')
    assert 'whole image as one box' in line
    assert 'RANDOM' in run_summary(stats, out, random_weights=True)


def test_without_recursive_only_the_top_folder(tmp_path):
    _input_tree(tmp_path / 'in')
    plan = plan_inputs(tmp_path / 'in', tmp_path / 'out')
    assert [p.as_posix() for p in plan.files] == ['a.jpg', 'notes.txt']


@pytest.mark.parametrize('ext', ['.avi', '.mp4'])
def test_video_gives_a_drawn_video_with_the_same_frame_rate(tmp_path, ext):
    path = tmp_path / f'clip{ext}'
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'mp4v'), 12.0, (80, 64))
    for i in range(5):
        writer.write(_image(64, 80, i))
    writer.release()
    annotator, _ = _annotator(tmp_path / 'out')
    stats = annotator.run(plan_inputs(path, tmp_path / 'out'))
    assert len(stats['images']) == 5 and stats['kind'] == 'video'
    capture = cv2.VideoCapture(str(tmp_path / 'out' / path.name))
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    capture.release()
    record = json.loads((tmp_path / 'out' / (path.name + '.json')).read_text())
    assert [f['image_id'] for f in record['frames']] == [1, 2, 3, 4, 5] and record['fps'] == pytest.approx(12.0)
    assert run_summary(stats, 'o').startswith('5 frames, 5 persons, 0 skipped')


def test_drawing_hides_keypoints_below_the_threshold():
    canvas = np.zeros((100, 100, 3), np.uint8)
    kpts = np.zeros((17, 3))
    kpts[:, :2] = [50, 50]
    kpts[5] = [20, 20, 0.9]  # left shoulder, shown
    kpts[7] = [20, 80, 0.9]  # left elbow, shown: limb 5-7 drawn
    kpts[9] = [80, 80, 0.1]  # left wrist, hidden: limb 7-9 not drawn
    kpts[:5, 2] = kpts[10:, 2] = kpts[6, 2] = kpts[8, 2] = 0.0
    drawn = draw_poses(canvas, [dict(keypoints=kpts)], COCO_17.skeleton, kpt_thr=0.3)
    assert drawn[20, 20].any() and drawn[50, 20].any()  # shoulder and the shoulder-elbow limb
    assert not drawn[80, 80].any() and not drawn[80, 50].any()  # wrist and elbow-wrist limb hidden
    assert not canvas.any()  # the input is not drawn on
    assert len(set(limb_colors(len(COCO_17.skeleton)))) == len(COCO_17.skeleton)
    assert len(joint_colors(17, COCO_17.skeleton)) == 17


# --- safety and the command line ------------------------------------------------------------------------

def test_output_overlapping_the_input_is_refused(tmp_path):
    src = tmp_path / 'in'
    _input_tree(src)
    for out in (src, src / 'results', tmp_path):
        with pytest.raises(ValueError, match='must not be'):
            plan_inputs(src, out)
    with pytest.raises(ValueError, match='overwrite'):
        plan_inputs(src / 'a.jpg', src)
    with pytest.raises(ValueError, match='not an image or video'):
        plan_inputs(src / 'notes.txt', tmp_path / 'out')
    with pytest.raises(ValueError, match='not found'):
        plan_inputs(tmp_path / 'missing', tmp_path / 'out')


@pytest.mark.parametrize('args, message', [
    (['--out_data_root', '{in}'], 'must not be'),
    (['--out_data_root', '{in}/out'], 'must not be'),
    (['--out_data_root', '{tmp}/out', '--target_res', '100x100'], 'multiples of 32'),
    (['--out_data_root', '{tmp}/out', '--bbox_file', '{tmp}/none.json'], 'not found'),
    (['--out_data_root', '{tmp}/out', '--backend', 'onnx'], 'needs --model'),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, args, message):
    src = tmp_path / 'in'
    _input_tree(src)
    before = _tree_hash(src)
    argv = ['--infer_data_root', str(src), '--mode', 'pynative', '--no_progress']
    argv += [a.format(**{'in': src, 'tmp': tmp_path}) for a in args]
    assert infer.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith('infer.py: error:') and message in err[-1] and 'Traceback' not in '\n'.join(err)
    assert _tree_hash(src) == before


def test_cli_exit_code_1_when_nothing_could_be_processed(tmp_path, capsys):
    src = tmp_path / 'in'
    src.mkdir()
    (src / 'notes.txt').write_text('x')
    (src / 'broken.png').write_bytes(b'garbage')
    code = infer.main(['--infer_data_root', str(src), '--out_data_root', str(tmp_path / 'out'), '--target_res',
                       '64x64', '--mode', 'pynative', '--no_progress'])
    captured = capsys.readouterr()
    assert code == 1
    assert 'RANDOM WEIGHTS' in captured.err
    assert '0 images, 0 persons, 2 skipped' in captured.out


@pytest.mark.slow
def test_cli_on_a_folder_tree(tmp_path):
    """The real command line and network (random weights) on a tree with a text file and a corrupt image."""
    src, out = tmp_path / 'in', tmp_path / 'out'
    names = _input_tree(src)
    before = _tree_hash(src)
    proc = run_script(['src/infer.py', '--infer_data_root', src, '--out_data_root', out, '--recursive',
                       '--target_res', '64x64', '--batch_size', '4', '--no_progress'])  # GRAPH mode, as by default
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _tree_hash(src) == before
    summary = proc.stdout.strip().splitlines()[-1]
    assert 'RANDOM WEIGHTS' in summary and '3 images, 3 persons, 2 skipped' in summary
    assert 'not an image' in proc.stderr and 'unreadable image' in proc.stderr
    for name in names:
        assert (out / name).is_file() and (out / (name + '.json')).is_file()
    assert len(json.loads((out / 'results_keypoints.json').read_text())) == 3


# --- images without a person (nothing crashes, nothing is lost) -----------------------------------------

def test_drawing_no_person_and_a_skeleton_naming_missing_joints():
    image = _image(40, 30)
    np.testing.assert_array_equal(draw_poses(image, [], COCO_17.skeleton), image)
    # a 14-joint set drawn with COCO's 17-joint skeleton: limbs with a missing joint are left out
    kpts = np.array([[5.0 + j, 5.0 + j, 0.9] for j in range(14)])
    drawn = draw_poses(image, [dict(keypoints=kpts)], COCO_17.skeleton, kpt_thr=0.3)
    assert (drawn != image).any()
    colors = joint_colors(3, [(0, 1), (1, 7), (2, 9)])
    assert colors[0] == colors[1] != (255, 255, 255) and colors[2] == (255, 255, 255)


def test_clean_boxes_drops_or_clips_what_must_not_reach_opencv():
    boxes = [[10, 10, 20, 30], [np.nan, 0, 5, 5], [0, 0, -4, 5], [0, 0, 0, 5], [0, 0, 1e30, 1e30],
             [500, 500, 10, 10], [-5, 2, 15, 8], [1, 1, 5, np.inf]]
    scores = [0.9, 0.9, 0.9, 0.9, 0.8, 0.9, 0.7, 0.9]
    kept, kept_scores, note = clean_boxes(boxes, scores, (100, 60))
    np.testing.assert_array_equal(kept, [[10, 10, 20, 30], [0, 0, 60, 100], [0, 2, 10, 8]])
    np.testing.assert_array_equal(kept_scores, [0.9, 0.8, 0.7])
    assert note == ("dropped 4 invalid box(es) (non-finite value or size <= 0); dropped 1 box(es) outside "
                    "the image; clipped 2 box(es) to the image")
    _, _, note = clean_boxes([[1, 1, 5, 5]], [np.nan], (100, 60))
    assert note.startswith('dropped 1 invalid')
    assert clean_boxes([[1, 1, 5, 5]], [0.5], (100, 60))[2] is None


def test_images_without_a_person_get_a_drawing_and_an_empty_json(tmp_path, capsys):
    """HOG finding nobody, an image the box file does not name, boxes all invalid or under the threshold."""
    src, out = tmp_path / 'in', tmp_path / 'out'
    for name in ('listed.png', 'missing.png', 'invalid.png', 'low.png'):
        _write(src / name, _image(60, 50))
    (tmp_path / 'boxes.json').write_text(json.dumps({
        'listed.png': [[5, 5, 20, 40, 0.9]],
        'invalid.png': [[float('nan'), 0, 5, 5, 0.9], [0, 0, -3, 5, 0.9], [0, 0, 1e30, 1e30, float('nan')]],
        'low.png': [[5, 5, 20, 40, 0.1]]}, allow_nan=True))
    annotator, _ = _annotator(out, boxes=BoxFile(tmp_path / 'boxes.json', bbox_thr=0.3))
    stats = annotator.run(plan_inputs(src, out))
    assert stats['persons'] == 1 and stats['without_persons'] == 3 and not stats['skipped']
    for name in ('missing.png', 'invalid.png', 'low.png'):
        assert cv2.imread(str(out / name)) is not None
        assert json.loads((out / f'{name}.json').read_text())['persons'] == []
    assert len(json.loads((out / 'listed.png.json').read_text())['persons']) == 1
    assert json.loads((out / 'run.json').read_text())['without_persons'] == 3
    err = capsys.readouterr().err
    assert 'invalid.png: dropped 3 invalid box(es)' in err
    assert summary_line(stats, 'o').startswith('4 images, 1 persons (3 images without a person), 0 skipped')
    # HOG on blank images: nobody found, still drawn and written
    blank = tmp_path / 'blank'
    _write(blank / 'x.png', np.full((200, 120, 3), 128, np.uint8))
    annotator, _ = _annotator(tmp_path / 'out2', boxes=HogDetector())
    stats = annotator.run(plan_inputs(blank, tmp_path / 'out2'))
    assert stats['without_persons'] == 1 and (tmp_path / 'out2' / 'x.png').is_file()
    assert json.loads((tmp_path / 'out2' / 'x.png.json').read_text())['persons'] == []
