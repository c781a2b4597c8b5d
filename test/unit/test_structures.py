"""Detections' optional keypoint scores: validated, kept through indexing and filtering."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import ConfigError
from dl_vision.structures import Detections


def _detections(n=3, k=2, scores=True):
    return Detections(
        np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        np.linspace(0.5, 0.9, n),
        np.zeros(n, np.int32),
        ["person"],
        keypoints=np.ones((n, k, 2)),
        keypoint_scores=np.linspace(0, 1, n * k).reshape(n, k) if scores else None,
    )


def test_keypoint_scores_follow_indexing_and_filtering():
    dets = _detections()
    assert dets.keypoint_scores.dtype == np.float32 and dets.keypoint_scores.shape == (3, 2)
    picked = dets[np.array([False, True, True])]
    np.testing.assert_allclose(picked.keypoint_scores, dets.keypoint_scores[1:])
    np.testing.assert_allclose(dets[0].keypoint_scores, dets.keypoint_scores[:1])
    assert dets.filter(min_score=0.8).keypoint_scores.shape == (1, 2)
    assert _detections(scores=False)[1:].keypoint_scores is None


@pytest.mark.parametrize(
    "keypoints, scores, message",
    [
        (None, np.ones((2, 3)), "keypoint_scores: expected keypoints beside them, found none"),
        (np.ones((2, 3, 2)), np.ones((2, 4)), r"keypoint_scores: expected shape \(2, 3\) \(one per keypoint\)"),
        (np.ones((2, 3, 2)), np.ones(6), r"found \(6,\)"),
    ],
)
def test_keypoint_scores_must_match_the_keypoints(keypoints, scores, message):
    with pytest.raises(ConfigError, match=message):
        Detections(np.zeros((2, 4)), [0.5, 0.5], [0, 0], keypoints=keypoints, keypoint_scores=scores)
