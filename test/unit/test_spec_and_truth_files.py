"""Spec YAML and COCO JSON as a careless or unlucky user writes them: wrong types, missing and extra
fields, huge and negative numbers, unicode, bytes that are not UTF-8, an empty file, a directory.
Each is one ConfigError / ModelError (spec) or EvaluationError (COCO) line, never another exception."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any, Callable, Dict

import numpy as np
import pytest
import yaml

from dl_vision.errors import ConfigError, EvaluationError, ModelError
from dl_vision.evaluation.ground_truth import CocoGroundTruth
from dl_vision.pipeline import Detector

ROOT = Path(__file__).resolve().parents[2]
FACE = yaml.safe_load((ROOT / "config" / "models" / "face.yaml").read_text())


def _set(path: str, value: Any) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        data[last] = value

    return mutate


def _drop(path: str) -> Callable[[Dict[str, Any]], None]:
    def mutate(data: Dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[key]
        del data[last]

    return mutate


SPEC_CASES = [
    ("name a number", _set("name", 12), ConfigError, "name: expected a string, found 12"),
    ("task unknown", _set("task", "tracking"), ConfigError, "task: expected one of detection|segmentation"),
    ("format a list", _set("format", ["tflite"]), ConfigError, "format: expected one of"),
    ("file a number", _set("file", 5), ConfigError, "file: expected a path or {asset: <key>}, found 5"),
    ("file an unknown asset", _set("file", {"asset": "nope"}), ConfigError, "file.asset: expected one of"),
    ("file name too long", _set("file", "x" * 5000), ModelError, "does not exist"),
    ("decoder missing", _drop("decoder"), ConfigError, "decoder: required field is missing"),
    ("decoder type a number", _set("decoder", {"type": 3}), ConfigError, "decoder.type: expected a decoder name"),
    ("input a string", _set("input", "big"), ConfigError, "input: expected a mapping, found str"),
    ("input size negative", _set("input.size", [-1, 192]), ConfigError, "input.size: expected [height, width]"),
    ("input size huge", _set("input.size", [10**9, 10**9]), ModelError, "spec input.size is [1000000000, 1000000000]"),
    ("input size a float", _set("input.size", [192.5, 192]), ConfigError, "input.size"),
    ("pad value huge", _set("input.pad_value", 10**30), ConfigError, "input.pad_value: expected an integer in 0..255"),
    ("normalization unknown", _set("input.normalization", "weird"), ConfigError, "input.normalization"),
    ("normalization scale 0", _set("input.normalization", {"scale": 0}), ConfigError, "non-zero"),
    ("extra top-level field", _set("modle", "face"), ConfigError, "modle: unknown field"),
    ("extra input field", _set("input.sise", [1, 1]), ConfigError, "input.sise: unknown field"),
    ("score above 1", _set("thresholds.score", 1.5), ConfigError, "thresholds.score: expected a value in [0, 1]"),
    ("score not a number", _set("thresholds.score", float("nan")), ConfigError, "thresholds.score"),
    ("score a word", _set("thresholds.score", "high"), ConfigError, "thresholds.score: expected a number"),
    ("max detections negative", _set("thresholds.max_detections", -3), ConfigError, "positive integer"),
    ("max detections a float", _set("thresholds.max_detections", 1e30), ConfigError, "positive integer"),
    ("labels a number", _set("labels", 42), ConfigError, "labels: expected a list"),
    ("labels file missing", _set("labels", {"file": "/nonexistent/labels.txt"}), ConfigError, "cannot read label"),
    ("labels keys words", _set("labels", {"a": "face"}), ConfigError, "expected integer class ids"),
    ("decoder param empty", _set("decoder.params.min_scale", ""), ConfigError, "decoder.params"),
    ("decoder param negative", _set("decoder.params.strides", [-4]), ConfigError, "decoder.params.strides"),
    ("decoder param huge", _set("decoder.params.strides", [10**6]), ModelError, "the model outputs 2304 boxes"),
    ("decoder param unknown", _set("decoder.params.stride", 4), ConfigError, "decoder.params.stride: not an option"),
    ("threads huge", _set("runtime", {"threads": 10**5}), ConfigError, "runtime.threads: expected an integer in"),
    ("threads a word", _set("runtime", {"threads": "two"}), ConfigError, "runtime.threads"),
    ("runtime a list", _set("runtime", [1]), ConfigError, "runtime: expected a mapping"),
]


@pytest.mark.parametrize("case, mutate, error, text", SPEC_CASES, ids=[c[0] for c in SPEC_CASES])
def test_spec_mistakes_are_one_line(tmp_path, case, mutate, error, text):
    data = copy.deepcopy(FACE)
    mutate(data)
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    with pytest.raises(error) as info:  # at load, or at the first frame for anchors that do not fit the model
        Detector.from_spec(path)(np.zeros((120, 160, 3), np.uint8))
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, text",
    [
        (b"", "name: required field is missing"),
        (b"- a list\n- of things\n", "expected a mapping, found list"),
        (b"name: [unclosed\n", "not valid YAML"),
        ("name: f\u00e4ce \u2603\n".encode(), "task: required field is missing"),  # unicode is fine, the task is not
        (b"name: \xff\xfe face\n", "expected UTF-8 text, found byte 0xff at 6"),
        (b"[" * 20000, "not valid YAML"),
    ],
)
def test_spec_files_that_are_not_specs(tmp_path, content, text):
    path = tmp_path / "spec.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        Detector.from_spec(path)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_a_directory_instead_of_a_spec(tmp_path):
    (tmp_path / "spec.yaml").mkdir()
    with pytest.raises(ConfigError, match="expected a YAML file, found a directory"):
        Detector.from_spec(tmp_path / "spec.yaml")


def test_unicode_names_and_labels_load(tmp_path):
    data = copy.deepcopy(FACE)
    data.update(name="Gesicht \u263a", labels=["\u9854"])
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    detector = Detector.from_spec(path)
    assert detector.spec.name == "Gesicht \u263a" and detector.labels == {0: "\u9854"}


GOOD_COCO = {
    "images": [{"id": 1, "frame_index": 0, "width": 160, "height": 120}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, 30, 40]}],
    "categories": [{"id": 1, "name": "face"}],
}

COCO_CASES = [
    ("a list", [], "top level: expected an object"),
    ("images missing", {"annotations": [], "categories": []}, "images: expected a list, found null"),
    ("images a dict", dict(GOOD_COCO, images={}), "images: expected a list, found {}"),
    ("category without id", dict(GOOD_COCO, categories=[{"name": "face"}]), "categories[0]: expected {id: integer"),
    ("category id a string", dict(GOOD_COCO, categories=[{"id": "1", "name": "f"}]), "categories[0]"),
    ("image a string", dict(GOOD_COCO, images=["frame.png"]), "images[0]: expected an object with an integer id"),
    ("negative frame index", dict(GOOD_COCO, images=[{"id": 1, "frame_index": -4}]), "images[0].frame_index"),
    ("huge width", dict(GOOD_COCO, images=[{"id": 1, "frame_index": 0, "width": 10**12}]), "images[0].width"),
    ("stamp a float", dict(GOOD_COCO, images=[{"id": 1, "ros_stamp_ns": 1.5}]), "images[0].ros_stamp_ns"),
    (
        "annotation unknown category",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], category_id=7)]),
        "annotations[0].category_id: expected one of [1], found 7",
    ),
    (
        "bbox of 3",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], bbox=[1, 2, 3])]),
        "annotations[0].bbox: expected [x, y, width, height]",
    ),
    (
        "bbox negative size",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], bbox=[1, 2, -3, 4])]),
        "annotations[0].bbox",
    ),
    (
        "bbox of words",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], bbox=["a", 2, 3, 4])]),
        "annotations[0].bbox",
    ),
    (
        "iscrowd 7",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], iscrowd=7)]),
        "iscrowd: expected 0 or 1",
    ),
    (
        "polygon too short",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], segmentation=[[1, 2]])]),
        "annotations[0].segmentation",
    ),
    (
        "rle without size",
        dict(GOOD_COCO, annotations=[dict(GOOD_COCO["annotations"][0], segmentation={"counts": "x"})]),
        "annotations[0].segmentation",
    ),
    ("image without a frame key", dict(GOOD_COCO, images=[{"id": 1}]), "needs 'ros_stamp_ns' or 'frame_index'"),
]


@pytest.mark.parametrize("case, data, text", COCO_CASES, ids=[c[0] for c in COCO_CASES])
def test_coco_mistakes_are_one_line(tmp_path, case, data, text):
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(EvaluationError) as info:
        CocoGroundTruth(path)
    assert text in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, text",
    [
        (b"", "expected a COCO JSON file, found Expecting value"),
        (b'{"images": [', "expected a COCO JSON file"),
        (b"\xff\xfe{}", "expected a COCO JSON file"),
        (b"[" * 100000, "expected a COCO JSON file"),
        (b'{"images": [], "annotations": [], "categories": [{"id": 1, "name": "\\u9854"}]}', None),
    ],
)
def test_coco_files_that_are_not_json(tmp_path, content, text):
    path = tmp_path / "gt.json"
    path.write_bytes(content)
    if text is None:  # unicode names are fine
        assert CocoGroundTruth(path).class_names == ["\u9854"]
        return
    with pytest.raises(EvaluationError) as info:
        CocoGroundTruth(path)
    assert text in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EvaluationError, match="expected a COCO JSON file, found Is a directory"):
        CocoGroundTruth(tmp_path)
