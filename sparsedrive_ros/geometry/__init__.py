"""ROS-free geometry: rigid transforms, quaternions, projection matrices, image resize/crop updates."""
