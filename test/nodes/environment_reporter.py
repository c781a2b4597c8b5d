#!/usr/bin/env python3
"""Node for environment.test: reports which interpreter roslaunch gave it and what TensorFlow computes.

Sets ``~python`` (sys.executable), ``~prefix`` (sys.prefix), ``~tensorflow``
(its version) and ``~tf_sum`` (a sum TensorFlow evaluated), then spins.
"""

import sys

import rospy
import tensorflow as tf

if __name__ == "__main__":
    rospy.init_node("environment_reporter")
    rospy.set_param("~tf_sum", float(tf.reduce_sum(tf.constant([1.5, 2.0, 3.5])).numpy()))
    rospy.set_param("~tensorflow", tf.__version__)
    rospy.set_param("~prefix", sys.prefix)
    rospy.set_param("~python", sys.executable)
    rospy.spin()
