#!/usr/bin/env python3
"""rostest: one node, one model, several cameras.

Each camera's frames come back on ``<node>/<camera>/detections`` with that
frame's header, and on no other camera's topic; when all cameras publish faster
than the node can answer, every camera still gets a fair share of the answers
and the diagnostics count each camera. Parameters: ``~node``, ``~image_topics``
and ``~camera_names`` (the names the node is expected to derive from the topics).
"""

from __future__ import annotations

import sys
import time
import unittest
from typing import List

import cv2
import rospy
from vision_test_support import Collector, FramePublisher, diagnostics_collector, frame_counters, sample_image

import rostest
from dl_vision.msg import DetectionArray

#: Seconds every camera publishes at once, each at twice the node's whole capacity.
OVERLOAD_SECONDS = 6.0


class MultiCameraTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_multi_camera")
        cls.node = rospy.get_param("~node")
        cls.names: List[str] = list(rospy.get_param("~camera_names"))
        cls.cameras = [FramePublisher(topic) for topic in rospy.get_param("~image_topics")]
        cls.outputs = [Collector("%s/%s/detections" % (cls.node, name), DetectionArray) for name in cls.names]
        cls.diagnostics = diagnostics_collector()
        for camera in cls.cameras:
            assert camera.wait_for_subscriber(), "node under test never subscribed to every camera"
        for output in cls.outputs:
            output.wait_for_publisher()

    def test_1_each_camera_is_answered_on_its_own_topic(self) -> None:
        astronaut = sample_image("astronaut")
        frames = {"astronaut": astronaut, "coffee": sample_image("coffee"), "mirrored": cv2.flip(astronaut, 1)}
        for camera, output, name, image in zip(self.cameras, self.outputs, self.names, frames):
            stamp = camera.publish(camera.message(frames[image]), frame_id=name + "_optical")
            answer = output.wait_for(lambda m, s=stamp: m.header.stamp == s)
            self.assertIsNotNone(answer, "no answer on %s's topic" % name)
            self.assertEqual(answer.header.frame_id, name + "_optical")
            self.assertEqual(len(answer.detections), 0 if image == "coffee" else 1, (name, image))
            for other in self.outputs:
                if other is not output:
                    self.assertEqual(other.with_stamp(stamp), [], "%s's frame answered on another camera" % name)

    def test_2_overloaded_cameras_take_turns(self) -> None:
        counts_before = [len(output.snapshot()) for output in self.outputs]
        messages = [camera.message(sample_image("astronaut")) for camera in self.cameras]
        stamp = self.cameras[0].publish(messages[0])
        started = time.monotonic()
        self.assertIsNotNone(self.outputs[0].wait_for(lambda m: m.header.stamp == stamp))
        one_frame = time.monotonic() - started
        period = one_frame / 2.0  # each camera alone at twice what the node can answer
        started = time.monotonic()
        while time.monotonic() - started < OVERLOAD_SECONDS:
            for camera, message in zip(self.cameras, messages):
                camera.publish(message)
            time.sleep(period)
        time.sleep(1.0)
        answered = [len(output.snapshot()) - before for output, before in zip(self.outputs, counts_before)]
        total = sum(answered)
        self.assertGreater(total, 10, "the node answered almost nothing under load: %s" % answered)
        for name, count in zip(self.names, answered):
            # Round-robin gives each of three cameras about a third; a starved one would get ~0.
            self.assertGreater(count, total / len(self.names) / 2.0, "camera %s starved: %s" % (name, answered))
        counters = frame_counters(self.diagnostics, self.node.lstrip("/"))
        self.assertGreater(int(counters.get("skipped", "0")), 0, "expected stale frames skipped under overload")
        for name, topic in zip(self.names, rospy.get_param("~image_topics")):
            line = counters.get("camera %s (%s)" % (name, topic), "")
            self.assertRegex(line, r"processed [1-9]", "no per-camera counters for %s: %s" % (name, counters))


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "multi_camera", MultiCameraTest, sys.argv)
