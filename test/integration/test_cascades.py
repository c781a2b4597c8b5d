"""The shipped cascades on the labelled sample set (test/fixtures/sample_set.yaml and the outline).

``person_pose`` (coco, then MoveNet on each person) is scored as a user scores it: the photos and
their COCO annotations (with the hand-placed astronaut keypoints in COCO's keypoint format) go
into a bag with ``make_eval_bag``, ``evaluate offline`` gives PCK and OKS AP. ``person_masks``
(coco, then the selfie segmenter on each person) is scored against the hand-drawn astronaut
outline: mask AP through ``evaluate offline``, and the outline's IoU directly (its held helmet
left out, as for the semantic segmenter).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dl_vision import assets
from dl_vision.evaluation.cli import evaluate_main, make_eval_bag_main
from dl_vision.evaluation.keypoint_metrics import COCO_KEYPOINT_SIGMAS
from dl_vision.evaluation.report import headline_metrics, load_report
from dl_vision.pipeline import Detector, Segmenter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SAMPLE_SET = yaml.safe_load((FIXTURES / "sample_set.yaml").read_text())
OUTLINE = yaml.safe_load((FIXTURES / "astronaut_person.yaml").read_text())
COCO_KEYPOINTS = list(COCO_KEYPOINT_SIGMAS)


def _polygon_mask(points, height, width, margin=0):
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.array(points, np.int32)], 1)
    if margin:
        mask = cv2.dilate(mask, np.ones((2 * margin + 1, 2 * margin + 1), np.uint8))
    return mask.astype(bool)


def _bag(root: Path, images, annotations, categories):
    """Write the named photos and COCO annotations of them into ``root/sample.bag``; returns bag and truth."""
    (root / "images").mkdir()
    coco_images = []
    for index, name in enumerate(images):
        file_name = "%02d_%s.png" % (index, name)
        cv2.imwrite(str(root / "images" / file_name), cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR))
        coco_images.append({"id": index + 1, "file_name": file_name})
    for number, ann in enumerate(annotations, 1):
        ann["id"] = number
    coco = {"images": coco_images, "annotations": annotations, "categories": categories}
    (root / "annotations.json").write_text(json.dumps(coco))
    status = make_eval_bag_main(
        [str(root / "images"), str(root / "sample.bag"), "--annotations", str(root / "annotations.json")]
    )
    assert status == 0
    return root / "sample.bag", root / "sample.gt.json"


@pytest.fixture(scope="module")
def pose_bag(tmp_path_factory):
    """Every sample photo; objects as in the sample set, the astronaut with her labelled keypoints."""
    images = list(SAMPLE_SET["images"])
    names = sorted({o["label"] for t in SAMPLE_SET["images"].values() for o in t["objects"] + t.get("not_scored", [])})
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(names)]
    categories[names.index("person")]["keypoints"] = COCO_KEYPOINTS
    annotations = []
    for index, truth in enumerate(SAMPLE_SET["images"].values()):
        labelled = [(o, 0) for o in truth["objects"]] + [(o, 1) for o in truth.get("not_scored", [])]
        for obj, crowd in labelled:
            x0, y0, x1, y1 = obj["box"]
            ann = {
                "image_id": index + 1,
                "category_id": names.index(obj["label"]) + 1,
                "iscrowd": crowd,
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": (x1 - x0) * (y1 - y0),
            }
            if obj["label"] == "person" and "keypoints" in truth:
                points = truth["keypoints"]
                ann["keypoints"] = [v for n in COCO_KEYPOINTS for v in (points[n] + [2] if n in points else [0, 0, 0])]
                ann["num_keypoints"] = len(points)
            annotations.append(ann)
    return _bag(tmp_path_factory.mktemp("pose_set"), images, annotations, categories)


def test_person_pose_scores_pck_0_2_of_at_least_0_8_through_evaluate_offline(pose_bag, tmp_path, capsys):
    bag, truth = pose_bag
    out = tmp_path / "report"
    status = evaluate_main(
        ["offline", "--bag", str(bag), "--gt", str(truth), "--model", "person_pose", "--out", str(out)]
        + ["--no-progress", "--fail-under", "PCK@0.2=0.8", "--fail-under", "AP50=0.9"]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    report = load_report(out)
    keypoints = report.keypoints
    assert keypoints["class"] == "person" and keypoints["objects"] == 1 and keypoints["keypoints"] == 7
    assert keypoints["pck"]["0.2"] >= 0.8
    # Tighter than the acceptance: the seven points are within 5% of the person's diagonal (30 px).
    assert keypoints["pck"]["0.05"] >= 0.8
    assert set(keypoints["per_keypoint_pck@0.2"]) == set(SAMPLE_SET["images"]["astronaut"]["keypoints"])
    # Two people are found (astronaut, cameraman), both posed; OKS AP is defined (COCO's sigmas).
    assert keypoints["predictions"] == 2
    metrics = headline_metrics(report)
    assert metrics["keypoint_AP50"] == pytest.approx(1.0)
    assert "## Keypoints (person: 1 objects, 7 labelled keypoints" in (out / "report.md").read_text()


@pytest.fixture(scope="module")
def photos():
    return {name: cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR) for name in SAMPLE_SET["images"]}


@pytest.fixture(scope="module")
def person_masks():
    return Segmenter.from_spec("person_masks")


def test_person_masks_cover_the_astronaut_outline_with_iou_of_at_least_0_85(photos, person_masks):
    segmentation = person_masks(photos["astronaut"])
    assert segmentation.labels == {0: "background", 1: "person"}
    height, width = OUTLINE["height"], OUTLINE["width"]
    reference = _polygon_mask(OUTLINE["person_polygon"], height, width)
    counted = ~_polygon_mask(OUTLINE["void_polygon"], height, width, OUTLINE["void_margin"])
    predicted = segmentation.class_map == 1
    iou = (predicted & reference & counted).sum() / ((predicted | reference) & counted).sum()
    assert iou >= 0.85


@pytest.mark.parametrize("name", ["chelsea", "coffee", "motorcycle_left", "rocket"])
def test_person_masks_mark_no_person_pixel_where_there_is_no_person(photos, person_masks, name):
    # The selfie segmenter alone marks 96% of chelsea and 38% of coffee as person (issue 12).
    assert not np.any(person_masks(photos[name]).class_map)


def test_person_masks_give_each_person_an_instance_mask_inside_its_box(photos):
    cascade = Detector.from_spec("person_masks")
    for name in ("astronaut", "camera"):
        found = cascade(photos[name])
        people = np.flatnonzero(np.array(found.class_names) == "person")
        assert len(people) == 1, name
        mask = found.masks[people[0]]
        x0, y0, x1, y1 = found.xyxy[people[0]]
        ys, xs = np.nonzero(mask)
        assert mask.sum() > 0.3 * (x1 - x0) * (y1 - y0), name
        assert xs.min() >= np.floor(x0) and xs.max() < np.ceil(x1) and ys.min() >= np.floor(y0), name
        others = np.delete(np.arange(len(found)), people)
        assert not found.masks[others].any(), name  # objects of other classes get no mask
    timings = cascade.timings
    assert {"inference", "person_segmentation/crop", "person_segmentation/inference"} <= set(timings)


@pytest.fixture(scope="module")
def mask_bag(tmp_path_factory):
    """Photos whose only person has an outline (astronaut) and person-less ones; person masks as truth."""
    images = ["astronaut", "chelsea", "coffee", "motorcycle_left", "rocket"]
    x0, y0, x1, y1 = SAMPLE_SET["images"]["astronaut"]["objects"][0]["box"]
    annotations = [
        {
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 0,
            "bbox": [x0, y0, x1 - x0, y1 - y0],
            "area": float(_polygon_mask(OUTLINE["person_polygon"], 512, 512).sum()),
            "segmentation": [[float(v) for point in OUTLINE["person_polygon"] for v in point]],
        }
    ]
    return _bag(tmp_path_factory.mktemp("mask_set"), images, annotations, [{"id": 1, "name": "person"}])


def test_person_masks_mask_ap_through_evaluate_offline(mask_bag, tmp_path, capsys):
    bag, truth = mask_bag
    out = tmp_path / "report"
    status = evaluate_main(
        ["offline", "--bag", str(bag), "--gt", str(truth), "--model", "person_masks", "--out", str(out)]
        + ["--no-progress", "--fail-under", "mask_AP50=0.99"]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    metrics = headline_metrics(load_report(out))
    # The held helmet counts as person in the prediction, not in the outline: still above IoU 0.75.
    assert metrics["mask_AP50"] == pytest.approx(1.0) and metrics["mask_mAP"] >= 0.7


def test_face_mesh_places_the_astronauts_nose_and_eyes(photos):
    mesh = Detector.from_spec("face_mesh")
    found = mesh(photos["astronaut"])
    assert found.class_names == ["face"] and found.keypoints.shape == (1, 468, 2)
    points = found.keypoints[0]
    truth = SAMPLE_SET["images"]["astronaut"]["keypoints"]
    # Mesh indices: 1 the nose tip; an eye's centre is the middle of its corners (33/133, 263/362).
    placed = {
        "nose": points[1],
        "right_eye": (points[33] + points[133]) / 2,
        "left_eye": (points[263] + points[362]) / 2,
    }
    for name, point in placed.items():
        assert np.hypot(*(point - truth[name])) <= 8.0, (name, point, truth[name])  # the face is 96 px wide
    for name in ("chelsea", "coffee", "rocket"):
        assert len(mesh(photos[name])) == 0, name
