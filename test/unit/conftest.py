"""Unit tests of the ROS glue (``dl_vision.ros``) need rospy and the generated messages.

Without rospy (the test command's Python 3.8 run of the core, or ``PYTHONPATH=src pytest
test/unit`` outside the env) those modules are not collected, and the header says so.
"""

from __future__ import annotations

import importlib.util

ROS_GLUE_TESTS = ["test_camera_names.py", "test_image_conversion.py", "test_image_stream.py"]

HAVE_ROSPY = importlib.util.find_spec("rospy") is not None

collect_ignore = [] if HAVE_ROSPY else ROS_GLUE_TESTS


def pytest_report_header() -> str:
    if HAVE_ROSPY:
        return "dl_vision: rospy found, ROS glue unit tests included"
    return "dl_vision: no rospy, ROS glue unit tests not collected: %s" % ", ".join(ROS_GLUE_TESTS)
