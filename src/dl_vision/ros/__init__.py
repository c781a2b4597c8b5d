"""ROS glue: message conversions, the latest-frame worker and the vision nodes.

:mod:`dl_vision.ros.image_conversion` and :mod:`dl_vision.ros.latest_frame`
import message classes only (no ``rospy``), so they are testable without a
master; :mod:`dl_vision.ros.nodes` is the rospy side.
"""
