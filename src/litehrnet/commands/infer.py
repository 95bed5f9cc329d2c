"""Estimate poses in images, image folders or a video and draw them (the command line: src/infer.py, litehrnet-infer).

    python src/infer.py --checkpoint litehrnet_18_coco_256x192 --infer_data_root imgs --out_data_root output/infer
    python src/infer.py ... --infer_data_root photos --recursive --detector hog
    python src/infer.py ... --infer_data_root walk.mp4 --out_data_root output/video
    python src/infer.py --backend onnx --model litehrnet_18.onnx --infer_data_root imgs --out_data_root out

Person boxes come from --bbox_file (COCO detection results or {file_name: [[x, y, w, h, score]]}),
--detector hog (OpenCV's people detector), or else the whole image is one person box. OUT mirrors the
input: drawn images, `<image>.json` per image, `results_keypoints.json` (COCO results; image ids in
run.json: 1, 2, ... in sorted path order). The input is never written to. Exit code 0, or 1 when no
image could be processed; bad input exits with code 2 and one line on stderr. Without --checkpoint
the network has random weights (smoke tests only).
"""
import sys

from tqdm import tqdm

from ..annotate import Annotator, plan_inputs, run_summary
from . import program_name
from ..experiment import add_config_flags, parse_with_config
from ..cli import ArgParser, resolution, run_main, str2bool
from ..detection import make_box_source
from ..device import DEVICES, MODES, set_device
from ..runners import BACKENDS, make_predictor, open_backend


def parse_args(argv=None, prog='infer.py'):
    p = ArgParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_flags(p)
    p.add_argument('--model_type', default='litehrnet_18', help='mindspore backend: model type (or alias, or '
                                                                 'architecture .json/.yaml)')
    p.add_argument('--target_res', type=resolution, help='input HxW (default 256x192, or what the exported model '
                                                         'was exported for)')
    p.add_argument('--checkpoint', help='mindspore backend: checkpoint file or published name (without it: '
                                        'random weights)')
    p.add_argument('--infer_data_root', required=True, help='an image, a folder of images, or a video')
    p.add_argument('--out_data_root', required=True, help='output folder (created; never inside the input)')
    p.add_argument('--recursive', action='store_true', help='also images in subfolders (mirrored in the output)')
    p.add_argument('--bbox_file', help='person boxes: COCO detection results or {file_name: [[x,y,w,h,score]]}')
    p.add_argument('--bbox_thr', type=float, default=0.3, help='keep --bbox_file boxes scoring above this')
    p.add_argument('--detector', choices=('hog',), help="person detector: 'hog' (OpenCV, built in)")
    p.add_argument('--kpt_thr', type=float, default=0.3, help='draw keypoints scoring at least this')
    p.add_argument('--keypoints', help="keypoint set: coco (default), mpii, or a COCO-format annotation json")
    p.add_argument('--flip_test', type=str2bool, default=True, metavar='true|false')
    p.add_argument('--post_process', choices=('default', 'dark'), default='default')
    p.add_argument('--batch_size', type=int, default=16, help='crops per network call (mindir: the export batch '
                                                               'size when the model has no description)')
    p.add_argument('--backend', choices=BACKENDS, default='mindspore')
    p.add_argument('--model', help='mindir/onnx backend: the exported model file')
    p.add_argument('--device_target', choices=DEVICES, default='CPU')
    p.add_argument('--mode', choices=MODES, default='graph', help='MindSpore execution mode')
    p.add_argument('--no_progress', action='store_true', help='no progress bar')
    args, notes = parse_with_config(p, argv, 'infer')
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    return args


def run(args):
    plan = plan_inputs(args.infer_data_root, args.out_data_root, args.recursive)
    boxes = make_box_source(args.bbox_file, args.bbox_thr, args.detector)
    set_device(args.device_target, args.mode)
    runner, cfg = open_backend(args.backend, args.model, args.model_type, args.checkpoint, args.keypoints,
                               args.target_res, args.flip_test, args.batch_size)
    if cfg['random_weights']:
        print("WARNING: no --checkpoint: the network has RANDOM WEIGHTS and its keypoints are meaningless "
              "(smoke tests only)", file=sys.stderr)
    predictor = make_predictor(runner, cfg['input_size_hw'], cfg['keypoint_info'], cfg['flip_test'],
                               args.post_process, args.batch_size)
    annotator = Annotator(predictor, boxes, args.out_data_root, args.kpt_thr, progress=not args.no_progress,
                          warn=lambda message: tqdm.write(f"warning: {message}", file=sys.stderr))
    stats = annotator.run(plan, dict(cfg['description'], random_weights=cfg['random_weights'],
                                     post_process=args.post_process, input=str(args.infer_data_root)))
    print(run_summary(stats, args.out_data_root, cfg['random_weights']))
    return 0 if stats['images'] else 1


def main(argv=None, prog=None):
    prog = prog or program_name('infer')
    return run_main(prog, run, parse_args(argv, prog))
