"""Camera image loading (OpenCV, BGR uint8), with errors that name the file."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray


class ImageLoadError(ValueError):
    """A camera image is missing, unreadable or not a decodable image."""


def load_image(path: str | Path) -> NDArray[np.uint8]:
    """Read one image as [H, W, 3] BGR uint8 (the original loads with OpenCV, BGR)."""
    file = Path(path)
    if not file.is_file():
        raise ImageLoadError(f"camera image {str(file)!r} does not exist")
    raw = np.fromfile(file, dtype=np.uint8)
    if raw.size == 0:
        raise ImageLoadError(f"camera image {str(file)!r} is empty")
    image = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageLoadError(f"camera image {str(file)!r} is corrupt or not an image ({raw.size} bytes)")
    return np.asarray(image, dtype=np.uint8)


def load_images(paths: list[str] | tuple[str, ...]) -> NDArray[np.uint8]:
    """Read images of equal size -> [N_cam, H, W, 3] BGR uint8."""
    images = [load_image(p) for p in paths]
    shapes = {im.shape for im in images}
    if len(shapes) != 1:
        raise ImageLoadError(f"camera images differ in size: {sorted(shapes)}")
    return np.stack(images)
