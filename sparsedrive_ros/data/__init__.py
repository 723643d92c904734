"""ROS-free data layer: nuScenes reader, synthetic nuScenes world, model-input construction.

Main entry points:
  NuScenes(dataroot, version)                      13 tables, walks (scenes, key frames, 12 Hz camera streams)
  build_frame_inputs(nusc, sample) -> SampleInputs  SparseDrive's per-frame inputs (lidar2img, projection_mat, ...)
  build_ground_truth(nusc, sample) -> FrameGroundTruth
  load_images(paths) -> [N, H, W, 3] BGR uint8
  generate_dataset(out_dir, SyntheticConfig(...)) -> SyntheticDataset   (synthetic nuScenes dataroot)
  build_scene_plan(nusc, scene) -> ScenePlan; TopicNames               (what replays/bags publish)
"""
from sparsedrive_ros.data.images import ImageLoadError, load_image, load_images
from sparsedrive_ros.data.nuscenes import (
    CAMERA_ORDER,
    DETECTION_CLASSES,
    FrameGroundTruth,
    NuScenes,
    SampleInputs,
    build_frame_inputs,
    build_ground_truth,
)
from sparsedrive_ros.data.replay_plan import ScenePlan, TopicNames, build_scene_plan
from sparsedrive_ros.data.synthetic import SyntheticConfig, SyntheticDataset, generate_dataset

__all__ = [
    "CAMERA_ORDER", "DETECTION_CLASSES", "FrameGroundTruth", "SampleInputs", "ImageLoadError", "NuScenes",
    "ScenePlan", "SyntheticConfig", "SyntheticDataset", "TopicNames", "build_frame_inputs", "build_ground_truth",
    "build_scene_plan", "generate_dataset", "load_image", "load_images",
]
