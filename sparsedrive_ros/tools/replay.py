"""Replay a nuScenes dataroot (default: a freshly generated synthetic scene) as ROS 2 topics.

    python -m sparsedrive_ros.tools.replay [--dataroot DIR] [--scene NAME] [--rate 0.5] [--loop] [--raw]

Options map to the node's ROS parameters (sparsedrive_ros.ros.replay_node.PARAMETERS); ``--ros-args ...`` is
passed through to rclpy.
"""
from __future__ import annotations

import argparse
import sys

from rclpy.parameter import Parameter

from sparsedrive_ros.ros.replay_node import main as node_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    own = argv[:len(argv) - len(ros_args)]
    p = argparse.ArgumentParser(prog="python -m sparsedrive_ros.tools.replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataroot", default="", help="nuScenes dataroot (default: generate a synthetic scene)")
    p.add_argument("--version", default="v1.0-mini")
    p.add_argument("--scene", action="append", default=[], help="scene name (repeatable); default: all")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--raw", action="store_true", help="publish sensor_msgs/Image bgr8 on /CAM_*/image_rect")
    p.add_argument("--no-clock", action="store_true")
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, help="max seconds to wait for subscribers")
    p.add_argument("--seconds", type=float, default=2.0, help="synthetic scene length")
    p.add_argument("--seed", type=int, default=0, help="synthetic scene seed")
    p.add_argument("--width", type=int, default=1600, help="synthetic image width")
    p.add_argument("--height", type=int, default=900, help="synthetic image height")
    a = p.parse_args(own)
    overrides = [
        Parameter("dataroot", value=a.dataroot), Parameter("version", value=a.version),
        Parameter("scene", value=",".join(a.scene)), Parameter("rate", value=float(a.rate)),
        Parameter("loop", value=a.loop), Parameter("image_transport", value="raw" if a.raw else "compressed"),
        Parameter("publish_clock", value=not a.no_clock), Parameter("start_delay", value=float(a.start_delay)),
        Parameter("wait_for_subscribers", value=float(a.wait_for_subscribers)),
        Parameter("synthetic_seconds", value=float(a.seconds)), Parameter("synthetic_seed", value=a.seed),
        Parameter("synthetic_width", value=a.width), Parameter("synthetic_height", value=a.height),
    ]
    return node_main(args=[sys.argv[0], *ros_args], parameter_overrides=overrides)


if __name__ == "__main__":
    raise SystemExit(main())
