"""Static checks of the whole tree, run by `make test` like every other test: ruff (lint and import order, all
files, settings in ruff.toml) and mypy (types of the ROS-free core, settings in mypy.ini). Both must report zero
findings; the output names every finding."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=900)


def test_ruff_reports_nothing() -> None:
    pytest.importorskip("ruff", reason="ruff not installed: run `make setup`")
    result = _run("ruff", "check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
def test_mypy_reports_nothing_on_the_core() -> None:
    pytest.importorskip("mypy", reason="mypy not installed: run `make setup`")
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
