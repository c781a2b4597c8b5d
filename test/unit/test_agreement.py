"""Agreement scoring (the accuracy gate of engines) on real models and real photos, values checked by hand.

The face detector finds one face on the astronaut photo and one on the camera-man photo, none on
the cat. Hand-computed from the boxes the models give (TFLite, TF 2.17):

- face (full range) against itself: everything matches, mAP = AP50 = 1, no drift.
- face_short_range against face: astronaut boxes (171.9, 66.1, 278.5, 172.7) vs (179.1, 81.3,
  271.7, 173.9) overlap at IoU 0.737; camera-man (198.1, 121.6, 276.8, 200.3) vs (179.7, 123.2,
  263.0, 206.5) at IoU 0.616. Both count at IoU 0.50/0.55/0.60 (AP 1), only the astronaut's (the
  higher-scored candidate) at 0.65/0.70 (recall 1/2: 51 of 101 recall points, AP 0.505), none above:
  mAP = (3 + 2 x 0.505) / 10 = 0.401. Largest drift: camera-man x_min, 198.1 - 179.7 = 18.4 px.
- face shifted 8 px right against face: drift exactly 8 px; IoU (w - 8) / (w + 8) for the square
  boxes, 0.860 (w 106.6) and 0.815 (w 78.7): both count up to 0.80 (7 thresholds), at 0.85 only the
  astronaut's, ranked below the camera-man's false match (score 0.906 > 0.905): precision 1/2 at
  recall 1/2, AP 0.2525; mAP = (7 + 0.2525) / 10 = 0.7252.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from dl_vision import assets
from dl_vision.errors import EvaluationError
from dl_vision.evaluation.agreement import DetectionAgreement, score_agreement
from dl_vision.evaluation.cli import evaluate_main
from dl_vision.image_sources import iter_images
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.structures import Detections


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "camera", "chelsea"):
        shutil.copy(str(assets.fetch(name)), str(folder / assets.ASSETS[name].filename))
    return folder


@pytest.fixture(scope="module")
def face():
    return Detector.from_spec("face")


class Shifted:
    """A detector whose boxes are the wrapped one's moved ``dx`` pixels right."""

    task = "detection"

    def __init__(self, model, dx):
        self.model, self.dx = model, dx
        self.spec, self.backend, self.labels, self.timings = model.spec, model.backend, model.labels, {}

    def __call__(self, image):
        dets = self.model(image)
        self.timings = self.model.timings
        shift = np.array([self.dx, 0, self.dx, 0], np.float32)
        return Detections(dets.xyxy + shift, dets.score, dets.class_id, dets.labels)


def test_a_model_agrees_with_itself(face, photos):
    report = score_agreement(face, face, iter_images(photos))
    a = report["agreement"]
    assert (a["frames"], a["reference_objects"], a["candidate_objects"], a["matched"]) == (3, 2, 2, 2)
    assert a["AP50"] == 1.0 and a["mAP"] == 1.0 and a["max_box_drift_px"] == 0.0
    assert report["candidate"]["provider"] == "tflite" and report["task"] == "detection"


def test_short_range_against_full_range_face(face, photos):
    report = score_agreement(Detector.from_spec("face_short_range"), face, iter_images(photos))
    a = report["agreement"]
    assert a["AP50"] == 1.0 and a["matched"] == 2
    assert a["mAP"] == pytest.approx(0.401, abs=0.002)
    assert a["max_box_drift_px"] == pytest.approx(18.37, abs=0.3)


def test_a_shifted_copy(face, photos):
    a = score_agreement(Shifted(face, 8.0), face, iter_images(photos))["agreement"]
    assert a["max_box_drift_px"] == pytest.approx(8.0, abs=1e-3) and a["mean_box_drift_px"] == pytest.approx(8.0)
    assert a["AP50"] == 1.0
    assert a["mAP"] == pytest.approx(0.7252, abs=0.001)


def test_nothing_to_agree_on_is_an_error(face, tmp_path):
    shutil.copy(str(assets.fetch("chelsea")), str(tmp_path / "cat.png"))
    with pytest.raises(EvaluationError, match="the reference model found no object in 1 frames"):
        score_agreement(face, face, iter_images(tmp_path))


def test_segmenters_agree_by_class_maps(photos):
    segmenter = Segmenter.from_spec("person_segmentation")
    a = score_agreement(segmenter, segmenter, iter_images(photos))["agreement"]
    assert a["mean_iou"] == 1.0 and a["pixel_agreement"] == 1.0 and a["frames"] == 3
    with pytest.raises(EvaluationError, match="expected two models of one task"):
        score_agreement(segmenter, Detector.from_spec("face"), iter_images(photos))


def test_instance_masks_are_compared_pairwise():
    """Two 4x4 masks offset by one column: IoU 12 / 20 = 0.6; boxes drift 1 px."""
    ref_mask = np.zeros((1, 8, 8), bool)
    ref_mask[0, 2:6, 2:6] = True
    cand_mask = np.roll(ref_mask, 1, axis=2)
    ref = Detections(np.array([[2, 2, 6, 6]], np.float32), np.ones(1, np.float32), np.zeros(1, int), ["x"], ref_mask)
    cand = Detections(np.array([[3, 2, 7, 6]], np.float32), np.ones(1, np.float32), np.zeros(1, int), ["x"], cand_mask)
    agreement = DetectionAgreement(["x"])
    agreement.add(8, 8, ref, cand)
    result = agreement.result()
    assert result["mask_iou_mean"] == pytest.approx(0.6) and result["max_box_drift_px"] == 1.0
    assert result["mask_mAP"] is not None
    # A later frame without detections (and so without masks) is scored; detections without masks are an error.
    agreement.add(8, 8, Detections.empty(["x"]), Detections.empty(["x"]))
    assert agreement.result()["frames"] == 2
    unmasked = Detections(cand.xyxy, cand.score, cand.class_id, ["x"])
    with pytest.raises(EvaluationError, match="the candidate gave instance masks on the first frame, none on a later"):
        agreement.add(8, 8, ref, unmasked)


def test_evaluate_agreement_command(photos, tmp_path, capsys):
    args = ["agreement", "--candidate", "face_short_range", "--reference", "face", "--images", str(photos)]
    assert evaluate_main(args + ["--floor", "0.95", "--out", str(tmp_path / "agreement.json")]) == 0
    assert "AP50               1.0000" in capsys.readouterr().out
    assert json.loads((tmp_path / "agreement.json").read_text())["agreement"]["matched"] == 2
    assert evaluate_main(args + ["--floor", "1.01"]) == 1
    assert "FAIL AP50 1.0000 < floor 1.0100" in capsys.readouterr().err
    assert evaluate_main(["agreement", "--candidate", "face", "--reference", "nope", "--images", str(photos)]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model spec 'nope'")


def test_evaluate_agreement_on_a_bag(photos, tmp_path, capsys):
    import cv2

    from dl_vision.evaluation.bag_io import BagWriter

    bag = tmp_path / "faces.bag"
    with BagWriter(bag) as writer:
        for i, name in enumerate(("astronaut.png", "camera.png")):
            writer.write_image("/cam/image_raw", (i + 1) * 10**9, cv2.imread(str(photos / name)))
    args = ["agreement", "--candidate", "face", "--reference", "face", "--bag", str(bag), "--topic", "/cam/image_raw"]
    assert evaluate_main(args) == 0
    assert "frames 2, reference objects 2, candidate objects 2, matched 2" in capsys.readouterr().out
