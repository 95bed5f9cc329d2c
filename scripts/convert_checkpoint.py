"""Convert any checkpoint litehrnet reads (.pth, .npz, the earlier port's .ckpt) to this project's .ckpt.

    python scripts/convert_checkpoint.py --model_type litehrnet_18 --input FILE --output FILE.ckpt [--verify]

The weights are loaded strictly into the chosen model (a mismatch is reported, never papered
over) and saved with true module-path names; optimizer state in the input is dropped. With
--verify the model runs once on the input file's weights and once on the written file's, and
the largest difference is printed (it must be 0).
"""
import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_type", required=True, help="model type, alias, or architecture config file")
    p.add_argument("--input", required=True, help="checkpoint to convert (any supported format)")
    p.add_argument("--output", required=True, help="where to write this project's .ckpt")
    p.add_argument("--num_joints", type=int, default=None,
                   help="joints of the keypoint head (default: taken from the input file)")
    p.add_argument("--target_res", default="256x192", help="input size HxW used by --verify")
    p.add_argument("--verify", action="store_true", help="run the model on both files and compare")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import numpy as np
    import mindspore as ms
    import litehrnet
    from litehrnet.checkpoint.io import read_checkpoint
    from litehrnet.errors import CheckpointError
    from litehrnet.models.weights import load_weights
    from litehrnet.models.configs import ModelTypeError

    ms.set_context(mode=ms.PYNATIVE_MODE)
    try:
        if os.path.abspath(args.input) == os.path.abspath(args.output):
            raise CheckpointError(f"{args.output}: refusing to overwrite the input file")
        weights, scheme, _ = read_checkpoint(args.input)
        joints = args.num_joints
        if joints is None:
            head = weights.get("keypoint_head.final_layer.weight")
            joints = int(head.shape[0]) if head is not None else 17
        net = litehrnet.create_model(args.model_type, num_joints=joints, conv_impl="native")
        load_weights(net, weights, source=args.input)
        litehrnet.save_checkpoint(net, args.output)
        print(f"{args.input} ({scheme} names) -> {args.output}: {len(weights)} tensors, {net.model_type}, "
              f"{joints} joints")
        if args.verify:
            h, w = (int(v) for v in args.target_res.lower().split("x"))
            other = litehrnet.create_model(args.model_type, num_joints=joints, conv_impl="native")
            litehrnet.load_checkpoint(other, args.output)
            net.set_train(False)
            other.set_train(False)
            x = ms.Tensor(np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32))
            diff = float(np.abs(net(x).asnumpy() - other(x).asnumpy()).max())
            print(f"verify: max |difference| between the two files' outputs at {h}x{w} = {diff:.3g}")
            if diff != 0.0:
                return 1
    except (CheckpointError, ModelTypeError, ValueError) as e:
        print(f"error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
