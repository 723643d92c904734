"""Parity with the original SparseDrive on the public golden case (parity material, docs/parity.md).

The case (synthetic weights + 3 frames) is regenerated with the golden folder's make_case.py into a pytest
temporary directory, the stage-2 model runs over it with its temporal state carried, and golden/compare.py
must pass every array (float64, atol = rtol = 1e-6). A float32 run of frame 0 is checked against the same
expected outputs with a looser tolerance (see FLOAT32_RTOL).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from external import golden_case, shared_file, shared_folder

from sparsedrive_ros.tools.infer_npz import iter_frames, load_model, run

SHARED = shared_folder()
GOLDEN = SHARED / "golden"
EXPECTED = GOLDEN / "public" / "expected"

# The reference's own float32 run differs from its float64 run by up to 3.8e-4 x max|expected| on frame 0
# (raw/det/anchor_embed); ours by up to 7.6e-4 (same array). 3e-3 leaves a 4x margin; integer outputs
# (labels, ids, periods) must still match exactly on frame 0.
FLOAT32_RTOL = 3e-3



@pytest.fixture(scope="module", autouse=True)
def _parity_material() -> None:
    """Skip without the parity material; fail under CI=true (test/external.py)."""
    for relative in ("golden/make_case.py", "golden/compare.py", "docs/state-dict-stage2.txt"):
        shared_file(relative)


@pytest.fixture(scope="module")
def public_case(tmp_path_factory) -> Path:
    return golden_case(tmp_path_factory.mktemp("golden") / "case_public", 1, "drive")


@pytest.mark.slow
def test_float64_matches_the_golden_outputs(public_case: Path, tmp_path: Path) -> None:
    model = load_model(str(public_case / "state_dict.pt"), torch.float64, "cpu")
    assert run(model, str(public_case / "inputs.npz"), str(tmp_path), verbose=False) == 3
    result = subprocess.run([sys.executable, str(GOLDEN / "compare.py"), str(EXPECTED), str(tmp_path)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "parity: 189 passed, 0 failed" in result.stdout


@pytest.mark.slow
def test_float64_static_graph_matches_the_golden_outputs(public_case: Path, tmp_path: Path) -> None:
    """The fixed-shape static frame (docs/static-graph.md) passes the same 189 arrays."""
    model = load_model(str(public_case / "state_dict.pt"), torch.float64, "cpu")
    assert run(model, str(public_case / "inputs.npz"), str(tmp_path), verbose=False, path="static") == 3
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


@pytest.mark.slow
def test_gap_left_case_masks_history_after_the_3s_gap(tmp_path_factory) -> None:
    """Hidden case A's inputs (seed 2, frames 0, 0.5, 1.0, 4.0 s, command left): its expected outputs are not
    published, so check the time-gap behaviour of docs/model-notes.md#temporal-rules on the real-size model."""
    out = golden_case(tmp_path_factory.mktemp("golden") / "case_gap_left", 2, "gap_left")
    model = load_model(str(out / "state_dict.pt"), torch.float32, "cpu")
    with np.load(out / "inputs.npz") as data:
        inputs = {k: data[k] for k in data.files}
    state = model.new_state()
    with torch.inference_mode():
        outs = [model(f, state, return_raw=True) for f in iter_frames(inputs)]
    ids = [o.raw["raw/det/instance_id"][0] for o in outs]
    for k in (1, 2):  # 0.5 s steps: the 600 carried instances keep last frame's ids
        assert outs[k].temporal_valid.tolist() == [True]
        assert torch.isin(ids[k][:600], ids[k - 1]).all()
        assert outs[k].raw["raw/motion/period"].max() >= 2
    gap = outs[3]
    assert gap.temporal_valid.tolist() == [False] and gap.time_interval.tolist() == [0.5]
    assert ids[3].min() > ids[2].max()  # every instance is new after the gap
    assert gap.raw["raw/motion/period"].max() == 1 and gap.planning.ego_period.tolist() == [1]
    assert gap.planning.ego_history.shape == (1, 4, 10)  # the queue is not reset, only masked
    assert gap.raw["raw/planning/anchor_queue/3"][0, 0, 9].item() == 0.0  # no speed carried over the gap
    assert len(gap.golden_arrays()) == 67 and gap.planning.command.tolist() == [1]
