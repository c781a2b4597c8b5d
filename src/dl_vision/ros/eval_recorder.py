"""Recorder of the live evaluation: what the nodes published while a bag played through them.

Subscribes to the played image topic and to the nodes' outputs (``DetectionArray`` and/or mono8
class maps). Every output message is written to a bag unchanged (its header is the input image's
header, so it matches ground truth by stamp); arrival times of inputs and outputs, taken on this
process's monotonic clock, go to a timing JSON (end-to-end latency = output arrival - arrival of
the image with the same stamp). The recorder ends the launch (it is ``required``) once it has seen
the expected number of frames and no output came for ``~settle_s``, or nothing arrived for
``~idle_timeout_s``.

Parameters: ``~output_bag``, ``~timing_json``, ``~expected_frames`` (0: stop on idle only),
``~detections_topic``, ``~class_map_topic`` (empty: not recorded), ``~settle_s`` (2.0),
``~idle_timeout_s`` (15.0), ``~startup_timeout_s`` (120.0), ``~ready_topic`` (the node's latched
``LabelTable``; images are subscribed once it arrives). Subscribes ``image`` (remap it to the played topic).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Dict, List

import rosbag
import rospy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dl_vision.messages import stamp_to_ns
from dl_vision.msg import DetectionArray, LabelTable


class EvalRecorder:
    """Records outputs and arrival times; see the module docstring for topics and parameters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.inputs: Dict[int, float] = {}
        self.outputs: Dict[str, Dict[int, float]] = {}
        self.first_arrival = None
        self.last_arrival = time.monotonic()
        self.last_output = time.monotonic()
        self.expected = int(rospy.get_param("~expected_frames", 0))
        self.settle_s = float(rospy.get_param("~settle_s", 2.0))
        self.idle_timeout_s = float(rospy.get_param("~idle_timeout_s", 15.0))
        self.startup_timeout_s = float(rospy.get_param("~startup_timeout_s", 120.0))
        self.timing_path = str(rospy.get_param("~timing_json"))
        self.bag = rosbag.Bag(str(rospy.get_param("~output_bag")), "w")
        self.started = time.monotonic()
        self.subscribers: List[rospy.Subscriber] = []
        for param, message_class in (("~detections_topic", DetectionArray), ("~class_map_topic", Image)):
            topic = str(rospy.get_param(param, ""))
            if topic:
                self.outputs[topic] = {}
                self.subscribers.append(
                    rospy.Subscriber(
                        topic, message_class, self._on_output, callback_args=topic, queue_size=1000, tcp_nodelay=True
                    )
                )

    def wait_ready(self) -> None:
        """Wait (wall clock) for the node's latched label table, then subscribe to the images.

        ``rosbag play --wait-for-subscribers`` starts playing once this subscription exists, so
        no frame is played before the node has loaded its model.
        """
        ready_topic = str(rospy.get_param("~ready_topic", ""))
        if ready_topic:
            rospy.wait_for_message(ready_topic, LabelTable, timeout=self.startup_timeout_s)
        # Only the header is needed: as raw bytes (AnyMsg) the image is never deserialised, so its
        # arrival time is taken as soon as rospy hands it over (a slow image callback would let the
        # node's small outputs arrive "before" their input). A large buffer keeps rospy from
        # dropping frames at the socket (which would count as the node's drops).
        self.subscribers.append(
            rospy.Subscriber("image", rospy.AnyMsg, self._on_image, queue_size=1000, buff_size=2**26, tcp_nodelay=True)
        )
        self.started = time.monotonic()

    def _on_image(self, raw: rospy.AnyMsg) -> None:
        now = time.monotonic()
        header = Header().deserialize(raw._buff)  # Image and CompressedImage both start with it
        with self.lock:
            self.inputs.setdefault(stamp_to_ns(header.stamp), now)
            self.first_arrival = self.first_arrival or now
            self.last_arrival = now

    def _on_output(self, msg, topic: str) -> None:
        now = time.monotonic()
        with self.lock:
            self.outputs[topic].setdefault(stamp_to_ns(msg.header.stamp), now)
            self.last_arrival = self.last_output = now
            self.bag.write(topic, msg, msg.header.stamp if not msg.header.stamp.is_zero() else rospy.Time(0, 1))

    def done(self) -> bool:
        """True when recording should stop (all frames seen and outputs settled, or idle)."""
        now = time.monotonic()
        with self.lock:
            if self.first_arrival is None:
                return now - self.started > self.startup_timeout_s
            if self.expected and len(self.inputs) >= self.expected and now - self.last_output > self.settle_s:
                return True
            return now - self.last_arrival > self.idle_timeout_s

    def close(self) -> None:
        """Close the bag and write the timing JSON."""
        for sub in self.subscribers:
            sub.unregister()
        with self.lock:
            self.bag.close()
            timing = {
                "expected_frames": self.expected,
                "inputs": {str(k): v for k, v in self.inputs.items()},
                "outputs": {
                    topic: {str(k): v for k, v in arrivals.items()} for topic, arrivals in self.outputs.items()
                },
            }
        with open(self.timing_path, "w") as handle:
            json.dump(timing, handle)


def main() -> int:
    """Run the recorder until done, then shut down (which ends a launch where it is required)."""
    rospy.init_node("eval_recorder")
    recorder = EvalRecorder()
    try:
        recorder.wait_ready()
        while not rospy.is_shutdown() and not recorder.done():
            time.sleep(0.1)  # wall time: the sim clock stops when the bag ends
    finally:
        recorder.close()
    rospy.loginfo(
        "eval_recorder: %d input frames, outputs %s",
        len(recorder.inputs),
        {t: len(a) for t, a in recorder.outputs.items()},
    )
    rospy.signal_shutdown("recording complete")
    return 0
