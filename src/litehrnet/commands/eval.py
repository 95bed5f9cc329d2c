"""Evaluate a Lite-HRNet checkpoint on COCO, MPII or a custom COCO-format keypoint set (the command line: src/eval.py, litehrnet-eval).

    python src/eval.py --model_type litehrnet_18 --target_res 256x192 --checkpoint FILE_OR_NAME \
        --dataset coco --data_root DIR [--bbox_file DETECTIONS.json] [--flip_test true|false]
    python src/eval.py --results_json RESULTS.json --ann_file person_keypoints_val2017.json

COCO layout: DIR/annotations/person_keypoints_val2017.json and DIR/val2017/ (--ann_file / --img_dir
override). MPII (mmpose layout): DIR/annotations/mpii_val.json, DIR/annotations/mpii_gt_val.mat,
DIR/images/. Without --bbox_file, COCO uses ground-truth boxes (the earlier MindSpore port's protocol);
the published numbers use detector boxes. Bad input exits with code 2 and one line on stderr.
"""
import sys
from pathlib import Path

from . import program_name
from ..cli import ArgParser, add_keypoint_flags, number_list, resolution, run_main, str2bool
from ..experiment import add_config_flags, parse_with_config
from ..data.datasets import DATASETS, dataset_spec
from ..device import DEVICES, MODES, set_device
from ..evaluate import EVALUATORS, evaluate_split, score_results
from ..models.registry import check_input_size, create_model, resolve_checkpoint

EVAL_DATASETS = tuple(name for name, spec in DATASETS.items() if not spec.generate)  # the demo is for training


class UsageError(ValueError):
    """Bad command-line input."""


def parse_args(argv=None, prog='eval.py'):
    p = ArgParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_flags(p)
    p.add_argument('--model_type', help='litehrnet_18, litehrnet_30, naive_litehrnet_18, wider_naive_litehrnet_18, '
                                        'hrnet_w32, hrnet_w48, light_hrnet (or an alias, or an architecture '
                                        '.json/.yaml)')
    p.add_argument('--target_res', type=resolution, help='input HxW (default 256x192; MPII 256x256)')
    p.add_argument('--checkpoint', help='checkpoint file (any supported format) or published checkpoint name')
    p.add_argument('--dataset', choices=EVAL_DATASETS, default='coco')
    p.add_argument('--data_root', help='dataset folder (see the layouts above)')
    p.add_argument('--ann_file', help='annotation file (overrides the layout)')
    p.add_argument('--img_dir', help='image folder (overrides the layout)')
    p.add_argument('--bbox_file', help='COCO detection results (person boxes) to evaluate on; default: GT boxes')
    p.add_argument('--flip_test', type=str2bool, default=True, metavar='true|false')
    p.add_argument('--post_process', choices=('default', 'dark'), default='default')
    p.add_argument('--soft_nms', type=str2bool, default=False, metavar='true|false')
    p.add_argument('--oks_thr', type=float, default=0.9, help='OKS-NMS threshold')
    p.add_argument('--batch_size', type=int, default=32)
    p.add_argument('--output_path', default='output/eval', help='where results and metrics.json are written')
    p.add_argument('--device_target', choices=DEVICES, help='default: auto (GPU, then Ascend, then CPU; logged)')
    p.add_argument('--mode', choices=MODES, default='graph', help='MindSpore execution mode')
    p.add_argument('--results_json', help='score this COCO results file against --ann_file (no model is built)')
    add_keypoint_flags(p)
    p.add_argument('--zero_score_results', choices=('drop', 'keep'), default='drop',
                   help='results whose keypoint scores are all <= 0: drop (xtcocotools, the official protocol; '
                        'counted in metrics.json) or keep (pycocotools)')
    p.add_argument('--pck_thresholds', type=number_list(float), default=(0.05, 0.1, 0.2),
                   help='COCO-format, ground-truth boxes: PCK thresholds (with EPE)')
    p.add_argument('--sdr_thresholds', type=number_list(float), default=(), help='... and MRE and SDR at these pixel radii')
    p.add_argument('--mpii_gt', help='MPII: mpii_gt_val.mat (default: beside the annotation file)')
    p.add_argument('--mean01_thr', type=float, default=0.1,
                   help='MPII: threshold of Mean@0.1 (0.11 reproduces the official README, an old mmpose bug)')
    p.add_argument('--no_progress', action='store_true', help='no progress bar')
    args, notes = parse_with_config(p, argv, 'eval')
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    return args


def dataset_paths(args):
    """Annotation file and image folder: explicit flags first, else the dataset's layout under --data_root."""
    layout = dataset_spec(args.dataset).split_files(args.data_root, 'val') if args.data_root else (None, None)
    ann_file = args.ann_file or layout[0]
    img_dir = args.img_dir or layout[1]
    if ann_file is None:
        raise UsageError(f"--dataset {args.dataset} needs --ann_file (or --data_root with the standard layout)")
    if img_dir is None and not args.results_json:
        raise UsageError(f"--dataset {args.dataset} needs --img_dir (or --data_root with the standard layout)")
    if img_dir is not None and not args.results_json and not Path(img_dir).is_dir():
        raise UsageError(f"{img_dir}: image folder not found")
    return ann_file, img_dir


def run(args):
    """Evaluate as the arguments say; returns the metrics."""
    spec = dataset_spec(args.dataset)
    ann_file, img_dir = dataset_paths(args)
    options = dict(keypoints=args.keypoints, meta=args.meta, sigmas=args.sigmas)
    drop = args.zero_score_results == 'drop'
    if args.results_json:
        spec.check_keypoint_options(**options)
        return score_results(ann_file, args.results_json, args.output_path, drop_nonpositive=drop, **options)
    if not args.model_type or not args.checkpoint:
        raise UsageError("--model_type and --checkpoint are required (or --results_json to score a results file)")
    input_size = args.target_res or spec.input_size_hw
    check_input_size(args.model_type, *input_size)
    resolve_checkpoint(args.checkpoint)  # a download (cached for create_model) fails here, first of the heavy work
    info = spec.keypoint_info(ann_file, **options)  # the ground truth is checked before a model is built
    set_device(args.device_target, args.mode)
    net = create_model(args.model_type, num_joints=info.num_joints, pretrained=args.checkpoint)
    settings = dict(flip_test=args.flip_test, post_process=args.post_process, batch_size=args.batch_size,
                    output_dir=args.output_path, progress=not args.no_progress)
    if spec.evaluator == 'mpii':
        settings.update(gt_mat=args.mpii_gt, mean01_thr=args.mean01_thr)
    else:
        settings.update(bbox_file=args.bbox_file, oks_thr=args.oks_thr, soft_nms=args.soft_nms,
                        drop_nonpositive=drop)
        if info.name != 'coco':  # landmark metrics of the other sets
            settings.update(pck_thresholds=args.pck_thresholds, sdr_thresholds=args.sdr_thresholds)
    return evaluate_split(spec, net, ann_file, img_dir, input_size, keypoint_info=info, **settings)


def report(args):
    """Evaluate, then print the tables, the notes, the summary line and where the metrics are."""
    metrics = run(args)
    evaluator = EVALUATORS['coco' if args.results_json else dataset_spec(args.dataset).evaluator]
    print(evaluator.tables(metrics))
    for note in metrics.get('keypoint_set_notes', []) + metrics.get('annotation_notes', []):
        print(f"note: {note}")
    print(evaluator.summary(metrics))
    print(f"metrics written to {Path(args.output_path) / 'metrics.json'}")
    return 0


def main(argv=None, prog=None):
    prog = prog or program_name('eval')
    return run_main(prog, report, parse_args(argv, prog))
