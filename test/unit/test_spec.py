"""Model spec loading: the shipped specs, and bad specs failing with file and field named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from dl_vision import assets
from dl_vision.decoders import DecodeOptions
from dl_vision.errors import ConfigError, ModelError
from dl_vision.pipeline import Detector, Segmenter
from dl_vision.spec import MODEL_PATH_ENV, ModelSpec, available_specs, load_spec

BASE = {
    "name": "tiny",
    "task": "detection",
    "file": "model.tflite",
    "format": "tflite",
    "input": {"size": [192, 192], "normalization": "symmetric"},
    "decoder": {"type": "ssd_anchors", "params": {"strides": [4], "interpolated_scale_aspect_ratio": 0.0}},
    "labels": ["face"],
}


def _write(tmp_path: Path, data, name: str = "tiny.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _with(**changes):
    data = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    for dotted, value in changes.items():
        node = data
        keys = dotted.split("__")
        for key in keys[:-1]:
            node = node[key]
        if value is None:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return data


# (case, spec data, expected error, text the one-line message must contain)
LOAD_ERRORS = [
    ("unknown top field", _with(inptu={"size": 3}), ConfigError, "inptu: unknown field"),
    ("unknown input field", _with(input__sizes=[1, 2]), ConfigError, "input.sizes: unknown field"),
    ("missing task", _with(task=None), ConfigError, "task: required field is missing"),
    ("unknown task", _with(task="tracking"), ConfigError, "task: expected one of detection|segmentation"),
    ("wrong format", _with(format="caffe"), ConfigError, "format: expected one of tflite|saved_model"),
    ("size of one value", _with(input__size=[192]), ConfigError, "input.size: expected [height, width]"),
    ("negative size", _with(input__size=[192, -1]), ConfigError, "input.size"),
    ("unknown resize", _with(input__resize="crop"), ConfigError, "input.resize: expected one of letterbox|stretch"),
    ("bad fraction", _with(input__normalization={"scale": "1/0"}), ConfigError, "input.normalization.scale"),
    ("scale and mean", _with(input__normalization={"scale": 1, "mean": 0}), ConfigError, "found both"),
    ("two std values", _with(input__normalization={"std": [1, 2]}), ConfigError, "input.normalization.std"),
    ("score above 1", _with(thresholds={"score": 1.5}), ConfigError, "thresholds.score: expected a value in [0, 1]"),
    ("zero cap", _with(thresholds={"max_detections": 0}), ConfigError, "thresholds.max_detections"),
    ("decoder without type", _with(decoder={"params": {}}), ConfigError, "decoder.type"),
    ("file is a number", _with(file=3), ConfigError, "file: expected a path or {asset: <key>}"),
    ("unknown asset", _with(file={"asset": "astronaut"}), ConfigError, "file.asset: expected one of"),
    ("missing label file", _with(labels="nowhere.txt"), ConfigError, "labels: cannot read label file"),
    ("labels keyed by names", _with(labels={"a": "face"}), ConfigError, "labels: expected integer class ids"),
    ("not YAML", "name: [unclosed\n", ConfigError, "not valid YAML"),
    ("not a mapping", "- just\n- a list\n", ConfigError, "expected a mapping"),
]


@pytest.mark.parametrize("case, data, error, text", LOAD_ERRORS, ids=[c[0] for c in LOAD_ERRORS])
def test_bad_specs_name_the_file_and_field(tmp_path, case, data, error, text):
    path = _write(tmp_path, data)
    with pytest.raises(error) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    assert text in message
    assert "\n" not in message


# Errors that show only when the model is built: the decoder or the model file is wrong.
def _fake_model(tmp_path: Path) -> None:
    (tmp_path / "model.tflite").write_bytes(b"this is not a flatbuffer")


BUILD_ERRORS = [
    ("unknown decoder", _with(decoder={"type": "rcnn"}), ConfigError, "decoder.type: unknown decoder 'rcnn'"),
    (
        "unknown decoder parameter",
        _with(decoder={"type": "ssd_anchors", "params": {"stride": 4}}),
        ConfigError,
        "decoder.params.stride: not an option of decoder ssd_anchors",
    ),
    (
        "bad decoder parameter",
        _with(decoder={"type": "ssd_anchors", "params": {"strides": []}}),
        ConfigError,
        "decoder.params.strides",
    ),
    (
        "decoder parameter of the wrong type",
        _with(decoder={"type": "ssd_anchors", "params": {"strides": 4}}),
        ConfigError,
        "decoder.params: bad options for decoder ssd_anchors",
    ),
    ("missing model file", _with(file="absent.tflite"), ModelError, "absent.tflite does not exist"),
    ("file in the wrong format", BASE, ModelError, "expected a TFLite flatbuffer (file identifier TFL3 at byte 4)"),
    ("unknown runtime option", _with(runtime={"gpu": True}), ConfigError, "runtime.gpu"),
]


@pytest.mark.parametrize("case, data, error, text", BUILD_ERRORS, ids=[c[0] for c in BUILD_ERRORS])
def test_bad_models_and_decoders_fail_when_built(tmp_path, case, data, error, text):
    _fake_model(tmp_path)
    path = _write(tmp_path, data)
    with pytest.raises(error) as info:
        Detector.from_spec(path)
    assert text in str(info.value)
    assert "\n" not in str(info.value)


def test_spec_size_that_the_model_does_not_have_is_a_model_error(tmp_path):
    data = _with(file=str(assets.fetch("face_detection_full_range")), input__size=[128, 128])
    with pytest.raises(ModelError, match=r"input.size is \[128, 128\], the model's NHWC shape is \(1, 192, 192, 3\)"):
        Detector.from_spec(_write(tmp_path, data))


def test_anchor_options_that_do_not_fit_the_model_fail_on_decode(tmp_path):
    data = _with(file=str(assets.fetch("face_detection_full_range")), decoder={"type": "ssd_anchors"})
    # Default anchors are BlazeFace short range's (strides 8, 16, 16, 16): on a 192x192 input
    # 24 x 24 x 2 + 12 x 12 x 6 = 2016 anchors.
    detector = Detector.from_spec(_write(tmp_path, data))
    with pytest.raises(ModelError, match="the anchor options give 2016 anchors, the model outputs 2304 boxes"):
        detector(np.zeros((64, 64, 3), np.uint8))


def test_unknown_names_list_the_known_specs(tmp_path):
    with pytest.raises(ConfigError, match="unknown model spec 'nope': expected a .yaml path or one of .*face"):
        load_spec("nope")
    with pytest.raises(ConfigError, match="does not exist"):
        load_spec(tmp_path / "absent.yaml")


def test_model_path_env_adds_spec_directories(monkeypatch, tmp_path):
    _write(tmp_path, BASE, "my_faces.yaml")
    monkeypatch.setenv(MODEL_PATH_ENV, str(tmp_path))
    assert "my_faces" in available_specs()
    spec = load_spec("my_faces")
    assert spec.file == tmp_path / "model.tflite"  # relative to the spec's directory


def test_shipped_specs_load_with_their_values():
    face = load_spec("face")
    assert (face.task, face.format, face.asset, face.input.size) == (
        "detection",
        "tflite",
        "face_detection_full_range",
        (192, 192),
    )
    np.testing.assert_allclose(face.input.normalization.mean, [127.5])
    np.testing.assert_allclose(face.input.normalization.std, [127.5])
    assert face.labels == {0: "face"}
    assert (face.thresholds.score_threshold, face.thresholds.nms_iou) == (0.6, 0.3)
    seg = load_spec("person_segmentation")
    assert (seg.task, seg.decoder.type, seg.labels) == ("segmentation", "semantic", {0: "background", 1: "person"})
    np.testing.assert_allclose(seg.input.normalization.std, [255.0])
    assert load_spec("face_short_range").input.size == (128, 128)
    assert isinstance(Segmenter.from_spec(seg), Segmenter)


def test_labels_from_text_and_yaml_files_and_fraction_numbers(tmp_path):
    (tmp_path / "names.txt").write_text("cat\n\ndog\n")
    (tmp_path / "names.yaml").write_text("{1: person, 3: car}\n")
    text = ModelSpec.from_dict(_with(labels="names.txt"), base_dir=tmp_path)
    assert text.labels == {0: "cat", 2: "dog"}  # the line number is the class id; a blank line is an unused id
    mapped = ModelSpec.from_dict(_with(labels={"file": "names.yaml"}), base_dir=tmp_path)
    assert mapped.labels == {1: "person", 3: "car"}
    scaled = ModelSpec.from_dict(_with(input__normalization={"scale": "1/255", "offset": 0.5}))
    # x / 255 + 0.5 == (x - mean) / std with mean = -127.5, std = 255
    np.testing.assert_allclose([scaled.input.normalization.mean[0], scaled.input.normalization.std[0]], [-127.5, 255.0])


def test_a_models_options_are_a_copy_that_live_changes_leave_the_spec_alone():
    spec = load_spec("face")
    detector = Detector.from_spec(spec)
    assert detector.options == spec.thresholds
    detector.options.score_threshold = 0.9
    assert spec.thresholds.score_threshold == 0.6
    assert Detector.from_spec(spec).options.score_threshold == 0.6


def test_thresholds_keys_set_their_decode_options_and_the_rest_keep_defaults():
    spec = ModelSpec.from_dict(_with(thresholds={"score": "1/4", "class_agnostic_nms": True, "max_detections": 7}))
    assert spec.thresholds == DecodeOptions(
        score_threshold=0.25, class_agnostic_nms=True, max_detections=7, nms_iou=DecodeOptions().nms_iou
    )
