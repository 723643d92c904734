"""rclpy nodes (ROS I/O only). The only tier that imports rclpy."""
