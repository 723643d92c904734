#!/usr/bin/env bash
# Optional: the official nuscenes-devkit as a test oracle (dataset validity, detection mAP/NDS parity).
# Installs requirements/devkit.txt into .venv/devkit without dependency resolution and appends that directory to
# the venv's sys.path (after site-packages). Idempotent. Tests that need the devkit skip cleanly without it.
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SPARSEDRIVE_VENV:-$REPO/.venv}"
TARGET="$VENV/devkit"
STAMP="$TARGET/.stamp"
want=$(sha256sum "$REPO/requirements/devkit.txt" | cut -c1-16)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "[setup-devkit] installing the nuscenes-devkit oracle into $TARGET"
  rm -rf "$TARGET"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q --no-deps --target "$TARGET" \
    -r "$REPO/requirements/devkit.txt"
  echo "$want" > "$STAMP"
fi
SITE=$("$VENV/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
echo "$TARGET" > "$SITE/zz_sparsedrive_devkit.pth"
"$VENV/bin/python" -c "import nuscenes, shapely; print('[setup-devkit] nuscenes-devkit', nuscenes.__file__)"
