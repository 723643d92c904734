"""`ros2 launch` for this package, with or without ROS 2 launch installed.

    python -m sparsedrive_ros.tools.launch sparsedrive_ros nuscenes_replay.launch.py record:=true rate:=0.1
    python -m sparsedrive_ros.tools.launch sparsedrive_ros nuscenes_replay.launch.py --show-args
    python -m sparsedrive_ros.tools.launch path/to/file.launch.py name:=value

With ROS 2 `launch`/`launch_ros` importable this defers to launch.LaunchService (what `ros2 launch` does);
otherwise sparsedrive_ros.launch_runner runs the same file with its stand-ins (`--standin` forces that).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Dict, List, Optional

from sparsedrive_ros.launch_runner import (
    LaunchError,
    LaunchRunner,
    PackageResolver,
    declared_arguments,
    load_launch_description,
    parse_cli_arguments,
    plan_launch,
    real_launch_available,
)


def _parse(argv: Optional[List[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m sparsedrive_ros.tools.launch", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("package_or_file", help="package name, or a launch file path")
    parser.add_argument("rest", nargs="*", help="[launch file name] name:=value ...")
    parser.add_argument("-s", "--show-args", action="store_true", help="list the launch arguments and exit")
    parser.add_argument("-p", "--print", dest="print_plan", action="store_true",
                        help="print the processes that would be started and exit (stand-in runner only)")
    parser.add_argument("--standin", action="store_true", help="use the stand-in runner even if ROS launch exists")
    return parser.parse_intermixed_args(argv)


def _locate(ns: argparse.Namespace, resolver: PackageResolver) -> tuple[Path, Dict[str, str]]:
    rest = list(ns.rest)
    if ns.package_or_file.endswith(".py") and Path(ns.package_or_file).is_file():
        return Path(ns.package_or_file).resolve(), parse_cli_arguments(rest)
    if not rest or ":=" in rest[0]:
        raise LaunchError(f"give a launch file name after the package {ns.package_or_file!r}")
    return resolver.find_launch_file(ns.package_or_file, rest[0]), parse_cli_arguments(rest[1:])


def _run_real(path: Path, arguments: Dict[str, str]) -> int:
    from launch.actions import IncludeLaunchDescription
    from launch.launch_description_sources import AnyLaunchDescriptionSource

    from launch import LaunchDescription, LaunchService

    service = LaunchService()
    service.include_launch_description(LaunchDescription([
        IncludeLaunchDescription(AnyLaunchDescriptionSource(str(path)), launch_arguments=list(arguments.items()))]))
    return service.run()


def _show_args(path: Path) -> None:
    for decl in declared_arguments(load_launch_description(path)):
        default = decl.default_value
        shown = repr(default) if isinstance(default, str) else ("(required)" if default is None else "(substitution)")
        print(f"    '{decl.name}':\n        {decl.description}\n        (default: {shown})")


def main(argv: Optional[List[str]] = None) -> int:
    ns = _parse(argv)
    resolver = PackageResolver.default()
    try:
        path, arguments = _locate(ns, resolver)
        if real_launch_available() and not (ns.standin or ns.print_plan):
            if ns.show_args:
                print("with ROS 2 launch installed, use: ros2 launch --show-args", file=sys.stderr)
                return 2
            return _run_real(path, arguments)
        if ns.show_args:
            _show_args(path)
            return 0
        if ns.print_plan:
            plan = plan_launch(load_launch_description(path), arguments, resolver)
            for spec in plan.processes:
                print(f"{spec.name}{' (required)' if spec.required else ''}: {' '.join(spec.cmd)}")
            print(f"skipped (condition false): {', '.join(plan.skipped) or 'none'}")
            plan.cleanup()
            return 0
        runner = LaunchRunner.from_file(path, arguments, resolver=resolver)
        runner.start()
        return runner.run()
    except LaunchError as err:
        print(f"launch: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
