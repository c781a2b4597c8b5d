#!/usr/bin/env python3
"""rostest: cascade nodes publish poses and instance masks that the message readers get back.

Parameters: ``~pose_node`` (a detector node running ``person_pose``), ``~masks_node`` (a vision
node running ``person_masks`` as detector and segmenter), ``~image_topic`` (their input).
"""

from __future__ import annotations

import sys
import time
import unittest
from pathlib import Path

import cv2
import numpy as np
import rospy
import yaml
from sensor_msgs.msg import Image
from vision_test_support import CONNECT_TIMEOUT, Collector, FramePublisher, iou, sample_image

import rostest
from dl_vision import messages
from dl_vision.msg import DetectionArray, LabelTable

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLE_SET = yaml.safe_load((FIXTURES / "sample_set.yaml").read_text())
OUTLINE = yaml.safe_load((FIXTURES / "astronaut_person.yaml").read_text())
ASTRONAUT_BOX = SAMPLE_SET["images"]["astronaut"]["objects"][0]["box"]


def _polygon(points, margin=0):
    mask = np.zeros((OUTLINE["height"], OUTLINE["width"]), np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 1)
    if margin:
        mask = cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return mask.astype(bool)


def _two_people() -> np.ndarray:
    """The astronaut beside a copy of her at 2/3 scale."""
    astronaut = sample_image("astronaut")
    canvas = np.full((512, 853, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    canvas[171:, 512:] = cv2.resize(astronaut, (341, 341), interpolation=cv2.INTER_AREA)
    return canvas


class CascadeOutputsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_cascade_outputs")
        pose, masks = rospy.get_param("~pose_node"), rospy.get_param("~masks_node")
        cls.poses = Collector(pose + "/detections", DetectionArray)
        cls.pose_labels = Collector(pose + "/labels", LabelTable)
        cls.instances = Collector(masks + "/detections", DetectionArray)
        cls.class_maps = Collector(masks + "/class_map", Image)
        cls.camera = FramePublisher(rospy.get_param("~image_topic"))
        deadline = time.monotonic() + 2 * CONNECT_TIMEOUT  # two nodes load their models on two cores
        while cls.camera.publisher.get_num_connections() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert cls.camera.publisher.get_num_connections() >= 2, "the two nodes under test never subscribed"
        assert cls.class_maps.wait_for_publisher(), "the masks node's class_map never connected"
        time.sleep(0.5)  # the node sees the class_map subscriber before the first frame
        cls.answers = {}
        for name, image in (
            ("astronaut", sample_image("astronaut")),
            ("two_people", _two_people()),
            ("chelsea", sample_image("chelsea")),
        ):
            stamp = cls.camera.publish(cls.camera.message(image))
            cls.answers[name] = stamp
            time.sleep(1.0)  # one frame at a time: each node answers every frame

    def _answer(self, collector: Collector, name: str):
        stamp = self.answers[name]
        answer = collector.wait_for(lambda m: m.header.stamp == stamp, timeout=60.0)
        self.assertIsNotNone(answer, "no answer on %s for the %s frame" % (collector.subscriber.name, name))
        return answer

    def test_person_pose_publishes_17_keypoints_per_person(self) -> None:
        table = self.pose_labels.wait_for(lambda m: True)
        self.assertIsNotNone(table, "no latched label table")
        schema = messages.keypoint_schema_from_msg(table)
        self.assertEqual(len(schema.names), 17)
        self.assertIn((schema.names.index("left_shoulder"), schema.names.index("right_shoulder")), schema.skeleton)
        for name, people in (("astronaut", 1), ("two_people", 2)):
            answer = self._answer(self.poses, name)
            self.assertEqual(answer.model, "person_pose")
            persons = [d for d in answer.detections if d.class_name == "person"]
            self.assertEqual(len(persons), people, name)
            for det in persons:
                self.assertEqual((len(det.keypoints), len(det.keypoint_scores)), (34, 17), name)
            others = [d for d in answer.detections if d.class_name != "person"]
            self.assertTrue(all(len(d.keypoints) == 0 for d in others), name)
            found = messages.detections_from_msg(answer, None, schema)
            self.assertEqual(found.keypoint_schema, schema)
            nose = found.keypoints[:, schema.names.index("nose")]
            inside = (nose >= found.xyxy[:, :2]) & (nose <= found.xyxy[:, 2:])
            self.assertTrue(np.all(inside[found.has_keypoints]), "%s: a nose outside its person's box" % name)
        chelsea = self._answer(self.poses, "chelsea")
        self.assertEqual([(d.class_name, len(d.keypoints)) for d in chelsea.detections], [("cat", 0)])

    def test_person_masks_publish_instance_masks_that_round_trip(self) -> None:
        answer = self._answer(self.instances, "astronaut")
        self.assertEqual(answer.model, "person_masks")
        persons = [d for d in answer.detections if d.class_name == "person"]
        self.assertEqual(len(persons), 1)
        person = persons[0]
        self.assertEqual(person.mask.encoding, "mono8")
        self.assertGreaterEqual(iou([person.x_min, person.y_min, person.x_max, person.y_max], ASTRONAUT_BOX), 0.8)
        found = messages.detections_from_msg(answer)
        mask = found.masks[found.class_names.index("person")]
        reference, counted = _polygon(OUTLINE["person_polygon"]), ~_polygon(OUTLINE["void_polygon"], 6)
        overlap = (mask & reference & counted).sum() / ((mask | reference) & counted).sum()
        self.assertGreaterEqual(overlap, 0.85)
        # Built again from what was read, the message carries the same masks where they were.
        again = messages.detections_to_msg(found, answer.header, answer.image_width, answer.image_height, "m")
        for sent, rebuilt in zip(answer.detections, again.detections):
            self.assertEqual((sent.mask_x, sent.mask_y), (rebuilt.mask_x, rebuilt.mask_y))
            self.assertEqual(bytes(sent.mask.data), bytes(rebuilt.mask.data))
        two = messages.detections_from_msg(self._answer(self.instances, "two_people"))
        people = two.masks[np.array(two.class_names) == "person"]
        self.assertEqual(len(people), 2)
        self.assertTrue(all(m.sum() > 10000 for m in people))

    def test_person_masks_class_map_has_people_only_where_they_are(self) -> None:
        astronaut = messages.mono8_to_array(self._answer(self.class_maps, "astronaut"))
        self.assertGreater((astronaut == 1).mean(), 0.3)
        chelsea = messages.mono8_to_array(self._answer(self.class_maps, "chelsea"))
        self.assertFalse(chelsea.any(), "person pixels on the cat photo")


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "test_cascade_outputs", CascadeOutputsTest, sys.argv)
