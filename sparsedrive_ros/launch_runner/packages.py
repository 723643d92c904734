"""Where a package's share directory and executables are, with or without an ament install of the package.

This package's own source tree counts as its share directory when the launch file being run comes from it
(the project's venv installs only the generated messages, not launch/ and config/), so `FindPackageShare`
and the launch file always agree on which copy of config/ is meant.
"""
from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .api import LaunchError

SOURCE_ROOT = Path(__file__).resolve().parents[2]  # the checkout holding package.xml, launch/, config/, nodes/


def source_tree_package(root: Path) -> Optional[str]:
    """The package name of a source tree root (its package.xml), or None if `root` is not one."""
    manifest = root / "package.xml"
    if not manifest.is_file():
        return None
    name = ElementTree.parse(manifest).getroot().findtext("name")
    return name.strip() if name else None


def ament_prefix(package: str) -> Optional[Path]:
    """The install prefix of `package` from the ament index, or None."""
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        if Path(prefix, "share", "ament_index", "resource_index", "packages", package).exists():
            return Path(prefix)
    return None


@dataclass
class PackageResolver:
    """Resolves share directories and executables; `source_roots` win over the ament index for their package."""

    source_roots: List[Path]

    @classmethod
    def default(cls) -> "PackageResolver":
        roots = [SOURCE_ROOT] if source_tree_package(SOURCE_ROOT) else []
        return cls(roots)

    def _source_root(self, package: str) -> Optional[Path]:
        return next((r for r in self.source_roots if source_tree_package(r) == package), None)

    def find_share(self, package: str) -> Path:
        root = self._source_root(package)
        if root is not None:
            return root
        prefix = ament_prefix(package)
        if prefix is None:
            raise LaunchError(f"package {package!r} not found (not a source root here and not in AMENT_PREFIX_PATH)")
        return prefix / "share" / package

    def find_launch_file(self, package: str, file_name: str) -> Path:
        candidates = []
        root = self._source_root(package)
        if root is not None:
            candidates.append(root / "launch" / file_name)
        prefix = ament_prefix(package)
        if prefix is not None:
            candidates.append(prefix / "share" / package / "launch" / file_name)
        for path in candidates:
            if path.is_file():
                return path
        raise LaunchError(f"launch file {file_name!r} of package {package!r} not found; looked in "
                          f"{[str(c) for c in candidates] or 'no known location'}")

    def executable_command(self, package: str, executable: str) -> List[str]:
        """argv prefix that runs `executable` of `package` (Python scripts run with this interpreter)."""
        root = self._source_root(package)
        candidates = [root / "nodes" / executable] if root is not None else []
        prefix = ament_prefix(package)
        if prefix is not None:
            candidates.append(prefix / "lib" / package / executable)
        for path in candidates:
            if path.is_file():
                return [sys.executable, str(path)] if _is_python_script(path) else [str(path)]
        raise LaunchError(f"executable {executable!r} of package {package!r} not found; looked in "
                          f"{[str(c) for c in candidates] or 'no known location'}")


def _is_python_script(path: Path) -> bool:
    with open(path, "rb") as f:
        first = f.readline(200)
    return first.startswith(b"#!") and b"python" in first or path.suffix == ".py"
