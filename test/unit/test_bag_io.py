"""Bags written in tmp_path and read back: images, class maps, detections, errors; and what a node
publishes, recorded with rosbag, read back by the evaluation without loss."""

from __future__ import annotations

import io

import numpy as np
import pytest
import rosbag
from sensor_msgs.msg import Image
from test_messages import ENCODED, _detections, raw_image

from dl_vision import messages
from dl_vision.errors import EvaluationError, ImageConversionError
from dl_vision.evaluation.bag_io import IMAGE, BagReader, BagWriter
from dl_vision.evaluation.predictions import RecordedPredictions
from dl_vision.frame_processor import FrameProcessor
from dl_vision.structures import Detections

STAMP = 1_700_000_000 * 10**9


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
            np.testing.assert_array_equal(frame.image(), image)
            assert frame.size() == (16, 12)
        got = [messages.detections_from_msg(m) for _, _, m in reader.messages(["/gt"])]
        assert len(got) == 3
        np.testing.assert_allclose(got[0].xyxy, dets.xyxy)
        assert got[0].class_names == ["face"] and got[0].score[0] == pytest.approx(0.75)
        np.testing.assert_array_equal(got[0].masks, mask)
        ((_, _, cmap),) = list(reader.messages(["/classes"]))
        assert messages.mono8_to_array(cmap)[1, 0] == 16 % 3


def test_compressed_images_decode(tmp_path):
    bag = tmp_path / "c.bag"
    image = np.zeros((20, 30, 3), np.uint8)
    image[:, :15] = (255, 0, 0)
    with BagWriter(bag) as writer:
        writer.write_image("/cam/compressed", 5, image, compressed="png")
    with BagReader(bag) as reader:
        (frame,) = list(reader.frames("/cam/compressed"))
    np.testing.assert_array_equal(frame.image(), image)
    assert frame.size() == (30, 20)


@pytest.mark.parametrize("path", ["node", "bag"])
@pytest.mark.parametrize("encoding", sorted(ENCODED))
def test_every_encoding_decodes_alike_on_the_node_path_and_the_bag_path(tmp_path, path: str, encoding: str):
    """One table of encodings, two ways in: wire bytes into the node's processor, or a real bag file."""
    pixels, expected = ENCODED[encoding]
    processor = FrameProcessor()
    if path == "node":
        buffer = io.BytesIO()
        raw_image(pixels, encoding, "genpy", pad=3).serialize(buffer)
        result = processor.process_serialized(buffer.getvalue(), Image)
    else:
        bag = tmp_path / "e.bag"
        with BagWriter(bag) as writer:
            writer.write("/cam", IMAGE, raw_image(pixels, encoding, "rosbags", pad=3), STAMP)
        with BagReader(bag) as reader:
            (frame,) = list(reader.frames("/cam"))
        (result,) = processor.process([frame.message])
    np.testing.assert_array_equal(result.image, expected)


@pytest.mark.parametrize("path", ["node", "bag"])
def test_a_bad_encoding_is_the_same_error_on_both_paths(tmp_path, path: str):
    if path == "node":
        message = raw_image(ENCODED["bgr8"][0], "yuv422", "genpy")
    else:
        bag = tmp_path / "e.bag"
        with BagWriter(bag) as writer:
            writer.write("/cam", IMAGE, raw_image(ENCODED["bgr8"][0], "yuv422", "rosbags"), STAMP)
        with BagReader(bag) as reader:
            (frame,) = list(reader.frames("/cam"))
        message = frame.message
    with pytest.raises(ImageConversionError, match="image encoding: expected one of bgr8, .*found 'yuv422'"):
        FrameProcessor().process([message])


def test_what_a_node_publishes_reads_back_from_a_recorded_bag_without_loss(tmp_path):
    """genpy DetectionArray (as the node publishes it) -> rosbag (as the recorder writes it) -> evaluation."""
    original = _detections("mixed", with_keypoints=True)
    labels = dict(original.labels)
    bag = tmp_path / "recorded.bag"
    header = messages.make_header(STAMP, "camera")
    published = messages.detections_to_msg(original, header, 20, 14, "face")
    empty = messages.detections_to_msg(
        Detections.empty(labels), messages.make_header(STAMP + 1, "camera"), 20, 14, "face"
    )
    with rosbag.Bag(str(bag), "w") as out:
        out.write("/node/detections", published, header.stamp)
        out.write("/node/detections", empty, empty.header.stamp)
    recorded = RecordedPredictions(bag, "/node/detections", detection_labels=labels)
    assert len(recorded) == 2

    class FrameAt:
        def __init__(self, stamp_ns: int) -> None:
            self.stamp_ns = stamp_ns

    first, second = recorded.predict([FrameAt(STAMP), FrameAt(STAMP + 1)])
    got = first.detections
    assert (first.width, first.height) == (20, 14)
    np.testing.assert_allclose(got.xyxy, original.xyxy)
    np.testing.assert_allclose(got.score, original.score)
    assert got.class_names == original.class_names
    np.testing.assert_allclose(got.keypoints, original.keypoints)
    np.testing.assert_array_equal(got.masks, original.masks)
    assert not got.masks[1].any() and got.masks[0].any() and got.masks[2].any()
    assert len(second.detections) == 0


def test_bags_written_without_ros_read_back_in_rosbag(tmp_path):
    """The other direction: BagWriter's messages are what genpy expects (the live player reads them)."""
    original = _detections("all", with_keypoints=False)
    bag = tmp_path / "gt.bag"
    with BagWriter(bag) as writer:
        writer.write_detections("/gt", STAMP, original, 20, 14, model="ground_truth")
    with rosbag.Bag(str(bag)) as read:
        ((_, msg, _),) = list(read.read_messages(["/gt"]))
    assert messages.stamp_to_ns(msg.header.stamp) == STAMP
    np.testing.assert_array_equal(messages.detections_from_msg(msg).masks, original.masks)


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
