"""Play a rosbag2 (cameras, camera_info, TF) through the SparseDrive node with sim time.

    ros2 launch sparsedrive_ros bag_replay.launch.py bag:=/data/nuscenes_scene-0061 rate:=0.2 record:=true

The bag is played by this package's bag_player (rosbags + rclpy; works where `ros2 bag` is not installed) with
/clock published, so the node stamps and looks up TF in the bag's time.
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
            DeclareLaunchArgument("bag", description="rosbag2 directory (MCAP or SQLite3) to play"),
            DeclareLaunchArgument("rate", default_value="1.0", description="playback speed, 1.0 = recorded speed"),
            DeclareLaunchArgument(
                "loop",
                default_value="false",
                choices=["true", "false"],
                description="start again at the end (the node resets its temporal state)",
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
                description="nodes follow the player's /clock",
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
                executable="bag_player",
                name="bag_player",
                output="screen",
                parameters=[
                    {
                        "bag": ParameterValue(arg("bag"), value_type=str),
                        "rate": ParameterValue(arg("rate"), value_type=float),
                        "loop": ParameterValue(arg("loop"), value_type=bool),
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
