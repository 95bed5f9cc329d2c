#!/bin/bash
# Training on one device (CPU by default).
#
#   bash scripts/run_standalone_train.sh [train.py arguments...]
#   bash scripts/run_standalone_train.sh --dataset demo
#   bash scripts/run_standalone_train.sh --dataset coco --data_root /data/coco --device_target GPU
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=python
if [ -x "$REPO/.venv/bin/python" ]; then
  PYTHON="$REPO/.venv/bin/python"
fi
exec "$PYTHON" "$REPO/src/train.py" "$@"
