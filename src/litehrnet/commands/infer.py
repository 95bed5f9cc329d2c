"""Estimate poses in images, image folders or a video and draw them (the command line: src/infer.py, litehrnet-infer).

    python src/infer.py --checkpoint litehrnet_18_coco_256x192 --infer_data_root imgs --out_data_root output/infer
    python src/infer.py ... --infer_data_root photos --recursive --detector hog
    python src/infer.py ... --infer_data_root walk.mp4 --out_data_root output/video
    python src/infer.py --backend onnx --model litehrnet_18.onnx --infer_data_root imgs --out_data_root out
    python src/infer.py ... --infer_data_root 0 --detector onnx:yolov8n.onnx --show     # webcam 0, tracked
    python src/infer.py ... --infer_data_root rtsp://host/cam --detector mindyolo:yolov8n --det_interval 3

Person boxes come from --bbox_file (COCO detection results or {file_name: [[x, y, w, h, score]]}),
--detector hog | onnx:PATH | mindyolo:NAME, or else the whole image is one person box; --bbox_thr is
the one box score threshold. Videos, webcams and streams are tracked (--disable_tracking turns it off).
This is a front end over litehrnet.PoseEstimator: the same code runs the frames. OUT mirrors the
input: drawn images, `<file name>.json` per image (a.jpg -> a.jpg.json), `results_keypoints.json` (COCO
results: with a COCO-format --bbox_file, the file's image ids, matched through --ann_file's file_name when
names are not numbers, so `eval.py --results_json` scores it; else 1, 2, ... in sorted path order, listed
in run.json). The input is never written to. Exit code 0, or 1 when no
image could be processed; bad input exits with code 2 and one line on stderr. Without --checkpoint
the network has random weights (smoke tests only).
"""
import sys

from ..annotate import Annotator, plan_inputs, run_summary
from . import program_name
from ..cli import ArgParser, add_keypoint_flags, resolution, run_main, str2bool, warning_line
from ..experiment import add_config_flags, parse_with_config
from ..data.validate import load_ground_truth
from ..detection import PERSON_CATEGORY
from ..device import DEVICES, MODES
from ..onnx_detector import LAYOUTS
from ..runners import BACKENDS
from ..service import PoseEstimator


def parse_args(argv=None, prog='infer.py'):
    p = ArgParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_flags(p)
    p.add_argument('--model_type', default='litehrnet_18', help='mindspore backend: model type (or alias, or '
                                                                 'architecture .json/.yaml)')
    p.add_argument('--target_res', type=resolution, help='input HxW (default 256x192, or what the exported model '
                                                         'was exported for)')
    p.add_argument('--checkpoint', help='mindspore backend: checkpoint file or published name (without it: '
                                        'random weights)')
    p.add_argument('--infer_data_root', required=True, help="an image, a folder of images, a video, a webcam "
                                                             "('0', 'webcam:1') or a stream ('rtsp://...')")
    p.add_argument('--out_data_root', required=True, help='output folder (created; never inside the input)')
    p.add_argument('--recursive', action='store_true', help='also images in subfolders (mirrored in the output)')
    p.add_argument('--bbox_file', help='person boxes: COCO detection results or {file_name: [[x,y,w,h,score]]}')
    p.add_argument('--bbox_thr', type=float, default=0.3, help='keep boxes (box file or detector) scoring above this')
    p.add_argument('--detector', help="person detector: 'hog' (OpenCV; scores mapped to [0, 1]), 'onnx:PATH' "
                                      "(YOLOv5/v8/X export), 'mindyolo:yolov8n|yolov8s|yolov8m|yolox_s|yolox_m'")
    p.add_argument('--det_layout', choices=LAYOUTS, help='onnx detector: force the output layout')
    p.add_argument('--det_class', type=int, default=0, help='detector class kept (default 0: COCO person)')
    p.add_argument('--det_weights', help='mindyolo detector: .ckpt FILE or URL (default: the published COCO one)')
    p.add_argument('--det_interval', type=int, default=1, help='videos: run the detector every N frames, boxes '
                                                               'from the tracked keypoints in between')
    p.add_argument('--disable_tracking', action='store_true', help='videos: no track ids')
    p.add_argument('--smooth', action='store_true', help='videos: One-Euro smoothing of tracked keypoints')
    p.add_argument('--single_person', action='store_true', help='keep only the best box of each image')
    p.add_argument('--show', action='store_true', help='videos: a live window (needs an OpenCV with GUI)')
    p.add_argument('--draw_bbox', type=str2bool, default=True, metavar='true|false', help='draw person boxes')
    p.add_argument('--radius', type=int, help='keypoint radius in pixels (default: by image size)')
    p.add_argument('--thickness', type=int, help='limb thickness in pixels (default: by image size)')
    p.add_argument('--kpt_thr', type=float, default=0.3, help='draw keypoints scoring at least this')
    add_keypoint_flags(p)
    p.add_argument('--ann_file', help='COCO-format annotation file of the images: a COCO-format --bbox_file is matched '
                                      'by its file_name (names that are not numbers), its categories are kept, and '
                                      'the keypoint set is recognised from it')
    p.add_argument('--flip_test', type=str2bool, default=True, metavar='true|false')
    p.add_argument('--post_process', choices=('default', 'dark'), default='default')
    p.add_argument('--batch_size', type=int, default=16, help='crops per network call (mindir: the export batch '
                                                               'size when the model has no description)')
    p.add_argument('--backend', choices=BACKENDS, default='mindspore')
    p.add_argument('--model', help='mindir/onnx backend: the exported model file')
    p.add_argument('--device_target', choices=DEVICES, help='default: auto (GPU, then Ascend, then CPU)')
    p.add_argument('--mode', choices=MODES, default='graph', help='MindSpore execution mode')
    p.add_argument('--no_progress', action='store_true', help='no progress bar')
    args, notes = parse_with_config(p, argv, 'infer')
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    return args


def run(args):
    plan = plan_inputs(args.infer_data_root, args.out_data_root, args.recursive)
    image_ids, category_ids, keypoints = {}, (PERSON_CATEGORY,), args.keypoints
    if args.ann_file:  # checked up front by the one validator
        gt = load_ground_truth(args.ann_file, args.keypoints, args.meta, args.sigmas)
        for img in gt.data['images']:
            image_ids.setdefault(img['file_name'].rsplit('/', 1)[-1], img['id'])
            image_ids[img['file_name']] = img['id']
        category_ids = gt.category_ids
        if not keypoints and args.backend == 'mindspore':
            keypoints = str(args.ann_file)
    estimator = PoseEstimator(
        args.model_type, args.checkpoint, detector=args.detector, target_res=args.target_res,
        keypoints=keypoints, meta=args.meta, sigmas=args.sigmas, image_ids=image_ids, category_ids=category_ids,
        device_target=args.device_target, max_batch_size=args.batch_size,
        single_person=args.single_person, tracking=not args.disable_tracking, flip_test=args.flip_test,
        kpt_thr=args.kpt_thr, bbox_thr=args.bbox_thr, smooth=args.smooth, det_interval=args.det_interval,
        backend=args.backend, model=args.model, mode=args.mode, post_process=args.post_process,
        bbox_file=args.bbox_file, det_layout=args.det_layout, det_class=args.det_class,
        det_weights=args.det_weights, warn=warning_line)
    print(f"device: {estimator.device}{' (auto-selected)' if args.device_target is None else ''}", file=sys.stderr)
    if estimator.random_weights:
        print("WARNING: no --checkpoint: the network has RANDOM WEIGHTS and its keypoints are meaningless "
              "(smoke tests only)", file=sys.stderr)
    annotator = Annotator(estimator, None, args.out_data_root, args.kpt_thr, progress=not args.no_progress,
                          warn=warning_line, draw_bbox=args.draw_bbox, radius=args.radius, thickness=args.thickness,
                          show=args.show, category_id=category_ids[0])
    stats = annotator.run(plan, dict(estimator.description, post_process=args.post_process,
                                     input=str(args.infer_data_root), detector=args.detector or (
                                         'box file' if args.bbox_file else 'whole image'),
                                     detector_weights=getattr(estimator.box_source, 'weights', None)))
    print(run_summary(stats, args.out_data_root, estimator.random_weights))
    return 0 if stats['images'] else 1


def main(argv=None, prog=None):
    prog = prog or program_name('infer')
    return run_main(prog, run, parse_args(argv, prog))
