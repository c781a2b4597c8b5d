"""Cascades: crop geometry, spec checks, and the real models on a frame with two people."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from dl_vision import assets
from dl_vision.cascade import Cascade, CascadeSegmenter, crop_window, extract_crop, paste_mask
from dl_vision.errors import ConfigError
from dl_vision.frame_processor import FrameProcessor, Outputs
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.spec import CascadeSpec, load_spec


@pytest.mark.parametrize(
    "box, margin, square, expected",
    [
        ([10, 20, 30, 60], 0.0, False, (10, 20, 30, 60)),
        ([10, 20, 30, 60], 0.0, True, (0, 20, 40, 60)),  # 20x40 grown to 40x40 round the centre
        ([10, 20, 30, 60], 0.5, False, (0, 0, 40, 80)),  # half the size added on each side
        ([-5, -5, 5, 5], 0.0, True, (-5, -5, 5, 5)),  # may leave the image
        ([3, 3, 3, 3], 0.0, True, (2, 2, 3, 3)),  # at least a pixel
    ],
)
def test_crop_window(box, margin, square, expected):
    assert crop_window(np.array(box, np.float32), margin, square) == expected


def test_crops_are_black_outside_the_image_and_masks_stay_in_the_box():
    image = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    crop = extract_crop(image, (-2, 4, 3, 8))  # 2 columns left of the image, 2 rows below it
    assert crop.shape == (4, 5, 3)
    np.testing.assert_array_equal(crop[:2, 2:], image[4:6, 0:3])
    assert not crop[:, :2].any() and not crop[2:].any()
    assert extract_crop(image, (20, 20, 23, 22)).shape == (2, 3, 3)  # all outside: black
    crop_mask = np.ones((4, 5), bool)
    pasted = paste_mask(crop_mask, (-2, 4, 3, 8), np.array([0.5, 4.2, 2.0, 6.0]), (6, 8))
    assert pasted.shape == (6, 8)
    assert np.argwhere(pasted).tolist() == [[4, 0], [4, 1], [5, 0], [5, 1]]  # the box, rounded outward


def _write(tmp_path: Path, stages, detector="coco", name="pose") -> Path:
    path = tmp_path / (name + ".yaml")
    path.write_text(yaml.safe_dump({"name": name, "task": "cascade", "detector": detector, "second_stages": stages}))
    return path


POSE = {"model": "movenet", "classes": ["person"], "attach": "keypoints", "score": 0.0}


@pytest.mark.parametrize(
    "detector, stages, message",
    [
        ("movenet.yaml", [POSE], r"detector: .*movenet.yaml does not exist"),
        ("person_segmentation", [POSE], r"detector: expected a detection spec, found person_segmentation"),
        ("person_pose", [POSE], r"detector: .*expected a single model, found a cascade"),
        ("coco", [], "second_stages: required field is missing"),
        ("coco", [dict(POSE, attach="landmarks")], r"second_stages\[0\].attach: expected one of keypoints\|mask"),
        ("coco", [dict(POSE, attach="mask")], r"second_stages\[0\].model: expected a segmentation spec, found movenet"),
        ("coco", [dict(POSE, classes=["ghost"])], r"classes: expected classes of the detector coco, found \['ghost'\]"),
        ("coco", [dict(POSE, classes="person")], r"classes: expected a list of class names, found 'person'"),
        ("coco", [dict(POSE, margin=3)], r"margin: expected a fraction of the box in \[0, 2\], found 3"),
        ("coco", [dict(POSE, max_per_frame=0)], "max_per_frame: expected a positive integer, found 0"),
        ("coco", [dict(POSE, square="yes")], "square: expected true or false, found 'yes'"),
        ("coco", [dict(POSE, crop=1)], r"second_stages\[0\].crop: unknown field"),
        ("coco", [POSE, POSE], "expected at most one stage that attaches keypoints"),
    ],
)
def test_bad_cascade_specs_are_one_config_error_naming_the_field(tmp_path, detector, stages, message):
    with pytest.raises(ConfigError, match=message):
        load_spec(_write(tmp_path, stages, detector))


def test_shipped_cascades_load_as_specs():
    pose, masks = load_spec("person_pose"), load_spec("person_masks")
    assert isinstance(pose, CascadeSpec) and pose.task == "cascade" and pose.detector.name == "coco"
    assert [(s.model.name, s.attach, s.classes) for s in pose.second_stages] == [("movenet", "keypoints", ("person",))]
    assert [(s.model.name, s.attach) for s in masks.second_stages] == [("person_segmentation", "mask")]


@pytest.fixture(scope="module")
def two_people():
    """The astronaut (512x512) beside a copy of her at 2/3 scale: two people of different sizes."""
    astronaut = cv2.imread(str(assets.fetch("astronaut")), cv2.IMREAD_COLOR)
    canvas = np.full((512, 512 + 341, 3), 255, np.uint8)
    canvas[:, :512] = astronaut
    canvas[171:, 512:] = cv2.resize(astronaut, (341, 341), interpolation=cv2.INTER_AREA)
    return canvas


@pytest.fixture(scope="module")
def pose():
    return Detector.from_spec("person_pose", threads=2)


def test_each_person_gets_the_pose_of_its_own_crop(two_people, pose):
    found = pose(two_people)
    assert isinstance(pose, Cascade) and found.class_names == ["person", "person"]
    assert found.keypoints.shape == (2, 17, 2) and found.keypoint_schema.names[0] == "nose"
    big, small = np.argsort(-(found.xyxy[:, 2] - found.xyxy[:, 0]))
    head = slice(0, 7)  # nose, eyes, ears, shoulders: inside both photos
    # The small copy's pose is the big one's, scaled by 2/3 and moved by the copy's offset.
    expected = found.keypoints[big, head] * (341 / 512) + np.array([512, 171], np.float32)
    np.testing.assert_allclose(found.keypoints[small, head], expected, atol=8)
    assert np.all(found.keypoint_scores[:, head] >= 0.3)
    assert {"preprocess", "inference", "postprocess"} <= set(pose.timings)
    assert {"movenet/crop", "movenet/inference", "movenet/attach"} <= set(pose.timings)


def test_the_cap_keeps_the_largest_people_and_others_stay_without_keypoints(tmp_path, two_people):
    capped = Detector.from_spec(_write(tmp_path, [dict(POSE, max_per_frame=1)]))
    found = capped(two_people)
    widths = found.xyxy[:, 2] - found.xyxy[:, 0]
    assert found.has_keypoints.tolist() == (widths == widths.max()).tolist()
    assert np.all(np.isnan(found.keypoints[~found.has_keypoints]))
    assert np.all(found.keypoint_scores[~found.has_keypoints] == 0)


def test_a_batch_gives_what_single_calls_give_and_frames_without_people_stay_plain(two_people, pose):
    chelsea = cv2.imread(str(assets.fetch("chelsea")), cv2.IMREAD_COLOR)
    batch = pose.predict_batch([two_people, chelsea, two_people])
    single = pose(two_people)
    for found in (batch[0], batch[2]):
        np.testing.assert_allclose(found.keypoints, single.keypoints, atol=0.01)
    assert batch[1].class_names == ["cat"] and not batch[1].has_keypoints.any()
    assert pose.options.score_threshold == 0.5  # the first stage's options (coco's threshold)
    assert pose.labels[0] == "person" and pose.backend is pose.detector.backend


def test_a_cascade_without_a_mask_stage_is_no_segmenter():
    with pytest.raises(ConfigError, match="a segmenter needs a cascade with a mask stage"):
        Segmenter.from_spec("person_pose")
    assert isinstance(Segmenter.from_spec("person_masks"), CascadeSegmenter)


def test_one_cascade_as_detector_and_segmenter_runs_once_per_frame(two_people):
    """A node given the same mask cascade twice shares it: one run gives the instance masks and
    the class map, and the class map is the one the cascade as a segmenter of its own draws."""
    masks = Detector.from_spec("person_masks", threads=2)
    processor = FrameProcessor(masks, CascadeSegmenter(masks))
    runs = []
    predict_batch = masks.predict_batch
    masks.predict_batch = lambda images: runs.append(len(images)) or predict_batch(images)
    (result,) = processor.process([two_people], Outputs(class_map=True))
    assert runs == [1]
    assert result.detections.masks is not None and result.detections.class_names.count("person") == 2
    alone = Segmenter.from_spec("person_masks", threads=2)(two_people)
    np.testing.assert_array_equal(result.segmentation.class_map, alone.class_map)
    assert "segmenter/class_map" in processor.timings and "segmenter/inference" not in processor.timings


def test_commands_for_single_models_refuse_a_cascade_in_one_line(tmp_path):
    from dl_vision.export import export_onnx

    with pytest.raises(ConfigError, match=r"person_pose.yaml: expected a single model, found a cascade"):
        export_onnx("person_pose", tmp_path / "pose.onnx")
