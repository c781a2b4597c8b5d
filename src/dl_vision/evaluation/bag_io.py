"""Reading and writing ROS 1 bags without ROS, with the ``rosbags`` library.

Messages come out of the bag as ``rosbags`` dataclasses, which :mod:`dl_vision.messages` reads
like live messages (images, ``DetectionArray``, class maps). Reading streams one bag chunk at a
time, so memory does not grow with the length of the bag. Message types are taken from the
definitions stored in the bag itself, so any ROS 1 bag reads without a built workspace; writing
registers ``msg/*.msg`` of this package in a ROS 1 Noetic typestore and builds messages with the
same converters the nodes publish with.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterator, List, NamedTuple, Optional, Tuple

import numpy as np
from rosbags.rosbag1 import Reader, Writer, WriterError
from rosbags.typesys import Stores, get_types_from_msg, get_typestore

from dl_vision import messages
from dl_vision.errors import EvaluationError, one_line
from dl_vision.evaluation.bag_recovery import Damage, SequentialReader, describe_damage
from dl_vision.structures import Detections, Segmentation

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
DETECTION_ARRAY = "dl_vision/msg/DetectionArray"
IMAGE_TYPES = (IMAGE, COMPRESSED_IMAGE)
#: First line of every ROS 1 bag (format 2.0).
BAG_MAGIC = b"#ROSBAG V2.0\n"


class Frame(NamedTuple):
    """One image message read from a bag.

    Attributes:
        index: position of the message among the topic's messages (0-based, bag order).
        stamp_ns: ``header.stamp`` in nanoseconds (the key outputs and ground truth share).
        bag_time_ns: time the message was recorded, nanoseconds.
        frame_id: ``header.frame_id``.
        message: the ``Image`` or ``CompressedImage`` (a rosbags dataclass).
    """

    index: int
    stamp_ns: int
    bag_time_ns: int
    frame_id: str
    message: Any

    def image(self) -> np.ndarray:
        """The frame decoded to (H, W, 3) uint8 BGR (see :func:`dl_vision.messages.to_bgr`)."""
        return messages.to_bgr(self.message)

    def size(self) -> Tuple[int, int]:
        """``(width, height)`` in pixels (a compressed frame is decoded for it)."""
        if messages.is_compressed(self.message):
            height, width = self.image().shape[:2]
            return width, height
        return int(self.message.width), int(self.message.height)


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


class BagReader:
    """A ROS 1 bag opened for reading (context manager).

    Args:
        path: the ``.bag`` file.
        allow_partial: read what is readable of a damaged bag instead of failing: a bag without a
            usable index is read record by record (:mod:`~dl_vision.evaluation.bag_recovery`),
            messages that do not deserialise are skipped, and reading stops quietly where the
            data ends; :meth:`damage_report` then says what was lost.

    Raises:
        EvaluationError: the file is missing or not a readable ROS 1 bag; an unindexed or
            truncated bag names ``rosbag reindex`` and ``--allow-partial``.
    """

    def __init__(self, path, allow_partial: bool = False) -> None:
        self.path = Path(path)
        self.allow_partial = allow_partial
        if not os.path.isfile(self.path):  # os.path: False, not OSError, for a name too long
            raise EvaluationError("bag: expected a ROS 1 bag file at %s, found nothing" % self.path)
        #: What a partial read lost: the sequential reader's damage, messages skipped, a read that stopped early.
        self.skipped_messages = 0
        self.stopped: Optional[str] = None
        self.damage: Optional[Damage] = None
        self._indexed: Optional[Dict[str, Tuple[str, int]]] = None
        self._reader: Any = Reader(self.path)
        try:
            self._reader.open()
        except Exception as err:  # noqa: BLE001 - rosbags fed arbitrary bytes raises anything (UnicodeDecodeError, AssertionError, struct.error, ...)
            if self._reader.bio is not None:  # rosbags closes the file on its own errors only
                self._reader.close()
            self._reader = self._open_damaged(err)
        else:
            self._indexed = self.topics()
        self._store = get_typestore(Stores.EMPTY)
        for conn in self._reader.connections:
            try:
                self._store.register(get_types_from_msg(conn.msgdef, conn.msgtype))
            except Exception as err:  # noqa: BLE001 - TypesysError, or anything the parser raises on a damaged definition
                raise EvaluationError(
                    "bag %s: message definition of %s on %s is unusable (%s)"
                    % (self.path, conn.msgtype, conn.topic, one_line(err))
                ) from err

    def _open_damaged(self, err: Exception) -> Any:
        """The sequential reader for a bag whose index is unusable, when partial reads are allowed."""
        reason = one_line(err)
        with self.path.open("rb") as src:
            is_bag = src.read(len(BAG_MAGIC)) == BAG_MAGIC
        if not is_bag:
            raise EvaluationError(
                "bag %s: expected a ROS 1 bag (a file starting with %r), found an unreadable file (%s)"
                % (self.path, BAG_MAGIC.decode().strip(), reason)
            ) from err
        if not self.allow_partial:
            raise EvaluationError(
                "bag %s: expected an indexed bag, found a damaged index or none (%s): the recording was cut "
                "or the file truncated; repair it with `rosbag reindex %s` (keeps a .orig.bag backup), "
                "or pass --allow-partial to evaluate the frames that can be read" % (self.path, reason, self.path)
            ) from err
        try:
            reader = SequentialReader(self.path)
        except Exception as scan_err:  # noqa: BLE001 - as above
            raise EvaluationError(
                "bag %s: expected a ROS 1 bag, found an unreadable file (%s)" % (self.path, one_line(scan_err))
            ) from scan_err
        self.damage = reader.damage
        return reader

    def damage_report(self, topic: str, frames_read: int) -> Optional[str]:
        """One line for the report when a partial read lost frames of ``topic``, else None.

        Args:
            topic: the evaluated image topic.
            frames_read: frames of ``topic`` that were read.
        """
        indexed = self._indexed.get(topic, ("", 0))[1] if self._indexed is not None else None
        if self.damage is None and not self.skipped_messages and not self.stopped:
            return None
        parts = ["bag %s is damaged (--allow-partial)" % self.path]
        if self.damage is not None:
            parts.append(describe_damage(self.damage, frames_read, indexed))
        else:
            parts.append("read %d of the %d frames the index lists" % (frames_read, indexed or 0))
        if self.skipped_messages:
            parts.append("%d messages did not deserialise and were skipped" % self.skipped_messages)
        if self.stopped:
            parts.append("reading stopped early: %s" % self.stopped)
        if self.damage is not None:
            parts.append("`rosbag reindex` repairs an unindexed or truncated bag")
        return "; ".join(parts)

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

    def messages(
        self, topics: List[str], start_ns: Optional[int] = None, stop_ns: Optional[int] = None
    ) -> Iterator[Tuple[str, int, object]]:
        """``(topic, bag_time_ns, message)`` of the given topics in bag-time order, deserialised.

        Args:
            topics: topics to read.
            start_ns, stop_ns: read only messages recorded in ``[start_ns, stop_ns)`` (bag time,
                nanoseconds; an indexed bag only); None leaves that end open.

        Raises:
            EvaluationError: the bag's data is damaged (unless ``allow_partial``: then damaged
                messages are skipped and reading stops where the data ends, both counted).
        """
        conns = [c for c in self._reader.connections if c.topic in topics]
        if not conns:
            return
        bounds = {} if start_ns is None and stop_ns is None else {"start": start_ns, "stop": stop_ns}
        records = self._reader.messages(connections=conns, **bounds)
        read = 0
        while True:
            try:
                conn, bag_time, raw = next(records)
            except StopIteration:
                return
            except Exception as err:  # noqa: BLE001 - rosbags on damaged chunks: ReaderError, lz4/bz2 errors, ...
                if not self.allow_partial:
                    raise EvaluationError(
                        "bag %s: damaged after %d messages of %s (%s); --allow-partial evaluates the frames before it"
                        % (self.path, read, ", ".join(topics), one_line(err))
                    ) from err
                self.stopped = "after %d messages of %s (%s)" % (read, ", ".join(topics), one_line(err))
                return
            read += 1
            try:
                message = self._store.deserialize_ros1(raw, conn.msgtype)
            except Exception as err:  # noqa: BLE001 - a damaged message: struct.error, IndexError, UnicodeDecodeError, ...
                if not self.allow_partial:
                    raise EvaluationError(
                        "bag %s: message %d on %s does not deserialise as %s (%s); --allow-partial skips such messages"
                        % (self.path, read, conn.topic, conn.msgtype, one_line(err))
                    ) from err
                self.skipped_messages += 1
                continue
            yield conn.topic, bag_time, message

    def message_times(self, topic: str) -> List[int]:
        """Bag times (ns) of every message on ``topic``, in bag order, from the index alone.

        Raises:
            EvaluationError: the bag was read without its index (a damaged bag, ``allow_partial``).
        """
        if self._indexed is None:
            raise EvaluationError("bag %s: message times need the bag's index, which is damaged" % self.path)
        ids = [c.id for c in self._reader.connections if c.topic == topic]
        return sorted(entry.time for i in ids for entry in self._reader.indexes[i])

    def frames(self, topic: str) -> Iterator[Frame]:
        """Every image message on ``topic`` in bag order, undecoded (see :class:`Frame`)."""
        self.check_topic(topic, IMAGE_TYPES)
        for index, (_, bag_time, msg) in enumerate(self.messages([topic])):
            yield Frame(index, messages.stamp_to_ns(msg.header.stamp), bag_time, msg.header.frame_id, msg)


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
        self.types = messages.MessageTypes.rosbags(self.store)
        self._connections: Dict[Tuple[str, str], object] = {}
        self._seq: Dict[str, int] = {}

    def __enter__(self) -> "BagWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Write the index and close the file."""
        self._writer.close()

    def header(self, topic: str, stamp_ns: int, frame_id: str) -> Any:
        """A ``std_msgs/Header`` with a per-topic sequence number."""
        seq = self._seq.get(topic, 0)
        self._seq[topic] = seq + 1
        return messages.make_header(stamp_ns, frame_id, seq, self.types)

    def write(self, topic: str, msgtype: str, msg: Any, bag_time_ns: int) -> None:
        """Serialise ``msg`` (a typestore object of ``msgtype``) onto ``topic``."""
        key = (topic, msgtype)
        if key not in self._connections:
            self._connections[key] = self._writer.add_connection(topic, msgtype, typestore=self.store)
        self._writer.write(self._connections[key], int(bag_time_ns), bytes(self.store.serialize_ros1(msg, msgtype)))

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
            msg = messages.bgr_to_compressed_msg(image_bgr, compressed, header, self.types)
            self.write(topic, COMPRESSED_IMAGE, msg, bag_time)
        else:
            self.write(topic, IMAGE, messages.bgr_to_image_msg(image_bgr, header, self.types), bag_time)

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
        msg = messages.segmentation_to_msg(Segmentation(class_map), header, self.types)
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
        """Write :class:`Detections` as a ``dl_vision/DetectionArray``, as a node publishes them."""
        header = self.header(topic, stamp_ns, frame_id)
        msg = messages.detections_to_msg(dets, header, width, height, model, self.types)
        self.write(topic, DETECTION_ARRAY, msg, stamp_ns if bag_time_ns is None else bag_time_ns)
