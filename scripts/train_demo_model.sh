#!/usr/bin/env bash
# Recipe of the bundled demo model (sparsedrive_ros/assets/demo_model.safetensors): regenerate the synthetic
# training world, train the `demo` configuration from scratch on the CPU, export half-precision safetensors
# with the architecture in its metadata, and evaluate on held-out synthetic scenes whose seeds training never saw.
#
#   scripts/train_demo_model.sh [WORK_DIR]        (after `make setup`)
#
# Resumable: rerun the same command after an interruption (Ctrl-C, SIGTERM, a closed session); the data is
# reused, training resumes from WORK_DIR/train/latest.pt, and finished steps are skipped.
# Environment: THREADS (torch threads, default 1: the run used one core of a 2-core machine),
#              MAX_STEPS (default: the config's 6500), INSTALL=1 copies the result over the bundled model.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/work_dirs/demo}"
THREADS="${THREADS:-1}"
. "$REPO/scripts/env.sh"
export OMP_NUM_THREADS="$THREADS" MKL_NUM_THREADS="$THREADS"
mkdir -p "$WORK"
say() { printf '[demo-model %(%H:%M:%S)T] %s\n' -1 "$*"; }

# 1. Training world: ten 12 s scenes (250 key frames), seeds (100, k). Held-out: four 8 s scenes, seeds (900, k).
[ -f "$WORK/data/v1.0-mini/scene.json" ] || python -m sparsedrive_ros.tools.make_synthetic \
  --out "$WORK/data" --seconds 12 --scenes 10 --seed 100
[ -f "$WORK/heldout/v1.0-mini/scene.json" ] || python -m sparsedrive_ros.tools.make_synthetic \
  --out "$WORK/heldout" --seconds 8 --scenes 4 --seed 900

# 2. Train (resumes from $WORK/train/latest.pt). Progress: $WORK/train/log.jsonl and the line on stderr.
say "training (log: $WORK/train/log.jsonl)"
python -m sparsedrive_ros.tools.train --config demo --data "$WORK/data" --split all --work-dir "$WORK/train" \
  ${MAX_STEPS:+--max-steps "$MAX_STEPS"} 2>&1 | tee -a "$WORK/train_output.txt"

# 3. Export: float16 safetensors with the model configuration in the metadata.
python -m sparsedrive_ros.tools.export_model --checkpoint "$WORK/train/latest.pt" \
  --out "$WORK/demo_model.safetensors"

# 4. Held-out evaluation (all four held-out scenes), with the constant-velocity planning baseline; tracking
#    (nuScenes devkit, `make setup-devkit`) needs a predefined split: the two scenes named like mini's val.
python -m sparsedrive_ros.tools.evaluate --checkpoint "$WORK/demo_model.safetensors" --data "$WORK/heldout" \
  --split all --out "$WORK/heldout_metrics.json" | tee "$WORK/heldout_eval.txt"
python -m sparsedrive_ros.tools.evaluate --checkpoint "$WORK/demo_model.safetensors" --data "$WORK/heldout" \
  --split val --tracking --out "$WORK/heldout_val_tracking_metrics.json" | tee "$WORK/heldout_val_tracking_eval.txt"

if [ "${INSTALL:-0}" = 1 ]; then
  cp "$WORK/demo_model.safetensors" "$REPO/sparsedrive_ros/assets/demo_model.safetensors"
  say "installed $REPO/sparsedrive_ros/assets/demo_model.safetensors"
fi
