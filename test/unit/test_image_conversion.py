"""Message <-> array conversions: encodings, padded rows, malformed messages, round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from dl_vision.errors import ImageConversionError
from dl_vision.ros.image_conversion import (
    bgr_to_image_msg,
    class_map_to_msg,
    compressed_to_bgr,
    detections_from_msg,
    detections_to_msg,
    image_to_bgr,
    label_table_msg,
)
from dl_vision.structures import Detections, Segmentation

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, size=(5, 7, 3), dtype=np.uint8)


def _raw(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> Image:
    """An Image message holding ``pixels`` with ``pad`` junk bytes at the end of every row."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((height, pad), 0xAB, np.uint8)], axis=1)
    return Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=padded.shape[1],
        data=padded.tobytes(),
    )


GRAY = cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)
ENCODED = {
    "bgr8": (BGR, BGR),
    "8UC3": (BGR, BGR),
    "rgb8": (BGR[:, :, ::-1].copy(), BGR),
    "bgra8": (np.dstack([BGR, np.full(BGR.shape[:2], 9, np.uint8)]), BGR),
    "rgba8": (np.dstack([BGR[:, :, ::-1], np.full(BGR.shape[:2], 9, np.uint8)]), BGR),
    "mono8": (GRAY, np.dstack([GRAY] * 3)),
    "8UC1": (GRAY, np.dstack([GRAY] * 3)),
    "mono16": ((GRAY.astype(np.uint16) << 8) | 0x7F, np.dstack([GRAY] * 3)),
}


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 3, 64])
def test_raw_encodings_decode_to_bgr_honouring_step(encoding: str, pad: int) -> None:
    pixels, expected = ENCODED[encoding]
    image = image_to_bgr(_raw(pixels, encoding, pad))
    assert image.shape == (5, 7, 3) and image.dtype == np.uint8
    assert image.flags["C_CONTIGUOUS"] and image.flags["WRITEABLE"]
    np.testing.assert_array_equal(image, expected)


def test_mono16_big_endian_uses_high_byte() -> None:
    pixels = (GRAY.astype(np.uint16) << 8) | 0x7F
    message = _raw(pixels.astype(">u2"), "mono16", bigendian=True)
    np.testing.assert_array_equal(image_to_bgr(message)[:, :, 1], GRAY)


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("pad", [0, 3])
def test_view_decoding_gives_the_same_pixels_and_shares_only_unpadded_bgr(encoding: str, pad: int) -> None:
    pixels, expected = ENCODED[encoding]
    message = _raw(pixels, encoding, pad)
    view = image_to_bgr(message, copy=False)
    assert view.shape == (5, 7, 3) and view.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(view, expected)
    shares = np.shares_memory(view, np.frombuffer(message.data, np.uint8))
    assert shares == (encoding in ("bgr8", "8UC3") and pad == 0)


def test_decoded_image_does_not_alias_message_data() -> None:
    message = _raw(BGR, "bgr8")
    image = image_to_bgr(message)
    image[:] = 0
    np.testing.assert_array_equal(image_to_bgr(message), BGR)


def _with(message: Image, **fields) -> Image:
    for key, value in fields.items():
        setattr(message, key, value)
    return message


BAD_RAW = [
    ("unknown encoding", _with(_raw(BGR, "bgr8"), encoding="yuv422"), "encoding"),
    ("empty encoding", _with(_raw(BGR, "bgr8"), encoding=""), "encoding"),
    ("zero width", _with(_raw(BGR, "bgr8"), width=0), "size"),
    ("zero height", Image(height=0, width=7, encoding="bgr8", step=21, data=b""), "size"),
    ("step shorter than a row", _with(_raw(BGR, "bgr8"), step=20), "step"),
    ("data one byte short", _with(_raw(BGR, "bgr8"), data=_raw(BGR, "bgr8").data[:-1]), "data"),
    ("data one row too long", _with(_raw(BGR, "bgr8"), data=_raw(BGR, "bgr8").data + bytes(21)), "data"),
    ("height larger than data", _with(_raw(BGR, "bgr8"), height=6), "data"),
    ("rgba8 declared on bgr8 data", _with(_raw(BGR, "bgr8"), encoding="rgba8"), "step"),
]


@pytest.mark.parametrize("case, message, field", BAD_RAW, ids=[c[0] for c in BAD_RAW])
def test_malformed_raw_images_raise_one_line_errors(case: str, message: Image, field: str) -> None:
    with pytest.raises(ImageConversionError) as info:
        image_to_bgr(message)
    text = str(info.value)
    assert "\n" not in text and field in text and "expected" in text and "found" in text


@pytest.mark.parametrize("extension", [".png", ".jpg"])
def test_compressed_images_decode(extension: str) -> None:
    big = cv2.resize(BGR, (70, 50), interpolation=cv2.INTER_NEAREST)
    ok, encoded = cv2.imencode(extension, big)
    assert ok
    image = compressed_to_bgr(CompressedImage(format=extension[1:], data=encoded.tobytes()))
    assert image.shape == (50, 70, 3)
    tolerance = 0 if extension == ".png" else 40
    assert np.abs(image.astype(int) - big.astype(int)).mean() <= tolerance


def _truncated_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", BGR)
    assert ok
    return encoded.tobytes()[:20]


BAD_COMPRESSED = [
    ("empty", b""),
    ("text", b"definitely not an image"),
    ("truncated jpeg header", _truncated_jpeg()),
]


@pytest.mark.parametrize("case, data", BAD_COMPRESSED, ids=[c[0] for c in BAD_COMPRESSED])
def test_corrupt_compressed_images_raise(case: str, data: bytes) -> None:
    with pytest.raises(ImageConversionError, match="compressed image"):
        compressed_to_bgr(CompressedImage(format="jpeg", data=data))


def test_bgr_and_mono_arrays_round_trip_through_messages() -> None:
    header = Header(frame_id="cam", seq=3)
    for array in (BGR, GRAY):
        message = bgr_to_image_msg(array, header)
        assert message.header.frame_id == "cam"
        assert message.encoding == ("bgr8" if array.ndim == 3 else "mono8")
        decoded = image_to_bgr(message)
        np.testing.assert_array_equal(decoded if array.ndim == 3 else decoded[:, :, 0], array)


@pytest.mark.parametrize("array", [np.zeros((4, 4, 4), np.uint8), np.zeros((4, 4, 3), np.float32)])
def test_bgr_to_image_msg_rejects_other_arrays(array: np.ndarray) -> None:
    with pytest.raises(ImageConversionError, match="expected"):
        bgr_to_image_msg(array)


def test_class_map_message_is_mono8_with_header_and_ids() -> None:
    class_map = RNG.integers(0, 3, size=(6, 9), dtype=np.uint8)
    message = class_map_to_msg(Segmentation(class_map, ["bg", "a", "b"]), Header(frame_id="cam"))
    assert (message.encoding, message.height, message.width, message.step) == ("mono8", 6, 9, 9)
    assert message.header.frame_id == "cam"
    np.testing.assert_array_equal(np.frombuffer(message.data, np.uint8).reshape(6, 9), class_map)


LABELS = {0: "face", 3: "person"}


def _detections(with_masks: bool, with_keypoints: bool) -> Detections:
    xyxy = np.array([[1.5, 2.0, 10.25, 12.0], [0.0, 0.0, 4.0, 3.0], [15.0, 5.0, 19.0, 11.0]], np.float32)
    masks = None
    if with_masks:
        masks = np.zeros((3, 14, 20), bool)
        masks[0, 3:11, 2:9] = True
        masks[1, 0:2, 1:4] = True
        masks[2, 6:9, 16:19] = True
    keypoints = RNG.uniform(0, 14, size=(3, 6, 2)).astype(np.float32) if with_keypoints else None
    return Detections(xyxy, [0.9, 0.6, 0.55], [0, 3, 0], LABELS, masks, keypoints)


@pytest.mark.parametrize("with_masks", [False, True])
@pytest.mark.parametrize("with_keypoints", [False, True])
def test_detections_round_trip_through_detection_array(with_masks: bool, with_keypoints: bool) -> None:
    original = _detections(with_masks, with_keypoints)
    header = Header(frame_id="camera_optical", seq=11)
    message = detections_to_msg(original, header, 20, 14, "face")
    assert message.header.frame_id == "camera_optical" and message.model == "face"
    assert (message.image_width, message.image_height) == (20, 14)
    assert [d.class_name for d in message.detections] == ["face", "person", "face"]
    restored = detections_from_msg(message)
    np.testing.assert_allclose(restored.xyxy, original.xyxy)
    np.testing.assert_allclose(restored.score, original.score)
    np.testing.assert_array_equal(restored.class_id, original.class_id)
    assert restored.class_names == original.class_names
    if with_keypoints:
        np.testing.assert_allclose(restored.keypoints, original.keypoints)
    else:
        assert restored.keypoints is None
    if with_masks:
        assert message.detections[0].mask.encoding == "mono8"
        assert (message.detections[0].mask_x, message.detections[0].mask_y) == (1, 2)
        assert (message.detections[0].mask.width, message.detections[0].mask.height) == (10, 10)
        np.testing.assert_array_equal(restored.masks, original.masks)
    else:
        assert restored.masks is None
        assert all(d.mask.width == 0 for d in message.detections)


def test_mask_pixels_outside_the_box_are_dropped() -> None:
    masks = np.ones((1, 10, 10), bool)
    original = Detections([[2, 2, 5, 6]], [0.9], [0], LABELS, masks)
    restored = detections_from_msg(detections_to_msg(original, Header(), 10, 10, "m"))
    assert restored.masks.sum() == 3 * 4
    assert restored.masks[0, 2:6, 2:5].all()


def test_empty_detections_make_an_empty_array_with_header() -> None:
    message = detections_to_msg(Detections.empty(LABELS), Header(frame_id="cam"), 640, 480, "face")
    assert message.detections == [] and message.header.frame_id == "cam"
    restored = detections_from_msg(message, LABELS)
    assert len(restored) == 0 and restored.labels == LABELS


def test_label_table_message_lists_ids_in_order() -> None:
    message = label_table_msg({3: "person", 0: "face", 1: "hand"}, "m")
    assert message.model == "m"
    assert list(message.class_ids) == [0, 1, 3]
    assert list(message.class_names) == ["face", "hand", "person"]
