"""Bags written with rosbags in tmp_path and read back: images, class maps, detections, errors."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import EvaluationError, ImageConversionError
from dl_vision.evaluation.bag_io import (
    BagReader,
    BagWriter,
    class_map_from_image,
    detections_from_message,
    image_to_bgr,
)
from dl_vision.structures import Detections


def test_images_detections_and_class_maps_round_trip(tmp_path):
    bag = tmp_path / "t.bag"
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (12, 16, 3), dtype=np.uint8) for _ in range(3)]
    mask = np.zeros((1, 12, 16), bool)
    mask[0, 2:5, 3:9] = True
    dets = Detections([[3, 2, 9, 5]], [0.75], [2], {2: "face"}, masks=mask)
    with BagWriter(bag) as writer:
        for i, image in enumerate(images):
            writer.write_image("/cam", 10**9 + i, image)
            writer.write_detections("/gt", 10**9 + i, dets, 16, 12)
        writer.write_class_map("/classes", 7, np.arange(12 * 16, dtype=np.uint8).reshape(12, 16) % 3)
    with BagReader(bag) as reader:
        assert reader.topics()["/cam"] == ("sensor_msgs/msg/Image", 3)
        frames = list(reader.frames("/cam"))
        assert [f.stamp_ns for f in frames] == [10**9, 10**9 + 1, 10**9 + 2]
        for frame, image in zip(frames, images):
            np.testing.assert_array_equal(frame.image, image)
        got = [detections_from_message(m) for _, _, m in reader.messages(["/gt"])]
        assert len(got) == 3
        np.testing.assert_allclose(got[0].xyxy, dets.xyxy)
        assert got[0].class_names == ["face"] and got[0].score[0] == pytest.approx(0.75)
        np.testing.assert_array_equal(got[0].masks, mask)
        ((_, _, cmap),) = list(reader.messages(["/classes"]))
        assert class_map_from_image(cmap)[1, 0] == 16 % 3


def test_compressed_images_decode(tmp_path):
    bag = tmp_path / "c.bag"
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = (255, 0, 0)
    with BagWriter(bag) as writer:
        writer.write_image("/cam/compressed", 5, image, compressed="png")
    with BagReader(bag) as reader:
        (frame,) = list(reader.frames("/cam/compressed"))
    np.testing.assert_array_equal(frame.image, image)


def test_padded_rows_rgb8_are_honoured_and_short_data_rejected():
    class Msg:
        height, width, encoding, is_bigendian = 2, 2, "rgb8", 0
        step = 8  # 6 bytes of pixels + 2 padding bytes per row
        data = bytes([1, 2, 3, 4, 5, 6, 99, 99, 7, 8, 9, 10, 11, 12, 99, 99])

    bgr = image_to_bgr(Msg)
    assert bgr[1, 1].tolist() == [12, 11, 10]
    Msg.data = Msg.data[:-1]
    with pytest.raises(ImageConversionError, match="expected 16 data bytes"):
        image_to_bgr(Msg)


@pytest.mark.parametrize(
    "topic, message",
    [
        ("/missing", "expected topic /missing, found only: /cam"),
        ("/gt", "should carry sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage"),
    ],
)
def test_wrong_topics_raise_naming_what_exists(tmp_path, topic, message):
    bag = tmp_path / "t.bag"
    with BagWriter(bag) as writer:
        writer.write_image("/cam", 1, np.zeros((4, 4, 3), np.uint8))
        writer.write_detections("/gt", 1, Detections.empty({0: "face"}), 4, 4)
    with BagReader(bag) as reader, pytest.raises(EvaluationError, match=message):
        list(reader.frames(topic))


def test_empty_and_missing_bags_raise(tmp_path):
    BagWriter(tmp_path / "empty.bag").close()
    with BagReader(tmp_path / "empty.bag") as reader, pytest.raises(EvaluationError, match="empty bag"):
        list(reader.frames("/cam"))
    with pytest.raises(EvaluationError, match="found nothing"):
        BagReader(tmp_path / "nope.bag")
    (tmp_path / "junk.bag").write_bytes(b"not a bag")
    with pytest.raises(EvaluationError, match="not a readable ROS 1 bag"):
        BagReader(tmp_path / "junk.bag")
