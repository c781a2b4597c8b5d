"""Camera names of a multi-camera node: derived from the topics, or given, and always distinct."""

from __future__ import annotations

import pytest

from dl_vision.errors import ConfigError
from dl_vision.ros.nodes import camera_name_from_topic, camera_names


@pytest.mark.parametrize(
    "topic, name",
    [
        ("/front/image_raw", "front"),
        ("/robot/left/camera/image_rect_color", "robot_left_camera"),
        ("/cam0/image", "cam0"),
        ("/stereo/left", "stereo_left"),
        ("/image_raw", ""),
    ],
)
def test_names_come_from_the_topic_without_its_image_suffixes(topic: str, name: str) -> None:
    assert camera_name_from_topic(topic) == name


def test_given_names_replace_the_derived_ones() -> None:
    assert camera_names(["/a/image_raw", "/b/image_raw"], ["left", "right"]) == ["left", "right"]


@pytest.mark.parametrize(
    "topics, names, problem",
    [
        (["/a/image_raw", "/b/image_raw"], ["left"], "expected 2 names"),
        (["/left/image_raw", "/left/image_color"], None, "distinct"),
        (["/image_raw", "/cam/image_raw"], None, "plain ROS name"),
        (["/a/image_raw"], ["has space"], "plain ROS name"),
    ],
)
def test_bad_names_fail_with_one_line(topics, names, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        camera_names(topics, names)
