"""Estimate poses in images, image folders or a video and draw them (front end: litehrnet/commands/infer.py, installed as litehrnet-infer)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, without installing it
from litehrnet.commands.infer import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
