"""Shared pieces of the rostest test nodes: frames from real sample images, output collection."""

from __future__ import annotations

import threading
import time
import types
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import rospy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import CompressedImage, Image

from dl_vision import assets
from dl_vision.messages import bgr_to_image_msg

REFERENCE_FILE = Path(__file__).resolve().parents[1] / "fixtures" / "astronaut_reference.yaml"
#: How long a test waits for a node to connect (model loading included) and for one answer.
CONNECT_TIMEOUT = 90.0
ANSWER_TIMEOUT = 20.0


def astronaut_face_box() -> np.ndarray:
    """The hand-annotated face box of astronaut.png, xyxy pixels."""
    with open(REFERENCE_FILE) as handle:
        return np.asarray(yaml.safe_load(handle)["faces"][0], dtype=np.float64)


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two xyxy boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def sample_image(name: str) -> np.ndarray:
    """A sample photo (``astronaut``, ``coffee``, ...) as HxWx3 BGR."""
    image = cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError("cannot read sample image %s" % name)
    return image


def wait_for_connection(topic: Any, timeout: float) -> bool:
    """True once a ``rospy.Publisher`` or ``rospy.Subscriber`` has a peer (waits up to ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while topic.get_num_connections() == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the connection's header exchange finishes after the count goes up
    return topic.get_num_connections() > 0


class FramePublisher:
    """Publish BGR frames on an image topic as raw ``bgr8`` or JPEG ``CompressedImage``.

    Args:
        topic: the raw topic name; compressed frames go to ``<topic>/compressed``.
        transport: ``raw`` or ``compressed``.
    """

    def __init__(self, topic: str, transport: str = "raw") -> None:
        self.transport = transport
        if transport == "compressed":
            self.publisher = rospy.Publisher(topic + "/compressed", CompressedImage, queue_size=100)
        else:
            self.publisher = rospy.Publisher(topic, Image, queue_size=100)

    def wait_for_subscriber(self, timeout: float = CONNECT_TIMEOUT) -> bool:
        """True once the node under test subscribed (it subscribes after loading its models)."""
        return wait_for_connection(self.publisher, timeout)

    def message(self, image: np.ndarray) -> Any:
        """The message that :meth:`publish` would send (unstamped)."""
        if self.transport == "compressed":
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95])
            assert ok
            return CompressedImage(format="jpeg", data=data.tobytes())
        return bgr_to_image_msg(image)

    def publish(self, message: Any, frame_id: str = "test_camera") -> rospy.Time:
        """Stamp ``message`` now and publish it; returns the stamp."""
        stamp = rospy.Time.now()
        message.header.stamp = stamp
        message.header.frame_id = frame_id
        self.publisher.publish(message)
        return stamp

    def publish_raw(self, message: Any) -> None:
        """Publish a message as is (malformed messages built by a test)."""
        self.publisher.publish(message)


class Collector:
    """Subscribe to a topic and keep every message with its receive time (ROS time, seconds).

    Args:
        topic: the topic.
        message_class: its type.
        buff_size: subscriber TCP buffer.
        headers_only: keep only each message's header (for long runs of image topics).
    """

    def __init__(self, topic: str, message_class: type, buff_size: int = 2**26, headers_only: bool = False) -> None:
        self.condition = threading.Condition()
        self.received: List[Tuple[float, Any]] = []
        self.headers_only = headers_only
        self.subscriber = rospy.Subscriber(topic, message_class, self._callback, queue_size=1000, buff_size=buff_size)

    def wait_for_publisher(self, timeout: float = 10.0) -> bool:
        """True once the node under test publishes to this collector."""
        return wait_for_connection(self.subscriber, timeout)

    def _callback(self, msg: Any) -> None:
        received = rospy.Time.now().to_sec()
        if self.headers_only:
            msg = types.SimpleNamespace(header=msg.header)
        with self.condition:
            self.received.append((received, msg))
            self.condition.notify_all()

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = ANSWER_TIMEOUT) -> Optional[Any]:
        """The first message (received so far or within ``timeout``) for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        with self.condition:
            while True:
                for _, msg in self.received:
                    if predicate(msg):
                        return msg
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self.condition.wait(remaining)

    def with_stamp(self, stamp: rospy.Time) -> List[Any]:
        """All messages so far whose header stamp equals ``stamp``."""
        with self.condition:
            return [msg for _, msg in self.received if msg.header.stamp == stamp]

    def snapshot(self) -> List[Tuple[float, Any]]:
        """``(receive time, message)`` pairs so far."""
        with self.condition:
            return list(self.received)


def frame_counters(diagnostics: Collector, node_name: str, timeout: float = 10.0) -> Dict[str, str]:
    """The key/values of the node's first ``frames`` diagnostic reported after this call (waits up to ``timeout``)."""
    since = rospy.Time.now().to_sec()
    deadline = time.monotonic() + timeout

    def fresh() -> Optional[Dict[str, str]]:
        for received_at, msg in diagnostics.snapshot():
            if received_at <= since:
                continue
            for status in msg.status:
                if node_name in status.name and status.name.endswith("frames"):
                    return {
                        "_received_at": str(received_at),
                        "_message": status.message,
                        **{kv.key: kv.value for kv in status.values},
                    }
        return None

    while time.monotonic() < deadline:
        values = fresh()
        if values is not None:
            return values
        time.sleep(0.1)
    return {}


def diagnostics_collector() -> Collector:
    """A collector on ``/diagnostics``."""
    return Collector("/diagnostics", DiagnosticArray, buff_size=2**20)
