"""The input frames the benchmark feeds: a real photo at the requested size.

Cost after inference depends on what the model finds (decoding, NMS, message
size), so the frames hold a real face rather than noise.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from dl_vision import assets
from dl_vision.errors import AssetError, ConfigError

#: scikit-image's astronaut: one face and one person, 512x512 RGB.
DEFAULT_SAMPLE = "astronaut"


def parse_size(text: str) -> Tuple[int, int]:
    """``"640x480"`` -> ``(640, 480)`` (width, height in pixels).

    Raises:
        ConfigError: not two positive integers joined by ``x``.
    """
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ConfigError("image size: expected WIDTHxHEIGHT such as 640x480, found %r" % text) from None
    if width <= 0 or height <= 0:
        raise ConfigError("image size: expected positive width and height, found %r" % text)
    return width, height


def sample_frame(width: int, height: int, sample: str = DEFAULT_SAMPLE) -> np.ndarray:
    """The sample photo scaled to ``width`` x ``height``.

    The photo is centred on a mid-grey canvas at the largest scale that fits, so
    the face keeps its shape at every aspect ratio, as a camera would see it.

    Returns:
        (height, width, 3) uint8 BGR image, C-contiguous.

    Raises:
        AssetError: the sample image cannot be fetched or read.
    """
    path = assets.fetch(sample)
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise AssetError("sample image %s: expected an image file OpenCV can read, found unreadable data" % path)
    scale = min(width / photo.shape[1], height / photo.shape[0])
    w, h = max(1, int(round(photo.shape[1] * scale))), max(1, int(round(photo.shape[0] * scale)))
    canvas = np.full((height, width, 3), 128, np.uint8)
    x0, y0 = (width - w) // 2, (height - h) // 2
    canvas[y0 : y0 + h, x0 : x0 + w] = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA)
    return canvas
