"""Scoring detectors and segmenters on recorded rosbags, offline (reading the bag directly) and
live (through the running nodes): COCO mAP, confusion matrix, mIoU, latency and dropped frames.

Nothing here imports rospy; bags are read and written with the ``rosbags`` library.
"""
