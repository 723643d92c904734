#!/usr/bin/env bash
# Optional: ONNX export and onnxruntime (requirements/onnx.txt) into the project's .venv. Idempotent (a stamp of
# the requirement file). The export tool and the onnxruntime parity test skip cleanly without them, outside CI.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSEDRIVE_VENV:-$REPO/.venv}"
STAMP="$VENV/.sparsedrive-stamps/onnx"
want=$(sha256sum "$REPO/requirements/onnx.txt" | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup-onnx] installing onnx, onnxruntime and onnxscript (requirements/onnx.txt)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REPO/requirements/onnx.txt"
  mkdir -p "$(dirname "$STAMP")"
  echo "$want" > "$STAMP"
fi
"$VENV/bin/python" -c "import onnx, onnxruntime, onnxscript; print('[setup-onnx] onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__)"
