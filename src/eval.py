"""Evaluate a Lite-HRNet checkpoint on COCO, MPII or a custom COCO-format keypoint set (front end: litehrnet/commands/eval.py, installed as litehrnet-eval)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, without installing it
from litehrnet.commands.eval import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
