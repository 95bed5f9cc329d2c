#!/bin/bash
# Data-parallel training on N devices (CPU workers, GPUs or NPUs) with msrun; rank 0 writes the outputs.
#
#   bash scripts/run_distribute_train.sh N [train.py arguments...]
#   bash scripts/run_distribute_train.sh 8 --model_type litehrnet_18 --target_res 256x192 \
#        --dataset coco --data_root /data/coco --device_target GPU
#
# --train_batch is per device (the official 64 x 8 = 512). Environment: LOG_DIR (msrun's per-worker logs,
# default output/msrun_logs), MASTER_PORT (default 8118). The repository's .venv, when present, comes
# first on PATH: msrun starts the first `python` it finds.
set -e
if [ $# -lt 1 ] || ! [[ "$1" =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: bash $0 N [train.py arguments...]   (N: number of devices/workers)" >&2
  exit 2
fi
N=$1
shift
REPO=$(cd "$(dirname "$0")/.." && pwd)
if [ -x "$REPO/.venv/bin/python" ]; then
  export PATH="$REPO/.venv/bin:$PATH"
fi
LOG_DIR=${LOG_DIR:-output/msrun_logs}
mkdir -p "$LOG_DIR"
exec msrun --worker_num "$N" --local_worker_num "$N" --master_port "${MASTER_PORT:-8118}" \
  --log_dir "$LOG_DIR" --join True "$REPO/src/train.py" "$@"
