"""Drawing results on images: boxes with names and scores, keypoints, masks, class maps.

Kept apart from the data types: :class:`~dl_vision.structures.Detections` and
:class:`~dl_vision.structures.Segmentation` know nothing of colours. Every
function returns a new image and leaves its input untouched.
"""

from __future__ import annotations

from typing import Tuple

import cv2
import numpy as np

from dl_vision.errors import ImageConversionError
from dl_vision.preprocess import as_bgr_image
from dl_vision.structures import Detections, Segmentation, class_name

Color = Tuple[int, int, int]


def class_color(class_id: int) -> Color:
    """A stable, distinct BGR colour for a class id (golden-ratio hue steps, full saturation)."""
    hue = int((class_id * 0.61803398875 % 1.0) * 180)
    hsv = np.array([[[hue, 200, 255]]], dtype=np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def _palette(size: int = 256) -> np.ndarray:
    """(size, 3) uint8 BGR colours; class 0 (background) is black."""
    colors = np.array([class_color(i) for i in range(size)], dtype=np.uint8)
    colors[0] = 0
    return colors


_PALETTE = _palette()


def draw_detections(
    image_bgr: np.ndarray,
    detections: Detections,
    mask_alpha: float = 0.4,
    thickness: int = 0,
) -> np.ndarray:
    """Draw boxes labelled ``name score``, keypoints and instance masks.

    Args:
        image_bgr: (H, W, 3) uint8 BGR (BGRA and mono are converted).
        detections: results in this image's pixels.
        mask_alpha: opacity of instance masks, 0..1.
        thickness: box line width in pixels; 0 picks one from the image size.

    Returns:
        A new (H, W, 3) uint8 BGR image.

    Raises:
        ImageConversionError: the image is not uint8 mono/BGR/BGRA, or masks do not match its size.
    """
    out = as_bgr_image(image_bgr).copy()
    height, width = out.shape[:2]
    line = thickness or max(1, int(round(min(height, width) / 240)))
    if detections.masks is not None and len(detections):
        if detections.masks.shape[1:] != (height, width):
            raise ImageConversionError(
                "draw_detections: expected masks of the image size %s, found %s"
                % ((height, width), detections.masks.shape[1:])
            )
        overlay = out.copy()
        for mask, class_id in zip(detections.masks, detections.class_id.tolist()):
            overlay[mask] = class_color(class_id)
        out = cv2.addWeighted(overlay, mask_alpha, out, 1.0 - mask_alpha, 0.0)
    font_scale = max(0.4, min(height, width) / 800.0)
    for i in range(len(detections)):
        color = class_color(int(detections.class_id[i]))
        x0, y0, x1, y1 = (int(round(float(v))) for v in detections.xyxy[i])
        cv2.rectangle(out, (x0, y0), (x1, y1), color, line)
        if detections.keypoints is not None:
            for x, y in detections.keypoints[i]:
                cv2.circle(out, (int(round(float(x))), int(round(float(y)))), line + 1, color, -1, cv2.LINE_AA)
        text = "%s %.2f" % (class_name(detections.labels, int(detections.class_id[i])), float(detections.score[i]))
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        # Label above the box, or inside it when the box touches the top edge.
        ty = y0 - baseline - 2 if y0 - th - baseline - 2 >= 0 else y0 + th + 2
        cv2.rectangle(out, (x0, ty - th - 2), (x0 + tw + 2, ty + baseline), color, -1)
        cv2.putText(out, text, (x0 + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def colorize_segmentation(segmentation: Segmentation) -> np.ndarray:
    """A colour image of a class map: background black, each class its :func:`class_color`.

    Returns:
        (H, W, 3) uint8 BGR.
    """
    return _PALETTE[segmentation.class_map]


def overlay_segmentation(image_bgr: np.ndarray, segmentation: Segmentation, alpha: float = 0.5) -> np.ndarray:
    """Blend the class colours over the image; background pixels stay as they are.

    Args:
        image_bgr: (H, W, 3) uint8 BGR (BGRA and mono are converted).
        segmentation: a class map of the same (H, W).
        alpha: opacity of the class colours, 0..1.

    Returns:
        A new (H, W, 3) uint8 BGR image.

    Raises:
        ImageConversionError: the image and the class map differ in size.
    """
    out = as_bgr_image(image_bgr).copy()
    if segmentation.class_map.shape != out.shape[:2]:
        raise ImageConversionError(
            "overlay_segmentation: expected a class map of the image size %s, found %s"
            % (out.shape[:2], segmentation.class_map.shape)
        )
    foreground = segmentation.class_map != 0
    blended = cv2.addWeighted(colorize_segmentation(segmentation), alpha, out, 1.0 - alpha, 0.0)
    out[foreground] = blended[foreground]
    return out
