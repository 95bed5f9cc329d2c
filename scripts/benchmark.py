"""Speed and memory on this machine: fast path vs native layers vs ONNX Runtime, and the pose service.

    python scripts/benchmark.py --model_type litehrnet_18,hrnet_w32 --target_res 256x192 [--json out.json]
    python scripts/benchmark.py --service [--det_onnx FILE] [--mindyolo yolov8n] [--json out.json]
    python scripts/benchmark.py ... --compare old.json          # new/old ratio of every figure

For each model and runtime -- `fast` (create_model(conv_impl="fast"), the CPU kernels), `native`
(conv_impl="native", MindSpore's own layers) and `onnxruntime` (the project's ONNX export of the same
network, 2 intra-op threads; skipped with a note when onnxruntime is not importable) -- it reports
forward images/s at two batch sizes, training images/s (forward + backward + Adam through
nn.TrainOneStepCell in GRAPH mode; none for ONNX Runtime), the first-call compile time of the training
step, the peak resident memory of the runtime's worker processes and the operator count of one
forward; plus the data pipeline's samples/s, and the ratios fast/native and fast/onnxruntime.
Batch sizes are per model family (bench_lib.BATCHES): Lite-HRNet forward 1 and 32, training 8; HRNet
forward 1 and 8, training 4 (--batch_forward / --batch_train override them).
--service measures frames/s of detector + pose + tracking on a 640x480 synthetic two-person video for
each detector kind (bench_service.py). Every measurement runs in its own process (one compiled graph
per process) and is the best of --repeats timed runs after warm-up; a worker running past --timeout
seconds is reported as timed out.
"""
import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

SRC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")
sys.path.insert(0, SRC)
import bench_lib  # noqa: E402 (beside this script)
from bench_lib import BATCHES, OPS_COUNTED, batches_for, log  # noqa: E402
from litehrnet.cli import resolution  # noqa: E402 (the one "HxW" parser)
from litehrnet.device import DEVICES  # noqa: E402
from litehrnet.fileio import write_json_atomic  # noqa: E402

RATIO_KEYS = ("forward_bs{0}_img_per_s", "forward_bs{1}_img_per_s", "train_bs{2}_img_per_s")


class WorkerFailed(RuntimeError):
    pass


def run_worker(kind, spec, timeout, env=None):
    """One measurement in a fresh process: its figures, with the process's peak RSS (MiB)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_worker", kind, "--_spec", json.dumps(spec)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env=dict(os.environ, **(env or {})))
    except subprocess.TimeoutExpired:
        raise WorkerFailed(f"timed out after {timeout:.0f} s") from None
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise WorkerFailed(f"worker {kind} failed (exit {proc.returncode}): {tail[-300:]}")
    return json.loads(lines[-1][len("RESULT "):])


def worker_main(kind, spec):
    if kind == "service":
        import bench_service
        out = bench_service.worker_service(spec)
    else:
        out = getattr(bench_lib, f"worker_{kind}")(spec)
    out["peak_rss_mib"] = bench_lib.peak_rss_mib()
    print("RESULT " + json.dumps(out), flush=True)
    return 0


def _measure(row, key, what, fn):
    """row[key] = fn() (a figure), or the failure noted in row['failed'][key]."""
    log(f"  {what} ...")
    t0 = time.perf_counter()
    try:
        value = fn()
    except WorkerFailed as e:
        row.setdefault("failed", {})[key] = str(e)
        log(f"  {what}: {e}")
        return None
    shown = ", ".join(f"{k} {v:.4g}" for k, v in value.items() if isinstance(v, (int, float)))
    log(f"  {what}: {shown} ({time.perf_counter() - t0:.0f} s)")
    return value


def measure_mindspore(args, model, impl, fwd, train):
    base = dict(model_type=model, impl=impl, target_res=args.target_res, repeats=args.repeats,
                device_target=args.device_target)
    row, rss = {}, []
    for batch in fwd:
        r = _measure(row, f"forward_bs{batch}_img_per_s", f"{model} {impl} forward bs{batch}",
                     lambda b=batch: run_worker("forward", dict(base, batch=b), args.timeout))
        if r:
            row[f"forward_bs{batch}_img_per_s"] = r["img_per_s"]
            rss.append(r["peak_rss_mib"])
    r = _measure(row, f"train_bs{train}_img_per_s", f"{model} {impl} training bs{train}",
                 lambda: run_worker("train", dict(base, batch=train), args.timeout))
    if r:
        row[f"train_bs{train}_img_per_s"], row["train_compile_s"] = r["img_per_s"], r["compile_s"]
        rss.append(r["peak_rss_mib"])
    ir_dir = bench_lib.temp_dir()
    try:
        r = _measure(row, "ops_per_forward", f"{model} {impl} operator count",
                     lambda: run_worker("ops", dict(base, ir_dir=ir_dir), args.timeout,
                                        env={"MS_DEV_SAVE_GRAPHS": "1", "MS_DEV_SAVE_GRAPHS_PATH": ir_dir}))
    finally:
        shutil.rmtree(ir_dir, ignore_errors=True)
    if r:
        row["ops_per_forward"] = r["ops"]
    if rss:
        row["peak_rss_mib"] = max(rss)
    return row


def measure_onnxruntime(args, model, fwd):
    base = dict(model_type=model, target_res=args.target_res, repeats=args.repeats, device_target=args.device_target)
    row, rss = {}, []
    out_dir = bench_lib.temp_dir()
    try:
        ex = _measure(row, "export", f"{model} ONNX export",
                      lambda: run_worker("export", dict(base, batches=list(fwd), out_dir=out_dir), args.timeout))
        if not ex:
            return row
        row["ops_per_forward"] = ex["ops"]
        for batch in fwd:
            r = _measure(row, f"forward_bs{batch}_img_per_s", f"{model} onnxruntime forward bs{batch}",
                         lambda b=batch: run_worker("onnxruntime", dict(base, batch=b, path=ex["paths"][str(b)]),
                                                    args.timeout))
            if r:
                row[f"forward_bs{batch}_img_per_s"] = r["img_per_s"]
                rss.append(r["peak_rss_mib"])
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    if rss:
        row["peak_rss_mib"] = max(rss)  # the ONNX Runtime processes only (the export runs in its own)
    return row


def ratios(num, den, keys):
    return {k: num[k] / den[k] for k in keys if num.get(k) and den.get(k)}


def measure_models(args, report):
    for model in args.model_type.split(","):
        rule = batches_for(model)
        fwd = tuple(args.batch_forward or rule["forward"])
        train = args.batch_train or rule["train"]
        keys = [k.format(fwd[0], fwd[1], train) for k in RATIO_KEYS]
        entry = {"family": rule["label"], "batch_forward": list(fwd), "batch_train": train, "runtimes": {}}
        log(f"{model} ({rule['label']}), {args.target_res}: forward at batch {fwd[0]} and {fwd[1]}, "
            f"training at {train}")
        for impl in ("fast", "native"):
            entry["runtimes"][impl] = measure_mindspore(args, model, impl, fwd, train)
        if report["onnxruntime"]:
            entry["runtimes"]["onnxruntime"] = measure_onnxruntime(args, model, fwd)
        rt = entry["runtimes"]
        entry["ratios"] = {"fast/native": ratios(rt["fast"], rt["native"], keys + ["peak_rss_mib", "ops_per_forward"])}
        if "onnxruntime" in rt:
            entry["ratios"]["fast/onnxruntime"] = ratios(rt["fast"], rt["onnxruntime"], keys[:2])
        report["models"][model] = entry
    spec = dict(target_res=args.target_res, samples=args.samples)
    r = _measure(report, "data_samples_per_s", "data pipeline", lambda: run_worker("data", spec, args.timeout))
    if r:
        report["data_samples_per_s"] = r["samples_per_s"]


def measure_service(args, report):
    kinds = [k for k in args.kinds.split(",") if k] + (["mindyolo"] if args.mindyolo else [])
    model = args.model_type.split(",")[0]
    service = {"model_type": model, "frames": args.frames, "size": [640, 480], "results": {}}
    out_dir = bench_lib.temp_dir()
    try:
        for kind in kinds:
            spec = dict(kind=kind, frames=args.frames, model_type=model, target_res=args.target_res,
                        device_target=args.device_target, det_onnx=args.det_onnx, det_layout=args.det_layout,
                        mindyolo=args.mindyolo, out_dir=out_dir)
            r = _measure(service, kind, f"service, detector {kind}",
                         lambda s=spec: run_worker("service", s, args.timeout))
            if r:
                service["results"][kind] = r
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)
    report["service"] = service


def flatten(report, prefix=""):
    """{'models/litehrnet_18/runtimes/fast/forward_bs1_img_per_s': 21.3, ...}: every number of a report."""
    out = {}
    for key, value in report.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, path + "/"))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("batch_train", "repeats"):
            out[path] = value
    return out


def print_report(report):
    for model, entry in report.get("models", {}).items():
        fwd, train = entry["batch_forward"], entry["batch_train"]
        keys = [k.format(fwd[0], fwd[1], train) for k in RATIO_KEYS] + ["train_compile_s", "peak_rss_mib",
                                                                         "ops_per_forward"]
        names = [f"fwd bs{fwd[0]} img/s", f"fwd bs{fwd[1]} img/s", f"train bs{train} img/s", "compile s",
                 "peak RSS MiB", "ops/forward"]
        print(f"\n{model} ({entry['family']}) at {report['target_res']}")
        print(f"{'':<18}" + "".join(f"{n:>16}" for n in names))
        rows = list(entry["runtimes"].items()) + list(entry["ratios"].items())
        for name, row in rows:
            print(f"{name:<18}" + "".join(f"{_fmt(row.get(k)):>16}" for k in keys))
        for name, row in entry["runtimes"].items():
            for key, why in row.get("failed", {}).items():
                print(f"  {name} {key}: {why}")
        print("  ops/forward: " + "; ".join(f"{rt}: {OPS_COUNTED[rt]}" for rt in entry["runtimes"]))
    if "data_samples_per_s" in report:
        print(f"\ndata pipeline (full augmentation + targets, 1 worker): {report['data_samples_per_s']:.0f} samples/s")
    if "service" in report:
        s = report["service"]
        print(f"\npose service, {s['model_type']} {report['target_res']}, {s['frames']} frames 640x480, two people, "
              f"tracking on")
        for kind, r in s["results"].items():
            print(f"  {kind:9s} {r['fps']:7.2f} fps  {r['people_per_frame']:.1f} people/frame  "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB  ({r['detector']})")
        for kind, why in s.get("failed", {}).items():
            print(f"  {kind}: {why}")


def _fmt(value):
    if value is None:
        return "-"
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def print_compare(new, old):
    a, b = flatten(new), flatten(old)
    common = [k for k in a if k in b and b[k] and "ratios/" not in k]
    print(f"\nnew / old ({len(common)} figures in both):")
    for key in common:
        print(f"  {key:<70} {a[key]:>10.3g} / {b[key]:<10.3g} = {a[key] / b[key]:.2f}")


def summary(report):
    parts = []
    for model, entry in report.get("models", {}).items():
        for name, r in entry["ratios"].items():
            figures = ", ".join(f"{k.split('_img')[0]} {v:.2f}x" for k, v in r.items() if "img_per_s" in k)
            parts.append(f"{model} {name}: {figures}")
    if "service" in report:
        parts.append("service fps " + ", ".join(f"{k} {r['fps']:.1f}" for k, r in report["service"]["results"].items()))
    return "summary: " + ("; ".join(parts) or "nothing measured")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_type", default="litehrnet_18", help="one or more (comma list): names or config files")
    p.add_argument("--target_res", default="256x192", help="input size HxW")
    p.add_argument("--batch_forward", help="the two forward batch sizes, e.g. 1,32 (default: by model family)")
    p.add_argument("--batch_train", type=int, help="the training batch size (default: by model family)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (best is kept)")
    p.add_argument("--samples", type=int, default=512, help="samples for the data-pipeline measurement")
    p.add_argument("--timeout", type=float, default=900, help="seconds before a worker is reported as timed out")
    p.add_argument("--device_target", default="CPU", choices=DEVICES)
    p.add_argument("--service", action="store_true", help="measure the pose service instead of the models")
    p.add_argument("--kinds", default=",".join(("whole", "boxfile", "hog", "onnx")), help="service detector kinds")
    p.add_argument("--frames", type=int, default=20, help="service: frames of the synthetic video")
    p.add_argument("--det_onnx", help="service: an ONNX detector of a supported layout (default: one built here)")
    p.add_argument("--det_layout", help="service: the --det_onnx file's layout (default: detected)")
    p.add_argument("--mindyolo", help="service: also time mindyolo NAME (random weights; ~30 s/frame on CPU)")
    p.add_argument("--json", help="write the report to this JSON file")
    p.add_argument("--compare", help="an earlier --json report: print new/old per figure")
    p.add_argument("--_worker", help=argparse.SUPPRESS)
    p.add_argument("--_spec", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._worker:
        return args
    try:
        resolution(args.target_res)
        if args.batch_forward:
            args.batch_forward = tuple(int(b) for b in args.batch_forward.split(","))
            if len(args.batch_forward) != 2 or min(args.batch_forward) < 1:
                raise ValueError("--batch_forward takes two positive sizes, e.g. 1,32")
        if args.batch_train is not None and args.batch_train < 1:
            raise ValueError("--batch_train must be >= 1")
        for model in args.model_type.split(","):
            batches_for(model)
        if args.det_onnx and not os.path.isfile(args.det_onnx):
            raise ValueError(f"{args.det_onnx}: ONNX detector file not found")
        old = None
        if args.compare:
            with open(args.compare) as f:
                old = json.load(f)
    except (ValueError, OSError, argparse.ArgumentTypeError) as e:
        p.exit(2, f"benchmark.py: {e}\n")
    args.old = old
    return args


def main(argv=None):
    args = parse_args(argv)
    if args._worker:
        return worker_main(args._worker, json.loads(args._spec))
    try:
        import onnxruntime
        ort_version = onnxruntime.__version__
    except ImportError:
        ort_version = None
    report = {"target_res": args.target_res, "device_target": args.device_target, "repeats": args.repeats,
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "load_average": list(os.getloadavg()), "mindspore": __import__("mindspore").__version__,
              "onnxruntime": ort_version, "ops_counted": OPS_COUNTED, "batches_by_family": BATCHES, "models": {}}
    if not args.service and ort_version is None:
        print("note: onnxruntime is not importable: no ONNX Runtime column", file=sys.stderr)
    t0 = time.perf_counter()
    (measure_service if args.service else measure_models)(args, report)
    report["load_average_after"] = list(os.getloadavg())
    report["seconds"] = time.perf_counter() - t0
    print(f"{report['machine']}, MindSpore {report['mindspore']}, onnxruntime {ort_version or 'not installed'}, "
          f"best of {args.repeats}, load average {report['load_average'][0]:.2f} before, "
          f"{report['load_average_after'][0]:.2f} after")
    print_report(report)
    if args.old is not None:
        print_compare(report, args.old)
    if args.json:
        write_json_atomic(args.json, report, indent=1)
    print(summary(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
