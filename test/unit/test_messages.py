"""Message <-> value conversions, for genpy messages and rosbags dataclasses alike.

Every test that builds or reads a message runs on both families, so the node (genpy) and the bag
reader/writer (rosbags) cannot drift apart again.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from dl_vision import messages
from dl_vision.errors import ImageConversionError
from dl_vision.evaluation.bag_io import make_typestore
from dl_vision.structures import Detections, KeypointSchema, Segmentation

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)
GRAY = cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)
ALPHA = np.full(BGR.shape[:2], 9, np.uint8)
HIGH_BYTE_GRAY = (GRAY.astype(np.uint16) << 8) | 0x7F
#: encoding -> (pixels as stored, the BGR image they decode to); one row per accepted encoding.
ENCODED = {
    "bgr8": (BGR, BGR),
    "8UC3": (BGR, BGR),
    "rgb8": (BGR[:, :, ::-1].copy(), BGR),
    "bgra8": (np.dstack([BGR, ALPHA]), BGR),
    "8UC4": (np.dstack([BGR, ALPHA]), BGR),
    "rgba8": (np.dstack([BGR[:, :, ::-1], ALPHA]), BGR),
    "mono8": (GRAY, np.dstack([GRAY] * 3)),
    "8UC1": (GRAY, np.dstack([GRAY] * 3)),
    "mono16": (HIGH_BYTE_GRAY, np.dstack([GRAY] * 3)),
    "16UC1": (HIGH_BYTE_GRAY, np.dstack([GRAY] * 3)),
}
# genpy needs ROS (marker ros: the Python 3.8 run of the core deselects it); rosbags is pure Python.
FAMILIES = (pytest.param("genpy", marks=pytest.mark.ros), "rosbags")
_STORE = []


def types_of(family: str) -> messages.MessageTypes:
    if family == "genpy":
        return messages.genpy_types()
    if not _STORE:
        _STORE.append(make_typestore())
    return messages.MessageTypes.rosbags(_STORE[0])


def raw_image(pixels: np.ndarray, encoding: str, family: str, pad: int = 0, bigendian: bool = False, **fields):
    """An Image of ``family`` holding ``pixels`` with ``pad`` junk bytes after every row."""
    types = types_of(family)
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    values = dict(
        header=messages.make_header(types=types),
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=types.uint8_field(padded.reshape(-1)),
    )
    values.update(fields)
    return types.image(**values)


def test_the_encodings_table_covers_every_accepted_encoding() -> None:
    assert set(ENCODED) == set(messages.ENCODINGS)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 3, 64])
def test_raw_encodings_decode_to_bgr_honouring_step(family: str, encoding: str, pad: int) -> None:
    pixels, expected = ENCODED[encoding]
    image = messages.image_to_bgr(raw_image(pixels, encoding, family, pad))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"] and image.flags["WRITEABLE"]
    np.testing.assert_array_equal(image, expected)


@pytest.mark.ros
@pytest.mark.parametrize("encoding", ["mono16", "16UC1"])
def test_16_bit_big_endian_uses_high_byte(encoding: str) -> None:
    message = raw_image(HIGH_BYTE_GRAY.astype(">u2"), encoding, "genpy", bigendian=True)
    np.testing.assert_array_equal(messages.image_to_bgr(message)[:, :, 1], GRAY)


@pytest.mark.ros
@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 3])
def test_view_decoding_gives_the_same_pixels_and_shares_only_unpadded_bgr(encoding: str, pad: int) -> None:
    pixels, expected = ENCODED[encoding]
    message = raw_image(pixels, encoding, "genpy", pad)
    view = messages.image_to_bgr(message, copy=False)
    assert view.shape == (5, 7, 3) and view.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(view, expected)
    shares = np.shares_memory(view, np.frombuffer(message.data, np.uint8))
    assert shares == (encoding in ("bgr8", "8UC3") and pad == 0)


@pytest.mark.ros
def test_decoded_image_does_not_alias_message_data() -> None:
    message = raw_image(BGR, "bgr8", "genpy")
    image = messages.image_to_bgr(message)
    image[:] = 0
    np.testing.assert_array_equal(messages.image_to_bgr(message), BGR)


def _good_data(family: str) -> object:
    return raw_image(BGR, "bgr8", family).data


BAD_RAW = [
    ("unknown encoding", dict(encoding="yuv422"), "encoding"),
    ("empty encoding", dict(encoding=""), "encoding"),
    ("zero width", dict(width=0), "size"),
    ("zero height", dict(height=0), "size"),
    ("step shorter than a row", dict(step=20), "step"),
    ("data one byte short", dict(data=lambda f: _good_data(f)[:-1]), "data"),
    (
        "data one row too long",
        dict(data=lambda f: np.concatenate([np.asarray(bytearray(_good_data(f))), np.zeros(21, np.uint8)])),
        "data",
    ),
    ("height larger than data", dict(height=6), "data"),
    ("rgba8 declared on bgr8 data", dict(encoding="rgba8"), "step"),
]


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("case, fields, field", BAD_RAW, ids=[c[0] for c in BAD_RAW])
def test_malformed_raw_images_raise_one_line_errors(family: str, case: str, fields: dict, field: str) -> None:
    types = types_of(family)
    values = {k: (v(family) if callable(v) else v) for k, v in fields.items()}
    if "data" in values:
        values["data"] = types.uint8_field(np.frombuffer(bytes(bytearray(values["data"])), np.uint8))
    message = raw_image(BGR, values.pop("encoding", "bgr8"), family, **values)
    with pytest.raises(ImageConversionError) as info:
        messages.image_to_bgr(message)
    text = str(info.value)
    assert "\n" not in text and field in text and "expected" in text and "found" in text


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("image_format", ["png", "jpeg"])
def test_compressed_images_round_trip(family: str, image_format: str) -> None:
    big = cv2.resize(BGR, (70, 50), interpolation=cv2.INTER_NEAREST)
    message = messages.bgr_to_compressed_msg(big, image_format, types=types_of(family))
    assert message.format == image_format and messages.is_compressed(message)
    image = messages.to_bgr(message)
    assert image.shape == (50, 70, 3)
    tolerance = 0 if image_format == "png" else 40
    assert np.abs(image.astype(int) - big.astype(int)).mean() <= tolerance


def _truncated_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", BGR)
    assert ok
    return encoded.tobytes()[:20]


@pytest.mark.ros
@pytest.mark.parametrize(
    "case, data", [("empty", b""), ("text", b"definitely not an image"), ("truncated jpeg", _truncated_jpeg())]
)
def test_corrupt_compressed_images_raise(case: str, data: bytes) -> None:
    types = messages.genpy_types()
    message = types.compressed_image(format="jpeg", data=data)
    with pytest.raises(ImageConversionError, match="compressed image"):
        messages.to_bgr(message)


@pytest.mark.parametrize("family", FAMILIES)
def test_bgr_and_mono_arrays_round_trip_through_messages(family: str) -> None:
    types = types_of(family)
    header = messages.make_header(123_000_000_456, "cam", 3, types)
    for array in (BGR, GRAY):
        message = messages.bgr_to_image_msg(array, header, types)
        assert message.header.frame_id == "cam" and messages.stamp_to_ns(message.header.stamp) == 123_000_000_456
        assert message.encoding == ("bgr8" if array.ndim == 3 else "mono8")
        decoded = messages.image_to_bgr(message)
        np.testing.assert_array_equal(decoded if array.ndim == 3 else decoded[:, :, 0], array)


@pytest.mark.ros
@pytest.mark.parametrize(
    "array",
    [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32), np.zeros((0, 4, 3), np.uint8)],
    ids=["four channels", "float", "zero size"],
)
def test_bgr_to_image_msg_rejects_other_arrays(array: np.ndarray) -> None:
    with pytest.raises(ImageConversionError, match="expected"):
        messages.bgr_to_image_msg(array)


@pytest.mark.parametrize("family", FAMILIES)
def test_class_map_message_is_mono8_with_header_and_ids(family: str) -> None:
    types = types_of(family)
    class_map = RNG.integers(0, 3, size=(6, 9), dtype=np.uint8)
    message = messages.segmentation_to_msg(
        Segmentation(class_map, ["bg", "a", "b"]), messages.make_header(frame_id="cam", types=types), types
    )
    assert (message.encoding, message.height, message.width, message.step) == ("mono8", 6, 9, 9)
    assert message.header.frame_id == "cam"
    restored = messages.segmentation_from_msg(message, {0: "bg"})
    np.testing.assert_array_equal(restored.class_map, class_map)


@pytest.mark.ros
def test_class_maps_must_be_single_channel_8_bit() -> None:
    message = messages.bgr_to_image_msg(BGR)
    with pytest.raises(ImageConversionError, match="class map encoding: expected one of mono8, 8UC1, found 'bgr8'"):
        messages.mono8_to_array(message)


LABELS = {0: "face", 3: "person"}


def _detections(masks: str, with_keypoints: bool) -> Detections:
    """Three detections; ``masks`` is "none", "all", or "mixed" (the middle one has an empty mask)."""
    xyxy = np.array([[1.5, 2.0, 10.25, 12.0], [0.0, 0.0, 4.0, 3.0], [15.0, 5.0, 19.0, 11.0]], np.float32)
    mask_array = None
    if masks != "none":
        mask_array = np.zeros((3, 14, 20), bool)
        mask_array[0, 3:11, 2:9] = True
        mask_array[0, 13, 19] = True  # a mask pixel outside its box is kept
        if masks == "all":
            mask_array[1, 0:2, 1:4] = True
        mask_array[2, 6:9, 16:19] = True
    keypoints = RNG.uniform(0, 14, size=(3, 6, 2)).astype(np.float32) if with_keypoints else None
    return Detections(xyxy, [0.9, 0.6, 0.55], [0, 3, 0], LABELS, mask_array, keypoints)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("masks", ["none", "all", "mixed"])
@pytest.mark.parametrize("with_keypoints", [False, True])
def test_detections_round_trip_through_detection_array(family: str, masks: str, with_keypoints: bool) -> None:
    types = types_of(family)
    original = _detections(masks, with_keypoints)
    header = messages.make_header(5, "camera_optical", 11, types)
    message = messages.detections_to_msg(original, header, 20, 14, "face", types)
    assert message.header.frame_id == "camera_optical" and message.model == "face"
    assert (message.image_width, message.image_height) == (20, 14)
    assert [d.class_name for d in message.detections] == ["face", "person", "face"]
    restored = messages.detections_from_msg(message)
    np.testing.assert_allclose(restored.xyxy, original.xyxy)
    np.testing.assert_allclose(restored.score, original.score)
    np.testing.assert_array_equal(restored.class_id, original.class_id)
    assert restored.class_names == original.class_names
    if with_keypoints:
        np.testing.assert_allclose(restored.keypoints, original.keypoints)
    else:
        assert restored.keypoints is None
    if masks == "none":
        assert restored.masks is None
        assert all(d.mask.width == 0 for d in message.detections)
    else:
        first = message.detections[0]
        assert first.mask.encoding == "mono8" and (first.mask_x, first.mask_y) == (2, 3)
        assert (first.mask.width, first.mask.height) == (18, 11)  # the mask's extent, not the box
        np.testing.assert_array_equal(restored.masks, original.masks)


@pytest.mark.ros
def test_empty_detections_make_an_empty_array_with_header() -> None:
    header = messages.make_header(frame_id="cam")
    message = messages.detections_to_msg(Detections.empty(LABELS), header, 640, 480, "face")
    assert list(message.detections) == [] and message.header.frame_id == "cam"
    restored = messages.detections_from_msg(message, LABELS)
    assert len(restored) == 0 and restored.labels == LABELS


@pytest.mark.ros
def test_genpy_detection_array_survives_serialisation() -> None:
    original = _detections("mixed", True)
    message = messages.detections_to_msg(original, messages.make_header(frame_id="cam"), 20, 14, "m")
    buffer = io.BytesIO()
    message.serialize(buffer)
    wire = type(message)().deserialize(buffer.getvalue())
    restored = messages.detections_from_msg(wire)
    np.testing.assert_array_equal(restored.masks, original.masks)
    np.testing.assert_allclose(restored.keypoints, original.keypoints)


@pytest.mark.parametrize("family", FAMILIES)
def test_label_table_message_lists_ids_in_order(family: str) -> None:
    message = messages.label_table_msg({3: "person", 0: "face", 1: "hand"}, "m", types_of(family))
    assert message.model == "m"
    assert list(message.class_ids) == [0, 1, 3]
    assert list(message.class_names) == ["face", "hand", "person"]
    assert messages.labels_from_msg(message) == {0: "face", 1: "hand", 3: "person"}


SCHEMA = KeypointSchema.from_names(["nose", "left_eye", "right_eye"], [["nose", "left_eye"], ["nose", "right_eye"]])


def _posed(unposed: int) -> Detections:
    """Three detections with 3 named, scored keypoints, of which detection ``unposed`` has none (NaN)."""
    keypoints = RNG.uniform(0, 14, size=(3, 3, 2)).astype(np.float32)
    scores = RNG.uniform(0, 1, size=(3, 3)).astype(np.float32)
    keypoints[unposed], scores[unposed] = np.nan, 0.0
    xyxy = np.array([[1, 1, 9, 9], [2, 2, 8, 8], [3, 3, 12, 12]], np.float32)
    return Detections(xyxy, [0.9, 0.8, 0.7], [0, 3, 0], LABELS, None, keypoints, scores, SCHEMA)


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("unposed", [0, 2])
def test_keypoint_scores_and_detections_without_keypoints_round_trip(family: str, unposed: int) -> None:
    types = types_of(family)
    original = _posed(unposed)
    message = messages.detections_to_msg(original, messages.make_header(types=types), 20, 14, "pose", types)
    assert len(message.detections[unposed].keypoints) == 0 and len(message.detections[unposed].keypoint_scores) == 0
    posed = message.detections[1]
    assert len(posed.keypoints) == 6 and len(posed.keypoint_scores) == 3
    table = messages.label_table_msg(LABELS, "pose", types, SCHEMA)
    schema = messages.keypoint_schema_from_msg(table)
    assert schema == SCHEMA
    restored = messages.detections_from_msg(message, messages.labels_from_msg(table), schema)
    np.testing.assert_array_equal(restored.has_keypoints, original.has_keypoints)
    np.testing.assert_allclose(restored.keypoints, original.keypoints)  # NaN where none, in both
    np.testing.assert_allclose(restored.keypoint_scores, original.keypoint_scores)
    assert restored.keypoint_schema == SCHEMA


@pytest.mark.parametrize("family", FAMILIES)
def test_label_tables_without_keypoints_name_none(family: str) -> None:
    table = messages.label_table_msg(LABELS, "face", types_of(family))
    assert list(table.keypoint_names) == [] and len(table.skeleton) == 0
    assert messages.keypoint_schema_from_msg(table) is None


@pytest.mark.ros
def test_genpy_keypoints_and_their_names_survive_serialisation() -> None:
    original = _posed(1)
    message = messages.detections_to_msg(original, messages.make_header(frame_id="cam"), 20, 14, "m")
    table = messages.label_table_msg(LABELS, "m", keypoint_schema=SCHEMA)
    wires = []
    for msg in (message, table):
        buffer = io.BytesIO()
        msg.serialize(buffer)
        wires.append(type(msg)().deserialize(buffer.getvalue()))
    restored = messages.detections_from_msg(wires[0], None, messages.keypoint_schema_from_msg(wires[1]))
    np.testing.assert_allclose(restored.keypoints, original.keypoints)
    np.testing.assert_allclose(restored.keypoint_scores, original.keypoint_scores, atol=1e-7)
    assert restored.keypoint_schema == SCHEMA
