"""The vision node: a detector and/or a segmenter shared by one or more camera subscriptions.

``detector_node``, ``segmenter_node`` and ``vision_node`` (both) are this class
with different tasks switched on. Topics and parameters (all private, so they
live under the node's name; see the README's "Nodes, topics and parameters"):

Subscribes ``image`` (``sensor_msgs/Image``; remap it) or, with
``~transport: compressed``, ``<image>/compressed`` (``sensor_msgs/CompressedImage``).
With ``~image_topics: [a, b, ...]`` it subscribes to each of those instead, runs
every camera's newest frame through the same models, and publishes each
camera's outputs under ``~<camera>/`` (camera names from ``~camera_names`` or
from the topics). With ``~max_batch`` > 1 and models that all take a batch,
the newest frames of up to that many waiting cameras go through the models as
one batch; otherwise the cameras take turns.

Publishes ``~detections`` (``dl_vision/DetectionArray``, one per processed frame,
empty included), latched ``~labels`` and ``~segmentation_labels``
(``dl_vision/LabelTable``), and, only while subscribed, ``~class_map`` (mono8
class ids), ``~color_mask`` (bgr8), ``~annotated`` (bgr8) and, opt-in,
``~vision_detections`` (``vision_msgs/Detection2DArray``).
"""

from __future__ import annotations

import collections
import sys
import threading
import time
from typing import Any, Deque, Dict, List, Optional, Sequence, Tuple

import diagnostic_updater
import genpy
import numpy as np
import rosgraph.names
import rospy
from diagnostic_msgs.msg import DiagnosticStatus
from dynamic_reconfigure.server import Server as ReconfigureServer
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dl_vision import messages
from dl_vision.cascade import Cascade, CascadeSegmenter
from dl_vision.cfg import DetectorConfig, SegmenterConfig
from dl_vision.errors import ConfigError, DlVisionError, ImageConversionError
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.msg import DetectionArray, LabelTable
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.ros.latest_frame import FrameCounters, LatestFrameWorker
from dl_vision.structures import Detections

TRANSPORTS = ("raw", "compressed")
#: Interpreter thread switch interval (CPython's default is 5 ms). rospy's receive thread and the
#: worker share the GIL; with the default, the worker waits up to 5 ms at every hand-over while a
#: fast camera keeps the receive thread busy (the benchmark shows the effect: docs/measurements.md).
GIL_SWITCH_INTERVAL_S = 0.0005
#: Frames kept for the rolling statistics in diagnostics.
STATS_WINDOW = 100
#: ``~max_batch`` default: cameras in turn. On ONNX Runtime CPU a batch of four cameras' frames cost
#: nearly four frames' time, so batching raised throughput a little and doubled latency under
#: overload (README, Benchmark); it pays where a batch costs little more than one frame (a GPU).
DEFAULT_MAX_BATCH = 1


def parse_class_filter(text: str) -> Optional[Tuple[str, ...]]:
    """``"face, 3"`` -> ``("face", "3")``; empty or blank -> None (keep every class)."""
    names = tuple(part.strip() for part in str(text).split(",") if part.strip())
    return names or None


def _runtime(namespace: str) -> Dict[str, Any]:
    """Backend options set as parameters (``<namespace>threads``), replacing the spec's ``runtime``."""
    if not rospy.has_param(namespace + "threads"):
        return {}
    return {"threads": rospy.get_param(namespace + "threads")}


#: Trailing topic name parts that say "an image" rather than which camera (dropped from camera names).
_IMAGE_TOPIC_SUFFIXES = ("image", "image_raw", "image_color", "image_rect", "image_rect_color", "image_mono")


def camera_name_from_topic(topic: str) -> str:
    """``/front/camera/image_raw`` -> ``front_camera``: the topic without image suffixes, ``/`` -> ``_``."""
    parts = [part for part in topic.split("/") if part]
    while parts and parts[-1] in _IMAGE_TOPIC_SUFFIXES:
        parts.pop()
    return "_".join(parts)


def camera_names(topics: Sequence[str], names: Optional[Sequence[str]] = None) -> List[str]:
    """One distinct, valid ROS name per input topic (``names`` given, or derived from the topics).

    Raises:
        ConfigError: a wrong count of names, an empty or invalid name, or two cameras with one name.
    """
    if names is None:
        names = [camera_name_from_topic(topic) for topic in topics]
    elif len(names) != len(topics):
        raise ConfigError(
            "~camera_names: expected %d names (one per ~image_topics entry), found %d" % (len(topics), len(names))
        )
    names = [str(name) for name in names]
    for topic, name in zip(topics, names):
        if not name or not rosgraph.names.is_legal_base_name(name):
            raise ConfigError(
                "~camera_names: expected a plain ROS name (letters, digits, _) for %s, found %r; set ~camera_names"
                % (topic, name)
            )
    if len(set(names)) != len(names):
        raise ConfigError("~camera_names: expected one distinct name per camera, found %s; set ~camera_names" % names)
    return names


class _Camera:
    """One input topic and the publishers of its results.

    Args:
        name: the camera's name (its outputs go under ``~<name>/``), or "" for the single-camera layout.
        image_topic: the resolved input topic.
        detect, segment: which outputs to advertise.
        vision_msgs: the ``vision_msgs.msg`` module when ``~vision_detections`` is wanted.
    """

    def __init__(self, name: str, image_topic: str, detect: bool, segment: bool, vision_msgs: Any) -> None:
        self.name = name
        self.image_topic = image_topic
        prefix = "~%s/" % name if name else "~"
        self.detections_pub = rospy.Publisher(prefix + "detections", DetectionArray, queue_size=5) if detect else None
        self.vision_pub = (
            rospy.Publisher(prefix + "vision_detections", vision_msgs.Detection2DArray, queue_size=5)
            if detect and vision_msgs is not None
            else None
        )
        self.class_map_pub = rospy.Publisher(prefix + "class_map", Image, queue_size=2) if segment else None
        self.color_mask_pub = rospy.Publisher(prefix + "color_mask", Image, queue_size=2) if segment else None
        self.annotated_pub = rospy.Publisher(prefix + "annotated", Image, queue_size=2)
        self.subscriber: Optional[rospy.Subscriber] = None

    def wanted(self) -> Outputs:
        """The optional outputs someone subscribes to now."""
        return Outputs(
            class_map=self.class_map_pub is not None and self.class_map_pub.get_num_connections() > 0,
            color_mask=self.color_mask_pub is not None and self.color_mask_pub.get_num_connections() > 0,
            annotated=self.annotated_pub.get_num_connections() > 0,
        )

    def publish(self, built: Any) -> None:
        """Publish the :class:`~dl_vision.frame_processor.FrameMessages` that were built."""
        for publisher, msg in (
            (self.detections_pub, built.detections),
            (self.class_map_pub, built.class_map),
            (self.color_mask_pub, built.color_mask),
            (self.annotated_pub, built.annotated),
        ):
            if msg is not None:
                publisher.publish(msg)


class VisionNode:
    """Subscribe to one or more image topics, run the enabled models on the newest frames, publish results.

    Args:
        detect: run a detector (``~detector/model``, default ``coco``).
        segment: run a segmenter (``~segmenter/model``, default ``person_segmentation``).

    Raises:
        ConfigError: bad parameter values; ModelError and friends: the model cannot load.
    """

    def __init__(self, detect: bool, segment: bool) -> None:
        self.transport = str(rospy.get_param("~transport", "raw"))
        if self.transport not in TRANSPORTS:
            raise ConfigError("~transport: expected one of %s, found %r" % ("|".join(TRANSPORTS), self.transport))
        max_batch = rospy.get_param("~max_batch", DEFAULT_MAX_BATCH)
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError("~max_batch: expected a positive integer, found %r" % (max_batch,))
        # Advertise before loading the models (seconds) so that consumers are
        # connected by the time the first frame is answered.
        self.vision_msgs = self._vision_msgs_module() if detect else None
        self.cameras = [
            _Camera(name, topic, detect, segment, self.vision_msgs) for name, topic in self._camera_topics()
        ]
        detector = self._load_detector() if detect else None
        self.processor = FrameProcessor(detector, self._load_segmenter(detector) if segment else None)
        self.types = messages.genpy_types()
        self._latched = []
        for model, topic in ((self.processor.detector, "~labels"), (self.processor.segmenter, "~segmentation_labels")):
            if model is not None:
                publisher = rospy.Publisher(topic, LabelTable, queue_size=1, latch=True)
                publisher.publish(messages.label_table_msg(model.labels, model.spec.name, None, model.keypoint_schema))
                self._latched.append(publisher)

        self._reconfigure = []
        if detect:
            self._reconfigure.append(ReconfigureServer(DetectorConfig, self._on_detector_config, namespace="~detector"))
        if segment:
            self._reconfigure.append(
                ReconfigureServer(SegmenterConfig, self._on_segmenter_config, namespace="~segmenter")
            )

        self._stats_lock = threading.Lock()
        #: Per batch: the worker's seconds per frame of it, and its size.
        self._frame_seconds: Deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._batch_sizes: Deque[int] = collections.deque(maxlen=STATS_WINDOW)
        self._latency_seconds: Deque[float] = collections.deque(maxlen=STATS_WINDOW)
        self._last_error = ""
        self._last_counts = {"received": 0, "processed": 0}
        self._last_report = time.monotonic()
        self.worker = LatestFrameWorker(
            self._process, self._on_error, name="vision-worker", max_batch=self._batch_size(max_batch)
        )
        self.updater = diagnostic_updater.Updater()
        self.updater.setHardwareID(rospy.get_name())
        self.updater.add("frames", self._diagnose)
        period = float(rospy.get_param("~diagnostic_period", 1.0))
        self._diagnostics_timer = rospy.Timer(rospy.Duration(period), lambda _event: self.updater.update())

        self.worker.start()
        rospy.on_shutdown(self.worker.stop)
        # Subscribe last: frames arrive only once the models are loaded. As raw bytes (AnyMsg):
        # only the frames the worker takes are deserialised, not the ones a newer frame replaces.
        self.message_class = CompressedImage if self.transport == "compressed" else Image
        queue_size = int(rospy.get_param("~queue_size", 1))
        buff_size = int(rospy.get_param("~buff_size", 2**26))
        for camera in self.cameras:
            camera.subscriber = rospy.Subscriber(
                camera.image_topic,
                rospy.AnyMsg,
                self._on_image,
                callback_args=camera,
                queue_size=queue_size,
                buff_size=buff_size,
                tcp_nodelay=True,
            )
        rospy.loginfo(
            "%s: %s on %s (%s%s)",
            rospy.get_name(),
            " + ".join("%s (%s)" % (model.spec.name, model.backend.provider) for model in self.processor.models),
            ", ".join(camera.image_topic for camera in self.cameras),
            self.transport,
            ", up to %d cameras per batch" % self.worker.max_batch if self.worker.max_batch > 1 else "",
        )

    # -- setup ---------------------------------------------------------------------------
    @staticmethod
    def _load_detector() -> Detector:
        detector = Detector.from_spec(str(rospy.get_param("~detector/model", "coco")), **_runtime("~detector/"))
        options = detector.options
        # The spec's thresholds are the defaults; dynamic_reconfigure reads these
        # parameters at start, so seed the ones the user did not set.
        for key, value in (("score_threshold", options.score_threshold), ("nms_iou", options.nms_iou)):
            if not rospy.has_param("~detector/" + key):
                rospy.set_param("~detector/" + key, float(value))
        options.max_detections = int(rospy.get_param("~detector/max_detections", options.max_detections))
        return detector

    @staticmethod
    def _load_segmenter(detector: Optional[Detector]) -> Segmenter:
        """The segmenter; the detector's own cascade when both name the same one (loaded and run once)."""
        model = str(rospy.get_param("~segmenter/model", "person_segmentation"))
        if isinstance(detector, Cascade) and model == str(rospy.get_param("~detector/model", "coco")):
            segmenter = CascadeSegmenter(detector)
        else:
            segmenter = Segmenter.from_spec(model, **_runtime("~segmenter/"))
        if not rospy.has_param("~segmenter/threshold"):
            rospy.set_param("~segmenter/threshold", float(segmenter.options.mask_threshold))
        return segmenter

    def _batch_size(self, wanted: int) -> int:
        """Most frames per model run: ``~max_batch`` capped by the camera count; 1 unless every model takes a batch."""
        if wanted > 1 and len(self.cameras) > 1 and not self.processor.supports_batch:
            if rospy.has_param("~max_batch"):
                rospy.logwarn(
                    "%s: ~max_batch %d ignored: %s cannot run a batch (fixed batch dimension); cameras take turns",
                    rospy.get_name(),
                    wanted,
                    " / ".join(model.spec.name for model in self.processor.models if not model.backend.supports_batch),
                )
            return 1
        return min(wanted, len(self.cameras))

    def _camera_topics(self) -> List[Tuple[str, str]]:
        """``(camera name, resolved input topic)`` per camera; name "" for the single ``image`` topic."""
        topics = rospy.get_param("~image_topics", [])
        if not isinstance(topics, list) or not all(isinstance(t, str) and t.strip() for t in topics):
            raise ConfigError("~image_topics: expected a list of topic names, found %r" % (topics,))
        suffix = "/compressed" if self.transport == "compressed" else ""
        if not topics:
            return [("", rospy.resolve_name("image") + suffix)]
        resolved = [rospy.resolve_name(t.strip()) for t in topics]
        if len(set(resolved)) != len(resolved):
            raise ConfigError("~image_topics: expected distinct topics, found %s" % resolved)
        names = rospy.get_param("~camera_names", None)
        if names is not None and not isinstance(names, list):
            raise ConfigError("~camera_names: expected a list of names, found %r" % (names,))
        return [(name, topic + suffix) for name, topic in zip(camera_names(resolved, names), resolved)]

    @staticmethod
    def _vision_msgs_module() -> Any:
        if not rospy.get_param("~publish_vision_msgs", False):
            return None
        try:
            from vision_msgs import msg as vision_msgs
        except ImportError:
            rospy.logwarn("~publish_vision_msgs is set but vision_msgs is not installed; not publishing it")
            return None
        return vision_msgs

    # -- live settings -------------------------------------------------------------------
    def _on_detector_config(self, config: Any, _level: int) -> Any:
        processor = self.processor
        processor.detector.options.score_threshold = float(config.score_threshold)
        processor.detector.options.nms_iou = float(config.nms_iou)
        processor.class_filter = parse_class_filter(config.class_filter)
        processor.detector_enabled = bool(config.enabled)
        return config

    def _on_segmenter_config(self, config: Any, _level: int) -> Any:
        processor = self.processor
        processor.segmenter.options.mask_threshold = float(config.threshold)
        processor.mask_alpha = float(config.mask_alpha)
        processor.segmenter_enabled = bool(config.enabled)
        return config

    # -- frames --------------------------------------------------------------------------
    def _on_image(self, msg: Any, camera: _Camera) -> None:
        """Subscriber callback (rospy's receive thread): keep the camera's newest frame, nothing else."""
        processor = self.processor
        if not (processor.detector_enabled or processor.segmenter_enabled):
            self.worker.drop(camera.name)
            return
        self.worker.put((camera, msg), camera.name)

    def _check_type(self, raw: rospy.AnyMsg) -> None:
        """Check that the publisher of a frame's bytes sends the message type this node decodes.

        Raises:
            ImageConversionError: the publisher sends another type (e.g. JPEGs to a raw node).
        """
        expected = self.message_class
        connection = getattr(raw, "_connection_header", None) or {}
        found = connection.get("type", "?")
        if found != expected._type or connection.get("md5sum", expected._md5sum) not in (expected._md5sum, "*"):
            raise ImageConversionError(
                "input type: expected %s (md5 %s), found %s (md5 %s) from %s"
                % (expected._type, expected._md5sum, found, connection.get("md5sum", "?"), connection.get("callerid"))
            )

    def _process(self, items: List[Tuple[_Camera, rospy.AnyMsg]]) -> List[Optional[Exception]]:
        """Worker thread: the taken frames (one per camera) through the processor as one batch.

        Each frame's messages go to its own camera's topics. A frame of the wrong type, or one that
        does not decode, fails alone (its error in its place); a model failure fails the batch.
        """
        started = time.monotonic()
        outcomes: List[Optional[Exception]] = [None] * len(items)
        accepted = []
        for index, (_camera, raw) in enumerate(items):
            try:
                self._check_type(raw)
            except ImageConversionError as err:
                outcomes[index] = err
            else:
                accepted.append(index)
        if not accepted:
            return outcomes
        results = self.processor.process_serialized_batch(
            [items[i][1]._buff for i in accepted],
            self.message_class,
            [items[i][0].wanted() for i in accepted],
            self.types,
        )
        latencies = []
        for index, result in zip(accepted, results):
            if isinstance(result, Exception):
                outcomes[index] = result
                continue
            camera = items[index][0]
            camera.publish(result.messages)
            if camera.vision_pub is not None and result.detections is not None:
                camera.vision_pub.publish(to_detection2d_array(self.vision_msgs, result.detections, result.header))
            stamp = result.header.stamp
            latencies.append((rospy.Time.now() - stamp).to_sec() if stamp else float("nan"))
        if latencies:
            with self._stats_lock:
                self._frame_seconds.append((time.monotonic() - started) / len(latencies))
                self._batch_sizes.append(len(latencies))
                self._latency_seconds.extend(latencies)
        return outcomes

    def _on_error(self, item: Tuple[_Camera, Any], err: Exception) -> None:
        camera, raw = item
        kind = "bad input" if isinstance(err, DlVisionError) else "unexpected %s" % type(err).__name__
        source = " from %s" % camera.image_topic if len(self.cameras) > 1 else ""
        try:  # both image types start with their Header
            stamp = "%.3f" % Header().deserialize(raw._buff).stamp.to_sec()
        except genpy.DeserializationError:
            stamp = "?"
        text = "%s%s (frame stamp %s): %s" % (kind, source, stamp, err)
        self._last_error = text
        rospy.logerr_throttle(5.0, "%s: dropped frame, %s" % (rospy.get_name(), text))

    # -- diagnostics ---------------------------------------------------------------------
    def _diagnose(self, stat: diagnostic_updater.DiagnosticStatusWrapper) -> diagnostic_updater.DiagnosticStatusWrapper:
        counts = self.worker.counters.snapshot()
        now = time.monotonic()
        elapsed = max(now - self._last_report, 1e-6)
        input_rate = (counts["received"] - self._last_counts["received"]) / elapsed
        output_rate = (counts["processed"] - self._last_counts["processed"]) / elapsed
        self._last_counts, self._last_report = counts, now
        with self._stats_lock:
            frame_ms = 1000.0 * np.asarray(self._frame_seconds, dtype=np.float64)
            batch_sizes = np.asarray(self._batch_sizes, dtype=np.float64)
            latency_ms = 1000.0 * np.asarray(self._latency_seconds, dtype=np.float64)
        if not self.worker.alive:
            stat.summary(DiagnosticStatus.ERROR, "worker thread stopped")
        elif counts["errors"]:
            stat.summary(DiagnosticStatus.WARN, "%d bad frames; last: %s" % (counts["errors"], self._last_error))
        else:
            stat.summary(DiagnosticStatus.OK, "ok")
        for key in ("received", "processed", "skipped", "errors"):
            stat.add(key, str(counts[key]))
        if len(self.cameras) > 1:
            by_camera = self.worker.source_counters()
            for camera in self.cameras:
                mine = by_camera.get(camera.name) or FrameCounters().snapshot()  # zeros before its first frame
                stat.add(
                    "camera %s (%s)" % (camera.name, camera.image_topic),
                    "received %(received)d, processed %(processed)d, skipped %(skipped)d, errors %(errors)d" % mine,
                )
        stat.add("input rate (Hz)", "%.2f" % input_rate)
        stat.add("processed rate (Hz)", "%.2f" % output_rate)
        if frame_ms.size:
            stat.add("frame time median (ms)", "%.2f" % np.median(frame_ms))
            stat.add("frame time max (ms)", "%.2f" % frame_ms.max())
            finite = latency_ms[np.isfinite(latency_ms)]
            stat.add("latency median (ms)", "%.2f" % np.median(finite) if finite.size else "n/a")
        stat.add("max batch", str(self.worker.max_batch))
        if self.worker.max_batch > 1 and batch_sizes.size:
            stat.add("batch size mean", "%.2f" % batch_sizes.mean())
        processor = self.processor
        for prefix, model, enabled in (
            ("detector", processor.detector, processor.detector_enabled),
            ("segmenter", processor.segmenter, processor.segmenter_enabled),
        ):
            if model is not None:
                stat.add(prefix + " model", model.spec.name)
                stat.add(prefix + " provider", model.backend.provider)
                stat.add(prefix + " enabled", str(enabled))
        for stage, milliseconds in processor.timings.items():  # the last batch's stages
            stat.add("%s (ms)" % stage.replace("/", " "), "%.2f" % milliseconds)
        return stat


def to_detection2d_array(vision_msgs: Any, detections: Detections, header: Any) -> Any:
    """``vision_msgs/Detection2DArray`` (Noetic layout: integer hypothesis ids, centre + size boxes)."""
    out = vision_msgs.Detection2DArray(header=header)
    for box, score, class_id in zip(detections.xyxy.tolist(), detections.score.tolist(), detections.class_id.tolist()):
        det = vision_msgs.Detection2D(header=header)
        det.bbox.center.x = (box[0] + box[2]) / 2.0
        det.bbox.center.y = (box[1] + box[3]) / 2.0
        det.bbox.size_x = box[2] - box[0]
        det.bbox.size_y = box[3] - box[1]
        det.results.append(vision_msgs.ObjectHypothesisWithPose(id=int(class_id), score=float(score)))
        out.detections.append(det)
    return out


def main(name: str, detect: bool, segment: bool, argv: Sequence[str]) -> int:
    """Run a node until shutdown; a configuration or model error is one fatal log line and exit code 1."""
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    rospy.init_node(name, argv=list(argv))
    try:
        VisionNode(detect=detect, segment=segment)
    except DlVisionError as err:
        rospy.logfatal("%s: %s", rospy.get_name(), err)
        return 1
    rospy.spin()
    return 0
