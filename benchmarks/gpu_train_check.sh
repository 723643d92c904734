#!/usr/bin/env bash
# One-shot CUDA training check (~4 min on an H100/H200): the stage1 / stage2 configs at the original's per-GPU
# batch (8 / 6, ResNet-50, 256x704, bf16 autocast) with and without backbone gradient checkpointing: s/step and
# peak memory, then LOOP_STEPS steps through Trainer.train (batches prefetched on a thread); plus 20 steps of
# the tiny config. Outputs go to "$OUT" (default /tmp/gpu_train_check).
#     bash benchmarks/gpu_train_check.sh
# On a machine without the project's venv it uses python3 and installs a carried OpenCV wheel from .wheels/
# when cv2 is missing (the device machines have no network).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
LOG_DIR="${OUT:-/tmp/gpu_train_check}"
mkdir -p "$LOG_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c "import cv2" 2>/dev/null || "$PY" -m pip install -q --no-deps --no-index .wheels/opencv*.whl
{
    nvidia-smi -L
    "$PY" -c "import torch, scipy, cv2, numpy; print('torch', torch.__version__, 'scipy', scipy.__version__, 'cv2', cv2.__version__, 'numpy', numpy.__version__)"
    timeout "${BENCH_TIMEOUT:-300}" "$PY" benchmarks/bench_train.py --work /tmp/gpu_train_check_work \
        --tiny-steps "${TINY_STEPS:-20}" --full-steps "${FULL_STEPS:-5}" --amp-full --full-batch 8,6 \
        --grad-checkpoint --width "${WIDTH:-640}" --loop-steps "${LOOP_STEPS:-6}" 2>&1 | grep -v "anchors:"
    echo "rc=${PIPESTATUS[0]}"
} 2>&1 | tee "$LOG_DIR/bench_train.txt"
