"""scripts/benchmark.py: the report's structure and values on a tiny HRNet (no speed is asserted)."""
import importlib.util
import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

SCRIPT = os.path.join(ROOT, "scripts", "benchmark.py")
TINY = os.path.join(ROOT, "src", "litehrnet", "configs", "models", "hrnet_tiny.yaml")


def _bench_lib():
    spec = importlib.util.spec_from_file_location("bench_lib", os.path.join(ROOT, "scripts", "bench_lib.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(tmp_path, *flags, name="report.json"):
    out = tmp_path / name
    proc = subprocess.run([sys.executable, SCRIPT, "--target_res", "64x64", "--repeats", "1", "--json", str(out),
                           *flags], capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text()), proc


def _positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_ir_kernel_count_leaves_out_bookkeeping_nodes():
    text = ("  %0(CNode_1) = Load(%para1, U)\n  %1(CNode_2) = PrimFunc_Conv2D(%0, %para2)\n"
            "  %2(CNode_3) = PrimFunc_ReLU(%1)\n  %3(CNode_4) = TupleGetItem(%2, I64(0))\n"
            "  %4(CNode_5) = Custom(%3)\n  %5(CNode_6) = UpdateState(U, %4)\n")
    assert _bench_lib().ir_kernel_count(text) == 3


@pytest.mark.slow
def test_three_runtimes_report_on_a_tiny_hrnet_with_ratios(tmp_path):
    report, proc = _run(tmp_path, "--model_type", TINY, "--batch_forward", "1,2", "--batch_train", "2",
                        "--samples", "32")
    entry = report["models"][TINY]
    assert entry["family"] == "HRNet" and entry["batch_forward"] == [1, 2] and entry["batch_train"] == 2
    runtimes = entry["runtimes"]
    assert set(runtimes) == {"fast", "native", "onnxruntime"}
    for name, row in runtimes.items():
        assert "failed" not in row, row
        keys = ["forward_bs1_img_per_s", "forward_bs2_img_per_s", "peak_rss_mib"]
        if name != "onnxruntime":
            keys += ["train_bs2_img_per_s", "train_compile_s"]
        else:
            assert "train_bs2_img_per_s" not in row
        for key in keys:
            assert _positive(row[key]), (name, key, row.get(key))
        assert isinstance(row["ops_per_forward"], int) and row["ops_per_forward"] > 0
    for pair, ratio_row in entry["ratios"].items():
        num, den = (runtimes[n] for n in pair.split("/"))
        assert ratio_row, pair
        for key, ratio in ratio_row.items():
            assert ratio == pytest.approx(num[key] / den[key], rel=1e-12)
    assert set(entry["ratios"]["fast/onnxruntime"]) == {"forward_bs1_img_per_s", "forward_bs2_img_per_s"}
    assert _positive(report["data_samples_per_s"])
    assert "fast/native" in proc.stdout and "summary:" in proc.stdout.splitlines()[-1]


@pytest.mark.slow
def test_service_reports_fps_per_detector_kind_and_compare_prints_new_over_old(tmp_path):
    flags = ("--service", "--model_type", TINY, "--frames", "2", "--kinds", "whole,boxfile")
    report, _ = _run(tmp_path, *flags)
    results = report["service"]["results"]
    assert set(results) == {"whole", "boxfile"} and report["service"]["size"] == [640, 480]
    assert results["whole"]["people_per_frame"] == 1.0 and results["boxfile"]["people_per_frame"] == 2.0
    for r in results.values():
        assert _positive(r["fps"]) and _positive(r["peak_rss_mib"])

    again, proc = _run(tmp_path, *flags, "--compare", str(tmp_path / "report.json"), name="again.json")
    lines = {ln.split()[0]: ln for ln in proc.stdout.splitlines() if ln.startswith("  service/")}
    assert lines["service/results/boxfile/people_per_frame"].rstrip().endswith("= 1.00")  # same boxes twice
    fps = again["service"]["results"]["whole"]["fps"] / report["service"]["results"]["whole"]["fps"]
    assert lines["service/results/whole/fps"].rstrip().endswith(f"= {fps:.2f}")


def test_bad_batch_flag_is_one_line_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, SCRIPT, "--batch_forward", "1"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "benchmark.py: --batch_forward takes two positive sizes, e.g. 1,32"]
