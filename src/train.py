"""Train Lite-HRNet on COCO, MPII, the built-in demo set or a custom COCO-format keypoint set (front end: litehrnet/commands/train.py, installed as litehrnet-train)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, without installing it
from litehrnet.commands.train import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
