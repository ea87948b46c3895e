#!/usr/bin/env bash
# GPU check of the trainer (issue 6): a ~1.1B-parameter random Llama trained through the real
# loop (streaming shards, accelerate, bf16 autocast, fp32 master weights) with 238 audio frames
# of 4800 dims per sample. Prints tokens/s and MFU; goal >= 40 % MFU. Budget: < 8 min on one
# H100 (the run itself is ~30 steps; most of the time is model init and the final checkpoint).
#
#   scripts/gpu_check_train.sh [extra benchmarks/train_gpu.py flags]
#   OUT=/some/dir scripts/gpu_check_train.sh      # also writes $OUT/train_gpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
OUT=${OUT:-/tmp}
mkdir -p "$OUT"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible to torch'; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
start=$(date +%s)
timeout 470 "$PY" benchmarks/train_gpu.py --steps 30 --json "$OUT/train_gpu.json" "$@" 2>"$OUT/train_gpu.stderr" | tee "$OUT/train_gpu.txt"
echo "gpu_check_train: done in $(( $(date +%s) - start )) s; figures in $OUT/train_gpu.json"
