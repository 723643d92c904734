"""Play a rosbag2 (MCAP or SQLite3) over ROS 2 without ``ros2 bag``: raw CDR forwarded, /clock published.

    python -m sparsedrive_ros.tools.play_bag BAG [--rate 0.5] [--loop] [--topic /tf ...]
"""
from __future__ import annotations

import argparse
import sys

from rclpy.parameter import Parameter

from sparsedrive_ros.ros.bag_player import main as node_main


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args = argv[argv.index("--ros-args"):] if "--ros-args" in argv else []
    own = argv[:len(argv) - len(ros_args)]
    p = argparse.ArgumentParser(prog="python -m sparsedrive_ros.tools.play_bag", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bag")
    p.add_argument("--rate", type=float, default=1.0)
    p.add_argument("--loop", action="store_true")
    p.add_argument("--passes", type=int, default=0, help="with --loop: stop after N passes (0 = forever)")
    p.add_argument("--topic", action="append", default=[], help="topic to play (repeatable); default: all")
    p.add_argument("--no-clock", action="store_true")
    p.add_argument("--start-delay", type=float, default=0.0)
    p.add_argument("--wait-for-subscribers", type=float, default=0.0, help="max seconds to wait for subscribers")
    a = p.parse_args(own)
    overrides = [
        Parameter("bag", value=a.bag), Parameter("rate", value=float(a.rate)), Parameter("loop", value=a.loop),
        Parameter("passes", value=int(a.passes)),
        Parameter("topics", value=a.topic or [""]), Parameter("publish_clock", value=not a.no_clock),
        Parameter("start_delay", value=float(a.start_delay)),
        Parameter("wait_for_subscribers", value=float(a.wait_for_subscribers)),
    ]
    return node_main(args=[sys.argv[0], *ros_args], parameter_overrides=overrides)


if __name__ == "__main__":
    raise SystemExit(main())
