"""PCK: the fraction of keypoints within a tolerance of the reference."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.keypoint_metrics import box_diagonal, pck

REFERENCE = np.array([[0, 0], [10, 0], [0, 10], [10, 10]], np.float64)


def test_box_diagonal():
    assert box_diagonal([10, 20, 40, 60]) == pytest.approx(50.0)


@pytest.mark.parametrize(
    "offsets, scale, alpha, expected",
    [
        ([0, 0, 0, 0], 10, 0.2, 1.0),
        ([1.9, 1.99, 2.1, 9.0], 10, 0.2, 0.5),  # within 2 px
        ([1.9, 1.99, 2.1, 9.0], 40, 0.05, 0.5),
        ([1.9, 1.99, 2.1, 9.0], 100, 0.05, 0.75),
        ([3, 3, 3, 3], 10, 0.2, 0.0),
    ],
)
def test_pck_counts_keypoints_within_alpha_scale(offsets, scale, alpha, expected):
    predicted = REFERENCE + np.array(offsets)[:, None] * np.array([0.6, 0.8])  # offset lengths as given
    assert pck(predicted, REFERENCE, scale, alpha) == pytest.approx(expected)


@pytest.mark.parametrize(
    "predicted, reference, scale, message",
    [
        (REFERENCE[:3], REFERENCE, 10, r"expected predictions of the reference's shape \(4, 2\), found \(3, 2\)"),
        (np.zeros((0, 2)), np.zeros((0, 2)), 10, r"expected \(K, 2\) reference keypoints, found shape \(0, 2\)"),
        (REFERENCE, REFERENCE, 0, "expected a positive scale and alpha, found 0"),
        (REFERENCE, REFERENCE, float("nan"), "expected a positive scale and alpha, found nan"),
    ],
)
def test_bad_inputs_are_evaluation_errors(predicted, reference, scale, message):
    with pytest.raises(EvaluationError, match=message):
        pck(predicted, reference, scale)
