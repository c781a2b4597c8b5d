"""NMS and IoU against hand-computed cases and a reference greedy loop."""

from __future__ import annotations

import re

import numpy as np
import pytest

from dl_vision.decoders.nms import nms, weighted_nms
from dl_vision.errors import ConfigError
from dl_vision.geometry import box_iou


def _greedy_reference(boxes, scores, iou_threshold, classes=None):
    """The textbook loop, one box at a time (slow, obviously right)."""
    kept = []
    for i in sorted(range(len(scores)), key=lambda k: (-scores[k], k)):
        rivals = [k for k in kept if classes is None or classes[k] == classes[i]]
        if not rivals or box_iou(boxes[i : i + 1], boxes[rivals]).max() <= iou_threshold:
            kept.append(i)
    return kept


def test_nms_drops_the_weaker_overlapping_box():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)  # IoU(0, 1) = 90/110
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_nms_a_suppressed_box_suppresses_nothing():
    # IoU(A, B) = IoU(B, C) = 40/160 = 0.25, IoU(A, C) = 0: greedy keeps A, drops B, so C survives.
    boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10], [12, 0, 22, 10]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.2)
    assert keep.tolist() == [0, 2]


def test_nms_returns_indices_by_descending_score():
    boxes = np.array([[0, 0, 10, 10], [50, 50, 60, 60], [100, 0, 110, 10]], np.float32)
    assert nms(boxes, np.array([0.2, 0.9, 0.5]), 0.5).tolist() == [1, 2, 0]


def test_nms_iou_equal_to_threshold_is_not_suppressed():
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 20]], np.float32)  # IoU exactly 100/200
    assert nms(boxes, np.array([0.9, 0.8]), 0.5).tolist() == [0, 1]
    assert nms(boxes, np.array([0.9, 0.8]), 0.49).tolist() == [0]


def test_nms_equal_scores_keep_the_earlier_index():
    boxes = np.array([[1, 0, 11, 10], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.5]), 0.5).tolist() == [0]


def test_nms_class_aware_keeps_overlapping_boxes_of_different_classes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11]], np.float32)
    scores = np.array([0.9, 0.8, 0.7])
    classes = np.array([3, 7, 3])
    assert nms(boxes, scores, 0.5, class_ids=classes).tolist() == [0, 1]
    assert nms(boxes, scores, 0.5).tolist() == [0]


def test_nms_class_aware_separates_classes_with_negative_coordinates():
    boxes = np.array([[-50, 0, -40, 10], [-50, 0, -40, 10], [500, 0, 510, 10]], np.float32)
    keep = nms(boxes, np.array([0.9, 0.8, 0.7]), 0.5, class_ids=np.array([0, 1, 0]))
    assert keep.tolist() == [0, 1, 2]


def test_nms_max_detections_keeps_the_best():
    boxes = np.array([[0, 0, 1, 1], [5, 5, 6, 6], [9, 9, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.1, 0.3, 0.2]), 0.5, max_detections=2).tolist() == [1, 2]
    assert nms(boxes, np.array([0.1, 0.3, 0.2]), 0.5, max_detections=0).tolist() == []


def test_nms_empty_input():
    keep = nms(np.zeros((0, 4)), np.zeros(0), 0.5)
    assert keep.dtype == np.int64 and keep.shape == (0,)


@pytest.mark.parametrize("class_aware", [False, True])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.6])
def test_nms_matches_the_greedy_loop_on_dense_random_boxes(class_aware, iou_threshold):
    # More boxes than one sweep block, crowded so suppression chains are long.
    rng = np.random.default_rng(7)
    n = 700
    xy = rng.uniform(0, 200, size=(n, 2))
    wh = rng.uniform(5, 60, size=(n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(size=n).astype(np.float32)
    classes = rng.integers(0, 2, size=n) if class_aware else None
    expected = _greedy_reference(boxes, scores, iou_threshold, classes)
    assert nms(boxes, scores, iou_threshold, class_ids=classes).tolist() == expected
    assert nms(boxes, scores, iou_threshold, class_ids=classes, max_detections=5).tolist() == expected[:5]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(3), "iou_threshold": 0.5}, "expected 2 scores"),
        ({"xyxy": np.zeros((2, 3)), "scores": np.zeros(2), "iou_threshold": 0.5}, "shape (N, 4)"),
        ({"xyxy": np.zeros((2, 4)), "scores": np.zeros(2), "iou_threshold": 1.5}, "IoU threshold in [0, 1]"),
        (
            {"xyxy": np.zeros((2, 4)), "scores": np.zeros(2), "iou_threshold": 0.5, "class_ids": [1]},
            "expected 2 class ids",
        ),
    ],
)
def test_nms_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        nms(**kwargs)


def test_weighted_nms_blends_a_cluster_by_score():
    # IoU(A, B) = 80/120; C is far away. Blend of A (0.9) and B (0.3): x0 = 0.6/1.2, x1 = 12.6/1.2.
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10], [50, 50, 60, 60]], np.float32)
    points = np.array([[[0, 0]], [[4, 8]], [[55, 55]]], np.float32)
    result = weighted_nms(boxes, np.array([0.9, 0.3, 0.5]), 0.5, keypoints=points)
    assert result.index.tolist() == [0, 2]
    np.testing.assert_allclose(result.xyxy, [[0.5, 0, 10.5, 10], [50, 50, 60, 60]], atol=1e-5)
    np.testing.assert_allclose(result.score, [0.9, 0.5])
    np.testing.assert_allclose(result.keypoints, [[[1.0, 2.0]], [[55, 55]]], atol=1e-5)


def test_weighted_nms_never_mixes_classes_and_honours_max_detections():
    boxes = np.array([[0, 0, 10, 10], [2, 0, 12, 10]], np.float32)
    result = weighted_nms(boxes, np.array([0.9, 0.3]), 0.5, class_ids=np.array([0, 1]))
    np.testing.assert_allclose(result.xyxy, boxes)
    assert result.keypoints is None
    limited = weighted_nms(boxes, np.array([0.9, 0.3]), 0.5, class_ids=np.array([0, 1]), max_detections=1)
    assert limited.index.tolist() == [0]


def _weighted_reference(boxes, scores, iou_threshold, keypoints, classes=None):
    """MediaPipe's loop, one cluster at a time, membership by box_iou (slow, obviously right)."""
    remaining = sorted(range(len(scores)), key=lambda k: (-scores[k], k))
    index, xyxy, points = [], [], []
    while remaining:
        top = remaining[0]
        overlaps = box_iou(boxes[top : top + 1], boxes[remaining])[0] > iou_threshold
        cluster = [
            k
            for k, overlap in zip(remaining, overlaps)
            if k == top or (overlap and (classes is None or classes[k] == classes[top]))
        ]
        weights = scores[cluster].astype(np.float64)
        total = weights.sum()
        if total <= 0:
            weights, total = np.ones(len(cluster)), float(len(cluster))
        index.append(top)
        xyxy.append((boxes[cluster] * weights[:, None]).sum(axis=0) / total)
        points.append((keypoints[cluster] * weights[:, None, None]).sum(axis=0) / total)
        remaining = [k for k in remaining if k not in cluster]
    return index, np.float32(xyxy), np.float32(points)


@pytest.mark.parametrize("class_aware", [False, True])
@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 1.0])
def test_weighted_nms_matches_the_reference_loop(class_aware, iou_threshold):
    # Crowded boxes on a coarse grid (exact ties in IoU and score), some empty, some scoring 0.
    rng = np.random.default_rng(3)
    n = 200
    xy = rng.integers(0, 20, size=(n, 2)) * 5.0
    wh = rng.integers(0, 6, size=(n, 2)) * 5.0
    wh[:10] = 0.0
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = (rng.integers(0, 10, size=n) / 10.0).astype(np.float32)
    keypoints = rng.uniform(0, 100, size=(n, 3, 2)).astype(np.float32)
    classes = rng.integers(0, 2, size=n) if class_aware else None
    index, xyxy, points = _weighted_reference(boxes, scores, iou_threshold, keypoints, classes)
    result = weighted_nms(boxes, scores, iou_threshold, keypoints, classes)
    assert result.index.tolist() == index
    np.testing.assert_array_equal(result.score, scores[index])
    np.testing.assert_allclose(result.xyxy, xyxy, rtol=1e-6)
    np.testing.assert_allclose(result.keypoints, points, rtol=1e-6)


def test_weighted_nms_rejects_bad_keypoints():
    with pytest.raises(ConfigError, match="keypoints of shape"):
        weighted_nms(np.zeros((2, 4)), np.zeros(2), 0.5, keypoints=np.zeros((2, 3)))
