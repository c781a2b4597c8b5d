"""The landmark decoder: one object's K points and presence score into Detections."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.decoders import DecodeOptions, create_decoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.spec import load_spec

PARAMS = {"num_landmarks": 3, "landmarks_output": "points", "score_output": "presence"}
# A 100x50 image letterboxed into 40x40: scale 0.4, 10 px bars above and below.
TRANSFORM = ImageTransform.letterbox((50, 100), (40, 40))


def _outputs(logit=3.0):
    points = np.array([[4, 12, 0.5], [20, 20, -1], [36, 28, 2]], np.float32)  # x, y, z in input pixels
    return {"points": points.reshape(1, 1, 1, 9), "presence": np.array([[[[logit]]]], np.float32)}


def test_points_map_back_to_the_image_and_the_presence_scores_them():
    decoder = create_decoder("landmarks", dict(PARAMS, keypoint_names=["a", "b", "c"], skeleton=[["a", "c"]]), ["face"])
    found = decoder.decode(_outputs(), TRANSFORM, DecodeOptions(score_threshold=0.5))
    np.testing.assert_allclose(found.keypoints[0], [[10, 5], [50, 25], [90, 45]])
    np.testing.assert_allclose(found.xyxy[0], [10, 5, 90, 45])
    assert found.score[0] == pytest.approx(1 / (1 + np.exp(-3.0)))
    np.testing.assert_allclose(found.keypoint_scores[0], found.score[0])
    assert found.class_names == ["face"] and found.keypoint_schema.skeleton == ((0, 2),)


def test_an_absent_object_gives_nothing():
    decoder = create_decoder("landmarks", PARAMS, ["face"])
    assert len(decoder.decode(_outputs(logit=-3.0), TRANSFORM, DecodeOptions(score_threshold=0.5))) == 0
    probability = create_decoder("landmarks", dict(PARAMS, score_activation="none"), ["face"])
    assert probability.decode(_outputs(logit=0.7), TRANSFORM).score[0] == pytest.approx(0.7)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"num_landmarks": 0}, "num_landmarks: expected an integer >= 1, found 0"),
        ({"values_per_landmark": 1}, "values_per_landmark: expected an integer >= 2, found 1"),
        ({"score_output": ""}, "score_output: expected an output name, found ''"),
        ({"score_activation": "softmax"}, "score_activation: expected one of sigmoid|none, found 'softmax'"),
        ({"keypoint_names": ["a", "b"]}, r"keypoint_names: expected 3 names \(num_landmarks\), found 2"),
        ({"keypoint_names": ["a", "a", "b"]}, "keypoint_names: expected distinct names"),
    ],
)
def test_bad_parameters_are_config_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        create_decoder("landmarks", dict(PARAMS, **params), ["face"])


def test_missing_or_misshapen_outputs_are_model_errors():
    decoder = create_decoder("landmarks", PARAMS, ["face"])
    with pytest.raises(ModelError, match=r"expected output 'presence', found \['points'\]"):
        decoder.decode({"points": _outputs()["points"]}, TRANSFORM)
    with pytest.raises(ModelError, match=r"output 'points': expected 9 values, found shape \(1, 6\)"):
        decoder.decode(dict(_outputs(), points=np.zeros((1, 6))), TRANSFORM)


def test_face_landmarks_spec_reads_the_mesh_model():
    spec = load_spec("face_landmarks")
    assert spec.decoder.params["num_landmarks"] == 468 and spec.input.size == (192, 192)
