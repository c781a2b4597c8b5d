"""Confusion matrix and P/R/F1 against hand-counted tables."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.confusion import ConfusionAccumulator

A = [0, 0, 10, 10]
B = [100, 100, 110, 110]


def test_planted_confusion_appears_off_diagonal():
    acc = ConfusionAccumulator(["cat", "dog"], iou_threshold=0.5, score_threshold=0.5)
    # frame 1: cat found as cat; dog found as cat (the planted confusion)
    acc.add(np.array([A, B]), [0, 1], np.array([A, B]), [0, 0], [0.9, 0.9])
    # frame 2: dog missed; a false alarm "dog" far away; a low-score box ignored
    acc.add(np.array([A]), [1], np.array([B, A]), [1, 0], [0.8, 0.1])
    res = acc.result()
    #              pred: cat dog bg
    assert res["matrix"] == [
        [1, 0, 0],  # gt cat
        [1, 0, 1],  # gt dog
        [0, 1, 0],
    ]  # background
    assert res["labels"] == ["cat", "dog", "background"]
    cat, dog = res["per_class"]["cat"], res["per_class"]["dog"]
    assert (cat["precision"], cat["recall"], cat["f1"]) == (0.5, 1.0, pytest.approx(2 / 3))
    assert (dog["precision"], dog["recall"], dog["f1"]) == (0.0, 0.0, 0.0)
    assert res["precision"] == pytest.approx(1 / 3) and res["recall"] == pytest.approx(1 / 3)


def test_iou_threshold_decides_match():
    shifted = [5, 0, 15, 10]  # IoU 1/3
    loose = ConfusionAccumulator(["cat"], iou_threshold=0.3)
    strict = ConfusionAccumulator(["cat"], iou_threshold=0.5)
    for acc in (loose, strict):
        acc.add(np.array([A]), [0], np.array([shifted]), [0], [0.9])
    assert loose.result()["matrix"] == [[1, 0], [0, 0]]
    assert strict.result()["matrix"] == [[0, 1], [1, 0]]


def test_greedy_matching_is_one_to_one_by_iou():
    # Two predictions on one object: the better one matches, the other is a false alarm.
    acc = ConfusionAccumulator(["cat"])
    acc.add(np.array([A]), [0], np.array([[1, 0, 11, 10], A]), [0, 0], [0.9, 0.6])
    assert acc.result()["matrix"] == [[1, 0], [1, 0]]


def test_ratio_without_denominator_is_none():
    acc = ConfusionAccumulator(["cat", "dog"])
    acc.add(np.array([A]), [0], np.array([A]), [0], [0.9])
    dog = acc.result()["per_class"]["dog"]
    assert dog["precision"] is None and dog["recall"] is None and dog["f1"] is None


def test_nothing_added_raises():
    with pytest.raises(EvaluationError, match="no ground-truth boxes"):
        ConfusionAccumulator(["cat"]).result()
