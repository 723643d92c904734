"""ROS-free rendering of SparseDrive outputs (numpy + OpenCV): bird's-eye view and camera overlays.

The renderers take plain containers (scene.py); messages.py converts this package's output messages (rclpy or
rosbags objects alike) into them, and frame.py composes one PNG per model frame.
"""
from .bev import BevView, render_bev
from .camera import camera_mosaic, project, render_camera_overlay
from .scene import Boxes, CameraView, FrameOutputs, MapElements, ObjectForecast, Plan

__all__ = ["BevView", "Boxes", "CameraView", "FrameOutputs", "MapElements", "ObjectForecast", "Plan",
           "camera_mosaic", "project", "render_bev", "render_camera_overlay"]
