#!/usr/bin/env python3
"""rostest: a vision node answers real frames with correctly stamped, correct outputs.

Parameters: ``~image_topic`` (the node's input), ``~node`` (the node's resolved
name, e.g. ``/vision``), ``~transport`` (raw|compressed), ``~segmentation``
(whether the node also segments).
"""

from __future__ import annotations

import sys
import time
import unittest

import cv2
import numpy as np
import rospy
from sensor_msgs.msg import Image
from vision_test_support import Collector, FramePublisher, astronaut_face_box, iou, sample_image

import rostest
from dl_vision.messages import mono8_to_array
from dl_vision.msg import DetectionArray, LabelTable

#: Time to wait after an answer for a (wrong) second answer to the same frame.
DUPLICATE_WINDOW = 0.5


class VisionOutputsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_vision_outputs")
        node = rospy.get_param("~node")
        cls.transport = rospy.get_param("~transport", "raw")
        cls.segmentation = bool(rospy.get_param("~segmentation", True))
        cls.detections = Collector(node + "/detections", DetectionArray)
        cls.class_maps = Collector(node + "/class_map", Image) if cls.segmentation else None
        cls.labels = Collector(node + "/labels", LabelTable)
        cls.camera = FramePublisher(rospy.get_param("~image_topic"), cls.transport)
        assert cls.camera.wait_for_subscriber(), "node under test never subscribed"
        if cls.class_maps is not None:
            cls.class_maps.wait_for_publisher()

    def _answer(self, image_name: str):
        """Publish one frame; return (stamp, the single DetectionArray answering it)."""
        stamp = self.camera.publish(self.camera.message(sample_image(image_name)), frame_id="test_camera_optical")
        answer = self.detections.wait_for(lambda m: m.header.stamp == stamp)
        self.assertIsNotNone(answer, "no DetectionArray for the %s frame" % image_name)
        time.sleep(DUPLICATE_WINDOW)
        self.assertEqual(len(self.detections.with_stamp(stamp)), 1, "expected exactly one answer per frame")
        return stamp, answer

    def test_astronaut_frame_yields_the_face_with_the_input_header(self) -> None:
        stamp, answer = self._answer("astronaut")
        self.assertEqual(answer.header.frame_id, "test_camera_optical")
        self.assertEqual((answer.image_width, answer.image_height), (512, 512))
        self.assertEqual(len(answer.detections), 1, [d.class_name for d in answer.detections])
        face = answer.detections[0]
        self.assertEqual(face.class_name, "face")
        overlap = iou([face.x_min, face.y_min, face.x_max, face.y_max], astronaut_face_box())
        self.assertGreaterEqual(overlap, 0.7, "face box IoU %.2f against the reference" % overlap)
        if self.class_maps is not None:
            class_map = self.class_maps.wait_for(lambda m: m.header.stamp == stamp)
            self.assertIsNotNone(class_map, "no class_map for the astronaut frame")
            self.assertEqual(class_map.encoding, "mono8")
            self.assertEqual((class_map.width, class_map.height), (512, 512))
            self.assertEqual(class_map.header.frame_id, "test_camera_optical")
            pixels = mono8_to_array(class_map)
            face = astronaut_face_box().astype(int)
            person_in_face = np.mean(pixels[face[1] : face[3], face[0] : face[2]] > 0)
            self.assertGreater(person_in_face, 0.8, "the face region should be segmented as person")

    def test_padded_rgb8_and_mono8_frames_are_read_like_bgr8(self) -> None:
        if self.transport != "raw":
            self.skipTest("raw encodings only")
        image = sample_image("astronaut")
        rgb = np.concatenate([image[:, :, ::-1], np.zeros((512, 16, 3), np.uint8)], axis=1)  # 16 px row padding
        padded = Image(height=512, width=512, encoding="rgb8", step=rgb.shape[1] * 3, data=rgb.tobytes())
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        mono = Image(height=512, width=512, encoding="mono8", step=512, data=gray.tobytes())
        for name, message in (("padded rgb8", padded), ("mono8", mono)):
            stamp = self.camera.publish(message)
            answer = self.detections.wait_for(lambda m, s=stamp: m.header.stamp == s)
            self.assertIsNotNone(answer, "no answer to the %s frame" % name)
            self.assertEqual(len(answer.detections), 1, name)
            face = answer.detections[0]
            overlap = iou([face.x_min, face.y_min, face.x_max, face.y_max], astronaut_face_box())
            self.assertGreaterEqual(overlap, 0.7, "%s: face box IoU %.2f" % (name, overlap))

    def test_frame_without_faces_yields_an_empty_array(self) -> None:
        for name in ("coffee", "rocket"):
            _, answer = self._answer(name)
            self.assertEqual(
                answer.detections,
                [],
                "%s: expected no face, found %s"
                % (name, [(d.class_name, round(d.score, 2)) for d in answer.detections]),
            )
            self.assertEqual(answer.header.frame_id, "test_camera_optical")

    def test_label_table_is_latched_with_names(self) -> None:
        table = self.labels.wait_for(lambda m: True, timeout=5)
        self.assertIsNotNone(table)
        self.assertIn("face", list(table.class_names))


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "vision_outputs", VisionOutputsTest, sys.argv)
