"""Conversions between ROS messages and dl_vision values, for live and recorded messages alike.

Reading works on any object with a message's fields: genpy messages (rospy, rosbag) and the
dataclasses of a ``rosbags`` typestore. Building takes a :class:`MessageTypes` saying which
family to build (genpy by default). No rospy, no cv_bridge, and no message package is imported
until genpy messages are built, so bags can be read and written without a built workspace.

Raw images are decoded with numpy views that honour ``step`` (row padding) and are checked
against ``len(data) == step * height`` before any pixel is read. A malformed message raises
:class:`~dl_vision.errors.ImageConversionError` with one line saying what was wrong.

Instance masks follow one rule (see ``msg/Detection.msg``): a ``mono8`` image placed at
``(mask_x, mask_y)`` that covers the mask's extent, 255 inside and 0 outside; readers count
values >= 128 as inside. A detection without a mask has a mask image of width 0.

Keypoints travel per detection as flat ``(x, y)`` pairs with one score each; a detection without
keypoints among others that have them (NaN in :class:`~dl_vision.structures.Detections`) has
none. Their names and skeleton travel in the model's latched ``LabelTable``.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from dl_vision.errors import ImageConversionError
from dl_vision.structures import Detections, KeypointSchema, Segmentation


class Encoding(NamedTuple):
    """How a raw ``sensor_msgs/Image`` encoding is stored and turned into BGR."""

    channels: int
    bytes_per_channel: int
    to_bgr: Optional[int]  # cv2 colour conversion, None when the pixels are BGR already


#: The raw encodings every reader accepts (16-bit ones are scaled to 8 bits by their high byte).
ENCODINGS: Dict[str, Encoding] = {
    "bgr8": Encoding(3, 1, None),
    "8UC3": Encoding(3, 1, None),
    "rgb8": Encoding(3, 1, cv2.COLOR_RGB2BGR),
    "bgra8": Encoding(4, 1, cv2.COLOR_BGRA2BGR),
    "8UC4": Encoding(4, 1, cv2.COLOR_BGRA2BGR),
    "rgba8": Encoding(4, 1, cv2.COLOR_RGBA2BGR),
    "mono8": Encoding(1, 1, cv2.COLOR_GRAY2BGR),
    "8UC1": Encoding(1, 1, cv2.COLOR_GRAY2BGR),
    "mono16": Encoding(1, 2, cv2.COLOR_GRAY2BGR),
    "16UC1": Encoding(1, 2, cv2.COLOR_GRAY2BGR),
}
#: Encodings of single-channel 8-bit images (class maps, instance masks).
MONO8_ENCODINGS = ("mono8", "8UC1")
#: Mask pixels at or above this value are inside the instance.
MASK_INSIDE = 128


# -- reading -------------------------------------------------------------------------------------
def stamp_to_ns(stamp: Any) -> int:
    """A ``time`` (genpy ``secs``/``nsecs`` or rosbags ``sec``/``nanosec``) in integer nanoseconds."""
    if hasattr(stamp, "secs"):
        return int(stamp.secs) * 1_000_000_000 + int(stamp.nsecs)
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _byte_buffer(data: Any) -> np.ndarray:
    """A flat uint8 view of a message's ``data`` (bytes from genpy, an array from rosbags, or a list)."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    return np.asarray(data, dtype=np.uint8).reshape(-1)


def _raw_rows(msg: Any, allowed: Mapping[str, Encoding], what: str) -> Tuple[np.ndarray, Encoding]:
    """The ``(height, row bytes)`` uint8 view of a raw image after checking size, step and data length."""
    encoding = msg.encoding
    if encoding not in allowed:
        raise ImageConversionError("%s encoding: expected one of %s, found %r" % (what, ", ".join(allowed), encoding))
    layout = allowed[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageConversionError("%s size: expected width and height > 0, found %dx%d" % (what, width, height))
    row_bytes = width * layout.channels * layout.bytes_per_channel
    if step < row_bytes:
        raise ImageConversionError(
            "%s step: expected >= %d bytes (%d px of %s), found %d" % (what, row_bytes, width, encoding, step)
        )
    buffer = _byte_buffer(msg.data)
    if buffer.size != step * height:
        raise ImageConversionError(
            "%s data: expected step*height = %d*%d = %d bytes, found %d"
            % (what, step, height, step * height, buffer.size)
        )
    return buffer.reshape(height, step)[:, :row_bytes], layout


def image_to_bgr(msg: Any, copy: bool = True) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` into BGR pixels.

    Args:
        msg: an image in one of :data:`ENCODINGS`; rows may be padded (``step`` larger than
            ``width * pixel size``).
        copy: False returns a view of ``msg.data`` where no conversion is needed (``bgr8``/``8UC3``
            without row padding): read-only when the data is ``bytes``, valid while the message
            lives. Saves a frame copy per image.

    Returns:
        (height, width, 3) uint8 BGR array (a copy unless ``copy`` is False).

    Raises:
        ImageConversionError: unknown encoding, zero size, ``step`` shorter than a row, or
            ``len(data) != step * height``.
    """
    rows, layout = _raw_rows(msg, ENCODINGS, "image")
    height, width = int(msg.height), int(msg.width)
    if layout.bytes_per_channel == 2:
        dtype = np.dtype(">u2" if msg.is_bigendian else "<u2")
        pixels = (np.ascontiguousarray(rows).view(dtype).reshape(height, width) >> 8).astype(np.uint8)
    elif layout.channels > 1:
        pixels = rows.reshape(height, width, layout.channels)
    else:
        pixels = rows
    if layout.to_bgr is None:
        if not copy and int(msg.step) == rows.shape[1]:
            return pixels
        return np.array(pixels, dtype=np.uint8, order="C", copy=True)
    return cv2.cvtColor(np.ascontiguousarray(pixels), layout.to_bgr)


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """Decode a ``sensor_msgs/CompressedImage`` (JPEG, PNG, anything OpenCV reads) into HxWx3 uint8 BGR.

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


def is_compressed(msg: Any) -> bool:
    """True for a ``CompressedImage`` (it has ``format``), False for a raw ``Image``."""
    return hasattr(msg, "format") and not hasattr(msg, "encoding")


def to_bgr(msg: Any, copy: bool = True) -> np.ndarray:
    """Decode an ``Image`` or a ``CompressedImage`` (see :func:`image_to_bgr`, :func:`compressed_to_bgr`)."""
    return compressed_to_bgr(msg) if is_compressed(msg) else image_to_bgr(msg, copy=copy)


def mono8_to_array(msg: Any, what: str = "class map") -> np.ndarray:
    """A ``mono8``/``8UC1`` image (class map or mask) as an (H, W) uint8 array of its values (a copy).

    Raises:
        ImageConversionError: another encoding, zero size, or a data length that disagrees with ``step``.
    """
    rows, _ = _raw_rows(msg, {k: ENCODINGS[k] for k in MONO8_ENCODINGS}, what)
    return rows.copy()


def segmentation_from_msg(msg: Any, labels: Optional[Mapping[int, str]] = None) -> Segmentation:
    """A class-map ``Image`` (pixel = class id) as a :class:`Segmentation`."""
    return Segmentation(mono8_to_array(msg), labels)


def detections_from_msg(
    msg: Any, labels: Optional[Mapping[int, str]] = None, keypoint_schema: Optional[KeypointSchema] = None
) -> Detections:
    """Rebuild :class:`Detections` from a ``DetectionArray``.

    Args:
        msg: the message (genpy or rosbags).
        labels: the model's label table (e.g. from the latched ``labels`` topic); names carried
            by the detections fill in the ids it lacks.
        keypoint_schema: the keypoints' names and skeleton (:func:`keypoint_schema_from_msg` of
            the label table), kept when it fits the keypoints.

    Returns:
        Detections with full-image masks (``image_height x image_width``; empty for detections
        without one) when any detection carries a mask, and keypoints when every detection that
        has some has the same number (NaN, score 0, for the detections without), with their
        scores when each has one per keypoint.

    Raises:
        ImageConversionError: a mask that is not a valid mono8 image.
    """
    table: Dict[int, str] = dict(labels or {})
    items = list(msg.detections)
    for det in items:
        table.setdefault(int(det.class_id), str(det.class_name))
    count = len(items)
    if count == 0:
        return Detections.empty(table)
    xyxy = np.array([[d.x_min, d.y_min, d.x_max, d.y_max] for d in items], dtype=np.float32)
    score = np.array([d.score for d in items], dtype=np.float32)
    class_id = np.array([d.class_id for d in items], dtype=np.int32)
    keypoints, keypoint_scores = _keypoints_from_msgs(items)
    if keypoints is None or keypoint_schema is None or len(keypoint_schema.names) != keypoints.shape[1]:
        keypoint_schema = None
    masks = None
    if any(int(d.mask.width) > 0 for d in items):
        height, width = int(msg.image_height), int(msg.image_width)
        masks = np.zeros((count, height, width), dtype=bool)
        for i, det in enumerate(items):
            if int(det.mask.width) > 0:
                crop = mono8_to_array(det.mask, "mask") >= MASK_INSIDE
                y0, x0 = int(det.mask_y), int(det.mask_x)
                window = masks[i, y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]]
                window[...] = crop[: window.shape[0], : window.shape[1]]
    return Detections(xyxy, score, class_id, table, masks, keypoints, keypoint_scores, keypoint_schema)


def _keypoints_from_msgs(items: List[Any]) -> Tuple[Optional[np.ndarray], Optional[np.ndarray]]:
    """``(keypoints (N, K, 2), scores (N, K))`` of ``Detection`` messages (see :func:`detections_from_msg`)."""
    pairs = {len(d.keypoints) // 2 for d in items} - {0}
    if len(pairs) != 1:
        return None, None
    (k,) = pairs
    keypoints = np.full((len(items), k, 2), np.nan, np.float32)
    scores = np.zeros((len(items), k), np.float32)
    scored = True
    for i, det in enumerate(items):
        if len(det.keypoints):
            keypoints[i] = np.asarray(det.keypoints, np.float32).reshape(k, 2)
            if len(det.keypoint_scores) == k:
                scores[i] = np.asarray(det.keypoint_scores, np.float32)
            else:
                scored = False
    return keypoints, scores if scored else None


def labels_from_msg(msg: Any) -> Dict[int, str]:
    """A ``LabelTable`` message as ``{class id: name}``."""
    return {int(i): str(n) for i, n in zip(msg.class_ids, msg.class_names)}


def keypoint_schema_from_msg(msg: Any) -> Optional[KeypointSchema]:
    """The keypoint names and skeleton of a ``LabelTable`` message, None when it names no keypoints."""
    if not len(msg.keypoint_names):
        return None
    edges = np.asarray(msg.skeleton, np.int64).reshape(-1, 2)
    return KeypointSchema(tuple(str(n) for n in msg.keypoint_names), tuple((int(a), int(b)) for a, b in edges))


# -- building ------------------------------------------------------------------------------------
class MessageTypes(NamedTuple):
    """The message classes of one family and how its array fields are written.

    Build one with :meth:`genpy` (messages rospy publishes and rosbag writes) or :meth:`rosbags`
    (dataclasses of a ``rosbags`` typestore, for bags written without ROS).
    """

    image: Callable[..., Any]
    compressed_image: Callable[..., Any]
    header: Callable[..., Any]
    time: Callable[[int, int], Any]  # (seconds, nanoseconds) -> a time value
    detection: Callable[..., Any]
    detection_array: Callable[..., Any]
    label_table: Callable[..., Any]
    uint8_field: Callable[[np.ndarray], Any]  # uint8[] field value from a flat uint8 array
    int32_field: Callable[[np.ndarray], Any]  # int32[] field value from a flat int32 array
    float32_field: Callable[[np.ndarray], Any]  # float32[] field value from a flat float32 array

    @classmethod
    def genpy(cls) -> "MessageTypes":
        """The generated Python classes (needs ``sensor_msgs`` and the built ``dl_vision`` messages)."""
        import genpy
        from sensor_msgs.msg import CompressedImage, Image
        from std_msgs.msg import Header

        from dl_vision.msg import Detection, DetectionArray, LabelTable

        return cls(
            Image,
            CompressedImage,
            Header,
            genpy.Time,
            Detection,
            DetectionArray,
            LabelTable,
            lambda array: array.tobytes(),
            lambda array: array.tolist(),
            lambda array: array.tolist(),
        )

    @classmethod
    def rosbags(cls, store: Any) -> "MessageTypes":
        """The classes of a ``rosbags`` typestore that has ``dl_vision/msg/*`` registered."""
        types = store.types
        return cls(
            types["sensor_msgs/msg/Image"],
            types["sensor_msgs/msg/CompressedImage"],
            types["std_msgs/msg/Header"],
            types["builtin_interfaces/msg/Time"],
            types["dl_vision/msg/Detection"],
            types["dl_vision/msg/DetectionArray"],
            types["dl_vision/msg/LabelTable"],
            lambda array: np.ascontiguousarray(array, dtype=np.uint8).reshape(-1),
            lambda array: np.ascontiguousarray(array, dtype=np.int32).reshape(-1),
            lambda array: np.ascontiguousarray(array, dtype=np.float32).reshape(-1),
        )


_GENPY: List[MessageTypes] = []


def genpy_types() -> MessageTypes:
    """The genpy :class:`MessageTypes`, imported once."""
    if not _GENPY:
        _GENPY.append(MessageTypes.genpy())
    return _GENPY[0]


def make_header(stamp_ns: int = 0, frame_id: str = "", seq: int = 0, types: Optional[MessageTypes] = None) -> Any:
    """A ``std_msgs/Header`` with a stamp in nanoseconds."""
    types = types or genpy_types()
    return types.header(
        seq=seq, stamp=types.time(stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000), frame_id=frame_id
    )


def bgr_to_image_msg(image: np.ndarray, header: Any = None, types: Optional[MessageTypes] = None) -> Any:
    """Wrap an (H, W, 3) uint8 BGR array as ``bgr8`` or an (H, W) uint8 array as ``mono8``.

    Raises:
        ImageConversionError: another shape or dtype, or a zero-size array.
    """
    types = types or genpy_types()
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ImageConversionError(
            "image array: expected (H, W, 3) or (H, W) uint8, found %s %s" % (image.shape, image.dtype)
        )
    if image.size == 0:
        raise ImageConversionError("image array: expected width and height > 0, found %s" % (image.shape,))
    channels = 1 if image.ndim == 2 else 3
    return types.image(
        header=header if header is not None else make_header(types=types),
        height=image.shape[0],
        width=image.shape[1],
        encoding="mono8" if channels == 1 else "bgr8",
        is_bigendian=0,
        step=image.shape[1] * channels,
        data=types.uint8_field(image.reshape(-1)),
    )


def bgr_to_compressed_msg(
    image: np.ndarray,
    image_format: str = "jpeg",
    header: Any = None,
    types: Optional[MessageTypes] = None,
    quality: int = 90,
) -> Any:
    """Encode an (H, W, 3) uint8 BGR array as a ``CompressedImage`` (``jpeg`` or ``png``).

    Raises:
        ImageConversionError: an unknown format or an array OpenCV cannot encode.
    """
    types = types or genpy_types()
    extensions = {"jpeg": ".jpg", "jpg": ".jpg", "png": ".png"}
    if image_format not in extensions:
        raise ImageConversionError("compressed format: expected jpeg or png, found %r" % image_format)
    params = [cv2.IMWRITE_JPEG_QUALITY, int(quality)] if extensions[image_format] == ".jpg" else []
    ok, data = cv2.imencode(extensions[image_format], image, params)
    if not ok:
        raise ImageConversionError(
            "compressed image: OpenCV cannot encode a %s array as %s" % (image.shape, image_format)
        )
    return types.compressed_image(
        header=header if header is not None else make_header(types=types),
        format="jpeg" if image_format == "jpg" else image_format,
        data=types.uint8_field(data.reshape(-1)),
    )


def segmentation_to_msg(segmentation: Segmentation, header: Any = None, types: Optional[MessageTypes] = None) -> Any:
    """The class-id map as a ``mono8`` image (pixel value = class id) with ``header``."""
    return bgr_to_image_msg(segmentation.class_map, header, types)


def _mask_extent(mask: np.ndarray) -> Optional[Tuple[int, int, int, int]]:
    """``x0, y0, x1, y1`` (exclusive) of the True pixels of a (H, W) bool mask, None when it has none."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _mask_msg(mask: np.ndarray, box: np.ndarray, header: Any, types: MessageTypes) -> Tuple[int, int, Any]:
    """``(mask_x, mask_y, mono8 image)`` of one instance mask under the rule in the module docstring."""
    extent = _mask_extent(mask)
    if extent is None:  # a mask with no pixel: one 0 pixel at the box's corner, so it stays a mask
        height, width = mask.shape
        x0 = min(max(int(math.floor(box[0])), 0), width - 1)
        y0 = min(max(int(math.floor(box[1])), 0), height - 1)
        return x0, y0, bgr_to_image_msg(np.zeros((1, 1), np.uint8), header, types)
    x0, y0, x1, y1 = extent
    crop = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    return x0, y0, bgr_to_image_msg(crop, header, types)


def detections_to_msg(
    detections: Detections,
    header: Any,
    width: int,
    height: int,
    model: str,
    types: Optional[MessageTypes] = None,
) -> Any:
    """Build the ``DetectionArray`` of one frame (masks under the rule in the module docstring).

    Args:
        detections: results in input-image pixels.
        header: the input image's header, copied unchanged.
        width: input image width in pixels.
        height: input image height in pixels.
        model: name of the model spec.
        types: the message family to build (genpy by default).
    """
    types = types or genpy_types()
    names = detections.class_names
    no_keypoints = types.float32_field(np.zeros(0, np.float32))
    no_mask = types.image(  # shared by every detection without a mask
        header=make_header(types=types),
        height=0,
        width=0,
        encoding="",
        is_bigendian=0,
        step=0,
        data=types.uint8_field(np.zeros(0, np.uint8)),
    )
    has_keypoints = detections.has_keypoints
    items = []
    for i in range(len(detections)):
        box = detections.xyxy[i]
        mask_x = mask_y = 0
        mask = no_mask
        if detections.masks is not None:
            mask_x, mask_y, mask = _mask_msg(detections.masks[i], box, header, types)
        keypoints = keypoint_scores = no_keypoints
        if has_keypoints[i]:
            keypoints = types.float32_field(detections.keypoints[i].reshape(-1))
            if detections.keypoint_scores is not None:
                keypoint_scores = types.float32_field(detections.keypoint_scores[i])
        items.append(
            types.detection(
                class_id=int(detections.class_id[i]),
                class_name=names[i],
                score=float(detections.score[i]),
                x_min=float(box[0]),
                y_min=float(box[1]),
                x_max=float(box[2]),
                y_max=float(box[3]),
                keypoints=keypoints,
                keypoint_scores=keypoint_scores,
                mask_x=mask_x,
                mask_y=mask_y,
                mask=mask,
            )
        )
    return types.detection_array(
        header=header, image_width=int(width), image_height=int(height), model=model, detections=items
    )


def label_table_msg(
    labels: Mapping[int, str],
    model: str,
    types: Optional[MessageTypes] = None,
    keypoint_schema: Optional[KeypointSchema] = None,
) -> Any:
    """The model's ``{id: name}`` table as a ``LabelTable`` message, ids ascending, with its keypoint names."""
    types = types or genpy_types()
    ids = sorted(int(k) for k in labels)
    names: List[str] = [] if keypoint_schema is None else list(keypoint_schema.names)
    edges = [] if keypoint_schema is None else [end for edge in keypoint_schema.skeleton for end in edge]
    return types.label_table(
        model=model,
        class_ids=types.int32_field(np.asarray(ids, np.int32)),
        class_names=[str(labels[k]) for k in ids],
        keypoint_names=names,
        skeleton=types.int32_field(np.asarray(edges, np.int32)),
    )
