"""Box geometry: IoU against hand-computed values, and the COCO box format round trip."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import ConfigError
from dl_vision.geometry import box_iou, xywh_to_xyxy, xyxy_to_xywh

SQUARE = [0, 0, 10, 10]


@pytest.mark.parametrize(
    "b, expected",
    [
        ([5, 0, 15, 10], 50.0 / 150.0),  # half overlap in x
        ([0, 0, 10, 10], 1.0),  # identical
        ([2, 2, 4, 4], 4.0 / 100.0),  # contained
        ([0, 0, 5, 5], 25.0 / 100.0),  # a corner quarter
        ([10, 0, 20, 10], 0.0),  # touching edges only
        ([20, 20, 30, 30], 0.0),  # disjoint
        ([5, 5, 2, 9], 0.0),  # inverted: empty
    ],
)
def test_box_iou_hand_computed(b, expected):
    iou = box_iou(np.array([SQUARE], np.float32), np.array([b], np.float32))
    assert iou.shape == (1, 1)
    assert iou[0, 0] == pytest.approx(expected, abs=1e-6)


def test_box_iou_of_empty_boxes_is_zero_not_nan():
    empty = np.array([[3, 3, 3, 3]], np.float32)
    assert box_iou(empty, empty)[0, 0] == 0.0


def test_box_iou_keeps_float32_and_computes_anything_else_in_float64():
    assert box_iou(np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float32)).dtype == np.float32
    assert box_iou(np.zeros((1, 4), np.float32), np.zeros((2, 4), np.float64)).dtype == np.float64
    # float64 tells apart what float32 rounds together: 1e-9 of a 1-pixel box.
    assert box_iou(np.array([[0, 0, 1, 1]]), np.array([[1e-9, 0, 1, 1]]))[0, 0] < 1.0


def test_box_iou_matrix_shape_and_bad_shapes():
    assert box_iou(np.zeros((3, 4)), np.zeros((5, 4))).shape == (3, 5)
    assert box_iou(np.zeros((0, 4)), np.zeros((5, 4))).shape == (0, 5)
    assert box_iou([], [SQUARE]).shape == (0, 1)
    with pytest.raises(ConfigError, match=r"box_iou b: expected boxes of shape \(N, 4\), found \(2, 3\)"):
        box_iou(np.zeros((1, 4)), np.zeros((2, 3)))


def test_coco_boxes_round_trip():
    xywh = np.array([[10.5, 20, 30, 40], [0, 0, 0, 0]])
    xyxy = xywh_to_xyxy(xywh)
    np.testing.assert_array_equal(xyxy, [[10.5, 20, 40.5, 60], [0, 0, 0, 0]])
    np.testing.assert_array_equal(xyxy_to_xywh(xyxy), xywh)
    assert xywh_to_xyxy([]).shape == (0, 4)
