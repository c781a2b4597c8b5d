#!/usr/bin/env python3
"""rostest: thresholds, class filters and switches changed through dynamic_reconfigure change the output.

Parameters: ``~node`` (a vision_node's name: detector and segmenter), ``~image_topic``.
"""

from __future__ import annotations

import sys
import time
import unittest

import rospy
from dynamic_reconfigure.client import Client
from sensor_msgs.msg import Image
from vision_test_support import Collector, FramePublisher, sample_image

import rostest
from dl_vision.messages import mono8_to_array
from dl_vision.msg import DetectionArray


class ReconfigureTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_reconfigure")
        node = rospy.get_param("~node")
        cls.detections = Collector(node + "/detections", DetectionArray)
        cls.class_maps = Collector(node + "/class_map", Image)
        cls.camera = FramePublisher(rospy.get_param("~image_topic"))
        assert cls.camera.wait_for_subscriber(), "node under test never subscribed"
        cls.client = Client(node + "/detector", timeout=30)
        cls.segmenter_client = Client(node + "/segmenter", timeout=30)
        cls.class_maps.wait_for_publisher()
        cls.message = cls.camera.message(sample_image("astronaut"))

    def _faces(self):
        stamp = self.camera.publish(self.message)
        answer = self.detections.wait_for(lambda m: m.header.stamp == stamp)
        self.assertIsNotNone(answer, "no answer to the astronaut frame")
        return answer.detections

    def _person_pixels(self):
        """Person pixels in the class map answering one astronaut frame (None: no class map)."""
        stamp = self.camera.publish(self.message)
        self.assertIsNotNone(self.detections.wait_for(lambda m: m.header.stamp == stamp))
        class_map = self.class_maps.wait_for(lambda m: m.header.stamp == stamp, timeout=2.0)
        return None if class_map is None else int((mono8_to_array(class_map) > 0).sum())

    def _set(self, client=None, **values) -> None:
        applied = (client or self.client).update_configuration(values)
        for key, value in values.items():
            self.assertEqual(applied[key], value)
        time.sleep(0.1)

    def test_score_threshold_above_the_face_score_hides_it_and_back_restores_it(self) -> None:
        original = self.client.get_configuration(timeout=10)
        faces = self._faces()
        self.assertEqual(len(faces), 1)
        score = faces[0].score
        self.assertLess(score, 1.0, "cannot set a threshold above a score of 1")
        self._set(score_threshold=(score + 1.0) / 2.0)
        self.assertEqual(self._faces(), [])
        self._set(score_threshold=original["score_threshold"])
        self.assertEqual(len(self._faces()), 1)

    def test_class_filter_and_enabled(self) -> None:
        self._set(class_filter="person")
        self.assertEqual(self._faces(), [])
        self._set(class_filter="face")
        self.assertEqual(len(self._faces()), 1)
        self._set(class_filter="")
        self._set(enabled=False)
        stamp = self.camera.publish(self.message)
        self.assertIsNone(
            self.detections.wait_for(lambda m: m.header.stamp == stamp, timeout=2.0), "a disabled detector answered"
        )
        self._set(enabled=True)
        self.assertEqual(len(self._faces()), 1)

    def test_segmenter_threshold_and_enabled(self) -> None:
        default = self.segmenter_client.get_configuration(timeout=10)
        person = self._person_pixels()
        self.assertGreater(person, 0)
        self._set(self.segmenter_client, threshold=0.999)
        strict = self._person_pixels()
        self.assertLess(strict, person, "a higher threshold should mark fewer person pixels")
        self._set(self.segmenter_client, threshold=default["threshold"], enabled=False)
        self.assertIsNone(self._person_pixels(), "a disabled segmenter published a class map")
        self._set(self.segmenter_client, enabled=True)
        self.assertEqual(self._person_pixels(), person)


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "reconfigure", ReconfigureTest, sys.argv)
