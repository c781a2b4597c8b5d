#!/usr/bin/env python3
"""rostest: one node, one batch-capable model, several cameras answered in batches.

The node runs the newest frame of every waiting camera as one batch (``~max_batch``). Frames
published on all cameras at once must come back each on its own camera's
``<node>/<camera>/detections`` with that frame's header and the top object and box that camera's
image gives alone;
under overload the node must really batch (diagnostics), no camera may starve, and no answer may
carry a stamp its camera never sent. Parameters: ``~node``, ``~image_topics``, ``~camera_names``.
"""

from __future__ import annotations

import sys
import time
import unittest
from typing import Dict, List, Set, Tuple

import rospy
from vision_test_support import Collector, FramePublisher, diagnostics_collector, frame_counters, sample_image

import rostest
from dl_vision.msg import DetectionArray

#: Seconds every camera publishes at once, each at the node's whole one-frame capacity.
OVERLOAD_SECONDS = 10.0
#: One photo per camera; the detector's top class differs between them.
#: Seconds to wait for the node to subscribe: with a fresh cache it first makes coco_onnx's ONNX
#: export (minutes), which every later start reuses.
STARTUP_TIMEOUT = 420.0
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


class BatchedCamerasTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_batched_cameras")
        cls.node = rospy.get_param("~node")
        cls.names: List[str] = list(rospy.get_param("~camera_names"))
        cls.cameras = [FramePublisher(topic) for topic in rospy.get_param("~image_topics")]
        cls.outputs = [Collector("%s/%s/detections" % (cls.node, name), DetectionArray) for name in cls.names]
        cls.diagnostics = diagnostics_collector()
        for camera in cls.cameras:
            assert camera.wait_for_subscriber(STARTUP_TIMEOUT), "node under test never subscribed to every camera"
        for output in cls.outputs:
            output.wait_for_publisher()
        cls.messages = [camera.message(sample_image(photo)) for camera, photo in zip(cls.cameras, PHOTOS)]

    def _publish_all(self, frame_ids: List[str]) -> List[rospy.Time]:
        return [camera.publish(msg, frame_id) for camera, msg, frame_id in zip(self.cameras, self.messages, frame_ids)]

    @staticmethod
    def _top(answer: DetectionArray) -> Tuple[str, Tuple[float, ...]]:
        """Class name and box of the highest-scoring detection ("" and () when none)."""
        if not answer.detections:
            return "", ()
        best = max(answer.detections, key=lambda d: d.score)
        return best.class_name, (best.x_min, best.y_min, best.x_max, best.y_max)

    def test_1_each_camera_gets_its_own_frame_back_from_a_batch(self) -> None:
        # Alone first: what each photo gives, one frame in the node at a time.
        alone: Dict[str, Tuple[str, Tuple[float, ...]]] = {}
        for camera, output, name, msg in zip(self.cameras, self.outputs, self.names, self.messages):
            stamp = camera.publish(msg, frame_id=name + "_alone")
            answer = output.wait_for(lambda m, s=stamp: m.header.stamp == s, timeout=60.0)
            self.assertIsNotNone(answer, "no answer on %s's topic" % name)
            alone[name] = self._top(answer)
        self.assertEqual(len({top[0] for top in alone.values()}), len(self.names), "photos must differ: %s" % alone)
        # Then all at once, several times: the frames that wait together run as one batch.
        for round_index in range(5):
            stamps = self._publish_all(["%s_round%d" % (name, round_index) for name in self.names])
            for output, name, stamp in zip(self.outputs, self.names, stamps):
                answer = output.wait_for(lambda m, s=stamp: m.header.stamp == s, timeout=60.0)
                self.assertIsNotNone(answer, "round %d: no answer on %s's topic" % (round_index, name))
                self.assertEqual(answer.header.frame_id, "%s_round%d" % (name, round_index))
                # Batched kernels may round differently: the same object, the box within a pixel.
                label, box = self._top(answer)
                self.assertEqual(label, alone[name][0], "round %d, camera %s" % (round_index, name))
                for got, expected in zip(box, alone[name][1]):
                    self.assertAlmostEqual(got, expected, delta=1.0, msg="round %d, camera %s" % (round_index, name))
        counters = frame_counters(self.diagnostics, self.node.lstrip("/"))
        self.assertEqual(counters.get("max batch"), "4", counters)
        self.assertEqual(counters.get("detector provider"), "CPUExecutionProvider", counters)

    def test_2_overloaded_cameras_are_batched_and_none_starves(self) -> None:
        started = time.monotonic()
        stamp = self.cameras[0].publish(self.messages[0])
        self.assertIsNotNone(self.outputs[0].wait_for(lambda m: m.header.stamp == stamp, timeout=60.0))
        period = time.monotonic() - started  # each camera alone at the node's one-frame capacity
        counts_before = [len(output.snapshot()) for output in self.outputs]
        sent: List[Set[rospy.Time]] = [set() for _ in self.cameras]
        started = time.monotonic()
        while time.monotonic() - started < OVERLOAD_SECONDS:
            for camera_sent, stamp in zip(sent, self._publish_all(self.names)):
                camera_sent.add(stamp)
            time.sleep(period)
        time.sleep(3.0)
        answered = []
        for output, name, camera_sent, before in zip(self.outputs, self.names, sent, counts_before):
            stamps = [msg.header.stamp for _, msg in output.snapshot()[before:]]
            answered.append(len(stamps))
            strays = [s for s in stamps if s not in camera_sent]
            self.assertEqual(strays, [], "%s answered frames it never sent" % name)
        total = sum(answered)
        self.assertGreater(total, 8, "the node answered almost nothing under load: %s" % answered)
        for name, count in zip(self.names, answered):
            self.assertGreater(count, total / len(self.names) / 2.0, "camera %s starved: %s" % (name, answered))
        counters = frame_counters(self.diagnostics, self.node.lstrip("/"))
        # Four cameras each at the one-frame capacity: frames wait together and run in batches.
        self.assertGreater(float(counters.get("batch size mean", "0")), 1.5, counters)
        self.assertGreater(int(counters.get("skipped", "0")), 0, "expected stale frames skipped under overload")
        for name, topic in zip(self.names, rospy.get_param("~image_topics")):
            line = counters.get("camera %s (%s)" % (name, topic), "")
            self.assertRegex(line, r"processed [1-9].*errors 0", "counters of %s: %s" % (name, counters))


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "batched_cameras", BatchedCamerasTest, sys.argv)
