"""The project's own numeric regression case (test/regression_case.py): runs everywhere, no external material.

A change that moves any output of the small seeded model by more than 1e-9 x max|expected| fails here. If the
change is intended, regenerate with ``python test/regression_case.py`` and say why in the commit message.
"""

from __future__ import annotations

import numpy as np
import pytest
from regression_case import FIXTURE, run_case

RTOL = 1e-9  # float64 on CPU: summation order across BLAS builds moves results by ~1e-13 at most


@pytest.fixture(scope="module")
def actual() -> dict[str, np.ndarray]:
    return run_case()


def test_outputs_equal_the_stored_ones(actual: dict[str, np.ndarray]) -> None:
    expected = np.load(FIXTURE)
    assert sorted(actual) == sorted(expected.files), "the set of output arrays changed"
    failures = []
    for name in expected.files:
        want, got = expected[name], actual[name]
        if got.shape != want.shape:
            failures.append(f"{name}: shape {got.shape} != {want.shape}")
        elif want.dtype.kind == "f":
            error = np.abs(got - want).max(initial=0.0)
            if not error <= RTOL * max(np.abs(want).max(initial=0.0), 1.0):
                failures.append(f"{name}: max error {error:.3e}")
        elif not np.array_equal(got, want):
            failures.append(f"{name}: {(got != want).sum()} integers differ")
    assert failures == [], "\n".join(failures)


def test_case_exercises_tracking_and_the_gap_rule(actual: dict[str, np.ndarray]) -> None:
    """The stored case is only useful if it covers carried state: ids kept across 0.5 s steps, history periods
    growing, and a full renewal after the 3 s gap (docs/model-notes.md#temporal-rules)."""
    assert actual["frame2/post/period"].max() >= 2
    assert np.isin(actual["frame2/raw/det/instance_id"][0, :24], actual["frame1/raw/det/instance_id"]).all()
    assert actual["frame3/post/period"].max() == 1
    assert actual["frame3/raw/det/instance_id"].min() > actual["frame2/raw/det/instance_id"].max()
    assert all(np.isfinite(v).all() for v in actual.values())
