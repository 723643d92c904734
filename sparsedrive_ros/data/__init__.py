"""ROS-free data layer: nuScenes reader, synthetic nuScenes world, model-input construction."""
