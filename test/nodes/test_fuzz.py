#!/usr/bin/env python3
"""rostest: thousands of malformed images mixed with good ones, and start-up with bad settings.

Two detector nodes run: one on raw images (``~raw_node``, input ``~raw_topic``),
one on compressed images (``~compressed_node``, input ``~compressed_topic``).
``~count`` random malformed messages (bad encodings, steps, data lengths,
dimensions; truncated, bit-flipped and garbage JPEG/PNG) go to both, and every
``~good_every``-th message is a good frame that must be answered (good frames are
told apart by their stamps). The nodes must stay up and count errors in their
diagnostics. ``~seed`` makes a run repeatable.

A node started with a model or a parameter it cannot use must exit non-zero
with one fatal line and no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import unittest
from typing import List

import cv2
import numpy as np
import rospy
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from vision_test_support import Collector, FramePublisher, diagnostics_collector, frame_counters, sample_image

import rostest
from dl_vision.messages import bgr_to_image_msg
from dl_vision.msg import DetectionArray

#: Encodings a camera could plausibly send: ours, ones the node does not decode, and nonsense.
ENCODINGS = (
    "bgr8",
    "rgb8",
    "mono8",
    "bgra8",
    "rgba8",
    "mono16",
    "8UC3",
    "yuv422",
    "bayer_rggb8",
    "32FC1",
    "16UC1",
    "",
    "BGR8",
    "jpeg",
    "\x00\xff",
)
#: Seconds the test waits for a good frame's answer.
ANSWER_TIMEOUT = 20.0
#: Seconds allowed for a node with a bad setting to give up.
STARTUP_FAILURE_TIMEOUT = 120.0


def malformed_raw(rng: np.random.Generator, good: Image) -> Image:
    """A raw image with one or more of its fields made inconsistent at random."""
    msg = Image(
        height=good.height,
        width=good.width,
        encoding=good.encoding,
        step=good.step,
        data=good.data,
        is_bigendian=good.is_bigendian,
    )
    faults = rng.choice(["encoding", "step", "data", "height", "width", "zero", "endian"], size=rng.integers(1, 4))
    for fault in faults:
        if fault == "encoding":
            msg.encoding = str(rng.choice(ENCODINGS))
        elif fault == "step":
            msg.step = int(rng.choice([0, msg.step - 1, msg.step + 1, msg.step // 2, 2**31 - 1, msg.step * 7]))
        elif fault == "data":
            size = int(
                rng.choice([0, 1, len(msg.data) - 1, len(msg.data) + 3, int(rng.integers(0, len(msg.data) + 1))])
            )
            msg.data = msg.data[:size] if size <= len(msg.data) else msg.data + bytes(size - len(msg.data))
        elif fault == "height":
            msg.height = int(rng.choice([1, msg.height + 1, msg.height * 2, 2**31 - 1]))
        elif fault == "width":
            msg.width = int(rng.choice([1, msg.width + 1, msg.width * 3, 2**31 - 1]))
        elif fault == "zero":
            msg.height, msg.width = int(rng.integers(0, 2)), 0
        else:
            msg.is_bigendian = 1
    # Every field stays inside its uint32 wire type, or rospy refuses to publish it.
    msg.step, msg.height, msg.width = (min(max(int(v), 0), 2**32 - 1) for v in (msg.step, msg.height, msg.width))
    return msg


def malformed_compressed(rng: np.random.Generator, jpeg: bytes, png: bytes) -> CompressedImage:
    """A compressed image that is truncated, bit-flipped, garbage, empty or mislabelled."""
    kind = rng.integers(0, 6)
    source = jpeg if rng.integers(0, 2) else png
    if kind == 0:
        data = source[: int(rng.integers(0, len(source)))]
    elif kind == 1:
        corrupt = np.frombuffer(source, np.uint8).copy()
        positions = rng.integers(0, corrupt.size, size=int(rng.integers(1, 64)))
        corrupt[positions] = rng.integers(0, 256, size=positions.size)
        data = corrupt.tobytes()
    elif kind == 2:
        data = rng.integers(0, 256, size=int(rng.integers(1, 20000)), dtype=np.uint8).tobytes()
    elif kind == 3:
        data = b"\xff\xd8\xff" + bytes(int(rng.integers(0, 5000)))
    elif kind == 4:
        data = b""
    else:
        data = b"\x89PNG\r\n\x1a\n" + source[8 : 8 + int(rng.integers(0, 200))]
    return CompressedImage(format=str(rng.choice(["jpeg", "png", "rgb8; jpeg compressed bgr8", "", "tiff"])), data=data)


class FuzzTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_fuzz")
        cls.diagnostics = diagnostics_collector()
        cls.image = sample_image("astronaut")
        cls.count = int(rospy.get_param("~count", 500))
        cls.good_every = int(rospy.get_param("~good_every", 25))
        cls.seed = int(rospy.get_param("~seed", 0))

    def _fuzz(self, node: str, camera: FramePublisher, make_bad) -> None:
        detections = Collector(node + "/detections", DetectionArray, headers_only=True)
        self.assertTrue(camera.wait_for_subscriber(), "%s never subscribed" % node)
        good = camera.message(self.image)
        good_stamps: List[rospy.Time] = []
        missed: List[rospy.Time] = []
        for i in range(1, self.count + 1):
            if i % self.good_every == 0:
                time.sleep(0.05)  # let the bad frame before it be taken, so the good one is not overwritten
                stamp = camera.publish(good, frame_id="good")
                good_stamps.append(stamp)
                if detections.wait_for(lambda m, s=stamp: m.header.stamp == s, ANSWER_TIMEOUT) is None:
                    missed.append(stamp)
            else:
                bad = make_bad()
                bad.header = Header(stamp=rospy.Time.now(), frame_id="bad")
                camera.publish_raw(bad)
                time.sleep(0.002)
        time.sleep(2.0)  # let the node finish its last frame and report it
        counters = frame_counters(self.diagnostics, node.lstrip("/"))
        self.assertFalse(missed, "%s left %d of %d good frames unanswered" % (node, len(missed), len(good_stamps)))
        self.assertGreater(int(counters.get("errors", 0)), 0, counters)
        self.assertIn("bad frames", counters["_message"])
        received = int(counters["received"])
        accounted = int(counters["processed"]) + int(counters["errors"]) + int(counters["skipped"])
        self.assertEqual(received, accounted, counters)  # every frame received is processed, failed or skipped
        rospy.loginfo("%s: %s good frames answered, counters %s", node, len(good_stamps), counters)

    def test_raw_fuzz(self) -> None:
        rng = np.random.default_rng(self.seed)
        good = bgr_to_image_msg(self.image)
        camera = FramePublisher(rospy.get_param("~raw_topic"), "raw")
        self._fuzz(rospy.get_param("~raw_node"), camera, lambda: malformed_raw(rng, good))

    def test_compressed_fuzz(self) -> None:
        rng = np.random.default_rng(self.seed + 1)
        jpeg = cv2.imencode(".jpg", self.image)[1].tobytes()
        png = cv2.imencode(".png", self.image)[1].tobytes()
        camera = FramePublisher(rospy.get_param("~compressed_topic"), "compressed")
        self._fuzz(rospy.get_param("~compressed_node"), camera, lambda: malformed_compressed(rng, jpeg, png))

    def _start_failure(self, *settings: str) -> str:
        name = "startup_failure_%d" % int(time.monotonic() * 1000)
        proc = subprocess.run(
            ["rosrun", "dl_vision", "detector_node", "__name:=" + name, *settings],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=STARTUP_FAILURE_TIMEOUT,
            env=dict(os.environ),
        )
        output = proc.stdout.decode("utf-8", "replace")
        self.assertNotEqual(proc.returncode, 0, output)
        self.assertNotIn("Traceback", output)
        fatal = [line for line in output.splitlines() if "FATAL" in line]
        self.assertEqual(len(fatal), 1, output)
        return fatal[0]

    def test_missing_model_fails_at_startup(self) -> None:
        line = self._start_failure("_detector/model:=/nonexistent/model.yaml")
        self.assertIn("/nonexistent/model.yaml", line)

    def test_bad_parameter_fails_at_startup(self) -> None:
        line = self._start_failure("_transport:=carrier_pigeon")
        self.assertIn("carrier_pigeon", line)


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "fuzz", FuzzTest, sys.argv)
