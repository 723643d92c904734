"""ROS-free training and evaluation: targets, losses, trainer, metrics."""
