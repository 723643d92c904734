"""Helpers for tests that talk to other processes over ROS 2 (bounded waits, no sleeps-and-hope)."""
import time
from typing import Callable

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node


def spin_until(node: Node, done: Callable[[], bool], timeout: float, executor=None) -> bool:
    """Spin `node` until `done()` is true or `timeout` seconds pass. Returns done()."""
    own = executor is None
    if own:
        executor = SingleThreadedExecutor(context=node.context)
        executor.add_node(node)
    deadline = time.monotonic() + timeout
    try:
        while not done() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
    finally:
        if own:
            executor.remove_node(node)
            executor.shutdown()
    return done()


class RosContext:
    """A private rclpy context for one test: `with RosContext() as ctx: node = rclpy.create_node(.., context=ctx)`."""

    def __enter__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        return self.context

    def __exit__(self, *exc):
        self.context.try_shutdown()
        return False
