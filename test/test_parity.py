"""Parity with the original SparseDrive on the public golden case (shared/golden, README §1-§5).

The case (synthetic weights + 3 frames) is regenerated with the golden folder's make_case.py into a pytest
temporary directory, the stage-2 model runs over it with its temporal state carried, and golden/compare.py
must pass every array (float64, atol = rtol = 1e-6). A float32 run of frame 0 is checked against the same
expected outputs with a looser tolerance (see FLOAT32_RTOL).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from sparsedrive_ros.tools.infer_npz import iter_frames, load_model, run

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPARSEDRIVE_SHARED", REPO.parent / "shared"))
GOLDEN = SHARED / "golden"
EXPECTED = GOLDEN / "public" / "expected"

# The reference's own float32 run differs from its float64 run by up to 3.8e-4 x max|expected| on frame 0
# (raw/det/anchor_embed); ours by up to 7.6e-4 (same array). 3e-3 leaves a 4x margin; integer outputs
# (labels, ids, periods) must still match exactly on frame 0.
FLOAT32_RTOL = 3e-3

pytestmark = pytest.mark.skipif(not (GOLDEN / "make_case.py").is_file(),
                                reason=f"golden case tools not found under {GOLDEN} (set SPARSEDRIVE_SHARED)")


@pytest.fixture(scope="module")
def public_case(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("golden") / "case_public"
    cmd = [sys.executable, "make_case.py", "--keys", str(SHARED / "docs" / "state-dict-stage2.txt"),
           "--seed", "1", "--scenario", "drive", "--out", str(out)]
    result = subprocess.run(cmd, cwd=GOLDEN, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out


@pytest.mark.slow
def test_float64_matches_the_golden_outputs(public_case: Path, tmp_path: Path) -> None:
    model = load_model(str(public_case / "state_dict.pt"), torch.float64, "cpu")
    assert run(model, str(public_case / "inputs.npz"), str(tmp_path), verbose=False) == 3
    result = subprocess.run([sys.executable, str(GOLDEN / "compare.py"), str(EXPECTED), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity: 189 passed, 0 failed" in result.stdout


@pytest.mark.slow
def test_float32_frame0_close_to_the_golden_outputs(public_case: Path) -> None:
    model = load_model(str(public_case / "state_dict.pt"), torch.float32, "cpu")
    with np.load(public_case / "inputs.npz") as data:
        inputs = {k: data[k] for k in data.files}
    with torch.inference_mode():
        actual = model(next(iter_frames(inputs)), model.new_state(), return_raw=True).golden_arrays()
    expected = np.load(EXPECTED / "frame0.npz")
    failures = []
    for name in expected.files:
        want, got = expected[name], actual[name]
        assert got.shape == want.shape, name
        if want.dtype.kind == "f":
            error = np.abs(got - want).max() / np.abs(want).max()
            if not error <= FLOAT32_RTOL:
                failures.append(f"{name}: {error:.2e}")
        elif not np.array_equal(got, want):
            failures.append(f"{name}: {(got != want).sum()} integers differ")
    assert failures == []
