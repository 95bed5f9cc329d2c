"""The pose service (litehrnet.service.PoseEstimator), its detectors, and the frame loop infer.py runs.

A numpy 'network' stands in for the pose model: its heatmaps peak at the crop centre, so every
person's keypoints land on their box centre and the results can be checked exactly.
"""
import json

import cv2
import numpy as np
import pytest

from litehrnet.annotate import Annotator, parse_source, plan_inputs
from litehrnet.detection import HogDetector, WholeImage, hog_score
from litehrnet.detectors import DetectorBoxes, make_detector, nms_xywh
from litehrnet.keypoints import COCO_17
from litehrnet.mindyolo_detector import MODELS, mindyolo_available
from litehrnet.runners import make_predictor
from litehrnet.service import PoseEstimator, as_images, published_defaults

SIZE = (64, 48)


class CentreRunner:
    """Fixed-batch fake network (records batch sizes): heatmaps peak at the crop centre."""

    def __init__(self, batch_size=4, spread=False):
        self.batch_size, self.calls, self.spread = batch_size, [], spread

    def __call__(self, batch):
        self.calls.append(len(batch))
        h, w = batch.shape[2] // 4, batch.shape[3] // 4
        out = np.zeros((len(batch), 17, h, w), np.float32)
        if self.spread:  # joint j on the crop's diagonal: keypoints span most of the box
            for j in range(17):
                out[:, j, 2 + j * (h - 4) // 16, 2 + j * (w - 4) // 16] = 0.9
        else:
            out[:, :, h // 2, w // 2] = 0.9
        return out


class ListBoxes:
    """Boxes per image name (or frame index), from a dict."""

    description = 'test boxes'

    def __init__(self, by_name):
        self.by_name = by_name

    def boxes(self, image, name):
        rows = np.asarray(self.by_name.get(name, []), np.float64).reshape(-1, 5)
        return rows[:, :4], rows[:, 4]


def _estimator(boxes, batch_size=4, spread=False, **options):
    runner = CentreRunner(batch_size, spread)
    predictor = make_predictor(runner, SIZE, COCO_17, flip_test=False)
    return PoseEstimator.from_parts(predictor, boxes, **options), runner


def _centre(box):
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])


def test_predict_an_image_list_and_an_nhwc_batch_give_the_same_people_with_coco_names():
    boxes = {0: [[10, 10, 30, 60, 0.9], [50, 20, 30, 60, 0.8]], 1: [[5, 5, 40, 80, 0.7]], 2: []}
    est, runner = _estimator(ListBoxes(boxes))
    images = np.zeros((3, 100, 100, 3), np.uint8)
    out = est.predict(list(images))
    assert [len(p) for p in out] == [2, 1, 0]
    assert sum(runner.calls) == 4 and runner.calls == [4]  # 3 crops of 3 images in one (padded) batch
    for i, people in enumerate(out):
        for person, row in zip(people, boxes[i]):
            assert person['box'] == pytest.approx(row[:4])
            assert person['keypoint_names'][0] == 'nose' and person['keypoint_names'][-1] == 'right_ankle'
            assert len(person['keypoint_names']) == 17 and person['keypoints'].shape == (17, 3)
            np.testing.assert_allclose(person['keypoints'][:, :2], np.tile(_centre(row), (17, 1)), atol=2.5)
            assert 'track_id' not in person
    batch = est.predict(images)
    assert [[p['box'] for p in ps] for ps in batch] == [[p['box'] for p in ps] for ps in out]


def test_bgr_flag_and_bad_input():
    image = np.zeros((4, 5, 3), np.uint8)
    image[..., 0] = 7
    assert as_images(image, bgr=True)[0][0, 0].tolist() == [0, 0, 7]
    with pytest.raises(ValueError, match='HWC'):
        as_images(np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match='uint8'):
        as_images(np.zeros((4, 5, 3), np.float32))


def _walk_boxes(n=8):
    """Two people walking apart, one missing in frame 4: frame index -> rows."""
    out = {}
    for t in range(n):
        rows = [[10 + 3 * t, 10, 30, 60, 0.9]]
        if t != 4:
            rows.append([120 - 3 * t, 12, 30, 60, 0.8])
        out[t] = rows
    return out


def test_track_gives_stable_ids_and_a_missed_frame_keeps_the_id():
    est, _ = _estimator(ListBoxes(_walk_boxes()))
    frames = [np.zeros((100, 160, 3), np.uint8)] * 8
    result = est.track(frames)
    left = [next(p['track_id'] for p in ps if p['box'][0] < 80) for ps in result]
    right = [[p['track_id'] for p in ps if p['box'][0] >= 80] for ps in result]
    assert left == [0] * 8
    assert right == [[1]] * 4 + [[]] + [[1]] * 3


def test_tracking_off_and_det_interval():
    est, _ = _estimator(ListBoxes(_walk_boxes()), tracking=False)
    assert all('track_id' not in p for ps in est.track([np.zeros((100, 160, 3), np.uint8)] * 3) for p in ps)
    with pytest.raises(ValueError, match='tracking'):
        _estimator(ListBoxes({}), tracking=False, det_interval=2)

    class Counting(ListBoxes):
        calls = 0

        def boxes(self, image, name):
            Counting.calls += 1
            return super().boxes(image, name)
    est, _ = _estimator(Counting({t: [[40, 20, 40, 60, 0.9]] for t in range(6)}), det_interval=3, spread=True)
    result = est.track([np.zeros((100, 160, 3), np.uint8)] * 6)
    assert Counting.calls == 2  # frames 0 and 3
    assert [[p['track_id'] for p in ps] for ps in result] == [[0]] * 6
    for ps in result[1:3]:  # boxes between detector runs come from the tracked keypoints, around the person
        assert abs(_centre(ps[0]['box']) - _centre([40, 20, 40, 60])).max() < 6


def test_published_defaults_give_input_size_and_keypoint_set():
    assert published_defaults('hrnet_w32_256x256', None) == ('hrnet_w32', 'hrnet_w32_256x256', (256, 256), 'mpii')
    assert published_defaults('litehrnet_18', 'litehrnet_18_coco_384x288')[2:] == ((384, 288), 'coco')
    assert published_defaults('litehrnet_18', None) == ('litehrnet_18', None, None, None)


# --- detectors --------------------------------------------------------------------------------------

def test_detector_boxes_are_thresholded_and_nms_filtered():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 10, 10], [80, 80, 5, 5]], np.float64)
    scores = np.array([0.9, 0.8, 0.7, 0.2])
    kept, s = nms_xywh(boxes, scores, 0.3, 0.45)  # box 1 overlaps box 0 (IoU 0.68), box 3 is below 0.3
    np.testing.assert_array_equal(kept, boxes[[0, 2]])
    np.testing.assert_array_equal(s, [0.9, 0.7])
    wrapped = DetectorBoxes(ListBoxes({'a': np.c_[boxes, scores]}), bbox_thr=0.3)
    assert len(wrapped.boxes(None, 'a')[0]) == 2 and 'NMS IoU 0.45' in wrapped.description


def test_hog_scores_map_to_0_1_and_the_sources_by_name():
    np.testing.assert_allclose(hog_score([0.0, 1.0, -1.0, 2.0]),
                               [0.5, 1 / (1 + np.exp(-1)), 1 / (1 + np.e), 0.8807970779778823])
    assert isinstance(make_detector(None), WholeImage)
    assert isinstance(make_detector('hog').detector, HogDetector)
    with pytest.raises(ValueError, match='det_weights'):
        make_detector('hog', det_weights='x.ckpt')
    with pytest.raises(ValueError, match='unknown detector'):
        make_detector('yolo')
    with pytest.raises(ValueError, match='either a box file or a detector'):
        make_detector('hog', bbox_file='b.json')


@pytest.mark.skipif(not mindyolo_available(), reason='mindyolo is not installed (pip install .[detect])')
@pytest.mark.parametrize('name', ['yolov8n', 'yolox_s'])
def test_mindyolo_detector_builds_runs_and_decodes_with_random_weights(name):
    from litehrnet.mindyolo_detector import MindyoloDetector
    det = MindyoloDetector(name, 'random', score_thr=0.0, input_size=(64, 64))
    raw = det.raw(np.zeros((1, 3, 64, 64), np.float32))
    assert raw.shape == (1, 64 + 16 + 4, 84 + (name.startswith('yolox')))  # G cells, 4 (+1 obj) + 80 classes
    # plant one confident person row: its box must come back exactly (input 64x64 = the image here)
    raw = np.zeros_like(raw)
    if name.startswith('yolox'):
        raw[0, 5, :5], raw[0, 5, 5] = [30, 20, 16, 24, 1.0], 0.9
    else:
        raw[0, 5, :4], raw[0, 5, 4] = [30, 20, 16, 24], 0.9
    det.score_thr = 0.3
    cand, scores = det.decode(raw)
    np.testing.assert_allclose(cand, [[22, 8, 38, 32]])
    np.testing.assert_allclose(scores, [0.9], rtol=1e-6)
    boxes, scores = det.boxes(np.zeros((48, 64, 3), np.uint8))
    assert boxes.shape[1] == 4 and len(boxes) == len(scores)


def test_the_mindyolo_table_has_the_published_weights():
    assert MODELS['yolov8n'][4].endswith('yolov8/yolov8-n_500e_mAP372-cc07f5bd.ckpt')
    assert set(MODELS) == {'yolov8n', 'yolov8s', 'yolov8m', 'yolox_s', 'yolox_m'}


# --- sources and the frame loop of infer.py ---------------------------------------------------------

def test_source_parsing(tmp_path):
    assert parse_source('0') == ('camera', 0)
    assert parse_source('webcam:1') == ('camera', 1)
    assert parse_source('webcam') == ('camera', 0)
    assert parse_source('rtsp://cam.local/stream') == ('stream', 'rtsp://cam.local/stream')
    assert parse_source('walk.mp4') == ('path', 'walk.mp4')
    with pytest.raises(ValueError, match='webcam:N'):
        parse_source('webcam:x')
    plan = plan_inputs('webcam:2', tmp_path / 'out')
    assert plan.kind == 'video' and plan.capture == 2 and plan.files[0].name == 'webcam2.mp4'


def _video(path, frames=8, size=(160, 100)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, size)
    for t in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 + t, np.uint8))
    writer.release()


def test_the_frame_loop_on_a_video_file_writes_track_ids_and_keypoint_names(tmp_path):
    _video(tmp_path / 'walk.avi')
    est, _ = _estimator(ListBoxes({}))

    class ByFrame:  # the frame loop names frames by file: count calls for the frame index
        description, t = 'walk boxes', 0
        walk = _walk_boxes()

        def boxes(self, image, name):
            rows = np.asarray(self.walk[self.t], np.float64)
            self.t += 1
            return rows[:, :4], rows[:, 4]
    est.box_source = ByFrame()
    out = tmp_path / 'out'
    stats = Annotator(est, None, out, progress=False, show=True).run(plan_inputs(tmp_path / 'walk.avi', out))
    assert stats['kind'] == 'video' and len(stats['images']) == 8 and stats['tracking']
    data = json.loads((out / 'walk.avi.json').read_text())
    assert data['keypoint_names'] == COCO_17.joint_names
    assert [f['frame_index'] for f in data['frames']] == list(range(8))
    ids = [[p['track_id'] for p in f['persons']] for f in data['frames']]
    assert ids == [[0, 1]] * 4 + [[0]] + [[0, 1]] * 3
    assert set(data['frames'][0]['persons'][0]['keypoints']) == set(COCO_17.joint_names)
    capture = cv2.VideoCapture(str(out / 'walk.avi'))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 8


# --- the real constructor and the command line, end to end -------------------------------------------

def _figures_video(path, frames=4, size=(160, 120)):
    """A small video of two bright figures (rectangles) moving apart on a dark background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*'MJPG'), 10, size)
    for t in range(frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        cv2.rectangle(frame, (20 + 4 * t, 20), (50 + 4 * t, 100), (200, 180, 160), -1)
        cv2.rectangle(frame, (110 - 4 * t, 25), (140 - 4 * t, 105), (160, 200, 180), -1)
        writer.write(frame)
    writer.release()


@pytest.mark.slow
def test_infer_main_on_a_video_is_the_estimator_on_its_frames(tmp_path, capsys):
    """infer.py (in process, random litehrnet_18 at 64x48) on a video, and PoseEstimator on the same frames."""
    from litehrnet.commands import infer
    from litehrnet import create_model, save_checkpoint
    ckpt = str(tmp_path / 'random.ckpt')  # the same (random) weights for the command line and the API
    save_checkpoint(create_model('litehrnet_18'), ckpt)
    _figures_video(tmp_path / 'two.avi')
    out = tmp_path / 'out'
    code = infer.main(['--infer_data_root', str(tmp_path / 'two.avi'), '--out_data_root', str(out),
                       '--checkpoint', ckpt,
                       '--target_res', '64x64', '--mode', 'pynative', '--no_progress', '--batch_size', '2',
                       '--show', '--draw_bbox', 'false'])
    assert code == 0
    captured = capsys.readouterr()
    assert 'device: CPU (auto-selected)' in captured.err and 'no GUI' in captured.err
    assert '4 frames, 4 persons' in captured.out and 'tracking on' in captured.out
    data = json.loads((out / 'two.avi.json').read_text())
    run = json.loads((out / 'run.json').read_text())
    assert run['detector'] == 'whole image' and run['device'] == 'CPU' and run['tracking'] is True
    assert [[p['track_id'] for p in f['persons']] for f in data['frames']] == [[0]] * 4  # one whole-frame box

    est = PoseEstimator('litehrnet_18', ckpt, target_res=(64, 64), mode='pynative', max_batch_size=2)
    capture, frames = cv2.VideoCapture(str(tmp_path / 'two.avi')), []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    people = est.track(frames, bgr=True)
    assert len(people) == 4 and est.device == 'CPU' and not est.random_weights
    for frame_people, frame_json in zip(people, data['frames']):
        cli = np.array(list(frame_json['persons'][0]['keypoints'].values()))
        np.testing.assert_allclose(frame_people[0]['keypoints'], cli, rtol=1e-5, atol=1e-4)
        assert frame_people[0]['track_id'] == 0


def test_the_package_exports_the_estimator_lazily():
    import litehrnet
    assert litehrnet.PoseEstimator is PoseEstimator and 'PoseEstimator' in litehrnet.__all__


def test_an_onnx_detector_by_name_feeds_the_pose_model_and_run_json_names_it(tmp_path):
    """'onnx:PATH' through make_detector -> PoseEstimator -> infer's Annotator: the known boxes, named weights."""
    from test_onnx_detector import CENTRE_PAD, expected_boxes_scores, export, image, rows_v5
    path = export(tmp_path, 'v5', rows_v5(CENTRE_PAD))
    source = make_detector(f'onnx:{path}', bbox_thr=0.3)
    assert source.weights == str(path) and 'ONNX yolov5' in source.description
    est, _ = _estimator(source)
    people = est.predict(image())[0]
    want_boxes, want_scores = expected_boxes_scores()
    np.testing.assert_allclose([p['box'] for p in people], want_boxes, atol=1e-3)
    np.testing.assert_allclose([p['box_score'] for p in people], want_scores, rtol=1e-5)
    src, out = tmp_path / 'in', tmp_path / 'out'
    src.mkdir()
    cv2.imwrite(str(src / 'street.png'), image())
    stats = Annotator(est, None, out, progress=False).run(plan_inputs(src, out))
    run = json.loads((out / 'run.json').read_text())
    assert run['detector_weights'] == str(path) and run['box_source'].startswith('ONNX yolov5')
    assert stats['persons'] == len(want_boxes)


def test_device_selection_prefers_what_is_asked_then_gpu_ascend_cpu(monkeypatch):
    from litehrnet import device
    assert device.select_device('GPU') == ('GPU', 'asked for')
    with pytest.raises(ValueError, match='device_target'):
        device.select_device('TPU')
    monkeypatch.setattr(device, 'available', lambda name: name in ('Ascend', 'CPU'))
    assert device.select_device(None)[0] == 'Ascend'
    monkeypatch.setattr(device, 'available', lambda name: name == 'CPU')
    assert device.select_device(None)[0] == 'CPU'


def test_mindyolo_asked_for_without_mindyolo_is_one_clear_error(monkeypatch):
    from litehrnet import mindyolo_detector
    real = mindyolo_detector.importlib.import_module

    def no_mindyolo(name, *args):
        if name.startswith('mindyolo'):
            raise ImportError(f"No module named '{name}'")
        return real(name, *args)
    monkeypatch.setattr(mindyolo_detector.importlib, 'import_module', no_mindyolo)
    assert not mindyolo_detector.mindyolo_available()
    with pytest.raises(ValueError, match=r"pip install '\.\[detect\]'"):
        make_detector('mindyolo:yolov8n')
    with pytest.raises(ValueError, match='unknown mindyolo model'):
        make_detector('mindyolo:yolov9z')


def test_infer_refuses_bad_video_options_in_one_line(tmp_path, capsys):
    from litehrnet.commands import infer
    _video(tmp_path / 'walk.avi', frames=2)
    base = ['--infer_data_root', str(tmp_path / 'walk.avi'), '--out_data_root', str(tmp_path / 'out')]
    assert infer.main(base + ['--det_interval', '0']) == 2
    assert infer.main(base + ['--det_interval', '3', '--disable_tracking']) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-2].endswith('det_interval must be >= 1, got 0') and 'needs tracking on' in err[-1]
    assert infer.main(base + ['--detector', 'hog', '--det_weights', 'w.ckpt']) == 2
    assert 'det_weights' in capsys.readouterr().err
