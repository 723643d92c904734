"""Where the tests find material the repository does not contain, and what happens when it is missing.

* Parity material (the original's golden case and state-dict key lists, docs/parity.md) is found only through
  ``SPARSEDRIVE_SHARED`` or the folder ``shared`` next to the checkout (``../shared``).
* Optional oracles (the official nuScenes devkit, installed by ``make setup-devkit``) are imported by name.

Missing material skips the test on a developer machine, but **fails** it under ``CI=true``: CI provides all of it,
so a silent skip there would hide a lost check.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_folder() -> Path:
    return Path(os.environ.get("SPARSEDRIVE_SHARED") or REPO.parent / "shared")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def missing(reason: str) -> None:
    """Skip, or fail under CI=true."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: required here)", pytrace=False)
    pytest.skip(reason)


def shared_file(relative: str) -> Path:
    """A file of the shared folder, or skip/fail naming where it was looked for."""
    path = shared_folder() / relative
    if not path.is_file():
        missing(f"{path} not found: set SPARSEDRIVE_SHARED to the parity material folder (docs/parity.md)")
    return path


def oracle(module: str, hint: str = "make setup-devkit") -> ModuleType:
    """Import an optional oracle module, or skip/fail."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing(f"optional oracle {module!r} not importable ({exc}): {hint}")
        raise  # unreachable: missing() raises


def golden_case(out: Path, seed: int = 1, scenario: str = "drive") -> Path:
    """Regenerate a golden case (synthetic stage-2 weights + inputs) with the parity material's make_case.py."""
    shared = shared_folder()
    shared_file("golden/make_case.py")
    cmd = [sys.executable, "make_case.py", "--keys", str(shared_file("docs/state-dict-stage2.txt")),
           "--seed", str(seed), "--scenario", scenario, "--out", str(out)]
    result = subprocess.run(cmd, cwd=shared / "golden", capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    return out
