"""Replay a nuScenes dataroot (or a freshly generated synthetic scene) through the SparseDrive node.

    ros2 launch sparsedrive_ros nuscenes_replay.launch.py dataroot:=/data/nuscenes rviz:=true
    python -m sparsedrive_ros.tools.launch sparsedrive_ros nuscenes_replay.launch.py record:=true out_dir:=/tmp/rec

Written for the real ROS 2 launch API; without it, sparsedrive_ros.launch_runner runs this file unchanged.
The replay publishes /clock, so every other node runs on sim time (use_sim_time:=true). The model is trained on
2 Hz key frames and takes seconds per frame on a CPU: lower `rate` so that the node keeps up.
"""
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    share = FindPackageShare("sparsedrive_ros")
    arg = LaunchConfiguration
    use_sim_time = ParameterValue(arg("use_sim_time"), value_type=bool)
    # The plain and the lifecycle node take the same parameters; the `lifecycle` argument picks which one starts.
    node_params = {
        "device": ParameterValue(arg("device"), value_type=str),
        "checkpoint": ParameterValue(arg("checkpoint"), value_type=str),
        "use_sim_time": use_sim_time,
    }
    return LaunchDescription(
        [
            DeclareLaunchArgument(
                "dataroot",
                default_value="",
                description="nuScenes dataroot; empty: the replay generates a synthetic scene",
            ),
            DeclareLaunchArgument("version", default_value="v1.0-mini", description="nuScenes version folder"),
            DeclareLaunchArgument("scene", default_value="", description="scene name to replay; empty: every scene"),
            DeclareLaunchArgument(
                "rate",
                default_value="1.0",
                description="replay speed, 1.0 = real time (0.1 gives the CPU model 5 s per key frame)",
            ),
            DeclareLaunchArgument(
                "loop",
                default_value="false",
                choices=["true", "false"],
                description="start again after the last scene (the node resets its temporal state)",
            ),
            DeclareLaunchArgument(
                "synthetic_seconds",
                default_value="2.0",
                description="length of the synthetic scene generated when dataroot is empty",
            ),
            DeclareLaunchArgument(
                "wait_for_subscribers",
                default_value="0.0",
                description="s the replay waits (at most) for every image topic to have a subscriber",
            ),
            DeclareLaunchArgument(
                "start_delay",
                default_value="0.0",
                description="s the replay waits before its first message (after wait_for_subscribers)",
            ),
            DeclareLaunchArgument(
                "device", default_value="cpu", description="torch device of the model: cpu, cuda, cuda:1"
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="SparseDrive weights (.pth, .pt or .safetensors); empty: the bundled demo model "
                "(synthetic world only); random: seeded random weights",
            ),
            DeclareLaunchArgument(
                "lifecycle",
                default_value="false",
                choices=["true", "false"],
                description="start the managed (lifecycle) node instead of the plain one",
            ),
            DeclareLaunchArgument(
                "autostart",
                default_value="true",
                choices=["true", "false"],
                description="lifecycle node: configure and activate by itself (false: a lifecycle "
                "manager or `ros2 lifecycle set` drives it)",
            ),
            DeclareLaunchArgument(
                "params_file",
                default_value=PathJoinSubstitution([share, "config", "sparsedrive.param.yaml"]),
                description="parameters of the sparsedrive node",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="true",
                choices=["true", "false"],
                description="nodes follow the replay's /clock",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                choices=["true", "false"],
                description="start RViz with config/sparsedrive.rviz",
            ),
            DeclareLaunchArgument(
                "record",
                default_value="false",
                choices=["true", "false"],
                description="record the outputs to an MCAP bag and render PNG frames",
            ),
            DeclareLaunchArgument(
                "out_dir", default_value="sparsedrive_record", description="where the recorder writes bag/ and frames/"
            ),
            Node(
                package="sparsedrive_ros",
                executable="nuscenes_replay",
                name="nuscenes_replay",
                output="screen",
                parameters=[
                    {
                        "dataroot": ParameterValue(arg("dataroot"), value_type=str),
                        "version": ParameterValue(arg("version"), value_type=str),
                        "scene": ParameterValue(arg("scene"), value_type=str),
                        "rate": ParameterValue(arg("rate"), value_type=float),
                        "loop": ParameterValue(arg("loop"), value_type=bool),
                        "synthetic_seconds": ParameterValue(arg("synthetic_seconds"), value_type=float),
                        "wait_for_subscribers": ParameterValue(arg("wait_for_subscribers"), value_type=float),
                        "start_delay": ParameterValue(arg("start_delay"), value_type=float),
                    }
                ],
            ),
            Node(
                package="sparsedrive_ros",
                executable="sparsedrive_node",
                name="sparsedrive",
                output="screen",
                parameters=[arg("params_file"), node_params],
                on_exit=Shutdown(reason="the sparsedrive node exited"),
                condition=UnlessCondition(arg("lifecycle")),
            ),
            Node(
                package="sparsedrive_ros",
                executable="sparsedrive_lifecycle_node",
                name="sparsedrive",
                output="screen",
                parameters=[
                    arg("params_file"),
                    {**node_params, "autostart": ParameterValue(arg("autostart"), value_type=bool)},
                ],
                on_exit=Shutdown(reason="the sparsedrive node exited"),
                condition=IfCondition(arg("lifecycle")),
            ),
            Node(
                package="sparsedrive_ros",
                executable="sparsedrive_recorder",
                name="sparsedrive_recorder",
                output="screen",
                condition=IfCondition(arg("record")),
                parameters=[
                    {
                        "out_dir": ParameterValue(arg("out_dir"), value_type=str),
                        # annotations drawn beside the outputs (empty dataroot: the replay's own synthetic scene
                        # lives in a temporary folder and is not drawn)
                        "dataroot": ParameterValue(arg("dataroot"), value_type=str),
                        "version": ParameterValue(arg("version"), value_type=str),
                        "use_sim_time": use_sim_time,
                    }
                ],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                output="screen",
                condition=IfCondition(arg("rviz")),
                arguments=["-d", PathJoinSubstitution([share, "config", "sparsedrive.rviz"])],
                parameters=[{"use_sim_time": use_sim_time}],
            ),
        ]
    )
