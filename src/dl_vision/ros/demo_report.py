"""Print what a vision node found, frame by frame, and save its annotated images.

``demo_report`` subscribes to ``detections``, ``class_map`` and ``annotated``
(remap them to a node's outputs), joins them by header, prints one line per
frame and writes ``frame_NNN.jpg`` to ``~output_dir``. It exits after
``~frames`` frames, after ``~idle_timeout`` seconds without a new frame, or
after ``~timeout`` seconds, whichever comes first; exit code 1 when no frame
arrived at all.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import rospy
from sensor_msgs.msg import Image

from dl_vision.messages import MASK_INSIDE, image_to_bgr, mono8_to_array
from dl_vision.msg import DetectionArray, LabelTable

FrameKey = Tuple[int, str]


def describe(detections: Optional[DetectionArray], class_map: Optional[np.ndarray], labels: Dict[int, str]) -> str:
    """One line: each detection as ``name score [x0 y0 x1 y1]`` and each non-zero class's pixel share."""
    parts: List[str] = []
    if detections is not None:
        found = [
            "%s %.2f [%.0f %.0f %.0f %.0f]%s" % (d.class_name, d.score, d.x_min, d.y_min, d.x_max, d.y_max, _extras(d))
            for d in detections.detections
        ]
        parts.append("%d detections%s" % (len(found), (": " + ", ".join(found)) if found else ""))
    if class_map is not None:
        ids, counts = np.unique(class_map, return_counts=True)
        shares = [
            "%s %.1f%%" % (labels.get(int(i), str(int(i))), 100.0 * c / class_map.size)
            for i, c in zip(ids, counts)
            if i != 0
        ]
        parts.append("segmentation: " + (", ".join(shares) if shares else "background only"))
    return "; ".join(parts)


def _extras(detection: Any) -> str:
    """`` pose 12/17`` (keypoints scoring 0.3 or more) and `` mask 1234 px`` (non-empty masks) of a detection."""
    text = ""
    if len(detection.keypoints):
        scores = np.asarray(detection.keypoint_scores, np.float32)
        confident = int((scores >= 0.3).sum()) if scores.size else len(detection.keypoints) // 2
        text += " pose %d/%d" % (confident, len(detection.keypoints) // 2)
    pixels = int((mono8_to_array(detection.mask, "mask") >= MASK_INSIDE).sum()) if detection.mask.width else 0
    if pixels:
        text += " mask %d px" % pixels
    return text


class DemoReporter:
    """Join a node's outputs per frame, print them and save annotated images.

    Args:
        output_dir: where ``frame_NNN.jpg`` files go (created).
        expect_detections: wait for ``detections`` before reporting a frame.
        expect_segmentation: wait for ``class_map`` before reporting a frame.
        expect_annotated: wait for ``annotated`` (and save it).
    """

    def __init__(
        self, output_dir: Path, expect_detections: bool, expect_segmentation: bool, expect_annotated: bool
    ) -> None:
        self.output_dir = output_dir
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.expected = [
            name
            for name, wanted in (
                ("detections", expect_detections),
                ("class_map", expect_segmentation),
                ("annotated", expect_annotated),
            )
            if wanted
        ]
        self.pending: Dict[FrameKey, Dict[str, object]] = collections.OrderedDict()
        self.labels: Dict[int, str] = {}
        self.reported = 0
        self.class_counts: Dict[str, int] = collections.Counter()
        self.latencies: List[float] = []
        self.last_report_time = rospy.get_time()
        self.lock = threading.Lock()
        self.subscribers = [rospy.Subscriber("segmentation_labels", LabelTable, self._on_labels)]
        if expect_detections:
            self.subscribers.append(rospy.Subscriber("detections", DetectionArray, self._on_part, "detections"))
        if expect_segmentation:
            self.subscribers.append(rospy.Subscriber("class_map", Image, self._on_part, "class_map", buff_size=2**24))
        if expect_annotated:
            self.subscribers.append(rospy.Subscriber("annotated", Image, self._on_part, "annotated", buff_size=2**26))

    def _on_labels(self, msg: LabelTable) -> None:
        self.labels = dict(zip(msg.class_ids, msg.class_names))

    def _on_part(self, msg, part: str) -> None:
        key = (msg.header.stamp.to_nsec(), msg.header.frame_id)
        with self.lock:
            parts = self.pending.setdefault(key, {})
            parts[part] = msg
            if all(name in parts for name in self.expected):
                del self.pending[key]
                self._report(parts)
            while len(self.pending) > 50:  # frames whose other parts never came
                self.pending.popitem(last=False)

    def _report(self, parts: Dict[str, object]) -> None:
        detections = parts.get("detections")
        class_map = mono8_to_array(parts["class_map"]) if "class_map" in parts else None
        header = next(iter(parts.values())).header
        latency = rospy.get_time() - header.stamp.to_sec()
        self.latencies.append(latency)
        if detections is not None:
            self.class_counts.update(d.class_name for d in detections.detections)
        line = describe(detections, class_map, self.labels)
        name = "frame_%03d.jpg" % self.reported
        if "annotated" in parts:
            cv2.imwrite(str(self.output_dir / name), image_to_bgr(parts["annotated"]))
            line += " -> " + name
        print(
            "frame %3d  stamp %.3f  latency %4.0f ms  %s"
            % (self.reported, header.stamp.to_sec(), 1000 * latency, line),
            flush=True,
        )
        self.reported += 1
        self.last_report_time = rospy.get_time()

    def summary(self) -> str:
        """Totals over all reported frames."""
        found = ", ".join("%s x%d" % kv for kv in sorted(self.class_counts.items())) or "nothing"
        latency = "median latency %.0f ms" % (1000 * float(np.median(self.latencies))) if self.latencies else ""
        return "%d frames reported, found %s; %s; annotated images in %s" % (
            self.reported,
            found,
            latency,
            self.output_dir,
        )


def main(argv: Sequence[str]) -> int:
    """``demo_report`` entry point."""
    rospy.init_node("demo_report", argv=list(argv))
    reporter = DemoReporter(
        Path(str(rospy.get_param("~output_dir", "~/.dl_vision/demo_output"))).expanduser(),
        expect_detections=bool(rospy.get_param("~detections", True)),
        expect_segmentation=bool(rospy.get_param("~segmentation", True)),
        expect_annotated=bool(rospy.get_param("~annotated", True)),
    )
    frames = int(rospy.get_param("~frames", 0))
    timeout = float(rospy.get_param("~timeout", 300.0))
    idle_timeout = float(rospy.get_param("~idle_timeout", 10.0))
    started = rospy.get_time()
    while not rospy.is_shutdown():
        now = rospy.get_time()
        if frames and reporter.reported >= frames:
            break
        if reporter.reported and now - reporter.last_report_time > idle_timeout:
            break
        if now - started > timeout:
            break
        rospy.sleep(0.1)
    print(reporter.summary(), flush=True)
    return 0 if reporter.reported else 1
