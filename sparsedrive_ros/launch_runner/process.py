"""Runs the processes of a launch plan: prefixed output, signal forwarding, required-node shutdown.

Semantics (a subset of `ros2 launch`):
- Every child gets its own process group, so a terminal Ctrl-C reaches the runner once and the runner forwards
  exactly one SIGINT to each child (a second Ctrl-C escalates to SIGTERM, then SIGKILL after a grace period).
- A node launched with `on_exit=Shutdown()` is required: when it exits, for any reason, all others are stopped.
- The launch ends when every child has exited. Exit status: 0 unless a child failed on its own (non-zero exit
  before the runner asked it to stop), then the first such child's status.
- Children die with the runner (PR_SET_PDEATHSIG on Linux) so a killed runner leaves no orphans.
"""
from __future__ import annotations

import ctypes
import os
import selectors
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, TextIO

from .evaluate import ProcessSpec

_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    os.setpgrp()
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


@dataclass
class RunningProcess:
    spec: ProcessSpec
    popen: subprocess.Popen
    buffer: bytes = b""
    stop_requested_at: Optional[float] = None
    returncode: Optional[int] = None


@dataclass
class ProcessGroup:
    """Starts the plan's processes and pumps their output until all have exited.

    Use `start()`, then call `step()` in a loop (or `run()`), and `shutdown()` to stop early.
    """

    specs: List[ProcessSpec]
    base_env: Dict[str, str] = field(default_factory=lambda: dict(os.environ))
    out: TextIO = field(default_factory=lambda: sys.stdout)
    grace_s: float = 10.0  # SIGINT -> SIGTERM -> SIGKILL escalation delay
    processes: Dict[str, RunningProcess] = field(default_factory=dict)
    shutdown_reason: Optional[str] = None
    failed: Optional[str] = None  # first child that exited non-zero on its own
    log_line: Optional[Callable[[str, str], None]] = None  # extra hook: (name, line) for every output line

    def __post_init__(self):
        self._selector = selectors.DefaultSelector()
        names = [s.name for s in self.specs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"launch has several processes named {duplicates}; give each node a unique name")

    def start(self, names: Optional[Sequence[str]] = None) -> None:
        """Starts the named processes (default: all) that are not started yet, in launch-file order."""
        known = [s.name for s in self.specs]
        unknown = sorted(set(names or ()) - set(known))
        if unknown:
            raise ValueError(f"no processes named {unknown} in this launch (have {known})")
        for spec in self.specs:
            if spec.name in self.processes or (names is not None and spec.name not in names):
                continue
            env = dict(self.base_env)
            env.update(spec.env)
            env.setdefault("PYTHONUNBUFFERED", "1")
            popen = subprocess.Popen(spec.cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, preexec_fn=_child_setup)
            os.set_blocking(popen.stdout.fileno(), False)
            self.processes[spec.name] = RunningProcess(spec, popen)
            self._selector.register(popen.stdout, selectors.EVENT_READ, spec.name)
            self._emit("launch", f"process started: {spec.name} (pid {popen.pid}): {' '.join(spec.cmd)}")

    @property
    def running(self) -> List[str]:
        return [n for n, p in self.processes.items() if p.returncode is None]

    def returncode(self, name: str) -> Optional[int]:
        return self.processes[name].returncode

    def step(self, timeout: float = 0.1) -> bool:
        """Pumps output for up to `timeout` s, reaps children, escalates stops. False once all have exited."""
        for key, _ in self._selector.select(timeout):
            self._read(key.fileobj, key.data)
        for name, proc in self.processes.items():
            if proc.returncode is None and proc.popen.poll() is not None:
                self._on_exit(name, proc)
        self._escalate()
        return bool(self.running)

    def run(self) -> int:
        while self.step(0.2):
            pass
        return self.exit_status()

    def exit_status(self) -> int:
        if self.failed is None:
            return 0
        code = self.processes[self.failed].returncode
        return code if code and code > 0 else 1

    def shutdown(self, reason: str) -> None:
        """Asks every running child to stop (SIGINT), once; escalation happens in step()."""
        if self.shutdown_reason is None:
            self.shutdown_reason = reason
            self._emit("launch", f"shutting down: {reason}")
        now = time.monotonic()
        for proc in self.processes.values():
            if proc.returncode is None and proc.stop_requested_at is None:
                proc.stop_requested_at = now
                self._signal(proc, signal.SIGINT)

    def kill_now(self) -> None:
        """SIGTERM to all running children right away (a second Ctrl-C)."""
        for proc in self.processes.values():
            if proc.returncode is None:
                proc.stop_requested_at = proc.stop_requested_at or time.monotonic()
                self._signal(proc, signal.SIGTERM)

    def wait_all(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while self.step(0.1):
            if time.monotonic() > deadline:
                return False
        return True

    def _on_exit(self, name: str, proc: RunningProcess) -> None:
        self._read(proc.popen.stdout, name, final=True)
        proc.returncode = proc.popen.returncode
        self._selector.unregister(proc.popen.stdout)
        proc.popen.stdout.close()
        asked = proc.stop_requested_at is not None
        self._emit("launch", f"process has finished: {name} (exit code {proc.returncode}"
                   f"{', after a stop request' if asked else ''})")
        if proc.returncode != 0 and not asked and self.failed is None:
            self.failed = name
        if proc.spec.required:
            self.shutdown(f"required process {name} exited")

    def _escalate(self) -> None:
        now = time.monotonic()
        for proc in self.processes.values():
            if proc.returncode is not None or proc.stop_requested_at is None:
                continue
            waited = now - proc.stop_requested_at
            if waited > 2 * self.grace_s:
                self._signal(proc, signal.SIGKILL)
            elif waited > self.grace_s:
                self._signal(proc, signal.SIGTERM)

    def _signal(self, proc: RunningProcess, sig: int) -> None:
        try:
            os.killpg(proc.popen.pid, sig)
        except ProcessLookupError:
            pass

    def _read(self, stream, name: str, final: bool = False) -> None:
        proc = self.processes[name]
        while True:
            try:
                chunk = stream.read(65536)
            except (BlockingIOError, ValueError):
                chunk = None
            if not chunk:
                break
            proc.buffer += chunk
        *lines, proc.buffer = proc.buffer.split(b"\n")
        if final and proc.buffer:
            lines.append(proc.buffer)
            proc.buffer = b""
        for line in lines:
            self._emit(name, line.decode("utf-8", errors="replace").rstrip("\r"))

    def _emit(self, name: str, line: str) -> None:
        self.out.write(f"[{name}] {line}\n")
        self.out.flush()
        if self.log_line is not None:
            self.log_line(name, line)
