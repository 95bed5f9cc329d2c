"""Convert any checkpoint litehrnet reads (.pth, .npz, the earlier port's .ckpt) to this project's .ckpt.

    python scripts/convert_checkpoint.py --model_type litehrnet_18 --input FILE --output FILE.ckpt [--verify]

The weights are loaded strictly into the chosen model (a mismatch is reported, never papered
over) and saved with true module-path names; optimizer state in the input is dropped. With
--verify the model runs once on the input file's weights and once on the written file's, and
the largest difference is printed (it must be 0).
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
os.environ.setdefault("GLOG_v", "3")  # MindSpore: errors only on the console
from litehrnet.cli import ArgParser, resolution, run_main  # noqa: E402


def parse_args(argv=None):
    p = ArgParser(prog="convert_checkpoint.py", description=__doc__.split("\n")[0])
    p.add_argument("--model_type", required=True, help="model type, alias, or architecture config file")
    p.add_argument("--input", required=True, help="checkpoint to convert (any supported format; a published name "
                                                  "or URL is downloaded)")
    p.add_argument("--output", required=True, help="where to write this project's .ckpt")
    p.add_argument("--num_joints", type=int, default=None,
                   help="joints of the keypoint head (default: taken from the input file)")
    p.add_argument("--target_res", type=resolution, default=(256, 192), help="input size HxW used by --verify")
    p.add_argument("--verify", action="store_true", help="run the model on both files and compare")
    args = p.parse_args(argv)
    if args.num_joints is not None and args.num_joints <= 0:
        p.error(f"--num_joints must be positive, got {args.num_joints}")
    return args


def check_output(output, input_path):
    """Refuse an output that cannot or must not be written, before anything is read or written."""
    if os.path.isdir(output):
        raise ValueError(f"{output}: --output is a directory; give a file name such as {output}/model.ckpt")
    if os.path.abspath(output) == os.path.abspath(input_path) or (
            os.path.exists(output) and os.path.exists(input_path) and os.path.samefile(output, input_path)):
        raise ValueError(f"{output}: refusing to overwrite the input file")
    if os.path.isfile(output) and not (os.stat(output).st_mode & 0o222 and os.access(output, os.W_OK)):
        raise ValueError(f"{output}: --output exists and is read-only")
    parent = os.path.dirname(os.path.abspath(output))
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{output}: cannot write there (folder {parent} is not writable)")


def run(args):
    import numpy as np
    import mindspore as ms
    import litehrnet
    from litehrnet.checkpoint.io import read_checkpoint
    from litehrnet.models.registry import check_input_size, resolve_checkpoint
    from litehrnet.models.weights import load_weights

    ms.set_context(mode=ms.PYNATIVE_MODE)
    check_output(args.output, args.input)
    source = resolve_checkpoint(args.input)  # a file, or a published name / URL (downloaded)
    check_output(args.output, source)
    weights, scheme, _ = read_checkpoint(source)
    joints = args.num_joints
    if joints is None:
        head = weights.get("keypoint_head.final_layer.weight")
        joints = int(head.shape[0]) if head is not None else 17
    net = litehrnet.create_model(args.model_type, num_joints=joints, conv_impl="native")
    load_weights(net, weights, source=source)
    expected = None
    if args.verify:  # run first: a size the model cannot take is refused before --output is written
        h, w = args.target_res
        net.set_train(False)
        check_input_size(args.model_type, h, w)  # the model's own rule (32 Lite-HRNet, 2**(branches+1) HRNet)
        shape = (1, getattr(net, "n_channels_in", 3), h, w)
        x = ms.Tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        expected = net(x).asnumpy()
    litehrnet.save_checkpoint(net, args.output)
    print(f"{args.input} ({scheme} names) -> {args.output}: {len(weights)} tensors, {net.model_type}, "
          f"{joints} joints")
    if args.verify:
        other = litehrnet.create_model(args.model_type, num_joints=joints, conv_impl="native")
        litehrnet.load_checkpoint(other, args.output)
        other.set_train(False)
        diff = float(np.abs(expected - other(x).asnumpy()).max())
        print(f"verify: max |difference| between the two files' outputs at {h}x{w} = {diff:.3g}")
        if diff != 0.0:
            return 1
    return 0


def main(argv=None):
    return run_main("convert_checkpoint.py", run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
