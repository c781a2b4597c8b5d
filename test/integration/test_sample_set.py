"""The shipped COCO and pose models on the labelled sample set (test/fixtures/sample_set.yaml).

``coco`` is scored the way a user scores a model: ``make_eval_bag`` writes the photos and their
COCO annotations into a bag, ``evaluate offline`` runs the model on it. ``coco_onnx`` (the ONNX
export, made in the cache on first use) must give the frozen graph's detections. MoveNet is
checked against the hand-placed astronaut keypoints.
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
from dl_vision.evaluation.keypoint_metrics import box_diagonal, pck
from dl_vision.evaluation.report import headline_metrics, load_report
from dl_vision.pipeline import Detector
from dl_vision.spec import load_spec

SAMPLE_SET = yaml.safe_load((Path(__file__).resolve().parents[1] / "fixtures" / "sample_set.yaml").read_text())
IMAGES = list(SAMPLE_SET["images"])


def _coco_annotations(images):
    """COCO JSON of the sample set: objects scored, ``not_scored`` ones as crowd regions."""
    categories, coco_images, annotations = {}, [], []
    for index, (name, truth) in enumerate(images.items()):
        coco_images.append({"id": index + 1, "file_name": "%02d_%s.png" % (index, name)})
        labelled = [(o, 0) for o in truth["objects"]] + [(o, 1) for o in truth.get("not_scored", [])]
        for obj, crowd in labelled:
            x0, y0, x1, y1 = obj["box"]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index + 1,
                    "category_id": categories.setdefault(obj["label"], len(categories) + 1),
                    "iscrowd": crowd,
                    "bbox": [x0, y0, x1 - x0, y1 - y0],
                    "area": (x1 - x0) * (y1 - y0),
                }
            )
    return {
        "images": coco_images,
        "annotations": annotations,
        "categories": [{"id": i, "name": n} for n, i in categories.items()],
    }


@pytest.fixture(scope="module")
def sample_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("sample_set")
    (root / "images").mkdir()
    coco = _coco_annotations(SAMPLE_SET["images"])
    for entry, name in zip(coco["images"], IMAGES):
        # PNG frames of the photos as they are (rocket.jpg decoded once): the bag holds the same pixels.
        cv2.imwrite(str(root / "images" / entry["file_name"]), cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR))
    (root / "annotations.json").write_text(json.dumps(coco))
    status = make_eval_bag_main(
        [str(root / "images"), str(root / "sample.bag"), "--annotations", str(root / "annotations.json")]
    )
    assert status == 0
    return root / "sample.bag", root / "sample.gt.json"


def test_coco_scores_ap50_of_at_least_0_9_through_evaluate_offline(sample_bag, tmp_path, capsys):
    bag, truth = sample_bag
    out = tmp_path / "report"
    status = evaluate_main(
        ["offline", "--bag", str(bag), "--gt", str(truth), "--model", "coco", "--out", str(out), "--no-progress"]
        + ["--fail-under", "AP50=0.9"]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.out + printed.err
    report = load_report(out)
    metrics = headline_metrics(report)
    assert report.frames.evaluated == len(IMAGES)
    assert metrics["AP50"] >= 0.9
    # Every subject is found at IoU >= 0.5 (at the spec's score threshold), the crowd regions are not scored.
    per_class = {name: ap for name, ap in report.detection.bbox["per_class_ap50"].items() if ap is not None}
    assert per_class == pytest.approx({"person": 1.0, "cup": 1.0, "cat": 1.0, "motorcycle": 1.0})
    assert metrics["recall"] == 1.0


def test_coco_labels_name_all_90_ids():
    labels = load_spec("coco").labels
    assert sorted(labels) == list(range(90))
    assert (labels[0], labels[2], labels[46], labels[61], labels[89]) == ("person", "car", "cup", "chair", "toothbrush")


@pytest.fixture(scope="module")
def photos():
    return {name: cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR) for name in IMAGES}


def test_onnx_export_gives_the_frozen_graphs_detections(photos):
    frozen = Detector.from_spec("coco")
    exported = Detector.from_spec("coco_onnx")  # made in the cache on first use
    assert exported.backend.runtime == "onnxruntime"
    compared = 0
    for name, image in photos.items():
        for detector in (frozen, exported):
            detector.options.score_threshold = 0.3  # below the default: more boxes to compare
        expected, found = frozen(image), exported(image)
        assert found.class_names == expected.class_names, name
        np.testing.assert_allclose(found.xyxy, expected.xyxy, atol=1.0, err_msg=name)
        np.testing.assert_allclose(found.score, expected.score, atol=0.01, err_msg=name)
        compared += len(found)
    assert compared >= 8  # person, mouse; cup, bowl, dining table; cat, bed; motorcycle; person


def test_movenet_places_the_astronauts_keypoints(photos):
    truth = SAMPLE_SET["images"]["astronaut"]
    movenet = Detector.from_spec("movenet")
    pose = movenet(photos["astronaut"])
    assert len(pose) == 1 and pose.class_names == ["person"]
    names = list(movenet.decoder.keypoint_schema.names)
    reference = np.array(list(truth["keypoints"].values()), np.float64)
    predicted = pose.keypoints[0][[names.index(n) for n in truth["keypoints"]]]
    diagonal = box_diagonal(truth["objects"][0]["box"])  # 604 px
    assert pck(predicted, reference, diagonal, alpha=0.2) >= 0.8
    # PCK@0.2 allows 121 px here; the points are in fact within 5% of the diagonal (30 px).
    assert pck(predicted, reference, diagonal, alpha=0.05) >= 0.8, np.hypot(*(predicted - reference).T)
    assert np.all(pose.keypoint_scores[0][[names.index(n) for n in truth["keypoints"]]] >= 0.3)


@pytest.mark.parametrize("name", ["chelsea", "coffee", "motorcycle_left", "rocket"])
def test_movenet_finds_no_person_where_there_is_none(photos, name):
    assert len(Detector.from_spec("movenet")(photos[name])) == 0
