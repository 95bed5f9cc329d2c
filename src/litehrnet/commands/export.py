"""Export a Lite-HRNet or HRNet checkpoint to MINDIR or ONNX, optionally with the flip test inside (the command line: src/export.py, litehrnet-export).

    python src/export.py --model_type litehrnet_18 --target_res 256x192 --checkpoint litehrnet_18_coco_256x192 \\
        --file_format ONNX --batch_size 1 --output output/litehrnet_18.onnx [--flip_test true]

The model maps (batch_size, 3, H, W) float32 crops (ImageNet-normalised RGB, as `preprocess` makes
them) to (batch_size, K, H/s, W/s) heatmaps, s the head's output stride (4 official, 2 light_hrnet, 1 full
resolution; in the description as output_stride); with --flip_test true it also runs the mirrored crops
and averages exactly as the predictor's flip test. The file is written under a temporary name and
renamed; `<output>.json` beside it describes it for src/infer.py (--backend mindir|onnx --model).
Bad input exits with code 2 and one line on stderr.
"""
import sys

from . import program_name
from ..cli import ArgParser, add_keypoint_flags, resolution, run_main, str2bool
from ..data.validate import apply_keypoint_options
from ..experiment import add_config_flags, parse_with_config
from ..device import DEVICES, set_device
from ..exporting import SUFFIXES, export_network
from ..models.registry import check_input_size, create_model


def parse_args(argv=None, prog='export.py'):
    p = ArgParser(prog=prog, description=__doc__.splitlines()[0])
    add_config_flags(p)
    p.add_argument('--model_type', default='litehrnet_18', help='model type (or alias, or architecture .json/.yaml)')
    p.add_argument('--target_res', type=resolution, default=(256, 192), help='input HxW (default 256x192)')
    p.add_argument('--checkpoint', required=True, help='checkpoint file (any supported format) or published name')
    add_keypoint_flags(p)
    p.add_argument('--file_format', type=str.upper, choices=tuple(SUFFIXES), default='MINDIR')
    p.add_argument('--batch_size', type=int, default=1, help='the fixed batch size of the exported model')
    p.add_argument('--output', required=True, help='model file (the format\'s suffix is added when missing)')
    p.add_argument('--flip_test', type=str2bool, default=False, metavar='true|false',
                   help='fold the flip test into the model (default false)')
    p.add_argument('--device_target', choices=DEVICES, help='default: auto (GPU, then Ascend, then CPU; logged)')
    args, notes = parse_with_config(p, argv, 'export')
    for note in notes:
        print(f"{prog}: note: {note}", file=sys.stderr)
    return args


def run(args):
    check_input_size(args.model_type, *args.target_res)
    info = apply_keypoint_options(args.keypoints, args.meta, args.sigmas)  # written in full beside the model
    set_device(args.device_target, 'pynative')  # export compiles its own graph; this way is ~30 % faster
    net = create_model(args.model_type, num_joints=info.num_joints, pretrained=args.checkpoint, conv_impl='native')
    path = export_network(net, args.target_res, args.batch_size, args.file_format, args.output, info,
                          args.flip_test, dict(model_type=args.model_type, checkpoint=args.checkpoint))
    print(f"exported {args.model_type} ({args.target_res[0]}x{args.target_res[1]}, batch {args.batch_size}, flip test "
          f"{'inside' if args.flip_test else 'not included'}) to {path}")
    return 0


def main(argv=None, prog=None):
    prog = prog or program_name('export')
    return run_main(prog, run, parse_args(argv, prog))
