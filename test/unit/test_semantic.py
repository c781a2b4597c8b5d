"""Semantic segmentation decoding on score maps written by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dl_vision.decoders.base import DecodeOptions
from dl_vision.decoders.semantic import SemanticDecoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform

SAME_SIZE = ImageTransform.stretch((2, 3), (2, 3))


def test_single_channel_probabilities_are_thresholded():
    probs = np.array([[0.1, 0.5, 0.9], [0.49, 0.51, 0.0]], np.float32).reshape(1, 2, 3, 1)
    decoder = SemanticDecoder(labels=["background", "person"])
    seg = decoder.decode({"mask": probs}, SAME_SIZE, DecodeOptions(mask_threshold=0.5))
    np.testing.assert_array_equal(seg.class_map, [[0, 1, 1], [0, 1, 0]])
    np.testing.assert_allclose(seg.confidence, probs[0, :, :, 0])
    assert seg.labels == {0: "background", 1: "person"}
    # The threshold is an option: raising it to 0.7 keeps only the 0.9 pixel.
    higher = decoder.decode({"mask": probs}, SAME_SIZE, DecodeOptions(mask_threshold=0.7))
    np.testing.assert_array_equal(higher.class_map, [[0, 0, 1], [0, 0, 0]])


def test_single_channel_logits_with_sigmoid():
    logits = np.array([[-2.0, 0.0, 3.0], [0.1, -0.1, 10.0]], np.float32)[None]  # (1, h, w) without channel
    seg = SemanticDecoder(activation="sigmoid").decode({"logits": logits}, SAME_SIZE, DecodeOptions(mask_threshold=0.5))
    np.testing.assert_array_equal(seg.class_map, [[0, 1, 1], [1, 0, 1]])  # sigmoid(0) = 0.5 is foreground
    np.testing.assert_allclose(seg.confidence[0, 2], 1 / (1 + math.exp(-3.0)), rtol=1e-6)


@pytest.mark.parametrize("layout", ["nhwc", "nchw", "auto"])
def test_multi_class_argmax_with_softmax_confidence(layout):
    # Three classes; pixel (0, 0) logits (0, ln 3, 0) -> softmax (0.2, 0.6, 0.2), class 1.
    nhwc = np.zeros((1, 2, 4, 3), np.float32)  # a 2x4 image
    nhwc[0, 0, 0] = [0.0, math.log(3.0), 0.0]
    nhwc[0, 0, 1] = [0.0, 0.0, 5.0]
    nhwc[0, 1, 2] = [2.0, 0.0, 0.0]
    scores = nhwc if layout == "nhwc" else nhwc.transpose(0, 3, 1, 2)
    if layout == "auto":
        # (1, 3, 2, 4), channels first as PyTorch exports it: the 3 labels pick the first axis.
        scores = np.ascontiguousarray(scores)
    seg = SemanticDecoder(labels=["a", "b", "c"], activation="softmax", layout=layout).decode(
        {"out": scores}, ImageTransform.stretch((2, 4), (2, 4))
    )
    # Ties (all-zero pixels) go to the first class.
    np.testing.assert_array_equal(seg.class_map, [[1, 2, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_allclose(seg.confidence[0, 0], 0.6, rtol=1e-6)
    np.testing.assert_allclose(seg.confidence[1, 1], 1 / 3, rtol=1e-6)


def test_letterbox_bands_are_cropped_before_mapping_to_the_image():
    # A 2x4 image letterboxed into 4x4: scale 1, one band row above and one below.
    transform = ImageTransform.letterbox((2, 4), (4, 4))
    probs = np.ones((1, 4, 4, 1), np.float32)  # the bands say "foreground"...
    probs[0, 1:3, :, 0] = [[0.9, 0.1, 0.9, 0.1], [0.1, 0.1, 0.9, 0.9]]  # ...only the content counts
    seg = SemanticDecoder().decode({"mask": probs}, transform)
    assert seg.class_map.shape == (2, 4)
    np.testing.assert_array_equal(seg.class_map, [[1, 0, 1, 0], [0, 0, 1, 1]])


def test_auto_layout_without_labels_takes_the_shorter_axis_as_classes():
    nchw = np.zeros((1, 2, 2, 3), np.float32)  # 2 classes first, 2x3 image
    nchw[0, 1, 0, 2] = 1.0
    seg = SemanticDecoder().decode({"out": nchw}, SAME_SIZE)
    np.testing.assert_array_equal(seg.class_map, [[0, 0, 1], [0, 0, 0]])


def test_low_resolution_scores_are_resized_to_the_image():
    # A 2x2 score map of a 4x4 input for an 8x8 image: each score covers a 4x4 image block.
    transform = ImageTransform.stretch((8, 8), (4, 4))
    probs = np.array([[0.0, 1.0], [1.0, 0.0]], np.float32).reshape(1, 2, 2, 1)
    seg = SemanticDecoder().decode({"mask": probs}, transform)
    assert seg.class_map.shape == (8, 8)
    # Block centres keep their class; bilinear blending only touches the block borders.
    assert seg.class_map[1, 1] == 0 and seg.class_map[1, 6] == 1 and seg.class_map[6, 1] == 1
    assert seg.class_map[6, 6] == 0


@pytest.mark.parametrize(
    "decoder, outputs, text",
    [
        (SemanticDecoder(), {"a": np.zeros((1, 2, 2, 1)), "b": np.zeros((1, 2, 2, 1))}, "expected one output, found 2"),
        (SemanticDecoder(output="seg"), {"mask": np.zeros((1, 2, 2, 1))}, "expected an output named 'seg'"),
        (SemanticDecoder(), {"mask": np.zeros((1, 1, 2, 2, 1))}, r"found \(1, 1, 2, 2, 1\)"),
    ],
)
def test_outputs_that_do_not_fit_are_model_errors(decoder, outputs, text):
    with pytest.raises(ModelError, match=text):
        decoder.decode(outputs, SAME_SIZE)


@pytest.mark.parametrize("params, field", [(dict(activation="relu"), "activation"), (dict(layout="chw"), "layout")])
def test_bad_parameters_are_config_errors(params, field):
    with pytest.raises(ConfigError, match="decoder.params." + field):
        SemanticDecoder(**params)
