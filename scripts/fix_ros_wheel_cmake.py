"""Rewrite the build-container paths that the ROS 2 PyPI wheels hard-code in their CMake export files.

The `ros-kilted-*` wheels are built in a manylinux container; their `share/*/cmake/*.cmake` files name that
container's Python include directory and numpy include directory (`/opt/python/cp311-cp311/...`). Building
interfaces against them (our msg/) fails until those paths point at this interpreter's. Idempotent: a file
already rewritten has nothing left to replace.

Usage: python scripts/fix_ros_wheel_cmake.py PREFIX
"""
import re
import sys
import sysconfig
from pathlib import Path

import numpy

# Longest first: the numpy include dir lives under the container's site-packages.
_PATTERNS = (
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/lib/python3\.\d+/site-packages/numpy/(?:_core|core)/include"),
     numpy.get_include()),
    (re.compile(r"/opt/python/cp3\d+-cp3\d+/include/python3\.\d+"), sysconfig.get_paths()["include"]),
)


def fix(prefix: Path) -> int:
    changed = 0
    for path in sorted(prefix.glob("share/*/cmake/*.cmake")):
        text = path.read_text()
        new = text
        for pattern, replacement in _PATTERNS:
            new = pattern.sub(replacement, new)
        if new != text:
            path.write_text(new)
            changed += 1
    leftover = [p for p in prefix.glob("share/*/cmake/*.cmake") if "/opt/python/" in p.read_text()]
    if leftover:
        raise SystemExit(f"unfixed container paths remain in: {', '.join(map(str, leftover))}")
    return changed


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(f"fix_ros_wheel_cmake: rewrote {fix(Path(sys.argv[1]))} file(s)")
