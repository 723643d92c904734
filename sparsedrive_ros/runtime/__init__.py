"""ROS-free runtime around the model: camera synchronisation, a TF buffer, and the streaming pipeline that the
ROS node drives (images + calibration in, typed results out). Nothing here imports rclpy."""
