"""The measurements of scripts/benchmark.py, each run in its own worker process.

A worker takes a spec dict (model_type, impl, batch, target_res, repeats, ...) and returns a dict of
figures, always with ``peak_rss_mib`` (resource.getrusage ru_maxrss of the worker process). MindSpore
and onnxruntime are imported inside the workers, so that the ONNX Runtime worker never loads MindSpore.
"""
import glob
import os
import re
import resource
import sys
import tempfile
import time
from collections import Counter

import numpy as np

# Batch sizes by model family (litehrnet.models.registry.model_family): forward batches, training batch.
BATCHES = {"PoseNet": {"label": "Lite-HRNet", "forward": (1, 32), "train": 8},
           "HRNetPoseNet": {"label": "HRNet", "forward": (1, 8), "train": 4}}
ORT_THREADS = 2
# Graph nodes that are bookkeeping, not kernels, in MindSpore's IR dumps.
IR_NON_KERNELS = {"Load", "TupleGetItem", "MakeTuple", "UpdateState", "Depend", "Return"}
OPS_COUNTED = {"fast": "kernels in MindSpore's compiled forward graph (kernel-graph IR dump, batch 1)",
               "native": "kernels in MindSpore's compiled forward graph (kernel-graph IR dump, batch 1)",
               "onnxruntime": "nodes of the project's ONNX export (exporting.export_network, batch 1)"}


def peak_rss_mib():
    """Peak resident memory of this process so far, MiB (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def time_calls(fn, repeats):
    """(first call seconds, best of ``repeats`` calls after one more warm-up call)."""
    t0 = time.perf_counter()
    fn()
    first = time.perf_counter() - t0
    fn()  # one more warm-up: some kernels pick their algorithm on the second call
    best = float("inf")
    for _ in range(max(int(repeats), 1)):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return first, best


def _hw(spec):
    h, w = spec["target_res"].lower().split("x")
    return int(h), int(w)


def _net(spec, mode="graph"):
    from litehrnet import create_model
    from litehrnet.device import set_device
    set_device(spec["device_target"], mode)
    return create_model(spec["model_type"], conv_impl=spec["impl"])


def _images(spec, batch):
    h, w = _hw(spec)
    return np.random.default_rng(0).standard_normal((batch, 3, h, w)).astype(np.float32)


def worker_forward(spec):
    import mindspore as ms
    net = _net(spec)
    net.set_train(False)
    x = ms.Tensor(_images(spec, spec["batch"]))
    first, best = time_calls(lambda: net(x).asnumpy(), spec["repeats"])
    return {"img_per_s": spec["batch"] / best, "first_call_s": first, "step_s": best}


def worker_train(spec):
    """Forward + backward + Adam through nn.TrainOneStepCell in GRAPH mode; compile = first call - best."""
    import mindspore as ms
    from mindspore import nn, ops
    net = _net(spec)
    h, w = _hw(spec)
    stride = getattr(net, "output_stride", 4)

    class LossCell(nn.Cell):
        def __init__(self, network):
            super().__init__(auto_prefix=False)
            self.network = network

        def construct(self, x, target):
            return ops.mean((self.network(x) - target) ** 2)

    step = nn.TrainOneStepCell(LossCell(net), nn.Adam(net.trainable_params(), learning_rate=2e-3))
    step.set_train(True)
    batch = spec["batch"]
    x = ms.Tensor(_images(spec, batch))
    t = ms.Tensor(np.random.default_rng(1).random((batch, net.num_joints, h // stride, w // stride), np.float32))
    first, best = time_calls(lambda: step(x, t).asnumpy(), spec["repeats"])
    return {"img_per_s": batch / best, "first_call_s": first, "step_s": best, "compile_s": max(first - best, 0.0)}


def ir_kernel_count(ir_text):
    """Kernels of one MindSpore IR dump: its CNodes minus bookkeeping nodes (Load, TupleGetItem, ...)."""
    names = re.findall(r"^\s+%\d+\([^)]*\) = ([A-Za-z_][A-Za-z0-9_]*)", ir_text, re.M)
    return sum(n for name, n in Counter(names).items() if name not in IR_NON_KERNELS)


def worker_ops(spec):
    """Operator count of one forward at batch 1: the kernel graph MindSpore compiles (MS_DEV_SAVE_GRAPHS is
    set for this worker by the parent; the dump goes to spec['ir_dir'])."""
    import mindspore as ms
    net = _net(spec)
    net.set_train(False)
    net(ms.Tensor(_images(spec, 1))).asnumpy()
    dumps = sorted(glob.glob(os.path.join(spec["ir_dir"], "**", "hwopt_comm_after_eliminate_nopnode_kernel_graph*.ir"),
                             recursive=True), key=os.path.getmtime)
    if not dumps:
        raise RuntimeError(f"no kernel-graph IR dump under {spec['ir_dir']}")
    with open(dumps[-1]) as f:
        return {"ops": ir_kernel_count(f.read())}


def worker_export(spec):
    """The project's ONNX export of the native network, one file per batch size in spec['batches']."""
    from litehrnet.exporting import export_network
    from litehrnet.keypoints import COCO_17
    from litehrnet.onnx_detector import onnx_node_count
    net = _net(dict(spec, impl="native"), mode="pynative")  # as src/export.py: export compiles its own graph
    paths = {}
    for batch in spec["batches"]:
        paths[str(batch)] = str(export_network(net, _hw(spec), batch, "ONNX",
                                               os.path.join(spec["out_dir"], f"model_bs{batch}.onnx"), COCO_17))
    return {"paths": paths, "ops": onnx_node_count(paths[str(min(spec["batches"]))])}


def worker_onnxruntime(spec):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = ORT_THREADS
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["path"], opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: _images(spec, spec["batch"])}
    first, best = time_calls(lambda: session.run(None, feed), spec["repeats"])
    return {"img_per_s": spec["batch"] / best, "first_call_s": first, "step_s": best}


def worker_data(spec):
    """Full training augmentation + target encoding through mindspore.dataset, one worker."""
    import mindspore.dataset as ds
    from litehrnet.codec import codec_for
    from litehrnet.data.transforms import TopDownTrainTransform, box_to_center_scale
    from litehrnet.keypoints import COCO_17

    h, w = _hw(spec)
    rng0 = np.random.default_rng(0)
    image = rng0.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    joints = np.stack([rng0.uniform(200, 440, 17), rng0.uniform(100, 400, 17)], 1).astype(np.float32)
    visible = np.ones(17, np.float32)
    center, scale = box_to_center_scale([200, 100, 240, 300], w / h)
    transform = TopDownTrainTransform(COCO_17, (h, w))
    codec = codec_for((h, w))

    class Source:
        def __len__(self):
            return spec["samples"]

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


def batches_for(model_type):
    """BATCHES' entry for model_type's family."""
    from litehrnet.models.registry import model_family
    return BATCHES[model_family(model_type).__name__]


def temp_dir():
    return tempfile.mkdtemp(prefix="litehrnet_bench_")


def log(message):
    print(message, file=sys.stderr, flush=True)
