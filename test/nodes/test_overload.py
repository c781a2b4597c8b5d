#!/usr/bin/env python3
"""rostest: fed at twice its capacity, the node keeps to the newest frames.

First the node's capacity is measured one frame at a time (its own per-frame
processing time from diagnostics, and the round trip seen from here); then
frames are published at twice that rate for ``~duration`` seconds. Latency is
the receive time of an output minus its input stamp. Passes when the median
latency is under twice the per-frame time, latency does not grow during the run
(no backlog) and the node skipped stale frames. Parameters: ``~node``,
``~image_topic``, ``~duration`` (s, default 10) and ``~output``: the node's topic
that is published last for a frame (``detections``, or ``class_map`` for a
combined node, which then runs both models on every frame).
"""

from __future__ import annotations

import sys
import time
import unittest
from typing import List

import numpy as np
import rospy
from sensor_msgs.msg import Image
from vision_test_support import Collector, FramePublisher, diagnostics_collector, frame_counters, sample_image

import rostest
from dl_vision.msg import DetectionArray

CALIBRATION_FRAMES = 15
#: Latency growth (seconds per second of run) above which the node is building a backlog.
MAX_LATENCY_GROWTH = 0.02


class OverloadTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls) -> None:
        rospy.init_node("test_overload")
        cls.node = rospy.get_param("~node")
        cls.duration = float(rospy.get_param("~duration", 10.0))
        output = rospy.get_param("~output", "detections")
        message_class = DetectionArray if output == "detections" else Image
        cls.outputs = Collector(cls.node + "/" + output, message_class, headers_only=True)
        cls.diagnostics = diagnostics_collector()
        cls.camera = FramePublisher(rospy.get_param("~image_topic"))
        assert cls.camera.wait_for_subscriber(), "node under test never subscribed"
        cls.outputs.wait_for_publisher()

    def _frame_times(self, since: float) -> List[float]:
        """The node's rolling median frame time (s) from each diagnostics message received after ``since``."""
        samples = []
        for received, msg in self.diagnostics.snapshot():
            for status in msg.status:
                values = {kv.key: kv.value for kv in status.values}
                if received > since and self.node.lstrip("/") in status.name and "frame time median (ms)" in values:
                    samples.append(float(values["frame time median (ms)"]) / 1000.0)
        return samples

    def test_latency_stays_bounded_at_twice_the_capacity(self) -> None:
        message = self.camera.message(sample_image("astronaut"))
        round_trips = []
        for _ in range(CALIBRATION_FRAMES):
            stamp = self.camera.publish(message)
            answer = self.outputs.wait_for(lambda m, s=stamp: m.header.stamp == s)
            self.assertIsNotNone(answer, "no answer during calibration")
            round_trips.append(rospy.Time.now().to_sec() - stamp.to_sec())
        round_trip = float(np.median(round_trips[3:]))  # the first frames warm the model up
        counters = frame_counters(self.diagnostics, self.node.lstrip("/"))
        self.assertIn("frame time median (ms)", counters, "no diagnostics from %s" % self.node)
        skipped_before = int(counters["skipped"])

        period = round_trip / 2.0  # twice the rate the node can answer
        first_stamp = None
        sent = 0
        started = time.monotonic()
        next_time = started
        while time.monotonic() - started < self.duration:
            stamp = self.camera.publish(message)
            first_stamp = first_stamp or stamp
            sent += 1
            next_time += period
            time.sleep(max(0.0, next_time - time.monotonic()))
        time.sleep(max(1.0, 5 * round_trip))  # let the last frame through

        outputs = [
            (received, msg.header.stamp.to_sec())
            for received, msg in self.outputs.snapshot()
            if msg.header.stamp >= first_stamp
        ]
        latencies = np.array([received - stamp for received, stamp in outputs])
        counters = frame_counters(self.diagnostics, self.node.lstrip("/"))
        skipped = int(counters["skipped"]) - skipped_before
        # Per-frame processing time as the node measured it while overloaded (the
        # machine may be shared, so the calibration figure alone can be stale).
        frame_times = self._frame_times(first_stamp.to_sec() + 1.0)
        self.assertGreater(len(frame_times), 2, "too few diagnostics during the run")
        # The per-frame time is the larger of two measurements of it: the node's own
        # (decode, models, publish) during the run, and the round trip of one frame at a
        # time before it (which adds the transport; on a small or shared machine the
        # transport of a 512x512 frame can take as long as the models).
        processing = max(float(np.median(frame_times)), round_trip)
        tenth = max(3, len(latencies) // 10)
        receive_times = np.array([received for received, _ in outputs])
        growth = float(np.polyfit(receive_times - receive_times[0], latencies, 1)[0]) if len(outputs) > 1 else 0.0
        report = (
            "per-frame time %.1f ms (node frame time under load %.1f..%.1f, round trip %.1f ms); "
            "sent %d frames at %.1f Hz for %.0f s, "
            "%d answered, %d skipped; latency median %.1f ms, p90 %.1f ms, max %.1f ms; first-10%% median %.1f ms, "
            "last-10%% median %.1f ms; latency growth %.4f s/s"
            % (
                1000 * processing,
                1000 * min(frame_times),
                1000 * max(frame_times),
                1000 * round_trip,
                sent,
                1.0 / period,
                self.duration,
                len(latencies),
                skipped,
                1000 * np.median(latencies),
                1000 * np.percentile(latencies, 90),
                1000 * latencies.max(),
                1000 * np.median(latencies[:tenth]),
                1000 * np.median(latencies[-tenth:]),
                growth,
            )
        )
        print("OVERLOAD: " + report, flush=True)
        rospy.loginfo("OVERLOAD: %s", report)
        self.assertGreater(len(latencies), 10, report)
        self.assertGreater(skipped, 0, "the node should drop stale frames: " + report)
        self.assertLess(len(latencies), sent, report)
        self.assertLess(float(np.median(latencies)), 2.0 * processing, report)
        # No backlog: latency does not grow over the run. A node that queues frames at
        # twice its capacity gains about 0.5 s of latency per second; allow 0.02 s/s of noise.
        self.assertLess(growth, MAX_LATENCY_GROWTH, report)


if __name__ == "__main__":
    rostest.rosrun("dl_vision", "overload", OverloadTest, sys.argv)
