#!/bin/bash
# Evaluation of a checkpoint (COCO AP, MPII PCKh or a custom COCO-format set).
#
#   bash scripts/run_eval.sh [eval.py arguments...]
#   bash scripts/run_eval.sh --model_type litehrnet_18 --target_res 256x192 \
#        --checkpoint output/best.ckpt --dataset coco --data_root /data/coco
set -e
REPO=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=python
if [ -x "$REPO/.venv/bin/python" ]; then
  PYTHON="$REPO/.venv/bin/python"
fi
exec "$PYTHON" "$REPO/src/eval.py" "$@"
