"""Runs this package's ROS 2 launch files where `launch`/`launch_ros` are not installed (the PyPI-wheel ROS).

The launch files in launch/ are written for the real API. Here they are executed against small stand-ins of
exactly the subset they use (see api.py), injected into sys.modules only inside this process, and each Node
becomes a child process (`python nodes/<executable>` from the source tree, else `lib/<pkg>/<executable>`) with
`--ros-args -r __node:=NAME --params-file FILE ...`. Required nodes are those with `on_exit=Shutdown()`.

>>> runner = LaunchRunner.from_package("sparsedrive_ros", "nuscenes_replay.launch.py", {"rviz": "false"})
>>> runner.start(); status = runner.run()
"""
from __future__ import annotations

import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, TextIO

from .api import LaunchError
from .evaluate import (
    LaunchPlan,
    ProcessSpec,
    declared_arguments,
    load_launch_description,
    parse_cli_arguments,
    plan_launch,
)
from .packages import PackageResolver
from .process import ProcessGroup

__all__ = ["LaunchError", "LaunchPlan", "LaunchRunner", "PackageResolver", "ProcessSpec", "declared_arguments",
           "load_launch_description", "parse_cli_arguments", "plan_launch", "real_launch_available"]


def real_launch_available() -> bool:
    """True when ROS 2 `launch` and `launch_ros` are importable (not PyPI `launch` 0.1.3, not a launch/ dir)."""
    try:
        import launch_ros.actions

        import launch
    except ImportError:
        return False
    return hasattr(launch, "LaunchDescription") and hasattr(launch, "LaunchService") \
        and hasattr(launch_ros.actions, "Node")


@dataclass
class LaunchRunner:
    """A planned launch plus its running processes. Owns the temporary parameter files."""

    launch_file: Path
    plan: LaunchPlan
    group: ProcessGroup

    @classmethod
    def from_file(cls, launch_file: Path, arguments: Mapping[str, str], *, resolver: Optional[PackageResolver] = None,
                  out: Optional[TextIO] = None, grace_s: float = 10.0) -> "LaunchRunner":
        description = load_launch_description(Path(launch_file))
        plan = plan_launch(description, arguments, resolver)
        group = ProcessGroup(plan.processes, out=out or sys.stdout, grace_s=grace_s)
        return cls(Path(launch_file), plan, group)

    @classmethod
    def from_package(cls, package: str, file_name: str, arguments: Mapping[str, str], **kwargs) -> "LaunchRunner":
        resolver = kwargs.pop("resolver", None) or PackageResolver.default()
        return cls.from_file(resolver.find_launch_file(package, file_name), arguments, resolver=resolver, **kwargs)

    def start(self, names: Optional[Sequence[str]] = None) -> None:
        """Starts the named processes (default: every one not started yet)."""
        if not self.plan.processes:
            raise LaunchError(f"{self.launch_file.name}: nothing to launch with arguments {self.plan.arguments}")
        self.group.start(names)

    def run(self) -> int:
        """Runs until every process has exited; SIGINT/SIGTERM stop the launch (twice: right away)."""
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def on_signal(signum, _frame):
            if self.group.shutdown_reason is None:
                self.group.shutdown(f"signal {signal.Signals(signum).name}")
            else:
                self.group.kill_now()

        for s in previous:
            signal.signal(s, on_signal)
        try:
            return self.group.run()
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            self.close()

    def stop(self, reason: str, timeout: float) -> bool:
        """Stops every process; True if all exited within `timeout` s (escalation included)."""
        self.group.shutdown(reason)
        done = self.group.wait_all(timeout)
        if not done:
            self.group.kill_now()
            done = self.group.wait_all(5.0)
        return done

    def close(self) -> None:
        self.plan.cleanup()
