"""Orders and names that the whole package shares; every other module imports them from here.

The model's class indices, the order of its camera axis and the names of the map classes are fixed by the
official checkpoints (docs/model-notes.md#orderings). This module imports nothing, so the model, the data
readers, the metrics, the renderers and the ROS node can all use it.
"""

__all__ = ["CAMERA_ORDER", "DETECTION_CLASSES", "LIDAR_CHANNEL", "MAP_CLASSES"]

# The camera axis of every per-camera tensor. Index 0 must be the front camera: the ego feature is pooled from
# its coarsest feature map.
CAMERA_ORDER = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")

# The reference sensor whose frame the model works in (docs/model-notes.md#frames).
LIDAR_CHANNEL = "LIDAR_TOP"

# Detection class index -> name, the order of the classification logits.
DETECTION_CLASSES = (
    "car", "truck", "construction_vehicle", "bus", "trailer",
    "barrier", "motorcycle", "bicycle", "pedestrian", "traffic_cone",
)

# Map class index -> name, the order of the map head's logits.
MAP_CLASSES = ("ped_crossing", "divider", "boundary")
