"""Pose inference over files and streams: image, folder (tree), video, webcam or stream -> drawings, JSON.

The frames go through `service.PoseEstimator`'s own code (`stream` for images, `iter_track` for videos,
tracking on unless disabled), so the command line and the API give the same people.

Outputs mirror the input under the output folder: `a/b.jpg` gives `OUT/a/b.jpg` (drawn) and
`OUT/a/b.jpg.json` (box, score and named keypoints of every person); a video gives the drawn video
(same name, same frame rate) and `OUT/<video>.json` with every frame. `OUT/results_keypoints.json`
holds everyone in COCO results format; its image ids are 1, 2, ... over the images processed in
sorted path order (a video's frame index + 1), listed with their file names in `OUT/run.json`,
beside the skipped files and the settings. A video's JSON holds `keypoint_names` once and `frames`, a
list of {frame_index, image_id, persons}, each person with its `track_id` when tracking is on. A
webcam (`0`, `webcam:1`) or a stream (`rtsp://...`, `http(s)://...`) is read like a video and written
as `webcam0.mp4` / `stream.mp4` with its `.json`. Nothing is written into the input: an output folder
that is, contains or lies inside the input folder is refused.
"""
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
from tqdm import tqdm

from .detection import BoxFile
from .drawing import draw_poses
from .evaluation import write_results_json
from .fileio import write_json_atomic
from .predictor import read_image_rgb
from .service import PoseEstimator

IMAGE_EXTS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
VIDEO_EXTS = ('.mp4', '.avi', '.mov', '.mkv', '.m4v', '.webm')
FOURCC = {'.avi': 'MJPG', '.webm': 'VP80'}  # drawn video codec by container; others get 'mp4v'
RESULTS_FILE = 'results_keypoints.json'
RUN_FILE = 'run.json'
MAX_WARNINGS = 20  # skipped files named on the console; run.json lists them all
STREAM_SCHEMES = ('rtsp://', 'rtsps://', 'rtmp://', 'http://', 'https://', 'udp://', 'tcp://')
NO_GUI = ("--show: this OpenCV has no GUI (the opencv-python-headless wheel): no window is shown; "
          "pip install opencv-python for one")


@dataclass
class InputPlan:
    """What to process: 'images' or 'video', the folder names are relative to, and the sorted names."""

    kind: str
    root: Path
    files: list
    capture: object = None  # what cv2.VideoCapture opens for a webcam (int) or stream (URL)


def parse_source(text):
    """('camera', index) for '0' or 'webcam:1', ('stream', url) for rtsp:// (etc.) URLs, else ('path', text)."""
    text = str(text).strip()
    if text.isdigit():
        return 'camera', int(text)
    if text.lower().startswith('webcam'):
        index = text[len('webcam'):].lstrip(':')
        if not index.isdigit() and index != '':
            raise ValueError(f"{text}: a webcam is 'webcam' or 'webcam:N' (N the camera index)")
        return 'camera', int(index or 0)
    if text.lower().startswith(STREAM_SCHEMES):
        return 'stream', text
    return 'path', text


def plan_inputs(in_path, out_dir, recursive=False):
    """The files under an input (folder, image, video, webcam or stream); ValueError when missing or the output
    overlaps it."""
    kind, target = parse_source(in_path)
    if kind != 'path':
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise ValueError(f"{out_dir}: exists and is not a folder")
        name = f"webcam{target}.mp4" if kind == 'camera' else 'stream.mp4'
        return InputPlan('video', Path('.'), [Path(name)], capture=target)
    src = Path(in_path)
    if not src.exists():
        raise ValueError(f"{in_path}: input not found")
    out, resolved = Path(out_dir).resolve(), src.resolve()
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a folder")
    if src.is_dir():
        if out == resolved or resolved in out.parents or out in resolved.parents:
            raise ValueError(f"output folder {out_dir} must not be, contain or lie inside the input folder {in_path}")
        found = src.glob('**/*' if recursive else '*')
        files = sorted((p.relative_to(src) for p in found if p.is_file()), key=lambda p: p.as_posix())
        return InputPlan('images', src, files)
    ext = src.suffix.lower()
    if ext not in IMAGE_EXTS + VIDEO_EXTS:
        raise ValueError(f"{in_path}: not an image or video (by its extension: {', '.join(IMAGE_EXTS + VIDEO_EXTS)})")
    if out == resolved.parent:
        raise ValueError(f"output folder {out_dir} holds the input: its drawn copy would overwrite it")
    return InputPlan('video' if ext in VIDEO_EXTS else 'images', src.parent, [Path(src.name)])


def _write_json(path, obj):
    write_json_atomic(path, obj, allow_nan=True)


class Annotator:
    """Runs a predictor with a box source over planned inputs and writes the drawings and JSON files.

    `warn(message)`, when given, is told about skipped files (the first MAX_WARNINGS; run.json lists all).
    `predictor` is a `PoseEstimator` (box_source then None: the estimator's own), or a bare predictor
    with a box source, wrapped in an estimator with `estimator_options` (tracking, smooth, det_interval,
    single_person). draw_bbox, radius, thickness: drawing; show: a live window for videos.
    """

    def __init__(self, predictor, box_source, out_dir, kpt_thr=0.3, progress=True, warn=None, draw_bbox=True,
                 radius=None, thickness=None, show=False, category_id=1, **estimator_options):
        self.category_id = category_id
        if isinstance(predictor, PoseEstimator):
            self.estimator = predictor
        else:  # box notes go to `warn`, or else to the log
            self.estimator = PoseEstimator.from_parts(predictor, box_source, kpt_thr=kpt_thr, warn=warn,
                                                      **estimator_options)
        self.warn = warn or (lambda message: None)
        self.predictor = self.estimator.predictor
        self.box_source = self.estimator.box_source
        self.out = Path(out_dir)
        self.kpt_thr = kpt_thr
        self.progress = progress
        self.names = self.predictor.info.joint_names
        self.draw_options = dict(draw_boxes=draw_bbox, radius=radius, thickness=thickness)
        self.show = bool(show)

    def run(self, plan, settings=None):
        """Process the plan; writes results and run.json, returns the run's statistics (also in run.json)."""
        if plan.kind == 'video' and isinstance(self.box_source, BoxFile):
            raise ValueError("box files name images: for a video use --detector hog or the whole frame")
        self.out.mkdir(parents=True, exist_ok=True)
        stats = dict(kind=plan.kind, images=[], skipped=[], persons=0, without_persons=0,
                     box_source=self.box_source.description,
                     detector_weights=getattr(self.box_source, 'weights', None),
                     tracking=plan.kind == 'video' and self.estimator.tracking)
        results = []
        start = time.perf_counter()
        if plan.kind == 'video':
            source = plan.capture if plan.capture is not None else plan.root / plan.files[0]
            self._video(source, plan.files[0], stats, results)
        else:
            self._images(plan, stats, results)
        seconds = time.perf_counter() - start
        stats.update(seconds=seconds, seconds_per_image=seconds / max(len(stats['images']), 1))
        write_results_json(self.out / RESULTS_FILE, results)
        _write_json(self.out / RUN_FILE, dict(
            settings or {}, **stats, results_file=RESULTS_FILE, kpt_thr=self.kpt_thr,
            image_ids=("the box file's image ids (numeric file names or --ann_file's file_name)"
                       if getattr(self.box_source, 'has_image_ids', False) else
                       '1, 2, ... over the images processed in sorted path order (video: frame index + 1)')))
        return stats

    def _skip(self, stats, rel, reason):
        stats['skipped'].append(dict(file=Path(rel).as_posix(), reason=reason))
        if len(stats['skipped']) <= MAX_WARNINGS:
            self.warn(f"skipped {Path(rel).as_posix()}: {reason}")
        if len(stats['skipped']) == MAX_WARNINGS + 1:
            self.warn(f"more files skipped: all are listed in {self.out / RUN_FILE}")

    def _read_images(self, plan, stats):
        """(relative name, RGB image) of each readable image of the plan; others are skipped and counted."""
        bar = tqdm(plan.files, desc='infer', unit='img', disable=not self.progress, dynamic_ncols=True)
        for rel in bar:
            ext = rel.suffix.lower()
            if ext not in IMAGE_EXTS:
                self._skip(stats, rel, 'a video inside a folder (give the video itself as the input)'
                           if ext in VIDEO_EXTS else 'not an image')
                continue
            image = read_image_rgb(plan.root / rel)
            if image is None:
                self._skip(stats, rel, 'unreadable image')
                continue
            yield rel, image

    def _person_json(self, person):
        out = dict(bbox=[float(v) for v in person['bbox']], box_score=person['box_score'], score=person['score'],
                   keypoints={n: [float(v) for v in k] for n, k in zip(self.names, person['keypoints'])})
        if 'track_id' in person:
            out['track_id'] = person['track_id']
        return out

    def _record(self, image_id, persons, stats, results, category_id=None):
        """Count the people of one image and add them to the COCO results; their JSON form."""
        stats['persons'] += len(persons)
        stats['without_persons'] += not persons
        if image_id is None:  # an image the box file has no id for: it has no boxes either
            return [self._person_json(p) for p in persons]
        results.extend(dict(image_id=image_id, category_id=category_id or self.category_id, keypoints=p['keypoints'], score=p['score'])
                       for p in persons)
        return [self._person_json(p) for p in persons]

    def _draw(self, image, persons):
        """The drawn copy of an RGB image, in OpenCV's BGR order for writing."""
        drawn = draw_poses(image, persons, self.predictor.info.skeleton, self.kpt_thr, **self.draw_options)
        return cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR)

    def _images(self, plan, stats, results):
        file_ids = getattr(self.box_source, 'has_image_ids', False)
        for rel, image, persons in self.estimator.stream(self._read_images(plan, stats)):
            image_id = self.box_source.image_id(rel) if file_ids else len(stats['images']) + 1
            height, width = image.shape[:2]
            stats['images'].append(dict(id=image_id, file_name=rel.as_posix(), width=width, height=height))
            target = self.out / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if not cv2.imwrite(str(target), self._draw(image, persons)):
                raise ValueError(f"{target}: could not write the drawn image")
            _write_json(target.with_name(target.name + '.json'), dict(
                file_name=rel.as_posix(), image_id=image_id, width=width, height=height,
                box_source=self.box_source.description,
                persons=self._record(image_id, persons, stats, results,
                                     self.box_source.category_of(rel) if file_ids else None)))

    def _frames(self, capture, rel):
        """(name, RGB frame) of every frame of an open video."""
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
        with tqdm(total=total, desc='infer', unit='frame', disable=not self.progress, dynamic_ncols=True) as bar:
            while True:
                ok, frame = capture.read()
                if not ok:
                    return
                bar.update()
                yield rel, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    @staticmethod
    def _interruptible(frames, live):
        """The frames; for a live source, KeyboardInterrupt ends them (the outputs are still written)."""
        try:
            yield from frames
        except KeyboardInterrupt:
            if not live:
                raise

    def _open_window(self):
        """Whether a live window can be shown (warns once, in one line, when OpenCV has no GUI)."""
        if not self.show:
            return False
        gui = [line for line in cv2.getBuildInformation().splitlines() if line.strip().startswith('GUI:')]
        if gui and gui[0].split(':', 1)[1].strip().upper() == 'NONE':
            self.warn(NO_GUI)
            return False
        if os.name == 'posix' and not (os.environ.get('DISPLAY') or os.environ.get('WAYLAND_DISPLAY')):
            self.warn("--show: no display here (DISPLAY is not set): no window is shown")
            return False
        try:
            cv2.namedWindow('litehrnet', cv2.WINDOW_NORMAL)
        except cv2.error:
            self.warn(NO_GUI)
            return False
        return True

    def _video(self, source, rel, stats, results):
        capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
        if not capture.isOpened() and not isinstance(source, Path):
            raise ValueError(f"{source}: cannot open this {'webcam' if isinstance(source, int) else 'stream'}")
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        target = self.out / rel
        writer, frames = None, []
        window = self._open_window()
        live = not isinstance(source, Path)  # a webcam or stream: Ctrl-C ends it and keeps what was done
        try:
            for _, image, persons in self._interruptible(self.estimator.iter_track(self._frames(capture, rel), fps),
                                                         live):
                image_id = len(stats['images']) + 1
                height, width = image.shape[:2]
                if writer is None:
                    fourcc = cv2.VideoWriter_fourcc(*FOURCC.get(target.suffix.lower(), 'mp4v'))
                    writer = cv2.VideoWriter(str(target), fourcc, fps, (width, height))
                    if not writer.isOpened():
                        raise ValueError(f"{target}: cannot write a video here")
                stats['images'].append(dict(id=image_id, file_name=f"{rel.as_posix()}#{image_id - 1}",
                                            width=width, height=height))
                drawn = self._draw(image, persons)
                writer.write(drawn)
                if window:
                    cv2.imshow('litehrnet', drawn)
                    if cv2.waitKey(1) & 0xFF in (ord('q'), 27):  # q or Esc stops
                        break
                frames.append(dict(frame_index=image_id - 1, image_id=image_id,
                                   persons=self._record(image_id, persons, stats, results)))
        finally:
            capture.release()
            if writer is not None:
                writer.release()
            if window:
                cv2.destroyWindow('litehrnet')
        if not frames:
            self._skip(stats, rel, 'unreadable video')
            return
        _write_json(target.with_name(target.name + '.json'), dict(
            file_name=rel.as_posix(), fps=fps, width=stats['images'][0]['width'],
            height=stats['images'][0]['height'], box_source=self.box_source.description,
            tracking=self.estimator.tracking, keypoint_names=list(self.names), frames=frames))


def run_summary(stats, out_dir, random_weights=False):
    """One line: images (or frames), persons, skipped files by reason, time per image, box source."""
    unit = 'frames' if stats['kind'] == 'video' else 'images'
    reasons = {}
    for s in stats['skipped']:
        reasons[s['reason']] = reasons.get(s['reason'], 0) + 1
    skipped = f" ({', '.join(f'{n} {r}' for r, n in reasons.items())})" if reasons else ''
    empty = stats.get('without_persons', 0)
    empty = f" ({empty} {unit if empty > 1 else unit[:-1]} without a person)" if empty else ''
    line = (f"{len(stats['images'])} {unit}, {stats['persons']} persons{empty}, "
            f"{len(stats['skipped'])} skipped{skipped}, "
            f"{stats['seconds_per_image']:.3f} s per {unit[:-1]}, boxes: {stats['box_source']}"
            f"{'; detector weights: ' + str(stats['detector_weights']) if stats.get('detector_weights') else ''}"
            f"{'; tracking on' if stats.get('tracking') else ''}; outputs in {out_dir}")
    return ("RANDOM WEIGHTS (no --checkpoint), keypoints are meaningless: " + line) if random_weights else line
