"""Export a Lite-HRNet checkpoint to MINDIR or ONNX, optionally with the flip test inside (front end: litehrnet/commands/export.py, installed as litehrnet-export)."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the package beside this file, without installing it
from litehrnet.commands.export import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(main())
