#!/usr/bin/env bash
# One-shot CUDA check (about 8 min on an H100, most of it torch.compile): deformable aggregation fast ==
# reference on CUDA, the static frame's CUDA tests (no host sync), the golden parity case in float64 on CUDA through
# the eager and the static path (when gpu_golden/ is present), and the timings of issue 11 (docs/static-graph.md):
# model frame eager / static / compiled in float32 and with a bf16 backbone, the heads alone, the node end to end.
# Targets on an H100: frame <= 25 ms float32 and <= 16.7 ms with bf16, three heads <= 8 ms, node <= 35 ms.
# Run from the repository root:
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

# The golden parity case on the GPU in float64 (the oracle; a tiny random model is no good here: its tied scores
# make top-k order differ between devices). The device machine has no ../shared: copy it into the working tree
# first (git-ignored, 21 MB; name it in the device tool's carry list): mkdir -p gpu_golden/public && cp ../shared/golden/*.py \
# ../shared/docs/state-dict-stage2.txt gpu_golden/ && cp -r ../shared/golden/public/expected gpu_golden/public/
if [ -d gpu_golden ]; then
    step golden_make_case 60 bash -c "cd gpu_golden && $PY make_case.py --keys state-dict-stage2.txt --seed 1 --scenario drive --out /tmp/gpu_case"
    step golden_infer_float64 150 "$PY" -m sparsedrive_ros.tools.infer_npz --checkpoint /tmp/gpu_case/state_dict.pt \
        --inputs /tmp/gpu_case/inputs.npz --out /tmp/gpu_out64 --dtype float64 --device $DEVICE
    step golden_compare 30 "$PY" gpu_golden/compare.py gpu_golden/public/expected /tmp/gpu_out64
    step golden_infer_float64_static 150 "$PY" -m sparsedrive_ros.tools.infer_npz --checkpoint /tmp/gpu_case/state_dict.pt \
        --inputs /tmp/gpu_case/inputs.npz --out /tmp/gpu_out64_static --dtype float64 --device $DEVICE --path static
    step golden_compare_static 30 "$PY" gpu_golden/compare.py gpu_golden/public/expected /tmp/gpu_out64_static
fi

step static_tests 120 "$PY" -m pytest test/test_static_frame.py -q -x
step model_bench_fp32 40 "$PY" benchmarks/bench_model.py --device $DEVICE --iters $ITERS
# Side by side: encoder / heads / frame ms of each path (compiled = inductor + CUDA graphs; its first frame
# includes the compilation).
step model_paths_fp32 300 "$PY" benchmarks/bench_model.py --device $DEVICE --iters $ITERS --paths eager,static,compiled
step model_paths_bf16_backbone 240 "$PY" benchmarks/bench_model.py --device $DEVICE --iters $ITERS --autocast bf16 --paths compiled
step node_end_to_end 300 "$PY" benchmarks/bench_node.py --device $DEVICE --inference compiled --frames $ITERS --warmup 3

echo "gpu_check finished, status=$status, logs in $LOG_DIR"
exit $status
