#!/usr/bin/env bash
# Training proof (issue: training and evaluation): train the reduced `tiny` configuration (ResNet-18, 64x192
# input, 64 det / 16 map anchors, 2 decoder layers, 1 motion block, k-means anchors) from scratch on synthetic scenes
# on the CPU, then evaluate on the two held-out (val) scenes, with the constant-velocity planning baseline.
#   scripts/train_proof.sh [WORK_DIR] [MINUTES]     (after `make setup`; default 60 minutes of training)
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WORK="${1:-$REPO/work_dirs/train_proof}"
MINUTES="${2:-60}"
. "$REPO/scripts/env.sh"
mkdir -p "$WORK"
[ -d "$WORK/data/v1.0-mini" ] || python -m sparsedrive_ros.tools.make_synthetic --out "$WORK/data" --seconds 8 --scenes 8 --seed 11
# Scenes are named after v1.0-mini's; the first two (scene-0103, scene-0916) form the val split.
timeout "$((MINUTES * 60))" python -m sparsedrive_ros.tools.train --config tiny --data "$WORK/data" --split train \
  --work-dir "$WORK/train" --max-steps "${MAX_STEPS:-2200}" || echo "[proof] training stopped (time limit or end)"
python -m sparsedrive_ros.tools.evaluate --checkpoint "$WORK/train/latest.pt" --data "$WORK/data" --split val \
  --out "$WORK/metrics.json"
python - "$WORK/train/log.jsonl" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("loss curve (mean over 50 steps):")
for a in range(0, len(rows), 50):
    chunk = rows[a:a + 50]
    print(f"  steps {chunk[0]['step']:4d}-{chunk[-1]['step']:4d}: {statistics.mean(r['loss'] for r in chunk):7.3f}")
PY
