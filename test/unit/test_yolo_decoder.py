"""YOLOv5/v8 decoding on tiny raw heads whose boxes and masks are worked out by hand."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dl_vision.decoders.base import DecodeOptions
from dl_vision.decoders.yolo import YoloDecoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform

# Three candidates as (cx, cy, w, h, score class 0, score class 1), model-input pixels.
# 0 and 1 overlap (IoU 760/840); 2 is elsewhere and of class 1.
CANDIDATES = np.array(
    [
        [100, 140, 40, 20, 0.9, 0.1],
        [102, 140, 40, 20, 0.8, 0.1],
        [200, 200, 20, 20, 0.2, 0.7],
    ],
    np.float32,
)
# 240x320 image letterboxed into 320x320: scale 1, 40 px bands above and below.
LETTERBOX = ImageTransform.letterbox((240, 320), (320, 320))


def _padded(candidates: np.ndarray, rows: int = 20) -> np.ndarray:
    """Add zero-score rows: real heads have far more candidates than channels, which tells the layout."""
    return np.concatenate([candidates, np.zeros((rows - len(candidates), candidates.shape[1]), np.float32)])


def _v8(candidates: np.ndarray) -> dict:
    return {"output0": _padded(candidates).T[None]}  # (1, 4 + nc, N)


def test_v8_boxes_are_suppressed_and_mapped_through_the_letterbox():
    dets = YoloDecoder(labels=["person", "cup"]).decode(_v8(CANDIDATES), LETTERBOX, DecodeOptions(0.25, 0.45))
    # Model xyxy (80, 130, 120, 150) and (190, 190, 210, 210), minus the 40 px top band.
    np.testing.assert_allclose(dets.xyxy, [[80, 90, 120, 110], [190, 150, 210, 170]], atol=1e-4)
    np.testing.assert_allclose(dets.score, [0.9, 0.7], atol=1e-6)
    assert dets.class_names == ["person", "cup"]
    assert dets.masks is None


def test_v8_letterbox_with_scaling():
    # 480x640 into 320x320: scale 0.5, 40 px bands; (80, 130, 120, 150) -> (160, 180, 240, 220).
    transform = ImageTransform.letterbox((480, 640), (320, 320))
    dets = YoloDecoder().decode(_v8(CANDIDATES[:1]), transform, DecodeOptions(0.25))
    np.testing.assert_allclose(dets.xyxy, [[160, 180, 240, 220]], atol=1e-3)


def test_v8_transposed_export_gives_the_same_result():
    decoder = YoloDecoder(labels=["person", "cup"])
    channels_first = decoder.decode(_v8(CANDIDATES), LETTERBOX, DecodeOptions(0.25))
    rows = decoder.decode({"output0": _padded(CANDIDATES)[None]}, LETTERBOX, DecodeOptions(0.25))
    np.testing.assert_allclose(rows.xyxy, channels_first.xyxy)


def test_v5_score_is_objectness_times_class_score():
    # Rows: cx, cy, w, h, objectness, class scores.
    raw = np.array([[100, 140, 40, 20, 0.5, 0.9, 0.1], [200, 200, 20, 20, 0.9, 0.1, 0.2]], np.float32)
    dets = YoloDecoder(version="v5").decode({"output0": _padded(raw)[None]}, LETTERBOX, DecodeOptions(0.15))
    np.testing.assert_allclose(dets.score, [0.45, 0.18], atol=1e-6)
    assert dets.class_id.tolist() == [0, 1]
    np.testing.assert_allclose(dets.xyxy[0], [80, 90, 120, 110], atol=1e-4)


def test_v5_is_recognised_from_the_labels():
    raw = np.array([[100, 140, 40, 20, 0.5, 0.9, 0.1]], np.float32)
    dets = YoloDecoder(labels=["a", "b"]).decode({"output0": raw[None]}, LETTERBOX, DecodeOptions(0.1))
    np.testing.assert_allclose(dets.score, [0.45], atol=1e-6)


def test_thresholds_agnostic_nms_and_cap():
    decoder = YoloDecoder()
    same_place = CANDIDATES.copy()
    same_place[2] = [101, 140, 40, 20, 0.2, 0.85]  # class 1 on top of candidate 0
    aware = decoder.decode(_v8(same_place), LETTERBOX, DecodeOptions(0.25, 0.45))
    assert aware.class_id.tolist() == [0, 1]
    agnostic = decoder.decode(_v8(same_place), LETTERBOX, DecodeOptions(0.25, 0.45, class_agnostic_nms=True))
    assert agnostic.class_id.tolist() == [0]
    assert len(decoder.decode(_v8(same_place), LETTERBOX, DecodeOptions(0.95))) == 0
    assert len(decoder.decode(_v8(same_place), LETTERBOX, DecodeOptions(0.25, 0.45, max_detections=1))) == 1


def test_normalized_boxes_are_scaled_to_the_input():
    raw = CANDIDATES[:1].copy()
    raw[0, :4] /= 320.0
    dets = YoloDecoder(normalized_boxes=True).decode(_v8(raw), LETTERBOX, DecodeOptions(0.25))
    np.testing.assert_allclose(dets.xyxy, [[80, 90, 120, 110]], atol=1e-3)


def test_seg_masks_follow_the_prototypes_through_the_letterbox():
    # 16x32 image letterboxed into 32x32 (8 px bands); prototypes at 1/4 resolution (8x8).
    transform = ImageTransform.letterbox((16, 32), (32, 32))
    protos = np.zeros((1, 2, 8, 8), np.float32)
    protos[0, 0, :, :4] = 1.0  # left half of the input: +1, right half: -1
    protos[0, 0, :, 4:] = -1.0
    # One whole-image box (cx, cy, w, h) with 1 class and coefficients (10, 0); one box with coefficients (-10, 0).
    candidates = np.array([[16, 16, 32, 32, 0.9, 10.0, 0.0], [8, 16, 8, 8, 0.8, -10.0, 0.0]], np.float32)
    dets = YoloDecoder().decode(
        {"output0": _padded(candidates).T[None], "proto": protos}, transform, DecodeOptions(0.5)
    )
    assert dets.masks is not None and dets.masks.shape == (2, 16, 32)
    expected = np.zeros((16, 32), bool)
    expected[:, :16] = True  # bilinear 8 -> 32 puts the sign change between pixel 15 and 16
    np.testing.assert_array_equal(dets.masks[0], expected)
    assert not dets.masks[1].any()
    np.testing.assert_allclose(dets.xyxy[1], [4, 4, 12, 12], atol=1e-4)


def test_seg_mask_is_cut_to_its_box():
    transform = ImageTransform.stretch((32, 32), (32, 32))
    protos = np.ones((1, 1, 8, 8), np.float32)
    candidates = np.array([[12, 12, 8, 8, 0.9, 10.0]], np.float32)  # box (8, 8, 16, 16), mask 1 everywhere
    dets = YoloDecoder().decode(
        {"output0": _padded(candidates).T[None], "proto": protos}, transform, DecodeOptions(0.5)
    )
    expected = np.zeros((32, 32), bool)
    expected[8:16, 8:16] = True
    np.testing.assert_array_equal(dets.masks[0], expected)


@pytest.mark.parametrize(
    "outputs, decoder_kwargs, message",
    [
        ({"output0": np.zeros((1, 6, 10), np.float32)}, {"labels": ["a", "b", "c"]}, "expected 4 + 3 classes"),
        ({"output0": np.zeros((1, 4, 10), np.float32)}, {}, "channels per candidate"),
        ({"a": np.zeros((1, 6, 10)), "b": np.zeros((1, 6, 10))}, {}, "name them"),
        ({"output0": np.zeros((2, 6, 10), np.float32)}, {}, "batch of 1"),
        ({"output0": np.zeros((1, 6, 10), np.float32)}, {"predictions": "boxes"}, "expected output 'boxes'"),
    ],
)
def test_bad_outputs_raise_model_error(outputs, decoder_kwargs, message):
    with pytest.raises(ModelError, match=re.escape(message)):
        YoloDecoder(**decoder_kwargs).decode(outputs, LETTERBOX)


def test_labels_settle_the_layout_of_a_tiny_head():
    # Two candidates, seven channels: only the labels say which axis is which.
    raw = np.array([[100, 140, 40, 20, 0.5, 0.9, 0.1], [200, 200, 20, 20, 0.9, 0.1, 0.2]], np.float32)
    dets = YoloDecoder(labels=["a", "b"], version="v5").decode({"output0": raw[None]}, LETTERBOX, DecodeOptions(0.15))
    np.testing.assert_allclose(dets.score, [0.45, 0.18], atol=1e-6)


def test_unknown_version_is_a_config_error():
    with pytest.raises(ConfigError, match="expected one of auto, v5, v8"):
        YoloDecoder(version="v11")
