#!/usr/bin/env bash
# One-shot CUDA check (time limits add up to 250 s; typically ~2 min on an H100): deformable aggregation
# fast == reference on CUDA, a tiny model on CUDA vs CPU, and the model benchmark with --device cuda. Run from the repository root:
#     bash benchmarks/gpu_check.sh            # outputs also go to "$OUT" when that variable is set
# PYTHON overrides the interpreter (default: .venv/bin/python if present, else python3); GPU_CHECK_DEVICE=cpu
# dry-runs the script on a machine without a GPU (with e.g. BENCH_ITERS=1 DA_REPEATS=1 to keep it short).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
LOG_DIR="${OUT:-/tmp/gpu_check}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
export DEVICE
ITERS="${BENCH_ITERS:-10}"
REPEATS="${DA_REPEATS:-20}"
mkdir -p "$LOG_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit, tee into $LOG_DIR/NAME.txt, remember failures
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*" | tee "$LOG_DIR/$name.txt"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG_DIR/$name.txt"
    local rc=${PIPESTATUS[0]}
    echo "=== $name rc=$rc" | tee -a "$LOG_DIR/$name.txt"
    [ "$rc" -eq 0 ] || status=1
}

step env 20 bash -c "nvidia-smi -L; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)'"

# Parity tests (CPU oracle vs fast on CPU and CUDA; gradcheck) and timings with the parity error printed.
step da_tests 60 "$PY" -m pytest test/test_deformable_aggregation.py -q -x
step da_bench_fp32 30 "$PY" benchmarks/bench_deformable_aggregation.py --device $DEVICE --repeats $REPEATS --check
step da_bench_fp64 30 "$PY" benchmarks/bench_deformable_aggregation.py --device $DEVICE --dtype float64 --repeats $(( (REPEATS + 3) / 4 )) --check

# Tiny model: same outputs on CUDA and CPU (float64, two frames with history).
step tiny_model_cuda 40 "$PY" - <<'EOF'
import os
import sys
import torch
sys.path.insert(0, "test")
from test_model_stream import frame, tiny_config
from sparsedrive_ros.model import SparseDriveStream, build_sparsedrive

torch.manual_seed(0)
model = build_sparsedrive(2, config=tiny_config(2)).eval().double()
with torch.no_grad():
    model.head.det_head.instance_bank.anchor[:, :3].uniform_(-20, 20)
results = {}
for device in ("cpu", os.environ["DEVICE"]):
    stream = SparseDriveStream(model.to(device))
    outs = [stream.step(frame(0.5 * k, forward=2.0 * k, seed=k), return_raw=True) for k in range(2)]
    results[device] = {name: torch.as_tensor(v).double().cpu() for name, v in outs[-1].golden_arrays().items()}
worst = 0.0
for name, ref in results["cpu"].items():
    got = results[os.environ["DEVICE"]][name]
    if ref.is_floating_point() and ref.numel():
        diff = (got - ref).abs().max().item()
        worst = max(worst, diff)
        print(f"{name:<50} max|cuda-cpu| = {diff:.2e}")
print(f"worst {worst:.2e}")
sys.exit(0 if worst < 1e-6 else 1)
EOF

step model_bench_fp32 40 "$PY" benchmarks/bench_model.py --device $DEVICE --iters $ITERS
step model_bench_bf16_backbone 30 "$PY" benchmarks/bench_model.py --device $DEVICE --iters $ITERS --autocast bf16

echo "gpu_check finished, status=$status, logs in $LOG_DIR"
exit $status
