#!/usr/bin/env python3
"""rostest: ``~vision_detections`` carries the same detections as ``~detections``, as vision_msgs.

For each frame (one face, none, two faces) the node must publish exactly one
``vision_msgs/Detection2DArray``, empty included, with the input's header, and each
``Detection2D`` must hold the box of the matching ``dl_vision/Detection`` as centre and size,
its class id and its score. Parameters: ``~node`` (the node's resolved name), ``~image_topic``.
"""

from __future__ import annotations

import sys
import time
import unittest

import numpy as np
import rospy
from vision_msgs.msg import Detection2DArray
from vision_test_support import Collector, FramePublisher, sample_image

import rostest
from dl_vision.msg import DetectionArray

#: Time to wait after an answer for a (wrong) second answer to the same frame.
DUPLICATE_WINDOW = 0.5
FRAME_ID = "test_camera_optical"


class VisionMsgsOutputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_vision_msgs_output")
        node = rospy.get_param("~node")
        cls.detections = Collector(node + "/detections", DetectionArray)
        cls.vision = Collector(node + "/vision_detections", Detection2DArray)
        cls.camera = FramePublisher(rospy.get_param("~image_topic"))
        assert cls.camera.wait_for_subscriber(), "node under test never subscribed"
        assert cls.vision.wait_for_publisher(), "node under test does not publish vision_detections"

    def _answers(self, image: np.ndarray):
        """Publish one frame; return (stamp, its DetectionArray, its only Detection2DArray)."""
        stamp = self.camera.publish(self.camera.message(image), frame_id=FRAME_ID)
        ours = self.detections.wait_for(lambda m: m.header.stamp == stamp)
        theirs = self.vision.wait_for(lambda m: m.header.stamp == stamp)
        self.assertIsNotNone(ours, "no DetectionArray")
        self.assertIsNotNone(theirs, "no Detection2DArray")
        time.sleep(DUPLICATE_WINDOW)
        self.assertEqual(len(self.vision.with_stamp(stamp)), 1, "expected exactly one Detection2DArray per frame")
        return stamp, ours, theirs

    def test_detection2d_arrays_match_the_detection_arrays_frame_by_frame(self) -> None:
        astronaut = sample_image("astronaut")
        frames = [
            ("astronaut", astronaut, 1),
            ("coffee", sample_image("coffee"), 0),
            ("two astronauts", np.hstack([astronaut, astronaut[:, ::-1]]), 2),
        ]
        for name, image, faces in frames:
            stamp, ours, theirs = self._answers(image)
            self.assertEqual(theirs.header.frame_id, FRAME_ID, name)
            self.assertEqual(theirs.header.stamp, stamp, name)
            self.assertEqual(len(ours.detections), faces, "%s: the detector's own output" % name)
            self.assertEqual(len(theirs.detections), faces, name)
            for found, expected in zip(theirs.detections, ours.detections):
                self.assertEqual((found.header.stamp, found.header.frame_id), (stamp, FRAME_ID), name)
                box = found.bbox
                self.assertAlmostEqual(box.center.x, (expected.x_min + expected.x_max) / 2, places=3, msg=name)
                self.assertAlmostEqual(box.center.y, (expected.y_min + expected.y_max) / 2, places=3, msg=name)
                self.assertEqual(box.center.theta, 0.0, name)
                self.assertAlmostEqual(box.size_x, expected.x_max - expected.x_min, places=3, msg=name)
                self.assertAlmostEqual(box.size_y, expected.y_max - expected.y_min, places=3, msg=name)
                self.assertEqual([r.id for r in found.results], [expected.class_id], name)
                self.assertAlmostEqual(found.results[0].score, expected.score, places=6, msg=name)
        # The two-face frame (the last): one face in each half of the 1024 px wide image.
        centres = sorted(d.bbox.center.x for d in theirs.detections)
        self.assertLess(centres[0], 512)
        self.assertGreater(centres[1], 512)


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "vision_msgs_output", VisionMsgsOutputTest, sys.argv)
