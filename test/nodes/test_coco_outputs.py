#!/usr/bin/env python3
"""rostest: the default detector (coco) names the objects of the labelled sample set.

Parameters: ``~node`` (the node's resolved name), ``~image_topic`` (its input).
"""

from __future__ import annotations

import sys
import unittest
from pathlib import Path

import rospy
import yaml
from vision_test_support import Collector, FramePublisher, iou, sample_image

import rostest
from dl_vision.msg import DetectionArray, LabelTable

SAMPLE_SET = yaml.safe_load((Path(__file__).resolve().parents[1] / "fixtures" / "sample_set.yaml").read_text())


class CocoOutputsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_coco_outputs")
        node = rospy.get_param("~node")
        cls.detections = Collector(node + "/detections", DetectionArray)
        cls.labels = Collector(node + "/labels", LabelTable)
        cls.camera = FramePublisher(rospy.get_param("~image_topic"))
        assert cls.camera.wait_for_subscriber(), "node under test never subscribed"

    def test_each_photo_subject_is_named_and_boxed(self) -> None:
        for name, truth in SAMPLE_SET["images"].items():
            stamp = self.camera.publish(self.camera.message(sample_image(name)))
            answer = self.detections.wait_for(lambda m, s=stamp: m.header.stamp == s)
            self.assertIsNotNone(answer, "no DetectionArray for the %s frame" % name)
            self.assertEqual(answer.model, "coco")
            found = [(d.class_name, [d.x_min, d.y_min, d.x_max, d.y_max]) for d in answer.detections]
            for obj in truth["objects"]:
                overlaps = [iou(box, obj["box"]) for label, box in found if label == obj["label"]]
                self.assertGreaterEqual(max(overlaps, default=0.0), 0.5, "%s: %s not found in %s" % (name, obj, found))
            if not truth["objects"]:
                self.assertEqual(found, [], "%s: expected no object" % name)

    def test_label_table_names_the_90_coco_ids(self) -> None:
        table = self.labels.wait_for(lambda m: True)
        self.assertIsNotNone(table, "no latched label table")
        names = dict(zip(table.class_ids, table.class_names))
        self.assertEqual(len(names), 90)
        self.assertEqual((names[0], names[46], names[89]), ("person", "cup", "toothbrush"))


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "test_coco_outputs", CocoOutputsTest, sys.argv)
