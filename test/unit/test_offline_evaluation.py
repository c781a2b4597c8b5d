"""Offline evaluation of bags written in tmp_path: predictions recorded in the bag, truth as COCO
JSON or bag topics; metrics derived by hand; unusable inputs raise EvaluationError."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import BagWriter
from dl_vision.evaluation.offline import GroundTruthSource, Scoring, evaluate_bag
from dl_vision.evaluation.predictions import RecordedPredictions
from dl_vision.evaluation.report import Report, check_gates, compare, headline_metrics, parse_gates, write_report
from dl_vision.structures import Detections

LABELS = {0: "face", 1: "hand"}
BOX = np.array([[40, 30, 80, 70]], np.float32)  # 40 x 40 px
START = 1_700_000_000 * 10**9
PERIOD = 100_000_000


def write_bag(path, frames, truth=None, preds=None, seg_truth=None, seg_preds=None):
    """frames images 120x160 on /cam; optional per-frame Detections / class maps on topics."""
    with BagWriter(path) as writer:
        for i in range(frames):
            stamp = START + i * PERIOD
            writer.write_image("/cam", stamp, np.full((120, 160, 3), i % 256, np.uint8))
            if truth is not None:
                writer.write_detections("/gt", stamp, truth[i], 160, 120)
            if preds is not None:
                writer.write_detections("/pred", stamp, preds[i], 160, 120, model="test")
            if seg_truth is not None:
                writer.write_class_map("/gt_classes", stamp, seg_truth[i])
            if seg_preds is not None:
                writer.write_class_map("/pred_classes", stamp, seg_preds[i])


def dets(boxes, classes, scores=None):
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = [0.9] * len(boxes) if scores is None else scores
    return Detections(boxes, scores, classes, LABELS)


def coco_json(path, frames, boxes_per_frame, key="stamp", categories=("face", "hand")):
    images, anns = [], []
    for i in range(frames):
        image = {"id": i + 1, "width": 160, "height": 120, "file_name": "frame_%06d.png" % i}
        by_stamp = {"ros_stamp_ns": START + i * PERIOD, "ros_topic": "/cam"}
        image.update(by_stamp if key == "stamp" else {"frame_index": i})
        images.append(image)
        for box, cat in boxes_per_frame[i]:
            x0, y0, x1, y1 = box
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": cat + 1,
                    "iscrowd": 0,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                }
            )
    cats = [{"id": i + 1, "name": n} for i, n in enumerate(categories)]
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return path


def run(bag, truth, **scoring):
    recorded = RecordedPredictions(bag, "/pred", detection_labels=LABELS)
    return evaluate_bag(bag, "/cam", truth, recorded, Scoring(**scoring), progress=False)


@pytest.mark.parametrize("key", ["stamp", "index"])
def test_perfect_predictions_give_map_one(tmp_path, key):
    bag = tmp_path / "b.bag"
    write_bag(bag, 5, preds=[dets(BOX + i, [0]) for i in range(5)])
    gt = coco_json(tmp_path / "gt.json", 5, [[((BOX[0] + i).tolist(), 0)] for i in range(5)], key=key)
    report = run(bag, GroundTruthSource(coco_json=gt))
    metrics = headline_metrics(report)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["AP50"] == 1.0 and metrics["AP75"] == 1.0
    assert metrics["precision"] == 1.0 and metrics["recall"] == 1.0 and metrics["f1"] == 1.0
    assert report.frames.evaluated == 5 and report.warnings == []
    assert "hand" not in report.detection.bbox["pr_curve_iou50"]  # no hand truth: no curve


def test_shifted_boxes_give_the_ap_derived_by_hand(tmp_path):
    # A 40 px box shifted 5 px right: IoU = 35*40 / (2*1600 - 35*40) = 1400/1800 = 0.778, a hit at
    # thresholds 0.50 .. 0.75 (6 of 10): mAP 0.6, AP50 1, AP75 1 (0.778 >= 0.75).
    bag = tmp_path / "b.bag"
    write_bag(bag, 4, truth=[dets(BOX, [0])] * 4, preds=[dets(BOX + [5, 0, 5, 0], [0])] * 4)
    report = run(bag, GroundTruthSource(detections_topic="/gt"))
    bbox = report.detection.bbox
    assert (bbox["mAP"], bbox["AP50"], bbox["AP75"]) == pytest.approx((0.6, 1.0, 1.0))


def test_planted_confusion_shows_in_matrix(tmp_path):
    # Frame 0..2: a face predicted as hand; frame 3: a missed face; frame 4: a false hand.
    truth = [dets(BOX, [0])] * 4 + [Detections.empty(LABELS)]
    preds = [dets(BOX, [1])] * 3 + [Detections.empty(LABELS), dets(BOX, [1])]
    bag = tmp_path / "b.bag"
    write_bag(bag, 5, truth=truth, preds=preds)
    report = run(bag, GroundTruthSource(detections_topic="/gt"), class_names=["face", "hand"])
    conf = report.detection.confusion
    assert conf["labels"] == ["face", "hand", "background"]
    assert conf["matrix"] == [[0, 3, 1], [0, 0, 0], [0, 1, 0]]
    assert conf["per_class"]["face"]["recall"] == 0.0 and conf["per_class"]["hand"]["precision"] == 0.0


def test_operating_threshold_filters_confusion_but_not_map(tmp_path):
    bag = tmp_path / "b.bag"
    write_bag(bag, 2, truth=[dets(BOX, [0])] * 2, preds=[dets(BOX, [0], [0.3])] * 2)
    report = run(bag, GroundTruthSource(detections_topic="/gt"), score_threshold=0.5)
    assert report.detection.bbox["mAP"] == pytest.approx(1.0)
    assert report.detection.confusion["recall"] == 0.0


def test_segmentation_truth_topics_give_iou_by_hand(tmp_path):
    gt = np.zeros((120, 160), np.uint8)
    gt[:, :80] = 1  # left half person
    pred = np.zeros_like(gt)
    pred[:, :40] = 1  # a quarter: person IoU 0.5, background IoU 80/120
    bag = tmp_path / "b.bag"
    write_bag(bag, 3, seg_truth=[gt] * 3, seg_preds=[pred] * 3)
    labels = {0: "background", 1: "person"}
    recorded = RecordedPredictions(bag, class_map_topic="/pred_classes", segmentation_labels=labels)
    report = evaluate_bag(bag, "/cam", GroundTruthSource(class_map_topic="/gt_classes"), recorded, progress=False)
    seg = report.segmentation
    assert seg["per_class_iou"] == pytest.approx({"person": 0.5, "background": 80 / 120})
    assert seg["pixel_accuracy"] == pytest.approx(0.75)
    assert headline_metrics(report)["mIoU"] == pytest.approx((0.5 + 80 / 120) / 2)
    assert "| person | 0.5000 |" in write_report(report, tmp_path / "out")["markdown"].read_text()


def test_frames_without_prediction_are_counted_not_scored(tmp_path):
    bag = tmp_path / "b.bag"
    write_bag(bag, 4, truth=[dets(BOX, [0])] * 4, preds=[dets(BOX, [0])] * 4)
    recorded = RecordedPredictions(bag, "/pred", detection_labels=LABELS)
    del recorded._by_stamp[START + PERIOD]
    report = evaluate_bag(bag, "/cam", GroundTruthSource(detections_topic="/gt"), recorded, progress=False)
    assert report.frames.without_prediction == 1 and report.frames.evaluated == 3


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing_topic", "expected topic /cam, found only"),
        ("empty_bag", "found an empty bag"),
        ("gt_matches_nothing", "none of its 2 images matches a frame"),
        ("no_truth_objects", "hold no ground-truth object"),
    ],
)
def test_unusable_inputs_raise_clear_errors(tmp_path, case, message):
    bag = tmp_path / "b.bag"
    gt = coco_json(tmp_path / "gt.json", 2, [[(BOX[0].tolist(), 0)]] * 2)
    if case == "missing_topic":
        with BagWriter(bag) as writer:
            writer.write_image("/other", START, np.zeros((120, 160, 3), np.uint8))
            writer.write_detections("/pred", START, dets(BOX, [0]), 160, 120)
    elif case == "empty_bag":
        write_bag(bag, 1, preds=[dets(BOX, [0])])
        bag = tmp_path / "empty.bag"
        BagWriter(bag).close()
    elif case == "gt_matches_nothing":
        with BagWriter(bag) as writer:
            writer.write_image("/cam", 5, np.zeros((120, 160, 3), np.uint8))
            writer.write_detections("/pred", 5, dets(BOX, [0]), 160, 120)
    else:
        write_bag(bag, 2, preds=[dets(BOX, [0])] * 2)
        gt = coco_json(tmp_path / "gt.json", 2, [[], []])
    recorded = RecordedPredictions(tmp_path / "b.bag", "/pred", detection_labels=LABELS)
    with pytest.raises(EvaluationError, match=message):
        evaluate_bag(bag, "/cam", GroundTruthSource(coco_json=gt), recorded, progress=False)


def test_partly_matching_truth_warns(tmp_path):
    bag = tmp_path / "b.bag"
    write_bag(bag, 2, preds=[dets(BOX, [0])] * 2)
    gt = coco_json(tmp_path / "gt.json", 3, [[(BOX[0].tolist(), 0)]] * 3)
    report = run(bag, GroundTruthSource(coco_json=gt))
    assert any("1 of 3 labelled images match no frame" in w for w in report.warnings)


def test_report_files_compare_and_gates(tmp_path):
    bag = tmp_path / "b.bag"
    write_bag(bag, 4, truth=[dets(BOX, [0])] * 4, preds=[dets(BOX + [5, 0, 5, 0], [0])] * 4)
    report = run(bag, GroundTruthSource(detections_topic="/gt"))
    files = write_report(report, tmp_path / "out")
    assert {p.name for p in files.values()} >= {"report.json", "report.md", "pr_curves.png", "confusion_matrix.png"}
    assert "| mAP | 0.6000 |" in files["markdown"].read_text()
    better = Report.from_dict(json.loads(files["json"].read_text()))
    better.detection.bbox["mAP"] = 0.8
    rows = {name: delta for name, _, _, delta in compare(report, better)}
    assert rows["mAP"] == pytest.approx(0.2)
    assert check_gates(report, parse_gates(["mAP=0.5", "AP50=1"])) == []
    assert check_gates(report, parse_gates(["mAP=0.7"])) == ["mAP = 0.6000 is under the floor 0.7000"]
    assert "not in the report" in check_gates(report, {"mIoU": 0.1})[0]
    with pytest.raises(EvaluationError, match="expected metric=number"):
        parse_gates(["mAP>0.5"])


def test_mask_map_scores_instance_masks_separately_from_boxes(tmp_path):
    # Same box, but the predicted mask covers the left half of the true 40x40 mask: mask IoU 0.5,
    # a hit only at threshold 0.50 -> mask mAP 1/10, mask AP50 1, while box mAP stays 1.
    x0, y0, x1, y1 = BOX[0].astype(int)
    true_mask = np.zeros((1, 120, 160), bool)
    true_mask[0, y0:y1, x0:x1] = True
    half_mask = np.zeros_like(true_mask)
    half_mask[0, y0:y1, x0 : (x0 + x1) // 2] = True
    truth = Detections(BOX, [1.0], [0], LABELS, masks=true_mask)
    pred = Detections(BOX, [0.9], [0], LABELS, masks=half_mask)
    bag = tmp_path / "b.bag"
    write_bag(bag, 2, truth=[truth] * 2, preds=[pred] * 2)
    metrics = headline_metrics(run(bag, GroundTruthSource(detections_topic="/gt")))
    assert metrics["mAP"] == pytest.approx(1.0)
    assert metrics["mask_mAP"] == pytest.approx(0.1) and metrics["mask_AP50"] == pytest.approx(1.0)


@pytest.mark.parametrize("empty_first", [True, False])
def test_frames_without_objects_keep_mask_scoring_on(tmp_path, empty_first):
    """A frame with no object (in the truth and the predictions) has no mask to give: masks are
    still scored on the others, whether it comes first or later."""
    x0, y0, x1, y1 = BOX[0].astype(int)
    mask = np.zeros((1, 120, 160), bool)
    mask[0, y0:y1, x0:x1] = True
    masked = Detections(BOX, [0.9], [0], LABELS, masks=mask)
    empty = Detections.empty(LABELS)
    frames = [empty, masked, masked] if empty_first else [masked, empty, masked]
    bag = tmp_path / "b.bag"
    write_bag(bag, 3, truth=frames, preds=frames)
    report = run(bag, GroundTruthSource(detections_topic="/gt"))
    assert report.frames.evaluated == 3
    metrics = headline_metrics(report)
    assert metrics["mAP"] == pytest.approx(1.0) and metrics["mask_mAP"] == pytest.approx(1.0)


def test_truth_recorded_apart_from_its_frames_still_pairs_by_stamp(tmp_path):
    # Ground truth written one second of bag time after every frame (so it comes after all five
    # images in bag order); one frame has no truth at all and is counted as unlabelled.
    bag = tmp_path / "b.bag"
    with BagWriter(bag) as writer:
        for i in range(5):
            stamp = START + i * PERIOD
            writer.write_image("/cam", stamp, np.zeros((120, 160, 3), np.uint8))
            writer.write_detections("/pred", stamp, dets(BOX, [0]), 160, 120)
            if i != 2:
                writer.write_detections("/gt", stamp, dets(BOX, [0]), 160, 120, bag_time_ns=stamp + 10**9)
    report = run(bag, GroundTruthSource(detections_topic="/gt"))
    assert report.frames.evaluated == 4 and report.frames.unlabelled == 1
    assert report.detection.bbox["mAP"] == pytest.approx(1.0)
    assert any("1 of 5 frames have no ground truth" in w for w in report.warnings)
