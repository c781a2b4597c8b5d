"""dl_vision: deep-learning vision for ROS 1.

The core (everything outside :mod:`dl_vision.ros`) imports no rospy, so models,
decoders, metrics and evaluation run and test without a ROS master.
"""

__version__ = "0.1.0"
