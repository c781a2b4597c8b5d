"""ROS glue: the vision nodes and the ROS-side helpers (image stream, demo report, eval recorder).

:mod:`dl_vision.ros.latest_frame` imports no rospy, so it is tested without a master; the
conversions between messages and values live in the core (:mod:`dl_vision.messages`), the
per-frame work in :mod:`dl_vision.frame_processor`.
"""
