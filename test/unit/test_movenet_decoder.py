"""MoveNet SinglePose decoding on synthetic outputs, and the shipped movenet spec."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.decoders import DecodeOptions, create_decoder
from dl_vision.decoders.movenet import MoveNetDecoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.spec import load_spec

NAMES = ["nose", "left_eye", "right_eye", "left_hip"]
# A 640x480 frame letterboxed into 192x192: scale 0.3, 24 px bars above and below.
TRANSFORM = ImageTransform.letterbox((480, 640), (192, 192))


def _output(points):
    """(1, 1, K, 3) MoveNet output from (x, y, score) in 640x480 image pixels."""
    raw = np.zeros((1, 1, len(points), 3), np.float32)
    for k, (x, y, score) in enumerate(points):
        raw[0, 0, k] = [(y * 0.3 + 24) / 192, x * 0.3 / 192, score]
    return {"StatefulPartitionedCall:0": raw}


def test_one_person_with_keypoints_scores_and_a_box_from_the_confident_ones():
    decoder = MoveNetDecoder(["person"], keypoint_names=NAMES, keypoint_threshold=0.3)
    points = [(320, 100, 0.9), (340, 90, 0.8), (300, 90, 0.7), (600, 470, 0.1)]
    result = decoder.decode(_output(points), TRANSFORM, DecodeOptions(score_threshold=0.2))
    assert len(result) == 1 and result.class_names == ["person"]
    np.testing.assert_allclose(result.keypoints[0], [p[:2] for p in points], atol=1e-3)
    np.testing.assert_allclose(result.keypoint_scores[0], [p[2] for p in points], atol=1e-6)
    assert result.score[0] == pytest.approx(np.mean([p[2] for p in points]))
    # The hip (score 0.1) is left out of the box.
    np.testing.assert_allclose(result.xyxy[0], [300, 90, 340, 100], atol=1e-3)


@pytest.mark.parametrize(
    "points, options",
    [
        ([(320, 100, 0.1), (340, 90, 0.1), (300, 90, 0.1), (600, 470, 0.1)], DecodeOptions(score_threshold=0.2)),
        ([(320, 100, 0.9), (340, 90, 0.2), (300, 90, 0.2), (600, 470, 0.2)], DecodeOptions(score_threshold=0.2)),
        ([(320, 100, 0.9), (340, 90, 0.8), (300, 90, 0.7), (600, 470, 0.6)], DecodeOptions(max_detections=0)),
    ],
    ids=["pose score below the threshold", "one confident keypoint: no box", "max_detections 0"],
)
def test_no_person(points, options):
    decoder = MoveNetDecoder(["person"], keypoint_names=NAMES)
    result = decoder.decode(_output(points), TRANSFORM, options)
    assert len(result) == 0 and result.labels == {0: "person"}


def test_skeleton_by_names_becomes_index_pairs():
    decoder = MoveNetDecoder(keypoint_names=NAMES, skeleton=[["nose", "left_eye"], ["left_eye", "left_hip"]])
    assert list(decoder.keypoint_schema.skeleton) == [(0, 1), (1, 3)]


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "keypoint_names: expected a list of names, found None"),
        ({"keypoint_names": ["nose", "nose"]}, "keypoint_names: expected distinct names"),
        (
            {"keypoint_names": NAMES, "skeleton": [["nose", "tail"]]},
            r"skeleton: expected pairs .*found \['nose', 'tail'\]",
        ),
        ({"keypoint_names": NAMES, "skeleton": [["nose"]]}, "skeleton: expected pairs of keypoint names"),
        ({"keypoint_names": NAMES, "keypoint_threshold": 1.5}, "keypoint_threshold: expected a number in"),
        ({"keypoint_names": NAMES, "keypoint_threshold": True}, "keypoint_threshold: expected a number in"),
    ],
)
def test_bad_parameters_name_the_field(params, message):
    with pytest.raises(ConfigError, match=message):
        create_decoder("movenet", params)


def test_outputs_that_do_not_fit_are_model_errors():
    decoder = MoveNetDecoder(keypoint_names=NAMES)
    with pytest.raises(
        ModelError, match=r"expected \(1, 1, 4, 3\) keypoints \(y, x, score\), found shape \(1, 1, 17, 3\)"
    ):
        decoder.decode({"out": np.zeros((1, 1, 17, 3), np.float32)}, TRANSFORM)
    with pytest.raises(ModelError, match="name the keypoint output in decoder.params.output"):
        decoder.decode({"a": np.zeros((1, 1, 4, 3)), "b": np.zeros(1)}, TRANSFORM)
    named = MoveNetDecoder(keypoint_names=NAMES, output="b")
    with pytest.raises(ModelError, match=r"expected output 'b', found \['a'\]"):
        named.decode({"a": np.zeros((1, 1, 4, 3))}, TRANSFORM)


def test_movenet_spec_has_coco_keypoints_and_skeleton():
    spec = load_spec("movenet")
    decoder = create_decoder(spec.decoder.type, spec.decoder.params, spec.labels)
    names, skeleton = list(decoder.keypoint_schema.names), list(decoder.keypoint_schema.skeleton)
    assert len(names) == 17 and names[0] == "nose"
    assert names[15:] == ["left_ankle", "right_ankle"]
    assert len(skeleton) == 19 and (5, 6) in skeleton  # the shoulders
    assert spec.labels == {0: "person"} and spec.input.resize == "letterbox"
