"""Conversions between ROS messages and dl_vision values, without rospy or cv_bridge.

Raw images are decoded with numpy views that honour ``step`` (row padding) and
are checked against ``len(data) == step * height`` before any pixel is read, so
a malformed message raises :class:`~dl_vision.errors.ImageConversionError` with
one line saying what was wrong instead of crashing a node. Every image returned
is a contiguous HxWx3 uint8 BGR array, owned unless asked for a view.
"""

from __future__ import annotations

import math
from typing import Dict, List, Mapping, Optional, Tuple

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dl_vision.errors import ImageConversionError
from dl_vision.msg import Detection, DetectionArray, LabelTable
from dl_vision.structures import Detections, Segmentation

#: encoding -> (channels, bytes per channel, cv2 conversion to BGR or None).
_RAW_ENCODINGS: Dict[str, Tuple[int, int, Optional[int]]] = {
    "bgr8": (3, 1, None),
    "8UC3": (3, 1, None),
    "rgb8": (3, 1, cv2.COLOR_RGB2BGR),
    "bgra8": (4, 1, cv2.COLOR_BGRA2BGR),
    "8UC4": (4, 1, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, 1, cv2.COLOR_RGBA2BGR),
    "mono8": (1, 1, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, 1, cv2.COLOR_GRAY2BGR),
    "mono16": (1, 2, cv2.COLOR_GRAY2BGR),
}

#: The raw encodings :func:`image_to_bgr` accepts.
SUPPORTED_ENCODINGS = tuple(sorted(_RAW_ENCODINGS))


def _byte_buffer(data) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` (bytes from the wire, or a list built in Python)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_bgr(msg: Image, copy: bool = True) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into pixels.

    Args:
        msg: an image in one of :data:`SUPPORTED_ENCODINGS`; rows may be padded
            (``step`` larger than ``width * pixel size``). ``mono16`` is scaled
            to 8 bits by its high byte.
        copy: False returns a view of ``msg.data`` where no conversion is needed
            (``bgr8``/``8UC3`` without row padding): read-only when the data is
            ``bytes``, valid while the message lives. Saves a frame copy per image.

    Returns:
        (height, width, 3) uint8 BGR array (a copy unless ``copy`` is False; the message is untouched).

    Raises:
        ImageConversionError: unknown encoding, zero size, ``step`` shorter than
            a row, or ``len(data) != step * height``.
    """
    encoding = msg.encoding
    if encoding not in _RAW_ENCODINGS:
        raise ImageConversionError(
            "image encoding: expected one of %s, found %r" % (", ".join(SUPPORTED_ENCODINGS), encoding)
        )
    channels, depth, to_bgr = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError("image size: expected width and height > 0, found %dx%d" % (width, height))
    row_bytes = width * channels * depth
    if step < row_bytes:
        raise ImageConversionError(
            "image step: expected >= %d bytes (%d px of %s), found %d" % (row_bytes, width, encoding, step)
        )
    buffer = _byte_buffer(msg.data)
    if buffer.size != step * height:
        raise ImageConversionError(
            "image data: expected step*height = %d*%d = %d bytes, found %d" % (step, height, step * height, buffer.size)
        )
    rows = buffer.reshape(height, step)[:, :row_bytes]
    if depth == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = (np.ascontiguousarray(rows).view(dtype).reshape(height, width) >> 8).astype(np.uint8)
    else:
        pixels = rows.reshape(height, width, channels) if channels > 1 else rows
    if to_bgr is None:
        if not copy and step == row_bytes:
            return pixels
        return np.array(pixels, dtype=np.uint8, order="C", copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels), to_bgr)


def compressed_to_bgr(msg: CompressedImage) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, ...) into HxWx3 uint8 BGR.

    Raises:
        ImageConversionError: empty data, or data OpenCV cannot decode.
    """
    buffer = _byte_buffer(msg.data)
    if buffer.size == 0:
        raise ImageConversionError("compressed image: expected encoded bytes (%r), found none" % msg.format)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if image is None:
        raise ImageConversionError(
            "compressed image: expected a decodable %r image, found %d undecodable bytes"
            % (msg.format or "jpeg/png", buffer.size)
        )
    return image


def bgr_to_image_msg(image: np.ndarray, header: Optional[Header] = None) -> Image:
    """Wrap an (H, W, 3) uint8 BGR array as ``bgr8`` or an (H, W) uint8 array as ``mono8``."""
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageConversionError(
            "image array: expected (H, W, 3) or (H, W) uint8, found %s %s" % (image.shape, image.dtype)
        )
    channels = 1 if image.ndim == 2 else 3
    return Image(
        header=header if header is not None else Header(),
        height=image.shape[0],
        width=image.shape[1],
        encoding="mono8" if channels == 1 else "bgr8",
        is_bigendian=0,
        step=image.shape[1] * channels,
        data=image.tobytes(),
    )


def class_map_to_msg(segmentation: Segmentation, header: Optional[Header] = None) -> Image:
    """The class-id map as a ``mono8`` image (pixel value = class id) with ``header``."""
    return bgr_to_image_msg(segmentation.class_map, header)


def _mask_window(box: np.ndarray, width: int, height: int) -> Tuple[int, int, int, int]:
    """Integer pixel window ``x0, y0, x1, y1`` covering ``box``, clipped to the image."""
    x0 = min(max(int(math.floor(box[0])), 0), width)
    y0 = min(max(int(math.floor(box[1])), 0), height)
    x1 = min(max(int(math.ceil(box[2])), x0), width)
    y1 = min(max(int(math.ceil(box[3])), y0), height)
    return x0, y0, x1, y1


def detections_to_msg(detections: Detections, header: Header, width: int, height: int, model: str) -> DetectionArray:
    """Build the ``DetectionArray`` of one frame.

    Instance masks are cropped to the pixel window covering each box (mask
    pixels outside the box are dropped) and sent as ``mono8`` with 255 inside.

    Args:
        detections: results in input-image pixels.
        header: the input image's header, copied unchanged.
        width: input image width in pixels.
        height: input image height in pixels.
        model: name of the model spec.
    """
    out = DetectionArray(header=header, image_width=int(width), image_height=int(height), model=model)
    names = detections.class_names
    for i in range(len(detections)):
        box = detections.xyxy[i]
        det = Detection(class_id=int(detections.class_id[i]), class_name=names[i], score=float(detections.score[i]))
        det.x_min, det.y_min, det.x_max, det.y_max = (float(v) for v in box)
        if detections.keypoints is not None:
            det.keypoints = detections.keypoints[i].reshape(-1).tolist()
        if detections.masks is not None:
            mask_h, mask_w = detections.masks.shape[1:]
            x0, y0, x1, y1 = _mask_window(box, mask_w, mask_h)
            if x1 > x0 and y1 > y0:
                crop = detections.masks[i, y0:y1, x0:x1].astype(np.uint8) * 255
                det.mask = bgr_to_image_msg(crop, header)
                det.mask_x, det.mask_y = x0, y0
        out.detections.append(det)
    return out


def detections_from_msg(msg: DetectionArray, labels: Optional[Mapping[int, str]] = None) -> Detections:
    """Rebuild :class:`Detections` from a ``DetectionArray``.

    Args:
        msg: the message.
        labels: the model's label table (e.g. from the latched ``labels`` topic);
            names carried by the detections fill in the ids it lacks.

    Returns:
        Detections with full-image masks (image_height x image_width) when any
        detection carries a mask, and keypoints when every detection has the
        same non-zero number of them.
    """
    table: Dict[int, str] = dict(labels or {})
    for det in msg.detections:
        table.setdefault(int(det.class_id), det.class_name)
    count = len(msg.detections)
    if count == 0:
        return Detections.empty(table)
    xyxy = np.array([[d.x_min, d.y_min, d.x_max, d.y_max] for d in msg.detections], dtype=np.float32)
    score = np.array([d.score for d in msg.detections], dtype=np.float32)
    class_id = np.array([d.class_id for d in msg.detections], dtype=np.int32)
    keypoint_counts = {len(d.keypoints) for d in msg.detections}
    keypoints = None
    if len(keypoint_counts) == 1 and 0 not in keypoint_counts:
        keypoints = np.array([d.keypoints for d in msg.detections], dtype=np.float32).reshape(count, -1, 2)
    masks = None
    if any(d.mask.width > 0 for d in msg.detections):
        masks = np.zeros((count, msg.image_height, msg.image_width), dtype=bool)
        for i, det in enumerate(msg.detections):
            if det.mask.width > 0:
                crop = image_to_bgr(det.mask)[:, :, 0] > 127
                y0, x0 = int(det.mask_y), int(det.mask_x)
                window = masks[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
                window[...] = crop[: window.shape[0], : window.shape[1]]
    return Detections(xyxy, score, class_id, table, masks, keypoints)


def label_table_msg(labels: Mapping[int, str], model: str) -> LabelTable:
    """The model's ``{id: name}`` table as a ``LabelTable`` message, ids ascending."""
    ids: List[int] = sorted(int(k) for k in labels)
    return LabelTable(model=model, class_ids=ids, class_names=[str(labels[k]) for k in ids])
