"""PCK: the fraction of keypoints within a tolerance of the reference; the evaluation's keypoint accumulator."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import Frame
from dl_vision.evaluation.ground_truth import CocoGroundTruth
from dl_vision.evaluation.keypoint_metrics import KeypointAccumulator, box_diagonal, pck
from dl_vision.structures import Detections, KeypointSchema

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


NAMES = ["nose", "left_eye", "right_eye"]


def _people(boxes, keypoints, names=tuple(NAMES), scores=None):
    count = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        scores if scores is not None else [0.9] * count,
        [0] * count,
        ["person"],
        keypoints=np.array(keypoints, np.float32).reshape(count, len(names), 2),
        keypoint_scores=np.ones((count, len(names))),
        keypoint_schema=KeypointSchema.from_names(list(names)),
    )


GT_BOX = [[0, 0, 60, 80]]  # diagonal 100 px
GT_POINTS = [[[10, 10, 2], [20, 10, 2], [0, 0, 0]]]  # right_eye not labelled


def test_pck_pairs_objects_by_box_and_counts_labelled_keypoints_only():
    acc = KeypointAccumulator("person", NAMES)
    # Nose 3 px off (within 0.05 x 100), left eye 15 px off (within 0.2 only), right eye anywhere.
    acc.add(100, 100, GT_BOX, GT_POINTS, _people([[2, 0, 60, 80]], [[[13, 14], [35, 10], [90, 90]]]))
    result = acc.result()
    assert result["objects"] == 1 and result["keypoints"] == 2
    assert result["pck"] == {"0.05": 0.5, "0.1": 0.5, "0.2": 1.0}
    assert result["per_keypoint_pck@0.2"] == {"nose": 1.0, "left_eye": 1.0}
    # OKS is stricter on faces: mean(exp(-d^2 / (2 area (2 sigma)^2))) = (0.38 + 0.00) / 2 < 0.5.
    assert result["oks"]["AP50"] == 0.0


def test_a_missed_reference_has_every_labelled_keypoint_wrong_and_names_reorder():
    acc = KeypointAccumulator("person", NAMES)
    # The model gives its keypoints in another order: matched by name.
    reordered = ["right_eye", "nose", "left_eye"]
    acc.add(100, 100, GT_BOX, GT_POINTS, _people([[0, 0, 60, 80]], [[[99, 99], [10, 10], [20, 10]]], reordered))
    acc.add(100, 100, GT_BOX, GT_POINTS, _people([[70, 70, 90, 90]], [[[10, 10], [20, 10], [0, 0]]]))  # IoU 0
    assert acc.result()["pck"]["0.05"] == 0.5  # the first frame's two right, the second's two wrong


def test_poses_on_people_without_labelled_keypoints_are_ignored_not_false_positives():
    acc = KeypointAccumulator("person", NAMES)
    boxes = GT_BOX + [[100, 0, 160, 80]]
    points = GT_POINTS + [[[0, 0, 0]] * 3]  # a second person, no keypoint labelled
    found = _people([[0, 0, 60, 80], [100, 0, 160, 80]], [[[10, 10], [20, 10], [0, 0]], [[120, 10], [130, 10], [0, 0]]])
    acc.add(200, 100, boxes, points, found)
    result = acc.result()
    assert result["objects"] == 1 and result["predictions"] == 2
    assert result["oks"]["AP"] == pytest.approx(1.0)


def test_keypoint_evaluation_errors():
    acc = KeypointAccumulator("person", NAMES)
    with pytest.raises(EvaluationError, match=r"names keypoints \['right_eye'\] that the model \(nose, left_eye\)"):
        acc.add(100, 100, GT_BOX, GT_POINTS, _people([[0, 0, 60, 80]], [[[1, 1], [2, 2]]], ["nose", "left_eye"]))
    with pytest.raises(EvaluationError, match="no person in the ground truth has a labelled keypoint"):
        KeypointAccumulator("person", NAMES).result()
    # Names that are not COCO's: PCK only, no OKS.
    other = KeypointAccumulator("hand", ["thumb_tip"])
    hand = Detections(
        np.array([[0, 0, 60, 80]], np.float32), [0.9], [0], ["hand"], keypoints=np.array([[[10, 10]]], np.float32)
    )
    other.add(100, 100, GT_BOX, [[[10, 11, 2]]], hand)
    assert other.result()["oks"] is None and other.result()["pck"]["0.05"] == 1.0


def _coco_file(tmp_path, keypoints):
    data = {
        "images": [{"id": 1, "frame_index": 0, "width": 100, "height": 100}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 60, 80], "keypoints": keypoints},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [70, 70, 10, 10]},
        ],
        "categories": [{"id": 1, "name": "person", "keypoints": NAMES}, {"id": 2, "name": "cup"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    return CocoGroundTruth(path)


def test_coco_ground_truth_reads_keypoints_in_coco_format(tmp_path):
    truth = _coco_file(tmp_path, [10, 10, 2, 20, 10, 1, 0, 0, 0])
    assert truth.keypoint_class == "person" and truth.keypoint_names == NAMES
    found = truth.lookup(Frame(0, 0, 0, "camera", None))
    np.testing.assert_array_equal(found.keypoints[0], [[10, 10, 2], [20, 10, 1], [0, 0, 0]])
    assert not found.keypoints[1].any()  # the cup has none
    with pytest.raises(EvaluationError, match="annotation 1: expected 9 keypoint values .* found 6"):
        _coco_file(tmp_path, [10, 10, 2, 20, 10, 1]).lookup(Frame(0, 0, 0, "camera", None))
