"""Images from an image folder or a rosbag's image topic, for calibration and agreement checks.

Both commands that need "some representative frames" (``build_engine --calibration/--check``,
``evaluate agreement``) take either, so a robot's own recording serves as well as a folder of
photos. Bags are read with rosbags (no ROS master); frames come out as BGR uint8 in file-name or
bag order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Optional, Tuple, Union

import cv2
import numpy as np

from dl_vision.errors import EvaluationError

#: File suffixes read from a folder (what OpenCV decodes everywhere).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEFAULT_TOPIC = "/camera/image_raw"


def iter_image_folder(folder: Path, limit: Optional[int] = None) -> Iterator[Tuple[str, np.ndarray]]:
    """``(file name, (H, W, 3) uint8 BGR image)`` for the images of a folder, sorted by name.

    Raises:
        EvaluationError: the folder holds no image, or a file does not decode.
    """
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise EvaluationError("images: expected %s files in %s, found none" % ("/".join(IMAGE_SUFFIXES), folder))
    for file in files[:limit]:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise EvaluationError("images: expected an image OpenCV decodes, found %s" % file)
        yield file.name, image


def iter_images(
    source: Union[str, Path], topic: str = DEFAULT_TOPIC, limit: Optional[int] = None
) -> Iterator[Tuple[str, np.ndarray]]:
    """``(name, (H, W, 3) uint8 BGR image)`` for each frame of a folder or a ``.bag``.

    Args:
        source: a folder of images (sorted by file name) or a ROS 1 bag.
        topic: the bag's ``sensor_msgs/Image`` or ``CompressedImage`` topic (bags only).
        limit: stop after this many frames (None: all).

    Raises:
        EvaluationError: the source is missing, holds no image, or a file does not decode.
    """
    path = Path(source)
    if limit is not None and limit < 1:
        raise EvaluationError("images: expected a positive frame limit, found %r" % (limit,))
    if path.is_dir():
        yield from iter_image_folder(path, limit)
    elif path.is_file() and path.suffix == ".bag":
        from dl_vision.evaluation.bag_io import BagReader

        with BagReader(path) as reader:
            for count, frame in enumerate(reader.frames(topic)):
                if limit is not None and count >= limit:
                    break
                yield "%s#%d" % (topic, frame.index), frame.image()
    else:
        raise EvaluationError("images: expected an image folder or a .bag file, found %s" % path)
