"""Unit tests of the ROS glue need rospy, rosbag or the generated (genpy) messages.

The core's unit tests run without ROS: the test command's Python 3.8 step runs
``pytest -m "not ros" test/unit`` in an env without ROS. There the modules below, which import
ROS when they load, are not collected (the header says so), and tests marked ``ros`` inside other
modules (the genpy half of ``test_messages.py``) are deselected.
"""

from __future__ import annotations

import importlib.util

ROS_GLUE_TESTS = [
    "test_bag_io.py",
    "test_camera_names.py",
    "test_damaged_bags.py",
    "test_frame_processor.py",
    "test_image_stream.py",
]

HAVE_ROSPY = importlib.util.find_spec("rospy") is not None

collect_ignore = [] if HAVE_ROSPY else ROS_GLUE_TESTS


def pytest_report_header() -> str:
    if HAVE_ROSPY:
        return "dl_vision: rospy found, ROS glue unit tests included"
    return "dl_vision: no rospy, ROS glue unit tests not collected: %s" % ", ".join(ROS_GLUE_TESTS)
