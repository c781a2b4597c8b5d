"""Reading and writing ROS 1 bags without ROS, with the ``rosbags`` library.

Messages are decoded from the raw bytes in the bag: ``sensor_msgs/Image`` and
``sensor_msgs/CompressedImage`` into BGR uint8 arrays, this package's ``DetectionArray`` into
:class:`~dl_vision.structures.Detections`, mono8 class-map images into class-id arrays. Reading
streams one bag chunk at a time, so memory does not grow with the length of the bag. Message
types are taken from the definitions stored in the bag itself, so any ROS 1 bag reads without a
built workspace; writing registers ``msg/*.msg`` of this package in a ROS 1 Noetic typestore.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np
from rosbags.rosbag1 import Reader, ReaderError, Writer, WriterError
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore

from dl_vision.errors import EvaluationError, ImageConversionError
from dl_vision.structures import Detections, LabelTable

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DETECTION_ARRAY = "dl_vision/msg/DetectionArray"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)

# encoding -> (channels, dtype, cv2 conversion to BGR or None)
_ENCODINGS = {
    "bgr8": (3, np.uint8, None),
    "rgb8": (3, np.uint8, cv2.COLOR_RGB2BGR),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2BGR),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2BGR),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8UC1": (1, np.uint8, cv2.COLOR_GRAY2BGR),
    "8UC3": (3, np.uint8, None),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2BGR),
    "16UC1": (1, np.uint16, cv2.COLOR_GRAY2BGR),
}


class Frame(NamedTuple):
    """One image read from a bag.

    Attributes:
        index: position of the message among the topic's messages (0-based, bag order).
        stamp_ns: ``header.stamp`` in nanoseconds (the key outputs and ground truth share).
        bag_time_ns: time the message was recorded, nanoseconds.
        frame_id: ``header.frame_id``.
        image: (H, W, 3) uint8 BGR pixels.
    """

    index: int
    stamp_ns: int
    bag_time_ns: int
    frame_id: str
    image: np.ndarray


def stamp_to_ns(stamp) -> int:
    """A rosbags ``Time`` (``sec``, ``nanosec``) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def message_dir() -> Path:
    """The directory holding this package's ``*.msg`` files (source, devel or install space)."""
    here = Path(__file__).resolve()
    candidates = [here.parents[3] / "msg", here.parents[5] / "share" / "dl_vision" / "msg"]
    env = os.environ.get("DL_VISION_MSG_DIR")
    if env:
        candidates.insert(0, Path(env))
    for path in candidates:
        if (path / "DetectionArray.msg").is_file():
            return path
    raise EvaluationError(
        "message definitions: expected DetectionArray.msg in one of %s, found none"
        % ", ".join(str(p) for p in candidates)
    )


def make_typestore():
    """A ROS 1 Noetic typestore with ``dl_vision/msg/*`` registered (for writing bags)."""
    store = get_typestore(Stores.ROS1_NOETIC)
    types = {}
    for path in sorted(message_dir().glob("*.msg")):
        types.update(get_types_from_msg(path.read_text(), "dl_vision/msg/%s" % path.stem))
    store.register(types)
    return store


def _data_bytes(msg) -> np.ndarray:
    """``msg.data`` as a flat uint8 array (genpy gives ``bytes``, rosbags a numpy array)."""
    if isinstance(msg.data, (bytes, bytearray)):
        return np.frombuffer(msg.data, np.uint8)
    return np.asarray(msg.data, np.uint8).reshape(-1)


def image_to_bgr(msg) -> np.ndarray:
    """Decode a ``sensor_msgs/Image`` or ``CompressedImage`` (rosbags or genpy object) to BGR.

    Args:
        msg: a message with ``height, width, encoding, step, is_bigendian, data`` (raw image)
            or ``format, data`` (compressed, any format OpenCV decodes).

    Returns:
        (H, W, 3) uint8 BGR array (16-bit images are scaled to 8 bits by dropping the low byte).

    Raises:
        ImageConversionError: unknown encoding, or ``data`` disagrees with ``step * height``.
    """
    data = _data_bytes(msg)
    if hasattr(msg, "format"):
        image = cv2.imdecode(data, cv2.IMREAD_COLOR)
        if image is None:
            raise ImageConversionError(
                "CompressedImage: OpenCV could not decode %d bytes of format %r" % (data.size, msg.format)
            )
        return image
    if msg.encoding not in _ENCODINGS:
        raise ImageConversionError("Image: expected encoding in %s, found %r" % (sorted(_ENCODINGS), msg.encoding))
    channels, dtype, conversion = _ENCODINGS[msg.encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    itemsize = np.dtype(dtype).itemsize
    if data.size != step * height or step < width * channels * itemsize:
        raise ImageConversionError(
            "Image %dx%d %s: expected %d data bytes (step %d), found %d"
            % (width, height, msg.encoding, step * height, step, data.size)
        )
    rows = data.reshape(height, step)[:, : width * channels * itemsize]
    pixels = rows.view(np.dtype(dtype).newbyteorder(">" if msg.is_bigendian else "<")) if itemsize > 1 else rows
    pixels = pixels.reshape(height, width, channels)
    if itemsize > 1:
        pixels = (pixels >> 8).astype(np.uint8)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def class_map_from_image(msg) -> np.ndarray:
    """A mono8 / 8UC1 class-map ``Image`` -> (H, W) uint8 class ids (step honoured)."""
    if msg.encoding not in ("mono8", "8UC1"):
        raise ImageConversionError("class map: expected a mono8 image, found encoding %r" % msg.encoding)
    data = _data_bytes(msg)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if data.size != step * height or step < width:
        raise ImageConversionError(
            "class map %dx%d: expected %d data bytes, found %d" % (width, height, step * height, data.size)
        )
    return data.reshape(height, step)[:, :width].copy()


def detections_from_message(msg, labels: Optional[LabelTable] = None) -> Detections:
    """A ``DetectionArray`` (rosbags or genpy object) -> :class:`Detections` in image pixels.

    Instance masks (a mono8 crop at ``mask_x, mask_y``) are pasted into full
    ``image_height x image_width`` masks when every detection has one.
    """
    dets = list(msg.detections)
    table = dict(labels or {})
    for d in dets:
        table.setdefault(int(d.class_id), str(d.class_name))
    if not dets:
        return Detections.empty(table)
    xyxy = np.array([[d.x_min, d.y_min, d.x_max, d.y_max] for d in dets], np.float32)
    masks = None
    if all(int(d.mask.width) > 0 for d in dets):
        masks = np.zeros((len(dets), int(msg.image_height), int(msg.image_width)), bool)
        for i, d in enumerate(dets):
            crop = class_map_from_image(d.mask) > 0
            x, y = int(d.mask_x), int(d.mask_y)
            masks[i, y : y + crop.shape[0], x : x + crop.shape[1]] = crop[: masks.shape[1] - y, : masks.shape[2] - x]
    return Detections(xyxy, [d.score for d in dets], [d.class_id for d in dets], table, masks=masks)


class BagReader:
    """A ROS 1 bag opened for reading (context manager).

    Args:
        path: the ``.bag`` file.

    Raises:
        EvaluationError: the file is missing or not a readable ROS 1 bag.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EvaluationError("bag: expected a ROS 1 bag file at %s, found nothing" % self.path)
        self._reader = Reader(self.path)
        try:
            self._reader.open()
        except ReaderError as err:
            raise EvaluationError("bag %s: not a readable ROS 1 bag (%s)" % (self.path, err)) from err
        self._store = get_typestore(Stores.EMPTY)
        for conn in self._reader.connections:
            try:
                self._store.register(get_types_from_msg(conn.msgdef, conn.msgtype))
            except TypesysError as err:
                raise EvaluationError(
                    "bag %s: message definition of %s on %s is unusable (%s)"
                    % (self.path, conn.msgtype, conn.topic, err)
                ) from err

    def __enter__(self) -> "BagReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Close the file."""
        self._reader.close()

    def topics(self) -> Dict[str, Tuple[str, int]]:
        """``{topic: (message type, message count)}`` (types as ``pkg/msg/Name``)."""
        return {t: (info.msgtype or "", info.msgcount) for t, info in self._reader.topics.items()}

    def check_topic(self, topic: str, allowed_types: Tuple[str, ...]) -> str:
        """The message type of ``topic``, after checking it exists, has messages and an allowed type.

        Raises:
            EvaluationError: naming the topics the bag does have.
        """
        topics = self.topics()
        if not topics:
            raise EvaluationError("bag %s: expected messages on %s, found an empty bag" % (self.path, topic))
        if topic not in topics:
            listing = ", ".join("%s (%s)" % (t, m) for t, (m, _) in sorted(topics.items()))
            raise EvaluationError("bag %s: expected topic %s, found only: %s" % (self.path, topic, listing))
        msgtype, count = topics[topic]
        if msgtype not in allowed_types:
            raise EvaluationError(
                "bag %s: topic %s should carry %s, found %s" % (self.path, topic, " or ".join(allowed_types), msgtype)
            )
        if count == 0:
            raise EvaluationError("bag %s: topic %s has no messages" % (self.path, topic))
        return msgtype

    def count(self, topic: str) -> int:
        """Number of messages on ``topic`` (0 when absent)."""
        return self.topics().get(topic, ("", 0))[1]

    def messages(self, topics: List[str]) -> Iterator[Tuple[str, int, object]]:
        """``(topic, bag_time_ns, message)`` of the given topics in bag-time order, deserialised."""
        conns = [c for c in self._reader.connections if c.topic in topics]
        for conn, bag_time, raw in self._reader.messages(connections=conns):
            yield conn.topic, bag_time, self._store.deserialize_ros1(raw, conn.msgtype)

    def frames(self, topic: str) -> Iterator[Frame]:
        """Every image on ``topic`` decoded to BGR, in bag order (see :class:`Frame`)."""
        self.check_topic(topic, IMAGE_TYPES)
        for index, (_, bag_time, msg) in enumerate(self.messages([topic])):
            yield Frame(index, stamp_to_ns(msg.header.stamp), bag_time, msg.header.frame_id, image_to_bgr(msg))


class BagWriter:
    """A ROS 1 bag opened for writing (context manager); timestamps are integer nanoseconds.

    Args:
        path: the ``.bag`` file to create (must not exist).
        compress: chunk compression, ``"lz4"``, ``"bz2"`` or ``None``.
    """

    def __init__(self, path, compress: Optional[str] = None) -> None:
        self.path = Path(path)
        self._writer = Writer(self.path)
        if compress:
            self._writer.set_compression(getattr(Writer.CompressionFormat, compress.upper()))
        try:
            self._writer.open()
        except WriterError as err:
            raise EvaluationError("bag %s: cannot create it (%s)" % (self.path, err)) from err
        self.store = make_typestore()
        self._connections: Dict[Tuple[str, str], object] = {}
        self._seq: Dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Write the index and close the file."""
        self._writer.close()

    def header(self, topic: str, stamp_ns: int, frame_id: str):
        """A ``std_msgs/Header`` with a per-topic sequence number."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        time = self.store.types["builtin_interfaces/msg/Time"](stamp_ns // 1_000_000_000, stamp_ns % 1_000_000_000)
        return self.store.types["std_msgs/msg/Header"](seq, time, frame_id)

    def write(self, topic: str, msgtype: str, msg, bag_time_ns: int) -> None:
        """Serialise ``msg`` (a typestore object of ``msgtype``) onto ``topic``."""
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self._writer.write(self._connections[key], int(bag_time_ns), bytes(self.store.serialize_ros1(msg, msgtype)))

    def _image_msg(self, header, array: np.ndarray, encoding: str):
        array = np.ascontiguousarray(array)
        height, width = array.shape[:2]
        return self.store.types[IMAGE](
            header, height, width, encoding, 0, array.nbytes // max(height, 1), array.reshape(-1).view(np.uint8)
        )

    def write_image(
        self,
        topic: str,
        stamp_ns: int,
        image_bgr: np.ndarray,
        frame_id: str = "camera",
        compressed: Optional[str] = None,
        bag_time_ns: Optional[int] = None,
    ) -> None:
        """Write an (H, W, 3) uint8 BGR image as ``Image`` (bgr8) or ``CompressedImage`` (``"jpeg"``/``"png"``)."""
        header = self.header(topic, stamp_ns, frame_id)
        bag_time = stamp_ns if bag_time_ns is None else bag_time_ns
        if compressed:
            ok, buf = cv2.imencode("." + {"jpeg": "jpg"}.get(compressed, compressed), image_bgr)
            if not ok:
                raise ImageConversionError("CompressedImage: OpenCV cannot encode format %r" % compressed)
            msg = self.store.types[COMPRESSED_IMAGE](header, compressed, buf.reshape(-1))
            self.write(topic, COMPRESSED_IMAGE, msg, bag_time)
        else:
            self.write(topic, IMAGE, self._image_msg(header, image_bgr, "bgr8"), bag_time)

    def write_class_map(
        self,
        topic: str,
        stamp_ns: int,
        class_map: np.ndarray,
        frame_id: str = "camera",
        bag_time_ns: Optional[int] = None,
    ) -> None:
        """Write an (H, W) uint8 class-id map as a mono8 ``Image``."""
        header = self.header(topic, stamp_ns, frame_id)
        msg = self._image_msg(header, np.asarray(class_map, np.uint8), "mono8")
        self.write(topic, IMAGE, msg, stamp_ns if bag_time_ns is None else bag_time_ns)

    def write_detections(
        self,
        topic: str,
        stamp_ns: int,
        dets: Detections,
        width: int,
        height: int,
        model: str = "",
        frame_id: str = "camera",
        bag_time_ns: Optional[int] = None,
    ) -> None:
        """Write :class:`Detections` as a ``dl_vision/DetectionArray`` (masks cropped to their extent)."""
        types = self.store.types
        items = []
        for i in range(len(dets)):
            mask_x = mask_y = 0
            mask = self._image_msg(
                types["std_msgs/msg/Header"](0, types["builtin_interfaces/msg/Time"](0, 0), ""),
                np.zeros((0, 0), np.uint8),
                "mono8",
            )
            if dets.masks is not None and dets.masks[i].any():
                ys, xs = np.nonzero(dets.masks[i])
                mask_x, mask_y = int(xs.min()), int(ys.min())
                crop = dets.masks[i][mask_y : ys.max() + 1, mask_x : xs.max() + 1]
                mask = self._image_msg(
                    self.header(topic + "/mask", stamp_ns, frame_id), crop.astype(np.uint8) * 255, "mono8"
                )
            keypoints = (
                np.zeros(0, np.float32) if dets.keypoints is None else dets.keypoints[i].reshape(-1).astype(np.float32)
            )
            x0, y0, x1, y1 = (float(v) for v in dets.xyxy[i])
            items.append(
                types["dl_vision/msg/Detection"](
                    int(dets.class_id[i]),
                    dets.class_names[i],
                    float(dets.score[i]),
                    x0,
                    y0,
                    x1,
                    y1,
                    keypoints,
                    mask_x,
                    mask_y,
                    mask,
                )
            )
        msg = types[DETECTION_ARRAY](self.header(topic, stamp_ns, frame_id), int(width), int(height), model, items)
        self.write(topic, DETECTION_ARRAY, msg, stamp_ns if bag_time_ns is None else bag_time_ns)
