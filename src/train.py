"""Train Lite-HRNet on COCO, MPII, the built-in demo set or a custom COCO-format keypoint set (front end: litehrnet/commands/train.py, installed as litehrnet-train)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, without installing it
from litehrnet.commands import train_entry  # noqa: E402  (light: MindSpore is imported by the command itself)

if __name__ == '__main__':
    sys.exit(train_entry())
