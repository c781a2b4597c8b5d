#!/usr/bin/env python3
"""rostest: a burst of malformed images leaves the node alive and counting errors.

Two nodes run: one on raw images (``~raw_node``, input ``~raw_topic``) and one on
compressed images (``~compressed_node``, input ``~compressed_topic``). Each gets
a burst of bad frames, then one good frame that must be answered, and its
diagnostics must report the errors. The raw node first gets messages of the
wrong type (``CompressedImage``), which must be counted as errors naming both types.
"""

from __future__ import annotations

import sys
import time
import unittest

import cv2
import rospy
from sensor_msgs.msg import CompressedImage, Image
from vision_test_support import (
    Collector,
    FramePublisher,
    diagnostics_collector,
    frame_counters,
    sample_image,
    wait_for_connection,
)

import rostest
from dl_vision.messages import bgr_to_image_msg
from dl_vision.msg import DetectionArray


def _bad_raw_frames(good: Image):
    def variant(**fields) -> Image:
        msg = Image(height=good.height, width=good.width, encoding=good.encoding, step=good.step, data=good.data)
        for key, value in fields.items():
            setattr(msg, key, value)
        return msg

    return [
        variant(encoding="yuv422"),  # unknown encoding
        variant(data=good.data[:-7]),  # data length != step * height
        variant(step=good.step - 1),  # step shorter than a row
        variant(height=good.height + 1),  # height disagrees with the data
        Image(height=0, width=0, encoding="bgr8", step=0, data=b""),  # zero size
        variant(encoding="rgba8"),  # 4 channels declared on 3-channel rows
    ]


def _bad_compressed_frames(image):
    ok, jpeg = cv2.imencode(".jpg", image)
    assert ok
    jpeg = jpeg.tobytes()
    return [
        CompressedImage(format="jpeg", data=jpeg[:200]),  # truncated JPEG
        CompressedImage(format="jpeg", data=b"\xff\xd8" + bytes(5000)),  # JPEG marker, garbage body
        CompressedImage(format="jpeg", data=b""),  # empty
        CompressedImage(format="png", data=b"not an image at all"),
    ]


class MalformedInputTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_malformed_input")
        cls.diagnostics = diagnostics_collector()
        cls.image = sample_image("astronaut")

    def _check(self, node: str, camera: FramePublisher, bad_frames) -> None:
        detections = Collector(node + "/detections", DetectionArray)
        self.assertTrue(camera.wait_for_subscriber(), "%s never subscribed" % node)
        for _ in range(3):
            for msg in bad_frames:
                msg.header.stamp = rospy.Time.now()
                camera.publish_raw(msg)
                time.sleep(0.02)  # one by one, so the newest-frame slot does not drop them
        time.sleep(1.0)
        stamp = camera.publish(camera.message(self.image))
        answer = detections.wait_for(lambda m: m.header.stamp == stamp)
        self.assertIsNotNone(answer, "%s did not answer the good frame after the bad ones" % node)
        self.assertEqual(len(answer.detections), 1)
        bad_stamps = {m.header.stamp for m in bad_frames}
        self.assertFalse(
            any(m.header.stamp in bad_stamps for _, m in detections.snapshot()), "a bad frame produced an output"
        )
        counters = frame_counters(self.diagnostics, node.lstrip("/"))
        self.assertGreater(int(counters.get("errors", 0)), 0, counters)
        self.assertIn("bad frames", counters["_message"])

    def test_a_wrong_message_type_is_a_counted_error(self) -> None:
        """JPEGs sent to the raw node (a missing ``transport:=compressed``) are reported, not fatal."""
        node, topic = rospy.get_param("~raw_node"), rospy.get_param("~raw_topic")
        wrong = rospy.Publisher(topic, CompressedImage, queue_size=10)
        self.assertTrue(wait_for_connection(wrong, 60.0), "%s never subscribed" % node)
        for msg in _bad_compressed_frames(self.image)[:3]:
            msg.header.stamp = rospy.Time.now()
            wrong.publish(msg)
            time.sleep(0.05)
        time.sleep(0.5)
        counters = frame_counters(self.diagnostics, node.lstrip("/"))
        wrong.unregister()
        self.assertGreaterEqual(int(counters.get("errors", 0)), 3, counters)
        self.assertIn("expected sensor_msgs/Image", counters["_message"])
        self.assertIn("found sensor_msgs/CompressedImage", counters["_message"])

    def test_raw_burst(self) -> None:
        camera = FramePublisher(rospy.get_param("~raw_topic"), "raw")
        self._check(rospy.get_param("~raw_node"), camera, _bad_raw_frames(bgr_to_image_msg(self.image)))

    def test_compressed_burst(self) -> None:
        camera = FramePublisher(rospy.get_param("~compressed_topic"), "compressed")
        self._check(rospy.get_param("~compressed_node"), camera, _bad_compressed_frames(self.image))


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "malformed_input", MalformedInputTest, sys.argv)
