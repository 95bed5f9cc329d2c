"""Per-layer timing of Lite-HRNet-18's 3x3 convolutions: MindSpore's nn.Conv2d vs the fast cells.

Every row is one conv shape of Lite-HRNet-18 at 256x192 input; columns give forward and
forward+backward (gradients of the input and the weight) in milliseconds, GRAPH mode, the minimum
over ``--repeat`` runs (other processes may share the CPU). Each shape runs in its own subprocess
(compiling many graphs in one process is fragile on MindSpore CPU).

    python scripts/bench_conv.py                       # native, aot and matmul backends, batch 16
    python scripts/bench_conv.py --batch 1 --impls native aot
"""
import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (label, in_channels, out_channels, groups, stride, H, W) at 256x192 input
LITEHRNET18_SHAPES = [
    ("stem conv s2", 3, 32, 1, 2, 256, 192),
    ("stem dw s2", 16, 16, 16, 2, 128, 96),
    ("stem dw s2", 32, 32, 32, 2, 128, 96),
] + [
    ("dw s1", c, c, c, 1, h, w)
    for c, h, w in ((20, 64, 48), (40, 32, 24), (80, 16, 12), (160, 8, 6),
                    (40, 64, 48), (80, 32, 24), (160, 16, 12), (320, 8, 6))
] + [
    ("dw s2", c, c, c, 2, h, w) for c, h, w in ((40, 64, 48), (80, 32, 24), (160, 16, 12))
]


def _build(impl, cin, cout, groups, stride):
    from mindspore import nn
    from mindspore.common.initializer import Normal

    from litehrnet.models import fast_conv

    if impl == "native":
        return nn.Conv2d(cin, cout, 3, stride=stride, pad_mode="pad", padding=1, group=groups,
                         has_bias=False, weight_init=Normal(0.001))
    cell = fast_conv.fast_conv2d(cin, cout, 3, stride, groups, False, backend=impl)
    if impl == "aot" and "Aot" not in type(cell).__name__:
        raise RuntimeError("aot backend unavailable")
    return cell


def _time(fn, repeat):
    out = fn()  # warm-up (compiles the graph)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        (out[0] if isinstance(out, tuple) else out).asnumpy()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def worker(args):
    """Time every implementation on one shape; print one JSON line per implementation."""
    sys.path.insert(0, os.path.join(ROOT, "src"))
    import numpy as np
    import mindspore as ms
    from mindspore import Tensor

    ms.set_context(mode=ms.GRAPH_MODE)
    cin, cout, groups, stride, h, w = args.shape
    x = Tensor(np.random.default_rng(0).standard_normal((args.batch, cin, h, w)).astype(np.float32))
    for impl in args.impls:
        row = {"impl": impl}
        try:
            net = _build(impl, cin, cout, groups, stride)
            grad = ms.grad(net, grad_position=0, weights=net.trainable_params())
            row["fwd"] = _time(lambda: net(x), args.repeat)
            row["fwdbwd"] = _time(lambda: grad(x)[0], args.repeat)
        except Exception as exc:  # keep the table going; report the failure in the cell
            row["error"] = f"{type(exc).__name__}: {exc}"[:200]
        print("RESULT " + json.dumps(row), flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per measurement (minimum reported)")
    parser.add_argument("--impls", nargs="+", default=["native", "aot", "matmul"],
                        choices=["native", "aot", "matmul"])
    parser.add_argument("--only", type=int, nargs="*", help="row indices to run (default: all)")
    parser.add_argument("--shape", type=int, nargs=6, help=argparse.SUPPRESS)  # worker mode
    args = parser.parse_args()
    if args.shape:
        worker(args)
        return

    print(f"batch {args.batch}, GRAPH mode, min of {args.repeat} runs, ms (fwd+bwd = grads of input and weight)")
    header = f"{'#':>2} {'layer':<13} {'shape (Cin->Cout, HxW)':<24}"
    for impl in args.impls:
        header += f" | {impl + ' fwd':>11} {impl + ' f+b':>11}"
    if "native" in args.impls and len(args.impls) > 1:
        header += " | speed-up fwd / f+b (best fast)"
    print(header)
    totals = {impl: [0.0, 0.0] for impl in args.impls}
    for index, (label, cin, cout, groups, stride, h, w) in enumerate(LITEHRNET18_SHAPES):
        if args.only and index not in args.only:
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--shape", str(cin), str(cout), str(groups), str(stride),
               str(h), str(w), "--batch", str(args.batch), "--repeat", str(args.repeat), "--impls", *args.impls]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        rows = {}
        for line in proc.stdout.splitlines():
            if line.startswith("RESULT "):
                row = json.loads(line[7:])
                rows[row["impl"]] = row
        text = f"{index:>2} {label:<13} {f'{cin}->{cout}, {h}x{w}':<24}"
        for impl in args.impls:
            row = rows.get(impl, {"error": (proc.stderr.strip().splitlines() or ["crashed"])[-1]})
            if "error" in row:
                text += f" | {'error':>11} {'':>11}"
                print(f"   {impl}: {row['error']}", file=sys.stderr)
                continue
            text += f" | {row['fwd']:>11.2f} {row['fwdbwd']:>11.2f}"
            totals[impl][0] += row["fwd"]
            totals[impl][1] += row["fwdbwd"]
        fast = [rows[i] for i in args.impls if i != "native" and i in rows and "error" not in rows[i]]
        if "native" in args.impls and fast and "error" not in rows.get("native", {"error": 1}):
            best_f = min(r["fwd"] for r in fast)
            best_b = min(r["fwdbwd"] for r in fast)
            text += f" | {rows['native']['fwd'] / best_f:6.1f}x / {rows['native']['fwdbwd'] / best_b:6.1f}x"
        print(text, flush=True)
    text = f"{'':>2} {'sum':<13} {'':<24}"
    for impl in args.impls:
        text += f" | {totals[impl][0]:>11.2f} {totals[impl][1]:>11.2f}"
    print(text)


if __name__ == "__main__":
    main()
