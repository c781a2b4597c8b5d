"""Drawing results on images: boxes with names and scores, keypoints and skeletons, masks, class maps.

Kept apart from the data types: :class:`~dl_vision.structures.Detections` and
:class:`~dl_vision.structures.Segmentation` know nothing of colours. Every
function returns a new image and leaves its input untouched.
"""

from __future__ import annotations

from typing import List, Tuple

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


def instance_color(index: int) -> Color:
    """A BGR colour for the ``index``-th detection of an image, distinct from its neighbours' (masks, skeletons)."""
    return class_color(index * 7 + 3)  # another walk round the hue circle than the class colours'


#: Keypoints scoring below this are not drawn (nor the skeleton edges that touch them).
KEYPOINT_DRAW_THRESHOLD = 0.3

Rect = Tuple[int, int, int, int]


def draw_detections(
    image_bgr: np.ndarray,
    detections: Detections,
    mask_alpha: float = 0.4,
    thickness: int = 0,
    keypoint_threshold: float = KEYPOINT_DRAW_THRESHOLD,
) -> np.ndarray:
    """Draw boxes labelled ``name score`` (class colours), instance masks, keypoints and skeletons
    (a colour per instance).

    Labels never cover each other: the best-scored detection's label goes above its box (inside
    at the top edge), the others take the first free place of: above, inside at the top, further
    down inside the box, below it.

    Args:
        image_bgr: (H, W, 3) uint8 BGR (BGRA and mono are converted).
        detections: results in this image's pixels.
        mask_alpha: opacity of instance masks, 0..1.
        thickness: box line width in pixels; 0 picks one from the image size.
        keypoint_threshold: keypoints scoring below it are not drawn (nor their skeleton edges).

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
        for i, mask in enumerate(detections.masks):
            overlay[mask] = instance_color(i)
        out = cv2.addWeighted(overlay, mask_alpha, out, 1.0 - mask_alpha, 0.0)
    boxes = [tuple(int(round(float(v))) for v in box) for box in detections.xyxy]
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        cv2.rectangle(out, (x0, y0), (x1, y1), class_color(int(detections.class_id[i])), line)
    if detections.keypoints is not None:
        for i in np.flatnonzero(detections.has_keypoints):
            _draw_pose(out, detections, int(i), instance_color(int(i)), line, keypoint_threshold)
    font_scale = max(0.4, min(height, width) / 800.0)
    placed: List[Rect] = []
    for i in np.argsort(-detections.score, kind="stable"):
        color = class_color(int(detections.class_id[i]))
        text = "%s %.2f" % (class_name(detections.labels, int(detections.class_id[i])), float(detections.score[i]))
        (tw, th), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        x0, y0, x1, y1 = _label_rect(boxes[i], (tw + 2, th + baseline + 2), (width, height), placed)
        placed.append((x0, y0, x1, y1))
        cv2.rectangle(out, (x0, y0), (x1, y1), color, -1)
        cv2.putText(out, text, (x0 + 1, y1 - baseline), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def _draw_pose(out: np.ndarray, detections: Detections, i: int, color: Color, line: int, threshold: float) -> None:
    """Detection ``i``'s skeleton edges and keypoints whose scores reach ``threshold``."""
    points = detections.keypoints[i]
    scores = detections.keypoint_scores
    shown = np.isfinite(points).all(axis=1)
    if scores is not None:
        shown &= scores[i] >= threshold
    pixels = [(int(round(float(x))), int(round(float(y)))) if ok else None for (x, y), ok in zip(points, shown)]
    schema = detections.keypoint_schema
    for a, b in schema.skeleton if schema is not None else ():
        if pixels[a] is not None and pixels[b] is not None:
            cv2.line(out, pixels[a], pixels[b], color, line, cv2.LINE_AA)
    for pixel in pixels:
        if pixel is not None:
            cv2.circle(out, pixel, line + 1, color, -1, cv2.LINE_AA)


def _label_rect(box: Rect, size: Tuple[int, int], image_size: Tuple[int, int], placed: List[Rect]) -> Rect:
    """Where a label of ``size`` (w, h) goes for ``box``: the first place inside the image clear of ``placed``."""
    (x0, y0, _, y1), (w, h), (width, height) = box, size, image_size
    left = min(max(x0, 0), max(width - w, 0))
    tops = [y0 - h, y0] + list(range(y0 + h, y1 - h + 1, h)) + [y1]
    inside = [t for t in tops if 0 <= t <= height - h] or [min(max(y0, 0), max(height - h, 0))]
    for top in inside:
        rect = (left, top, left + w, top + h)
        if not any(_overlap(rect, other) for other in placed):
            return rect
    return (left, inside[0], left + w, inside[0] + h)


def _overlap(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


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
