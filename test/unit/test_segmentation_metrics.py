"""Segmentation metrics against confusion tables counted by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.segmentation_metrics import SegmentationAccumulator

GT = np.array([[0, 0, 1, 1], [0, 0, 1, 1]], np.uint8)


@pytest.mark.parametrize(
    "pred, per_class, miou, acc",
    [
        (GT, {"background": 1.0, "person": 1.0}, 1.0, 1.0),
        # one person pixel predicted background: bg IoU 4/5, person IoU 3/4
        (np.array([[0, 0, 1, 1], [0, 0, 0, 1]]), {"background": 4 / 5, "person": 3 / 4}, (0.8 + 0.75) / 2, 7 / 8),
        (np.zeros((2, 4)), {"background": 0.5, "person": 0.0}, 0.25, 0.5),
        (1 - GT, {"background": 0.0, "person": 0.0}, 0.0, 0.0),
    ],
)
def test_one_frame_table(pred, per_class, miou, acc):
    seg = SegmentationAccumulator(2, {0: "background", 1: "person"})
    seg.add(GT, pred)
    res = seg.result()
    assert res["per_class_iou"] == pytest.approx(per_class)
    assert res["mean_iou"] == pytest.approx(miou)
    assert res["pixel_accuracy"] == pytest.approx(acc)


def test_accumulates_pixels_over_frames_not_mean_of_frames():
    seg = SegmentationAccumulator(2)
    seg.add(GT, GT)  # 4 bg + 4 person right
    seg.add(np.ones((1, 8), np.uint8), np.zeros((1, 8), np.uint8))  # 8 person pixels missed
    res = seg.result()
    # bg: tp 4, union 4 + 8 = 12; person: tp 4, union 4 + 8 = 12
    assert res["per_class_iou"] == pytest.approx({"0": 1 / 3, "1": 1 / 3})
    assert res["pixel_accuracy"] == pytest.approx(8 / 16)
    assert res["confusion"] == [[4, 0], [8, 4]]


def test_ignore_index_and_absent_class():
    gt = np.array([[0, 255, 255]], np.uint8)
    seg = SegmentationAccumulator(3)
    seg.add(gt, np.array([[0, 2, 2]], np.uint8))
    res = seg.result()
    assert res["pixels"] == 1
    assert res["per_class_iou"] == {"0": 1.0, "1": None, "2": None}
    assert res["mean_iou"] == 1.0


@pytest.mark.parametrize(
    "gt, pred, message",
    [
        (GT, GT[:, :2], "differ in shape"),
        (GT, GT * 3, "prediction class ids"),
    ],
)
def test_bad_input_raises(gt, pred, message):
    with pytest.raises(EvaluationError, match=message):
        SegmentationAccumulator(2).add(gt, pred)


def test_nothing_scored_raises():
    seg = SegmentationAccumulator(2)
    seg.add(np.full((2, 2), 255, np.uint8), np.zeros((2, 2), np.uint8))
    with pytest.raises(EvaluationError, match="no ground-truth pixels"):
        seg.result()
