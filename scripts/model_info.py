"""Parameters, true MACs and the official "FLOPs" of every Lite-HRNet variant, computed analytically.

    python scripts/model_info.py --target_res 256x192
    python scripts/model_info.py --target_res 384x288 --model_type litehrnet_30 --json
    python scripts/model_info.py --target_res 256x256 --num_joints 16 --verify_params
    python scripts/model_info.py --model_type lite_18 --per_layer

MACs are multiply-accumulates of every convolution in millions (10**6), counting the fuse layers
that the official fusion runs twice, twice. "Official FLOPs" are what the official repository's
counter (torchstat over leaf modules, each counted once) reports, in its units of 2**20; see
``litehrnet/models/complexity.py`` for the rules and how they compare with the published figures.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src"))

from litehrnet.models.complexity import (PUBLISHED_FLOPS_M, PUBLISHED_HRNET_GFLOPS,  # noqa: E402
                                         model_complexity, parse_input_hw, verify_params)
from litehrnet.models.configs import ALIASES, MODEL_CONFIGS, canonical_model_type  # noqa: E402
from litehrnet.models.hrnet_config import HRNET_CONFIGS  # noqa: E402

ALL_TYPES = list(MODEL_CONFIGS) + list(HRNET_CONFIGS)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target_res", default="256x192", help="input size HxW (multiples of 32), default 256x192")
    parser.add_argument("--model_type", nargs="+", default=None, choices=ALL_TYPES + list(ALIASES),
                        metavar="TYPE", help="model types (aliases accepted); default: all. "
                        f"One or more of: {', '.join(ALL_TYPES + list(ALIASES))}")
    parser.add_argument("--num_joints", type=int, default=17, help="heatmap channels (17 COCO, 16 MPII)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--verify_params", action="store_true",
                        help="build each PoseNet (MindSpore, PYNATIVE) and check the analytic parameter count")
    parser.add_argument("--per_layer", action="store_true", help="also list every layer")
    args = parser.parse_args(argv)
    try:
        args.input_hw = parse_input_hw(args.target_res)
    except ValueError as err:
        parser.error(str(err))
    if args.num_joints < 1:
        parser.error("--num_joints must be >= 1")
    return args


def _published(model_type, input_hw, num_joints):
    """Published FLOPs in M (2**20) for Lite-HRNet, published "GFLOPs" (2**30) for HRNet."""
    key = (model_type, tuple(input_hw), num_joints)
    return PUBLISHED_FLOPS_M.get(key, PUBLISHED_HRNET_GFLOPS.get(key))


def main(argv=None):
    args = parse_args(argv)
    types = [canonical_model_type(t) for t in (args.model_type or ALL_TYPES)]
    types = list(dict.fromkeys(types))
    rows = []
    for model_type in types:
        info = model_complexity(model_type, args.input_hw, args.num_joints, per_layer=args.per_layer)
        row = dict(model_type=model_type, input_hw=list(info["input_hw"]), num_joints=info["num_joints"],
                   params=info["params"], macs=info["macs"], macs_m=round(info["macs_m"], 4),
                   macs_g=round(info["macs"] / 2 ** 30, 4),
                   official_flops=info["official_flops"], official_flops_m=round(info["official_flops_m"], 4),
                   published_flops_m=_published(model_type, info["input_hw"], info["num_joints"]))
        if args.verify_params:
            check = verify_params(model_type, args.num_joints)
            row.update(real_params=check["real"], params_ok=check["ok"], param_mismatches=check["mismatches"])
        if args.per_layer:
            row["per_layer"] = [{k: v for k, v in r.items() if k != "param_tensors"} for r in info["per_layer"]]
        rows.append(row)

    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        h, w = args.input_hw
        print(f"input {h}x{w}, {args.num_joints} joints   (MACs: 10^6 and 2^30; official FLOPs: 2^20, as published; "
              f"HRNet's published \"GFLOPs\" are MACs / 2^30)")
        header = (f"{'model type':<26}{'params':>11}{'MACs (M)':>11}{'MACs (2^30)':>12}{'FLOPs (M)':>11}"
                  f"{'published':>11}")
        if args.verify_params:
            header += f"{'built net':>12}"
        print(header)
        print("-" * len(header))
        for row in rows:
            pub = row["published_flops_m"]
            unit = "G" if row["model_type"] in HRNET_CONFIGS else ""
            line = (f"{row['model_type']:<26}{row['params']:>11,}{row['macs_m']:>11.1f}{row['macs_g']:>12.3f}"
                    f"{row['official_flops_m']:>11.1f}{(f'{pub:.1f}{unit}' if pub is not None else '-'):>11}")
            if args.verify_params:
                line += f"{('ok' if row['params_ok'] else 'MISMATCH'):>12}"
            print(line)
            if args.per_layer:
                print(f"  {'layer':<64}{'op':<28}{'out shape':<16}{'params':>8}{'MACs':>12}{'FLOPs':>11}")
                for r in row["per_layer"]:
                    print(f"  {r['name']:<64}{r['op']:<28}{'x'.join(map(str, r['out_shape'])):<16}"
                          f"{r['params']:>8}{r['macs']:>12}{r['official_flops']:>11}"
                          + ("  (x2 calls)" if r["calls"] > 1 else ""))
    if args.verify_params and not all(r["params_ok"] for r in rows):
        for r in rows:
            if not r["params_ok"]:
                print(f"{r['model_type']}: analytic {r['params']} != built {r['real_params']}; "
                      f"differing tensors: {r['param_mismatches'][:10]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
