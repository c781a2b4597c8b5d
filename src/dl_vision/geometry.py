"""Box geometry: the map between input-image and model-input pixels, IoU, box formats.

Pre-processing resizes (optionally letterboxes) the image to the model's input
size; :class:`ImageTransform` records that affine map so decoders can put boxes,
keypoints and masks back into input-image pixels exactly. Boxes are ``xyxy``
(see :mod:`dl_vision.structures`) unless a function says otherwise.
"""

from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

import cv2
import numpy as np

from dl_vision.errors import ConfigError


@dataclasses.dataclass
class ImageTransform:
    """Axis-aligned scale-and-pad from the input image to the model input.

    ``x_model = x_image * scale_x + pad_x`` (and likewise for y), in pixels.

    Attributes:
        image_size: (height, width) of the input image.
        input_size: (height, width) of the model input.
        scale: (scale_x, scale_y).
        pad: (pad_x, pad_y) offset of the image inside the model input, pixels.
    """

    image_size: Tuple[int, int]
    input_size: Tuple[int, int]
    scale: Tuple[float, float]
    pad: Tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.input_size = (int(self.input_size[0]), int(self.input_size[1]))
        self.scale = (float(self.scale[0]), float(self.scale[1]))
        self.pad = (float(self.pad[0]), float(self.pad[1]))

    @classmethod
    def stretch(cls, image_size: Tuple[int, int], input_size: Tuple[int, int]) -> "ImageTransform":
        """Plain resize to ``input_size`` (aspect ratio not kept)."""
        (ih, iw), (mh, mw) = image_size, input_size
        return cls(image_size, input_size, (mw / iw, mh / ih))

    @classmethod
    def letterbox(cls, image_size: Tuple[int, int], input_size: Tuple[int, int]) -> "ImageTransform":
        """Uniform scale that fits the image inside ``input_size``, centred, padding the rest."""
        (ih, iw), (mh, mw) = image_size, input_size
        s = min(mw / iw, mh / ih)
        new_w, new_h = int(round(iw * s)), int(round(ih * s))
        # Scale per axis from the rounded size so the content edges map exactly.
        return cls(image_size, input_size, (new_w / iw, new_h / ih), ((mw - new_w) / 2.0, (mh - new_h) / 2.0))

    @property
    def content_box(self) -> Tuple[int, int, int, int]:
        """Integer (x0, y0, x1, y1) of the image content inside the model input."""
        x0, y0 = int(round(self.pad[0])), int(round(self.pad[1]))
        x1 = x0 + int(round(self.image_size[1] * self.scale[0]))
        y1 = y0 + int(round(self.image_size[0] * self.scale[1]))
        return x0, y0, x1, y1

    def apply(self, image: np.ndarray, pad_value: int = 0) -> np.ndarray:
        """Resize (and pad) ``image`` (H, W[, C]) to the model input size."""
        x0, y0, x1, y1 = self.content_box
        mh, mw = self.input_size
        resized = cv2.resize(image, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        if (x0, y0, x1, y1) == (0, 0, mw, mh):
            return resized
        out = np.full((mh, mw) + image.shape[2:], pad_value, dtype=image.dtype)
        out[y0:y1, x0:x1] = resized
        return out

    def points_to_image(self, xy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map (..., 2) model-input pixel points to input-image pixels."""
        # One float32 op per step over both axes (np.clip's Python wrapper costs more than the maths).
        pad, scale, size = np.array((self.pad, self.scale, self.image_size[::-1]), dtype=np.float32)
        out = np.subtract(np.asarray(xy, dtype=np.float32), pad)
        np.divide(out, scale, out=out)
        if clip:
            np.maximum(out, 0, out=out)
            np.minimum(out, size, out=out)
        return out

    def boxes_to_image(self, xyxy: np.ndarray, clip: bool = True) -> np.ndarray:
        """Map (N, 4) model-input pixel boxes to input-image pixels."""
        xyxy = np.asarray(xyxy, dtype=np.float32).reshape(-1, 4)
        return self.points_to_image(xyxy.reshape(-1, 2, 2), clip).reshape(-1, 4)

    def map_to_image(self, values: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Crop the content area of a model-input-aligned map (h, w[, C]) and resize it to the image.

        ``values`` may have any resolution proportional to the model input (e.g. a
        160x160 mask from a 640x640 model); the content box is scaled to match.
        """
        h, w = values.shape[:2]
        fy, fx = h / self.input_size[0], w / self.input_size[1]
        x0, y0, x1, y1 = self.content_box
        crop = values[int(round(y0 * fy)) : int(round(y1 * fy)), int(round(x0 * fx)) : int(round(x1 * fx))]
        ih, iw = self.image_size
        if crop.dtype == bool:
            return cv2.resize(crop.astype(np.uint8), (iw, ih), interpolation=cv2.INTER_NEAREST).astype(bool)
        return cv2.resize(crop, (iw, ih), interpolation=interpolation)


def as_boxes(name: str, boxes: np.ndarray, dtype: Optional[type] = None) -> np.ndarray:
    """``boxes`` as an (N, 4) array (of ``dtype`` when given); an empty input becomes (0, 4).

    Raises:
        ConfigError: the boxes are not (N, 4); the message starts with ``name``.
    """
    boxes = np.asarray(boxes, dtype=dtype)
    if boxes.size == 0:
        return boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ConfigError("%s: expected boxes of shape (N, 4), found %s" % (name, boxes.shape))
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: (N, 4) ``x_min, y_min, x_max, y_max`` boxes.
        b: (M, 4) boxes in the same frame as ``a``.

    Returns:
        (N, M) IoU in [0, 1], float32 for float32 boxes, else float64; 0 where the union is
        empty (two empty boxes do not overlap). Inverted boxes count as empty.

    Raises:
        ConfigError: an argument is not (N, 4).
    """
    a, b = as_boxes("box_iou a", a), as_boxes("box_iou b", b)
    dtype = np.result_type(a.dtype, b.dtype, np.float32)
    a, b = a.astype(dtype, copy=False), b.astype(dtype, copy=False)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    np.maximum(iw, 0, out=iw)
    np.maximum(ih, 0, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    union = _areas(a)[:, None] + _areas(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _areas(xyxy: np.ndarray) -> np.ndarray:
    wh = xyxy[:, 2:] - xyxy[:, :2]
    np.maximum(wh, 0, out=wh)
    return wh[:, 0] * wh[:, 1]


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) ``x_min, y_min, x_max, y_max`` -> COCO's ``x, y, width, height``, float64."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) COCO ``x, y, width, height`` -> ``x_min, y_min, x_max, y_max``, float64."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)
