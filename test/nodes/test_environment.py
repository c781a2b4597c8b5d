#!/usr/bin/env python3
"""rostest: a node started by roslaunch runs on the env's interpreter and imports TensorFlow.

Parameters: ``~reporter`` (the reporter node's name), ``~expected_prefix`` (the
env's prefix, from ``$VIRTUAL_ENV`` that bootstrap/activate.sh sets).
"""

import os
import sys
import time
import unittest

import rospy

import rostest

REPORT_TIMEOUT_S = 90.0


class EnvironmentTest(unittest.TestCase):
    def setUp(self) -> None:
        self.reporter = rospy.get_param("~reporter")
        self.expected_prefix = rospy.get_param("~expected_prefix", "")
        deadline = time.monotonic() + REPORT_TIMEOUT_S
        while not rospy.has_param(self.reporter + "/python") and time.monotonic() < deadline:
            time.sleep(0.2)
        self.assertTrue(
            rospy.has_param(self.reporter + "/python"),
            "expected %s to report its interpreter within %.0f s, found no report" % (self.reporter, REPORT_TIMEOUT_S),
        )

    def test_node_runs_on_the_env_interpreter(self) -> None:
        self.assertTrue(self.expected_prefix, "expected VIRTUAL_ENV set: run inside bootstrap/activate.sh")
        prefix = rospy.get_param(self.reporter + "/prefix")
        self.assertEqual(os.path.realpath(prefix), os.path.realpath(self.expected_prefix))
        self.assertEqual(os.path.realpath(sys.prefix), os.path.realpath(self.expected_prefix))

    def test_node_imported_tensorflow(self) -> None:
        self.assertTrue(rospy.get_param(self.reporter + "/tensorflow"))
        self.assertAlmostEqual(rospy.get_param(self.reporter + "/tf_sum"), 7.0, places=5)


if __name__ == "__main__":
    rospy.init_node("test_environment")
    rostest.rosrun("dl_vision", "environment", EnvironmentTest, sys.argv)
