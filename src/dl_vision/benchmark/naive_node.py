"""The baseline the benchmark compares against: a detector node written the usual way.

This is deliberately the pattern most ROS vision nodes ship with, so that the
benchmark measures what our node's design buys, on the same model and the same
output message:

- ``rospy.Subscriber`` with the default ``queue_size`` (unbounded) and
  ``buff_size`` (64 KiB, smaller than one image);
- ``cv_bridge`` to convert the image;
- inference and publishing inside the callback, which rospy runs on the
  connection's socket thread, so frames queue up behind a slow model.

Do not use it on a robot; use ``detector_node``.
"""

from __future__ import annotations

from typing import List, Sequence

import rospy
from cv_bridge import CvBridge
from sensor_msgs.msg import Image

from dl_vision.errors import DlVisionError
from dl_vision.messages import detections_to_msg
from dl_vision.msg import DetectionArray
from dl_vision.pipeline import Detector


class NaiveDetectorNode:
    """One detector shared by callbacks on one or more image topics.

    Args:
        detector: the model pipeline (the same one ``detector_node`` uses).
        image_topics: input topics; output ``<topic's namespace>/detections``.
    """

    def __init__(self, detector: Detector, image_topics: Sequence[str]) -> None:
        self.detector = detector
        self.bridge = CvBridge()
        self.subscribers: List[rospy.Subscriber] = []
        for topic in image_topics:
            namespace = topic.rsplit("/", 1)[0]
            publisher = rospy.Publisher(namespace + "/detections", DetectionArray, queue_size=10)
            self.subscribers.append(rospy.Subscriber(topic, Image, self.callback, callback_args=publisher))

    def callback(self, msg: Image, publisher: rospy.Publisher) -> None:
        """Convert, detect and publish, all on rospy's receive thread."""
        image = self.bridge.imgmsg_to_cv2(msg, "bgr8")
        detections = self.detector(image)
        publisher.publish(detections_to_msg(detections, msg.header, msg.width, msg.height, self.detector.spec.name))


def main(argv: Sequence[str]) -> int:
    """``naive_detector_node [image topics...]``; private parameters ``~model`` (default ``face``), ``~threads``."""
    rospy.init_node("naive_detector")
    topics = list(rospy.myargv(argv)[1:]) or [rospy.resolve_name("image")]
    try:
        runtime = {"threads": int(rospy.get_param("~threads"))} if rospy.has_param("~threads") else {}
        detector = Detector.from_spec(rospy.get_param("~model", "face"), **runtime)
    except DlVisionError as err:
        rospy.logfatal(str(err))
        return 1
    NaiveDetectorNode(detector, topics)
    rospy.spin()
    return 0
