"""The frame processor the node, the benchmark and the evaluation share, with the real default models."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image

from dl_vision import assets, messages
from dl_vision.errors import ImageConversionError
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.pipeline import Detector, Segmenter

STAMP = 1_700_000_000 * 10**9 + 5


@pytest.fixture(scope="module")
def processor() -> FrameProcessor:
    return FrameProcessor(Detector.from_spec("face"), Segmenter.from_spec("person_segmentation"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.imread(str(assets.fetch("astronaut")))


def _wire(message) -> bytes:
    buffer = io.BytesIO()
    message.serialize(buffer)
    return buffer.getvalue()


def test_detections_only_by_default_and_segmentation_only_when_an_output_needs_it(processor, astronaut):
    (result,) = processor.process([astronaut])
    assert len(result.detections) == 1 and result.detections.class_names == ["face"]
    assert result.segmentation is None and result.annotated is None and result.color_mask is None
    assert result.messages.detections is None  # no message family asked for
    assert {"decode", "detector/inference"} <= set(processor.timings)
    assert not any(stage.startswith("segmenter/") for stage in processor.timings)
    (both,) = processor.process([astronaut], Outputs(class_map=True, color_mask=True, annotated=True))
    assert both.segmentation.class_map.shape == astronaut.shape[:2]
    assert both.color_mask.shape == astronaut.shape and both.annotated.shape == astronaut.shape
    assert not np.array_equal(both.annotated, astronaut)
    assert {"segmenter/inference", "annotate"} <= set(processor.timings)


def test_serialized_frames_become_messages_with_the_input_header(processor, astronaut):
    header = messages.make_header(STAMP, "front_camera", 9)
    wire = _wire(messages.bgr_to_image_msg(astronaut, header))
    result = processor.process_serialized(wire, Image, Outputs(class_map=True, annotated=True), messages.genpy_types())
    built = result.messages
    for msg in (built.detections, built.class_map, built.annotated):
        assert messages.stamp_to_ns(msg.header.stamp) == STAMP and msg.header.frame_id == "front_camera"
    assert built.color_mask is None
    assert built.detections.model == "face" and [d.class_name for d in built.detections.detections] == ["face"]
    assert (built.detections.image_width, built.detections.image_height) == (astronaut.shape[1], astronaut.shape[0])
    np.testing.assert_array_equal(messages.mono8_to_array(built.class_map), result.segmentation.class_map)
    assert processor.timings["deserialize"] > 0 and processor.timings["message_build"] > 0


def test_compressed_frames_are_decoded_like_raw_ones(processor, astronaut):
    wire = _wire(messages.bgr_to_compressed_msg(astronaut, "png", messages.make_header(STAMP, "cam")))
    result = processor.process_serialized(wire, CompressedImage)
    np.testing.assert_array_equal(result.image, astronaut)
    assert len(result.detections) == 1


def test_a_batch_gives_what_frames_one_at_a_time_give(processor, astronaut):
    coffee = cv2.imread(str(assets.fetch("coffee")))
    batch = processor.process([astronaut, coffee, astronaut], Outputs(class_map=True))
    for image, result in zip([astronaut, coffee, astronaut], batch):
        (alone,) = processor.process([image], Outputs(class_map=True))
        np.testing.assert_allclose(result.detections.xyxy, alone.detections.xyxy, atol=1e-3)
        np.testing.assert_array_equal(result.segmentation.class_map, alone.segmentation.class_map)
    assert [len(r.detections) for r in batch] == [1, 0, 1]


def test_live_settings_filter_and_switch_models_off(astronaut):
    processor = FrameProcessor(Detector.from_spec("face"), Segmenter.from_spec("person_segmentation"))
    processor.class_filter = ("person",)
    (filtered,) = processor.process([astronaut])
    assert len(filtered.detections) == 0
    processor.class_filter = ("0",)  # ids work too
    assert len(processor.process([astronaut])[0].detections) == 1
    processor.detector_enabled = processor.segmenter_enabled = False
    (off,) = processor.process([astronaut], Outputs(class_map=True), messages.genpy_types())
    assert off.detections is None and off.segmentation is None
    assert off.messages.detections is None and off.messages.class_map is None


@pytest.mark.parametrize(
    "frame, message",
    [
        (np.zeros((4, 4), np.uint8), "expected \\(H, W, 3\\) uint8 BGR"),
        (np.zeros((0, 4, 3), np.uint8), "expected \\(H, W, 3\\) uint8 BGR"),
        (messages.bgr_to_image_msg(np.zeros((4, 4, 3), np.uint8)), None),
    ],
)
def test_bad_frames_raise_one_line_errors(frame, message):
    processor = FrameProcessor()
    if message is None:  # a good message made bad: data one byte short
        frame.data = frame.data[:-1]
        message = "image data: expected step\\*height"
    with pytest.raises(ImageConversionError, match=message):
        processor.process([frame])


def test_undeserialisable_bytes_are_a_conversion_error():
    with pytest.raises(ImageConversionError, match="cannot deserialise sensor_msgs/Image"):
        FrameProcessor().process_serialized(b"\x01\x02", Image)


def test_a_bad_frame_in_a_serialized_batch_fails_alone(processor, astronaut):
    coffee = cv2.imread(str(assets.fetch("coffee")))
    good = [
        _wire(messages.bgr_to_image_msg(image, messages.make_header(STAMP + i, "cam%d" % i)))
        for i, image in enumerate([astronaut, coffee])
    ]
    short = messages.bgr_to_image_msg(astronaut, messages.make_header(STAMP, "broken"))
    short.data = short.data[:-1]
    frames = [good[0], b"\x01\x02", _wire(short), good[1]]
    results = processor.process_serialized_batch(frames, Image, types=messages.genpy_types())
    assert [type(r).__name__ for r in results] == [
        "FrameResult",
        "ImageConversionError",
        "ImageConversionError",
        "FrameResult",
    ]
    assert "cannot deserialise sensor_msgs/Image" in str(results[1])
    assert "expected step*height" in str(results[2])
    assert [r.messages.detections.header.frame_id for r in (results[0], results[3])] == ["cam0", "cam1"]
    assert [len(r.detections) for r in (results[0], results[3])] == [1, 0]
    (alone,) = processor.process([astronaut])
    np.testing.assert_allclose(results[0].detections.xyxy, alone.detections.xyxy, atol=1e-3)


def test_each_frame_of_a_batch_gets_the_outputs_asked_for_it(processor, astronaut):
    wire = [_wire(messages.bgr_to_image_msg(astronaut, messages.make_header(STAMP, "cam%d" % i))) for i in range(3)]
    wanted = [Outputs(), Outputs(class_map=True), Outputs(annotated=True)]
    plain, mapped, drawn = processor.process_serialized_batch(wire, Image, wanted, messages.genpy_types())
    assert plain.segmentation is None and plain.messages.class_map is None and plain.messages.annotated is None
    assert mapped.segmentation is not None and mapped.messages.class_map is not None and mapped.annotated is None
    assert drawn.segmentation is not None and drawn.messages.annotated is not None and drawn.messages.class_map is None
    assert all(r.messages.detections is not None for r in (plain, mapped, drawn))
    np.testing.assert_array_equal(mapped.segmentation.class_map, drawn.segmentation.class_map)
    with pytest.raises(ValueError, match="expected one per frame"):
        processor.process([astronaut], [Outputs(), Outputs()])


def test_an_all_bad_batch_keeps_the_last_timings_and_a_batch_needs_every_model_batched(processor, astronaut):
    processor.process_serialized_batch([_wire(messages.bgr_to_image_msg(astronaut))], Image)
    before = dict(processor.timings)
    assert processor.process_serialized_batch([b"\x01", b"\x02"], Image)[0].args
    assert processor.timings == before
    # The shipped TFLite models have a fixed batch of 1: a node runs its cameras in turn with them.
    assert not processor.supports_batch and not FrameProcessor().supports_batch
