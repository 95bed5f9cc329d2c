"""Measure Lite-HRNet speed on this machine: forward, training, compile time, data pipeline.

    python scripts/benchmark.py --model_type litehrnet_18 --target_res 256x192 [--impl both] [--json]

For each convolution implementation ("fast": the CPU path, "native": plain nn.Conv2d) it reports
forward images/s at batch 1 and 32, training images/s at batch 8 (forward + backward + Adam, GRAPH
mode through an nn.Cell train step), and the first-call compile time of the training step; plus the
data pipeline's samples/s with full augmentation (flip, half-body, scale/rotation, warp, target).
Every measurement runs in its own process (one compiled graph per process) and is the best of
``--repeats`` timed runs after a warm-up.
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import time

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)
from litehrnet.cli import resolution  # noqa: E402 (the one "HxW" parser)
from litehrnet.device import DEVICES, set_device  # noqa: E402


def _net(args):
    import litehrnet
    set_device(args.device_target, "graph")
    return litehrnet.create_model(args.model_type, conv_impl=args.impl)


def _time_calls(fn, repeats):
    """(first call seconds, best of ``repeats`` later calls)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    fn()  # one more warm-up: some kernels pick their algorithm on the second call
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def worker_forward(args):
    import numpy as np
    import mindspore as ms
    net = _net(args)
    net.set_train(False)
    h, w = resolution(args.target_res)
    x = ms.Tensor(np.random.default_rng(0).standard_normal((args.batch, 3, h, w)).astype(np.float32))
    first, best = _time_calls(lambda: net(x).asnumpy(), args.repeats)
    return {"img_per_s": args.batch / best, "first_call_s": first, "step_s": best}


def worker_train(args):
    import numpy as np
    import mindspore as ms
    from mindspore import nn, ops
    net = _net(args)
    h, w = resolution(args.target_res)

    class LossCell(nn.Cell):
        def __init__(self, network):
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, x, target):
            return ops.mean((self.network(x) - target) ** 2)

    opt = nn.Adam(net.trainable_params(), learning_rate=2e-3)
    step = nn.TrainOneStepCell(LossCell(net), opt)
    step.set_train(True)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((args.batch, 3, h, w)).astype(np.float32))
    t = ms.Tensor(rng.random((args.batch, net.num_joints, h // 4, w // 4)).astype(np.float32))
    first, best = _time_calls(lambda: step(x, t).asnumpy(), args.repeats)
    return {"img_per_s": args.batch / best, "first_call_s": first, "step_s": best,
            "compile_s": max(first - best, 0.0)}


def worker_data(args):
    """Full training augmentation + target encoding through mindspore.dataset, one worker."""
    import numpy as np
    import mindspore.dataset as ds
    from litehrnet.codec import codec_for
    from litehrnet.keypoints import COCO_17
    from litehrnet.data.transforms import TopDownTrainTransform, box_to_center_scale

    h, w = resolution(args.target_res)
    rng0 = np.random.default_rng(0)
    image = rng0.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    joints = np.stack([rng0.uniform(200, 440, 17), rng0.uniform(100, 400, 17)], 1).astype(np.float32)
    visible = np.ones(17, np.float32)
    center, scale = box_to_center_scale([200, 100, 240, 300], w / h)
    transform = TopDownTrainTransform(COCO_17, (h, w))
    codec = codec_for((h, w))

    class Source:
        def __len__(self):
            return args.samples

        def __getitem__(self, i):
            rng = np.random.default_rng((0, i))
            img, kp, vis = transform(image, joints, visible, np.array(center), np.array(scale), rng)
            target, weight = codec.encode(kp, vis)
            return img, target, weight

    data = ds.GeneratorDataset(Source(), ["image", "target", "weight"], shuffle=False, num_parallel_workers=1)
    data = data.batch(32)
    t0 = time.perf_counter()
    n = sum(int(b[0].shape[0]) for b in data.create_tuple_iterator(num_epochs=1, output_numpy=True))
    return {"samples_per_s": n / (time.perf_counter() - t0)}


WORKERS = {"forward": worker_forward, "train": worker_train, "data": worker_data}


def run_worker(kind, args, impl=None, batch=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, "--model_type", args.model_type,
           "--target_res", args.target_res, "--repeats", str(args.repeats), "--device_target", args.device_target,
           "--samples", str(args.samples)]
    if impl:
        cmd += ["--impl", impl]
    if batch:
        cmd += ["--batch", str(batch)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark worker {kind} ({impl}) failed: {proc.stderr.strip()[-800:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_type", default="litehrnet_18")
    p.add_argument("--target_res", default="256x192", help="input size HxW")
    p.add_argument("--impl", default="both", choices=["both", "fast", "native"])
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is kept)")
    p.add_argument("--samples", type=int, default=512, help="samples for the data-pipeline measurement")
    p.add_argument("--device_target", default="CPU", choices=DEVICES)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        if args.impl == "both":
            args.impl = "fast"
        print("RESULT " + json.dumps(WORKERS[args._worker](args)), flush=True)
        return 0

    impls = ["fast", "native"] if args.impl == "both" else [args.impl]
    report = {"model_type": args.model_type, "target_res": args.target_res, "device_target": args.device_target,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "mindspore": __import__("mindspore").__version__}
    for impl in impls:
        if not args.json:
            print(f"measuring {impl} ...", file=sys.stderr, flush=True)
        f1 = run_worker("forward", args, impl, 1)
        f32 = run_worker("forward", args, impl, 32)
        tr = run_worker("train", args, impl, 8)
        report[impl] = {"forward_img_per_s_bs1": round(f1["img_per_s"], 2),
                        "forward_img_per_s_bs32": round(f32["img_per_s"], 2),
                        "train_img_per_s_bs8": round(tr["img_per_s"], 2),
                        "compile_s": round(tr["compile_s"], 1),
                        "forward_compile_s": round(max(f1["first_call_s"] - f1["step_s"], 0.0), 1)}
    report["data_samples_per_s"] = round(run_worker("data", args)["samples_per_s"], 1)
    if len(impls) == 2:
        report["speedup"] = {k: round(report["fast"][k] / report["native"][k], 1)
                             for k in ("forward_img_per_s_bs1", "forward_img_per_s_bs32", "train_img_per_s_bs8")}
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{args.model_type} at {args.target_res} on {report['machine']}, MindSpore {report['mindspore']}")
        keys = ("forward_img_per_s_bs1", "forward_img_per_s_bs32", "train_img_per_s_bs8", "compile_s")
        print(f"{'':<24}" + "".join(f"{k:>24}" for k in keys))
        for impl in impls:
            print(f"{impl:<24}" + "".join(f"{report[impl][k]:>24}" for k in keys))
        if "speedup" in report:
            print(f"{'fast / native':<24}" + "".join(f"{report['speedup'].get(k, ''):>24}" for k in keys))
        print(f"data pipeline (full augmentation + targets, 1 worker): {report['data_samples_per_s']} samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
