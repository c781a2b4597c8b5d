"""Reading what is left of a damaged ROS 1 bag: records in file order, without the index.

A bag whose recording was cut (power loss, a full disk, a killed ``rosbag record``) has no index,
or an index past the end of the file; ``rosbags`` refuses it, and ``rosbag reindex`` repairs it
in place. :class:`SequentialReader` reads such a bag the way ``rosbag reindex`` does: record by
record from the start (bag header, chunks, the connection and message records inside them), and
stops at the first record it cannot read. A chunk whose header is intact but whose data does not
decompress is skipped whole and counted. It offers the part of ``rosbags``' reader interface that
:class:`~dl_vision.evaluation.bag_io.BagReader` uses (``connections``, ``topics``, ``messages``,
``close``), so a partial evaluation runs the same code as a whole one.
"""

from __future__ import annotations

import bz2
import io
import struct
from pathlib import Path
from typing import BinaryIO, Dict, Iterable, Iterator, List, NamedTuple, Optional, Tuple

import lz4.frame
from rosbags.interfaces import Connection, ConnectionExtRosbag1, TopicInfo
from rosbags.rosbag1.reader import Header, ReaderError, RecordType, normalize, read_bytes, read_uint32
from rosbags.typesys.msg import normalize_msgtype

_DECOMPRESS = {"none": bytes, "bz2": bz2.decompress, "lz4": lz4.frame.decompress}
#: What reading a damaged record can raise: rosbags' own error, struct and decoding errors, and
#: bz2/lz4 on damaged data (OSError, ValueError, EOFError, RuntimeError).
_READ_ERRORS = (ReaderError, struct.error, ValueError, KeyError, OSError, EOFError, RuntimeError)


class Damage(NamedTuple):
    """What a sequential read of a damaged bag could not use.

    Attributes:
        offset: byte where reading stopped (the file's size when it reached the end).
        size: the file's size in bytes.
        chunks_read: chunks whose messages were read.
        chunks_skipped: chunks whose data did not decompress (their messages are lost).
        chunks_listed: chunks the bag header lists (0 for a bag that was never closed).
        reason: why reading stopped early, or ``""``.
    """

    offset: int
    size: int
    chunks_read: int
    chunks_skipped: int
    chunks_listed: int
    reason: str


class SequentialReader:
    """A ROS 1 bag read record by record, without its index (see the module docstring).

    Args:
        path: the ``.bag`` file.

    Raises:
        ReaderError: not a ROS 1 (v2.0) bag at all.
    """

    def __init__(self, path) -> None:
        self.path = Path(path)
        self.connections: List[Connection] = []
        self._counts: Dict[int, int] = {}
        self._damage = Damage(0, 0, 0, 0, 0, "")
        for conn_id, _, _ in self._records():
            self._counts[conn_id] = self._counts.get(conn_id, 0) + 1
        self.damage = self._damage

    @property
    def topics(self) -> Dict[str, TopicInfo]:
        """``{topic: TopicInfo}`` of the readable part (message counts of that part)."""
        topics: Dict[str, TopicInfo] = {}
        for conn in self.connections:
            known = topics.get(conn.topic)
            count = self._counts.get(conn.id, 0) + (known.msgcount if known else 0)
            topics[conn.topic] = TopicInfo(conn.msgtype, conn.msgdef, count, [conn])
        return topics

    def messages(self, connections: Iterable[Connection] = ()) -> Iterator[Tuple[Connection, int, bytes]]:
        """``(connection, bag time ns, raw message)`` of the readable part, in file order."""
        wanted = {c.id for c in connections}
        by_id = {c.id: c for c in self.connections}
        for conn_id, time_ns, raw in self._records():
            if conn_id in by_id and (not wanted or conn_id in wanted):
                yield by_id[conn_id], time_ns, raw

    def close(self) -> None:
        """Nothing stays open between reads."""

    def _records(self) -> Iterator[Tuple[int, int, bytes]]:
        """``(connection id, time ns, raw)`` of every readable message; sets ``self._damage``."""
        size = self.path.stat().st_size
        state = {"read": 0, "skipped": 0, "listed": 0}
        with self.path.open("rb") as src:
            if not src.readline().startswith(b"#ROSBAG V2.0"):
                raise ReaderError("File magic is invalid.")
            offset, reason = src.tell(), ""
            try:
                while offset < size:
                    for message in self._record(src, state, top=True):
                        yield message
                    offset = src.tell()
            except _READ_ERRORS as err:
                reason = " ".join(str(err).split()) or type(err).__name__
        self._damage = Damage(min(offset, size), size, state["read"], state["skipped"], state["listed"], reason)

    def _record(self, src: BinaryIO, state: Dict[str, int], top: bool) -> Iterator[Tuple[int, int, bytes]]:
        """The messages of the record at ``src``'s position (a chunk's are read inside it)."""
        header = Header.read(src)
        op = header.get_uint8("op")
        size = read_uint32(src)
        if op == RecordType.CHUNK and top:
            yield from self._chunk(src, header, size, state)
            return
        data = read_bytes(src, size)
        if op == RecordType.BAGHEADER:
            state["listed"] = header.get_uint32("chunk_count")
        elif op == RecordType.CONNECTION:
            self._add_connection(header, data)
        elif op == RecordType.MSGDATA:
            yield header.get_uint32("conn"), header.get_time("time"), data
        elif op not in (RecordType.IDXDATA, RecordType.CHUNK_INFO):
            raise ReaderError("record type %d is not a bag record" % op)

    def _chunk(
        self, src: BinaryIO, header: Header, size: int, state: Dict[str, int]
    ) -> Iterator[Tuple[int, int, bytes]]:
        """The messages of a chunk; a chunk that does not decompress is skipped, one cut short read in part."""
        start = src.tell()
        compression = header.get_string("compression")
        if compression not in _DECOMPRESS:
            raise ReaderError("chunk compression %r is not supported" % compression)
        data = src.read(size)
        complete = len(data) == size
        inner = None
        if complete or compression == "none":  # an uncompressed chunk cut short still holds whole records
            try:
                inner = _DECOMPRESS[compression](data)
            except _READ_ERRORS:
                pass
        if inner is None:
            state["skipped"] += complete  # a chunk cut short is the end of the file, reported below
        else:
            chunk = io.BytesIO(inner)
            try:
                while chunk.tell() < len(inner):
                    yield from self._record(chunk, state, top=False)
            except _READ_ERRORS:
                if complete:
                    state["skipped"] += 1  # the rest of this chunk is damaged; the next one may be fine
                    return
            state["read"] += 1
        if not complete:
            raise ReaderError(
                "the file ends inside the chunk at byte %d (%d of its %d bytes are there)" % (start, len(data), size)
            )

    def _add_connection(self, header: Header, data: bytes) -> None:
        conn_id = header.get_uint32("conn")
        if any(c.id == conn_id for c in self.connections):
            return
        fields = Header.read(io.BytesIO(len(data).to_bytes(4, "little") + data))
        self.connections.append(
            Connection(
                conn_id,
                normalize(header.get_string("topic")),
                normalize_msgtype(fields.get_string("type")),
                fields.get_string("message_definition"),
                fields.get_string("md5sum"),
                0,
                ConnectionExtRosbag1(None, None),
                None,
            )
        )


def describe_damage(damage: Damage, frames_read: int, frames_indexed: Optional[int]) -> str:
    """One sentence for the report: what was read, what was lost, and how to repair the bag.

    Args:
        damage: what the sequential read found.
        frames_read: frames of the evaluated topic that were read.
        frames_indexed: the topic's frame count from the bag's index when it could be read, else None.
    """
    parts = ["read %d frames" % frames_read]
    if frames_indexed is not None:
        parts.append(
            "%d of the %d frames the index lists are lost" % (max(frames_indexed - frames_read, 0), frames_indexed)
        )
    elif damage.chunks_listed > damage.chunks_read and damage.chunks_read:
        lost_chunks = damage.chunks_listed - damage.chunks_read
        estimate = round(lost_chunks * frames_read / damage.chunks_read)
        parts.append(
            "about %d frames are lost (%d of the %d chunks the bag header lists are unreadable; %.1f frames a chunk)"
            % (estimate, lost_chunks, damage.chunks_listed, frames_read / damage.chunks_read)
        )
    else:
        parts.append("how many frames the unreadable part held is unknown (the bag was never closed)")
    if damage.chunks_skipped:
        parts.append("%d chunks did not decompress" % damage.chunks_skipped)
    if damage.offset < damage.size or damage.reason:
        parts.append("reading stopped at byte %d of %d (%s)" % (damage.offset, damage.size, damage.reason or "end"))
    return "; ".join(parts)
