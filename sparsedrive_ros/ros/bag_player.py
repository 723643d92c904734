"""A rosbag2 player for environments without ``ros2 bag``: rosbags reader -> rclpy publishers.

Forwards each message's raw CDR bytes unchanged (rclpy publishes serialized bytes on a publisher of the
generated type), at the recorded rate times ``rate``, publishes /clock with the bag time (for use_sim_time),
and offers TRANSIENT_LOCAL on /tf_static and on topics recorded with that durability, so late subscribers
(tf2 listeners) still get the static transforms. Message types must be importable (``<pkg>.msg``); topics of
missing types are skipped with a warning.

    ros2 run sparsedrive_ros bag_player --ros-args -p bag:=/data/scene-0061 -p rate:=0.5
    python -m sparsedrive_ros.tools.play_bag BAG [--rate 0.5] [--loop]
"""
from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import rclpy
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rosbags.interfaces import QosDurability
from rosbags.rosbag2 import Reader

from sparsedrive_ros.data.pacing import Pacer
from sparsedrive_ros.ros.replay_node import (
    LATCHED_QOS,
    SENSOR_QOS,
    TF_QOS,
    ClockPublisher,
    declare_parameters,
    run_until_done,
    wait_for_subscribers,
)

PARAMETERS: dict[str, tuple[Any, str]] = {
    "bag": ("", "rosbag2 directory (MCAP or SQLite3)"),
    "rate": (1.0, "playback speed factor, 1.0 = recorded speed"),
    "loop": (False, "start again at the end (bag time and /clock jump backwards)"),
    "passes": (0, "with loop: stop after this many passes through the bag (0 = loop forever)"),
    "topics": ([""], "topics to play; [''] = all"),
    "publish_clock": (True, "publish /clock with the bag time"),
    "clock_hz": (40.0, "/clock rate between messages"),
    "start_delay": (0.0, "seconds to wait before the first message"),
    "wait_for_subscribers": (0.0, "seconds to wait (at most) until every played topic has a subscriber"),
    "exit_when_done": (True, "shut down after the last message when not looping"),
}
LATCHED_TOPICS = ("/tf_static",)


def message_class(msgtype: str) -> type:
    """'sensor_msgs/msg/Image' -> sensor_msgs.msg.Image; ValueError naming the type when not importable."""
    parts = msgtype.split("/")
    if len(parts) != 3:
        raise ValueError(f"unexpected message type name {msgtype!r}")
    try:
        return getattr(importlib.import_module(f"{parts[0]}.{parts[1]}"), parts[2])
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"message type {msgtype!r} is not importable here ({exc})") from None


@dataclass(frozen=True)
class PlayerSettings:
    bag: Path
    rate: float
    loop: bool
    passes: int
    topics: tuple[str, ...]
    publish_clock: bool
    clock_hz: float
    start_delay: float
    wait_for_subscribers: float
    exit_when_done: bool

    @classmethod
    def from_values(cls, v: dict[str, Any]) -> "PlayerSettings":
        bag = Path(v["bag"])
        if not v["bag"] or not (bag / "metadata.yaml").is_file():
            raise ValueError(f"bag must be a rosbag2 directory with metadata.yaml, got {v['bag']!r}")
        if not v["rate"] > 0:
            raise ValueError(f"rate must be > 0, got {v['rate']}")
        return cls(bag, float(v["rate"]), bool(v["loop"]), int(v["passes"]), tuple(t for t in v["topics"] if t),
                   bool(v["publish_clock"]), float(v["clock_hz"]), float(v["start_delay"]),
                   float(v["wait_for_subscribers"]), bool(v["exit_when_done"]))


def _qos_for(topic: str, offered: list[Any]) -> QoSProfile:
    if topic in LATCHED_TOPICS or any(q.durability == QosDurability.TRANSIENT_LOCAL for q in offered):
        return LATCHED_QOS
    return TF_QOS if topic == "/tf" else SENSOR_QOS


class BagPlayer(Node):
    """Plays one bag from a background thread; raw CDR forwarded unchanged."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("bag_player", **kwargs)
        self.settings = PlayerSettings.from_values(declare_parameters(self, PARAMETERS))
        self.publishers_by_topic: dict[str, Any] = {}
        with Reader(self.settings.bag) as reader:
            for conn in reader.connections:
                if conn.topic in self.publishers_by_topic or (
                    self.settings.topics and conn.topic not in self.settings.topics
                ):
                    continue
                try:
                    cls = message_class(conn.msgtype)
                except ValueError as exc:
                    self.get_logger().warning(f"skipping {conn.topic}: {exc}")
                    continue
                qos = _qos_for(conn.topic, list(getattr(conn.ext, "offered_qos_profiles", [])))
                self.publishers_by_topic[conn.topic] = self.create_publisher(cls, conn.topic, qos)
            self.duration_s = reader.duration / 1e9
        self.clock = ClockPublisher(self) if self.settings.publish_clock else None
        self.stop = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.messages_published = 0
        self.pacer = Pacer(self.settings.rate, tick=self.clock, tick_hz=self.settings.clock_hz, stop=self.stop)
        self.get_logger().info(f"playing {self.settings.bag} ({self.duration_s:.2f} s, "
                               f"{len(self.publishers_by_topic)} topics) at rate {self.settings.rate}")
        self._thread = threading.Thread(target=self._run, name="bag_player", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        s = self.settings
        try:
            if s.wait_for_subscribers > 0:
                if not wait_for_subscribers(
                    self, list(self.publishers_by_topic.values()), s.wait_for_subscribers, self.stop
                ):
                    self.get_logger().warning("not every topic has a subscriber; starting anyway")
            if s.start_delay > 0:
                self.stop.wait(s.start_delay)
            passes = 0
            while not self.stop.is_set():
                self._play_once()
                passes += 1
                if not s.loop or (s.passes and passes >= s.passes):
                    break
        except BaseException as exc:  # surfaced by main(); the thread must not die silently
            if rclpy.ok(context=self.context) and not self.stop.is_set():
                self.error = exc
                self.get_logger().error(f"playback failed: {exc}")
            # else: Ctrl-C / shutdown invalidated the publishers mid-publish; a normal end
        finally:
            self.done.set()
            if rclpy.ok(context=self.context):
                self.get_logger().info(f"playback finished: {self.messages_published} messages, "
                                       f"max lateness {self.pacer.max_lateness_s * 1e3:.1f} ms")

    def _play_once(self) -> None:
        with Reader(self.settings.bag) as reader:
            conns = [c for c in reader.connections if c.topic in self.publishers_by_topic]
            first = True
            for conn, stamp_ns, raw in reader.messages(connections=conns):
                if first:
                    self.pacer.restart(stamp_ns)
                    first = False
                if not self.pacer.wait_until(stamp_ns):
                    return
                self.publishers_by_topic[conn.topic].publish(bytes(raw))
                self.messages_published += 1
            if self.clock is not None and not first:
                # Time runs on past the last message (see replay_node): consumers can finish their last frame.
                self.clock(stamp_ns + 1_000_000_000)

    def destroy_node(self) -> None:
        self.stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=2.0)
        super().destroy_node()


def main(args: list[str] | None = None, parameter_overrides: list[Any] | None = None) -> int:
    rclpy.init(args=args)
    try:
        return run_until_done(BagPlayer(parameter_overrides=parameter_overrides or []))
    finally:
        rclpy.try_shutdown()


if __name__ == "__main__":
    raise SystemExit(main())
