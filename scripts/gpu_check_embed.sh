#!/usr/bin/env bash
# GPU check of the embed stage: the full-size Jukebox-5B layer-36 encoder (random weights, the
# same FLOPs as the real one) in half precision on one GPU; clips/s at a few batch sizes and
# peak GPU memory for 24 s clips. Runs in under 8 minutes on one H100 (the benchmark stops
# adding batch sizes after --budget-s; the timeout is a backstop).
#
#   scripts/gpu_check_embed.sh [extra benchmark flags, e.g. --dtype bfloat16]
#
# --dry-run builds a tiny model on CPU instead (checks the script without a GPU).
# Python: $PY, else .venv/bin/python when it sees a GPU (or for --dry-run), else python3. It needs torch (CUDA)
# and numpy; jukebox-infer comes from that environment or, on a bare GPU image, from a wheel
# in .whl/ (pip download --no-deps jukebox-infer==0.1.2 -d .whl); librosa, soundfile and
# unidecode are stood in for when missing (the benchmark reads no audio files).
# Results: printed, and written as JSON to $OUT/jukebox_gpu.json (or /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."

DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done
pick_python() {
  if [ -n "${PY:-}" ]; then echo "$PY"; return; fi
  if [ -x .venv/bin/python ] && { [ "$DRY" = 1 ] || .venv/bin/python -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; }; then
    echo .venv/bin/python; return
  fi
  echo python3
}
PY=$(pick_python)
OUT_DIR=${OUT:-/tmp}
mkdir -p "$OUT_DIR"

if ! "$PY" -c 'import jukebox_infer' 2>/dev/null; then
  wheel=$(ls .whl/jukebox_infer-*.whl 2>/dev/null | head -1 || true)
  if [ -z "$wheel" ]; then
    echo "jukebox-infer is not installed for $PY and no .whl/jukebox_infer-*.whl to install" >&2
    echo "(here: pip download --no-deps --only-binary=:all: jukebox-infer==0.1.2 -d .whl)" >&2
    exit 2
  fi
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/llark-site "$wheel"
  export PYTHONPATH=/tmp/llark-site${PYTHONPATH:+:$PYTHONPATH}
fi

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export PYTHONUNBUFFERED=1
set -o pipefail
timeout 460 "$PY" benchmarks/jukebox_gpu.py --batch-sizes 1,4,8,16,32 --seconds 24 --iters 3 \
  --budget-s 330 --json "$OUT_DIR/jukebox_gpu.json" "$@" 2>&1 | tee "$OUT_DIR/jukebox_gpu.log"
