"""The shipped default models on real images, against references annotated by hand."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dl_vision import assets
from dl_vision.errors import ConfigError, ImageConversionError
from dl_vision.geometry import box_iou
from dl_vision.pipeline import Detector, Segmenter

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

# The astronaut's face, annotated by hand (test/fixtures/astronaut_reference.yaml, shared with
# the node and evaluation tests; how it was drawn is written there): visible hairline to chin,
# ear line to ear line. Checked independently for this test by viewing astronaut.png at 4x zoom
# with a 10 px grid: hairline where the fringe ends mid-forehead (y 79), lowest point of the chin
# (y 174), outer edge of her right ear (x 172), face edge at ear height under the hair (x 273);
# that box, [172, 79, 273, 174], has IoU 0.84 with the shared one.
ASTRONAUT_FACE = yaml.safe_load((FIXTURES / "astronaut_reference.yaml").read_text())["faces"][0]


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.imread(str(assets.fetch("astronaut")), cv2.IMREAD_COLOR)


@pytest.fixture(scope="module")
def face() -> Detector:
    return Detector.from_spec("face")


@pytest.fixture(scope="module")
def person() -> Segmenter:
    return Segmenter.from_spec("person_segmentation")


def _person_reference():
    data = yaml.safe_load((FIXTURES / "astronaut_person.yaml").read_text())
    shape = (data["height"], data["width"])
    person = np.zeros(shape, np.uint8)
    cv2.fillPoly(person, [np.array(data["person_polygon"], np.int32)], 1)
    void = np.zeros(shape, np.uint8)
    cv2.fillPoly(void, [np.array(data["void_polygon"], np.int32)], 1)
    margin = 2 * data["void_margin"] + 1
    void = cv2.dilate(void, np.ones((margin, margin), np.uint8))
    return person.astype(bool), void.astype(bool)


@pytest.mark.parametrize("spec", ["face", "face_short_range"])
def test_face_detectors_find_the_astronauts_face(astronaut, spec):
    detections = Detector.from_spec(spec)(astronaut)
    assert len(detections) == 1
    assert detections.class_names == ["face"]
    assert box_iou(detections.xyxy, np.array([ASTRONAUT_FACE]))[0, 0] >= 0.7
    # MediaPipe's keypoint order: right eye, left eye, nose tip, mouth, right ear, left ear (the
    # subject's right is the image's left), all inside the face box, eyes above the mouth.
    kps = detections.keypoints[0]
    assert kps.shape == (6, 2)
    x0, y0, x1, y1 = ASTRONAUT_FACE
    assert np.all((kps[:4, 0] > x0) & (kps[:4, 0] < x1) & (kps[:4, 1] > y0) & (kps[:4, 1] < y1))
    assert kps[0, 0] < kps[2, 0] < kps[1, 0]
    assert max(kps[0, 1], kps[1, 1]) < kps[2, 1] < kps[3, 1]


def test_face_box_follows_the_face_into_a_letterboxed_640x480_frame(astronaut, face):
    frame = np.full((480, 640, 3), 128, np.uint8)
    frame[:, 100:612] = astronaut[:480]  # shift right by 100 px, crop the bottom 32 rows
    detections = face(frame)
    assert len(detections) == 1
    shifted = np.array([ASTRONAUT_FACE]) + [100, 0, 100, 0]
    assert box_iou(detections.xyxy, shifted)[0, 0] >= 0.7


@pytest.mark.parametrize("sample", ["coffee", "rocket", "chelsea"])
def test_no_face_in_images_without_people(face, sample):
    image = cv2.imread(str(assets.fetch(sample)), cv2.IMREAD_COLOR)
    detections = face(image)
    assert len(detections) == 0
    assert detections.xyxy.shape == (0, 4)


def test_segmenter_marks_the_astronaut_as_person(astronaut, person):
    segmentation = person(astronaut)
    assert segmentation.class_map.shape == astronaut.shape[:2]
    assert segmentation.labels == {0: "background", 1: "person"}
    predicted = segmentation.class_map == 1
    reference, void = _person_reference()
    counted = ~void
    iou = (predicted & reference & counted).sum() / ((predicted | reference) & counted).sum()
    assert iou >= 0.8
    # The flag at the left edge and the wall above her shoulders are background.
    assert not predicted[20:120, 0:60].any()
    assert not predicted[20:120, 340:380].any()


def test_score_threshold_is_live_and_timings_cover_every_stage(astronaut):
    detector = Detector.from_spec("face")
    best = float(detector(astronaut).score[0])
    assert set(detector.timings) == {"preprocess", "inference", "postprocess"}
    assert all(ms > 0 for ms in detector.timings.values())
    detector.options.score_threshold = min(1.0, best + 0.01)
    assert len(detector(astronaut)) == 0


def test_batch_matches_single_calls_and_images_of_other_kinds(astronaut, face, person):
    coffee = cv2.imread(str(assets.fetch("coffee")), cv2.IMREAD_COLOR)
    single = [face(astronaut), face(coffee)]
    batch = face.predict_batch([astronaut, coffee])
    assert [len(d) for d in batch] == [len(d) for d in single] == [1, 0]
    np.testing.assert_allclose(batch[0].xyxy, single[0].xyxy, atol=1e-3)
    assert face.predict_batch([]) == []
    mono = cv2.cvtColor(astronaut, cv2.COLOR_BGR2GRAY)
    bgra = cv2.cvtColor(astronaut, cv2.COLOR_BGR2BGRA)
    assert len(face(bgra)) == 1
    np.testing.assert_array_equal(person(bgra).class_map, person(astronaut).class_map)
    assert person(mono).class_map.shape == mono.shape


def test_bad_images_and_wrong_tasks_raise_the_packages_errors(face):
    with pytest.raises(ImageConversionError, match="uint8"):
        face(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ImageConversionError, match="shape"):
        face(np.zeros((10, 10, 2), np.uint8))
    with pytest.raises(ConfigError, match="task"):
        Segmenter.from_spec("face")
