"""ROS-free SparseDrive network (pure PyTorch). Nothing under this package may import rclpy."""
