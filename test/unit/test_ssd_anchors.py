"""MediaPipe SSD anchors and their decoding, on values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dl_vision.decoders.base import DecodeOptions
from dl_vision.decoders.ssd_anchors import SsdAnchorsDecoder, generate_anchors
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform

FULL_RANGE = dict(strides=[4], interpolated_scale_aspect_ratio=0.0)
SHORT_RANGE = dict(strides=[8, 16, 16, 16], interpolated_scale_aspect_ratio=1.0)


def test_full_range_anchors_one_per_cell_of_a_48x48_grid():
    anchors = generate_anchors((192, 192), **FULL_RANGE)
    assert anchors.shape == (2304, 4)  # 192 / 4 = 48; 48 * 48 cells, one anchor each
    # Row-major: anchor 48 * row + col has its centre at ((col + 0.5) / 48, (row + 0.5) / 48).
    np.testing.assert_allclose(anchors[0], [0.5 / 48, 0.5 / 48, 1, 1])
    np.testing.assert_allclose(anchors[48 * 10 + 20], [20.5 / 48, 10.5 / 48, 1, 1])
    np.testing.assert_allclose(anchors[-1], [47.5 / 48, 47.5 / 48, 1, 1])


def test_short_range_anchors_two_then_six_per_cell():
    anchors = generate_anchors((128, 128), **SHORT_RANGE)
    # Stride 8: 16 x 16 cells x (1 ratio + 1 interpolated) = 512; the three stride-16 layers share
    # one 8 x 8 map with 3 x 2 = 6 anchors per cell = 384; 896 in all.
    assert anchors.shape == (896, 4)
    np.testing.assert_allclose(anchors[0:2, :2], [[1 / 32, 1 / 32]] * 2)
    np.testing.assert_allclose(anchors[2, :2], [3 / 32, 1 / 32])  # next column
    np.testing.assert_allclose(anchors[512:518, :2], [[1 / 16, 1 / 16]] * 6)
    np.testing.assert_allclose(anchors[518, :2], [3 / 16, 1 / 16])
    np.testing.assert_allclose(anchors[:, 2:], 1.0)  # fixed anchor size


def test_anchor_sizes_when_not_fixed():
    # One layer: scale = (0.2 + 0.4) / 2 = 0.3; ratios 1 and 2, then the interpolated anchor at
    # sqrt(0.3 * 1.0) (the last layer interpolates towards scale 1) with ratio 1.
    anchors = generate_anchors(
        (16, 16), strides=[8], min_scale=0.2, max_scale=0.4, aspect_ratios=[1.0, 2.0], fixed_anchor_size=False
    )
    assert anchors.shape == (2 * 2 * 3, 4)
    root2 = math.sqrt(2.0)
    expected_cell = [
        [0.25, 0.25, 0.3, 0.3],
        [0.25, 0.25, 0.3 * root2, 0.3 / root2],
        [0.25, 0.25, math.sqrt(0.3), math.sqrt(0.3)],
    ]
    np.testing.assert_allclose(anchors[:3], expected_cell, rtol=1e-6)
    np.testing.assert_allclose(anchors[3, :2], [0.75, 0.25])


def _raw(anchors: int, entries):
    """Regression (1, N, 16) and logits (1, N, 1); ``entries`` maps anchor -> (16 values, logit)."""
    boxes = np.zeros((1, anchors, 16), np.float32)
    scores = np.full((1, anchors, 1), -10.0, np.float32)
    for index, (values, logit) in entries.items():
        boxes[0, index, : len(values)] = values
        scores[0, index, 0] = logit
    return {"Identity": boxes, "Identity_1": scores}


def test_decoding_one_anchor_into_image_pixels():
    decoder = SsdAnchorsDecoder(labels=["face"], num_keypoints=6, **FULL_RANGE)
    # Anchor at row 10, col 20: centre (20.5 / 48, 10.5 / 48) * 192 = (82, 42) model pixels. With
    # box_scale = 192 and unit anchors, raw values are model-pixel offsets: centre (82 + 6, 42 - 4)
    # = (88, 38), size 30 x 40 -> box (73, 18, 103, 58); keypoint 0 at (82 + 1, 42 + 2) = (83, 44).
    outputs = _raw(2304, {48 * 10 + 20: ([6, -4, 30, 40, 1, 2], 2.0)})
    transform = ImageTransform.letterbox((384, 384), (192, 192))  # image pixels = 2 x model pixels
    detections = decoder.decode(outputs, transform, DecodeOptions(score_threshold=0.5))
    assert len(detections) == 1
    np.testing.assert_allclose(detections.xyxy, [[146, 36, 206, 116]], atol=1e-3)
    np.testing.assert_allclose(detections.score, [1 / (1 + math.exp(-2.0))], rtol=1e-6)
    assert detections.class_names == ["face"]
    assert detections.keypoints.shape == (1, 6, 2)
    np.testing.assert_allclose(detections.keypoints[0, 0], [166, 88], atol=1e-3)
    # The other keypoints have zero offsets: at the anchor centre (82, 42) -> (164, 84).
    np.testing.assert_allclose(detections.keypoints[0, 1], [164, 84], atol=1e-3)


def test_overlapping_anchors_are_blended_by_weighted_nms():
    decoder = SsdAnchorsDecoder(labels=["face"], **FULL_RANGE)
    # Two neighbours (cols 20, 21; centres x 82, 86): boxes (73, 18, 103, 58) and (75, 18, 105, 58),
    # IoU 28 * 40 / (32 * 40) = 0.875 > 0.3, so one cluster: x weighted by the two scores.
    outputs = _raw(2304, {48 * 10 + 20: ([6, -4, 30, 40], 2.0), 48 * 10 + 21: ([4, -4, 30, 40], 1.0)})
    s1, s2 = 1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(-1.0))
    identity = ImageTransform.stretch((192, 192), (192, 192))
    detections = decoder.decode(outputs, identity, DecodeOptions(score_threshold=0.5, nms_iou=0.3))
    x0 = (73 * s1 + 75 * s2) / (s1 + s2)
    np.testing.assert_allclose(detections.xyxy, [[x0, 18, x0 + 30, 58]], atol=1e-3)
    np.testing.assert_allclose(detections.score, [s1], rtol=1e-6)
    # Plain NMS keeps the best box unchanged.
    plain = SsdAnchorsDecoder(labels=["face"], nms="plain", **FULL_RANGE)
    np.testing.assert_allclose(
        plain.decode(outputs, identity, DecodeOptions(0.5, 0.3)).xyxy, [[73, 18, 103, 58]], atol=1e-3
    )
    # Above both scores, nothing is left.
    assert len(decoder.decode(outputs, identity, DecodeOptions(score_threshold=0.9))) == 0


def test_yxhw_order_and_exponential_sizes():
    decoder = SsdAnchorsDecoder(
        strides=[4], interpolated_scale_aspect_ratio=0.0, box_order="yxhw", apply_exponential_on_box_size=True,
        box_scale=[10, 10, 5, 5],
    )  # fmt: skip
    # Anchor 0 is centred at 0.5 / 48 = 1 / 96 of the input (2 px). Raw (y, x, h, w) =
    # (0.5, 1.0, 0, 5 ln 0.5): centre offsets 0.5 / 10 and 1.0 / 10 of the input, sizes
    # exp(0 / 5) = 1 and exp(ln 0.5) = 0.5 of the input. So cx = 2 + 19.2 = 21.2, cy = 2 + 9.6 = 11.6,
    # w = 96, h = 192: box (-26.8, -84.4, 69.2, 107.6), clipped to the image (0, 0, 69.2, 107.6).
    outputs = _raw(2304, {0: ([0.5, 1.0, 0.0, 5 * math.log(0.5)], 3.0)})
    identity = ImageTransform.stretch((192, 192), (192, 192))
    detections = decoder.decode(outputs, identity, DecodeOptions(0.5))
    np.testing.assert_allclose(detections.xyxy, [[0, 0, 69.2, 107.6]], atol=1e-3)


@pytest.mark.parametrize("threshold", [0.0, 1e-30, 0.3, 0.5, 0.6, 0.999, 1.0])
@pytest.mark.parametrize("clipping", [None, 100.0, 2.0])
def test_logit_cutoff_keeps_exactly_the_anchors_the_sigmoid_keeps(threshold, clipping):
    # The decoder tests logits against log(t / (1 - t)) before computing any sigmoid. Logits
    # packed within a few hundred float32 steps of that boundary, plus saturated ones (sigmoid
    # rounds to 1.0 above ~17), must give exactly the scores of the sigmoid-space test.
    rng = np.random.default_rng(11)
    p = min(max(threshold, 1e-6), 1 - 1e-6)
    logits = np.concatenate(
        [
            math.log(p / (1 - p)) + rng.uniform(-1e-4, 1e-4, 1800),
            rng.uniform(-30, 30, 500),
            [0.0, np.inf, -np.inf, np.nan],
        ]
    ).astype(np.float32)
    outputs = {"boxes": rng.uniform(-5, 5, (1, 2304, 4)).astype(np.float32), "scores": logits.reshape(1, 2304, 1)}
    clipped = logits if clipping is None else np.clip(logits, -clipping, clipping)
    scores = 0.5 * (1.0 + np.tanh(0.5 * clipped))
    expected = np.sort(scores[scores >= threshold])[::-1]
    decoder = SsdAnchorsDecoder(score_clipping=clipping, **FULL_RANGE)
    options = DecodeOptions(threshold, nms_iou=1.0, max_detections=2304)  # IoU never exceeds 1: no merging
    detections = decoder.decode(outputs, ImageTransform.stretch((192, 192), (192, 192)), options)
    np.testing.assert_array_equal(detections.score, expected)


def test_outputs_are_told_apart_by_width_or_by_name():
    decoder = SsdAnchorsDecoder(**FULL_RANGE, boxes_output="Identity", scores_output="Identity_1")
    outputs = _raw(2304, {0: ([0, 0, 4, 4], 5.0)})
    identity = ImageTransform.stretch((192, 192), (192, 192))
    assert len(decoder.decode(outputs, identity)) == 1
    swapped = {"scores": outputs["Identity_1"], "boxes": outputs["Identity"]}
    assert len(SsdAnchorsDecoder(**FULL_RANGE).decode(swapped, identity)) == 1


@pytest.mark.parametrize(
    "outputs, text",
    [
        ({"a": np.zeros((1, 896, 16), np.float32), "b": np.zeros((1, 896, 1), np.float32)}, "give 2304 anchors"),
        ({"a": np.zeros((1, 2304, 16), np.float32)}, "expected 2 outputs"),
        ({"a": np.zeros((1, 2304, 1), np.float32), "b": np.zeros((1, 2304, 1), np.float32)}, "same shape"),
        ({"a": np.zeros((2, 2304, 16), np.float32), "b": np.zeros((1, 2304, 1), np.float32)}, "expected shape"),
    ],
)
def test_outputs_that_do_not_fit_are_model_errors(outputs, text):
    with pytest.raises(ModelError, match=text):
        SsdAnchorsDecoder(**FULL_RANGE).decode(outputs, ImageTransform.stretch((192, 192), (192, 192)))


def test_too_few_regression_values_for_the_keypoints():
    decoder = SsdAnchorsDecoder(num_keypoints=8, **FULL_RANGE)  # needs 4 + 8 * 2 = 20 values, the rows have 16
    with pytest.raises(ModelError, match="expected at least 20 regression values per anchor"):
        decoder.decode(_raw(2304, {}), ImageTransform.stretch((192, 192), (192, 192)))


@pytest.mark.parametrize(
    "params, field",
    [
        (dict(strides=[]), "strides"),
        (dict(strides=[4, 0]), "strides"),
        (dict(min_scale=0.8, max_scale=0.2), "min_scale/max_scale"),
        (dict(box_order="xyxy"), "box_order"),
        (dict(box_scale=[1, 2, 3]), "box_scale"),
        (dict(nms="soft"), "nms"),
    ],
)
def test_bad_parameters_are_config_errors(params, field):
    with pytest.raises(ConfigError, match="decoder.params." + field):
        SsdAnchorsDecoder(**params)
