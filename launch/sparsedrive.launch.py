"""The SparseDrive node alone, on live cameras (or whatever publishes the camera topics and TF).

    ros2 launch sparsedrive_ros sparsedrive.launch.py device:=cuda checkpoint:=/models/sparsedrive_stage2.pth

Parameters come from config/sparsedrive.param.yaml (or params_file:=...); the arguments below override it.
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
                "device", default_value="cpu", description="torch device of the model: cpu, cuda, cuda:1"
            ),
            DeclareLaunchArgument(
                "checkpoint",
                default_value="",
                description="SparseDrive weights (.pth, .pt or .safetensors); empty: the bundled demo model "
                "(synthetic world only); random: seeded random weights",
            ),
            DeclareLaunchArgument(
                "use_sim_time",
                default_value="false",
                choices=["true", "false"],
                description="true when the cameras come from a bag played with --clock",
            ),
            DeclareLaunchArgument(
                "rviz",
                default_value="false",
                choices=["true", "false"],
                description="start RViz with config/sparsedrive.rviz",
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
