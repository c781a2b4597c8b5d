"""COCO metrics against values derived by hand from box geometry."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.coco_metrics import CocoAccumulator

GT = np.array([[100, 100, 200, 200]], np.float32)  # 100 x 100 px


def shifted(dx: float) -> np.ndarray:
    return GT + np.array([dx, 0, dx, 0], np.float32)


# Shifting a 100 px box by dx gives IoU = (100 - dx) / (100 + dx); COCO counts it as a hit at
# every threshold t in 0.50:0.05:0.95 with t <= IoU, so mAP = hits / 10.
@pytest.mark.parametrize(
    "dx, iou, m_ap, ap50, ap75",
    [
        (0, 1.0, 1.0, 1.0, 1.0),
        (10, 90 / 110, 0.7, 1.0, 1.0),  # thresholds .50 .. .80 pass: 7 of 10
        (20, 80 / 120, 0.4, 1.0, 0.0),  # .50 .55 .60 .65 pass: 4 of 10
        (40, 60 / 140, 0.0, 0.0, 0.0),  # IoU 0.43 < 0.5: a false positive and a miss
    ],
)
def test_shifted_box_ap_matches_iou_by_hand(dx, iou, m_ap, ap50, ap75):
    acc = CocoAccumulator(["face"])
    for _ in range(3):
        acc.add(640, 480, GT, [0], shifted(dx), [0], [0.9])
    bbox = acc.result()["bbox"]
    assert bbox["mAP"] == pytest.approx(m_ap, abs=1e-9)
    assert bbox["AP50"] == pytest.approx(ap50, abs=1e-9)
    assert bbox["AP75"] == pytest.approx(ap75, abs=1e-9)


def test_half_recall_gives_51_of_101_recall_points():
    # Two objects, one found perfectly: precision 1 up to recall 0.5 and 0 after, so the
    # 101-point interpolated AP is 51/101 (recall points 0.00 .. 0.50).
    acc = CocoAccumulator(["face"])
    acc.add(640, 480, np.vstack([GT, GT + 250]), [0, 0], GT, [0], [0.8])
    assert acc.result()["bbox"]["mAP"] == pytest.approx(51 / 101)


def test_false_positive_scored_above_true_positive_halves_precision_curve():
    # Ranked FP then TP: precision 1/2 at recall 1 -> AP = 0.5 at every IoU threshold.
    acc = CocoAccumulator(["face"])
    acc.add(640, 480, GT, [0], np.vstack([GT + 300, GT]), [0, 0], [0.9, 0.6])
    assert acc.result()["bbox"]["mAP"] == pytest.approx(0.5)


def test_per_class_ap_and_wrong_class():
    # "cat" predicted perfectly, "dog" predicted as "cat": dog AP 0, cat AP 0.5 (FP ranked first).
    acc = CocoAccumulator(["cat", "dog"])
    acc.add(640, 480, np.vstack([GT, GT + 250]), [0, 1], np.vstack([GT + 250, GT]), [0, 0], [0.9, 0.8])
    res = acc.result()["bbox"]
    assert res["per_class_ap"]["dog"] == 0.0
    assert res["per_class_ap"]["cat"] == pytest.approx(0.5)
    assert res["mAP"] == pytest.approx(0.25)
    assert len(res["pr_curve_iou50"]["cat"]["recall"]) == 101


def test_class_without_ground_truth_is_none_not_zero():
    acc = CocoAccumulator(["face", "hand"])
    acc.add(640, 480, GT, [0], GT, [0], [0.9])
    res = acc.result()["bbox"]
    assert res["per_class_ap"]["hand"] is None
    assert res["per_class_ap"]["face"] == pytest.approx(1.0)
    assert res["mAP"] == pytest.approx(1.0)


def test_mask_map_perfect_and_half_overlap():
    h, w = 64, 64
    gt = np.zeros((1, h, w), bool)
    gt[0, 10:30, 10:30] = True
    shifted_mask = np.zeros_like(gt)
    shifted_mask[0, 10:30, 20:40] = True  # IoU = 200 / 600 = 1/3 -> no hit at 0.5
    acc = CocoAccumulator(["person"], masks=True)
    acc.add(w, h, [[10, 10, 30, 30]], [0], [[10, 10, 30, 30]], [0], [0.9], gt_masks=gt, pred_masks=gt)
    assert acc.result()["segm"]["mAP"] == pytest.approx(1.0)
    acc = CocoAccumulator(["person"], masks=True)
    acc.add(w, h, [[10, 10, 30, 30]], [0], [[10, 10, 30, 30]], [0], [0.9], gt_masks=gt, pred_masks=shifted_mask)
    res = acc.result()
    assert res["bbox"]["mAP"] == pytest.approx(1.0) and res["segm"]["mAP"] == 0.0


@pytest.mark.parametrize(
    "frames, message",
    [
        ([], "no frame"),
        ([(np.zeros((0, 4)), [])], "no ground-truth object"),
    ],
)
def test_undefined_metrics_raise(frames, message):
    acc = CocoAccumulator(["face"])
    for boxes, classes in frames:
        acc.add(640, 480, boxes, classes, GT, [0], [0.9])
    with pytest.raises(EvaluationError, match=message):
        acc.result()
