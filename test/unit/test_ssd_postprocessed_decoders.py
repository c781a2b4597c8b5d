"""TF Object Detection API and TFLite SSD post-process decoding, on outputs worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.decoders.base import DecodeOptions
from dl_vision.decoders.tf_od_api import TfOdApiDecoder, read_label_map
from dl_vision.decoders.tflite_ssd import TfliteSsdDecoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform

# 240x320 image letterboxed into 320x320: scale 1, 40 px bands above and below.
LETTERBOX = ImageTransform.letterbox((240, 320), (320, 320))
# ymin, xmin, ymax, xmax normalised to the 320x320 input -> image xyxy (32, 40, 160, 200).
BOX = [0.25, 0.1, 0.75, 0.5]
BOX_IN_IMAGE = [32, 40, 160, 200]


def _od_api_outputs(**extra):
    outputs = {
        "detection_boxes": np.array([[BOX, [0.0, 0.0, 0.1, 0.1], [0.5, 0.5, 0.6, 0.6]]], np.float32),
        "detection_scores": np.array([[0.9, 0.3, 0.8]], np.float32),
        "detection_classes": np.array([[1.0, 2.0, 2.0]], np.float32),
        "num_detections": np.array([2.0], np.float32),  # the third row is padding
    }
    outputs.update(extra)
    return outputs


def test_tf_od_api_boxes_classes_and_num_detections():
    dets = TfOdApiDecoder(labels=["person", "bicycle"]).decode(_od_api_outputs(), LETTERBOX, DecodeOptions(0.2))
    np.testing.assert_allclose(dets.xyxy, [BOX_IN_IMAGE, [0, 0, 32, 0]], atol=1e-4)  # 2nd clipped to the image
    assert dets.class_names == ["person", "bicycle"]  # 1-based ids 1, 2 -> names 0, 1
    np.testing.assert_allclose(dets.score, [0.9, 0.3])


def test_tf_od_api_score_threshold_and_label_id_offset():
    dets = TfOdApiDecoder(labels={1: "person"}, label_id_offset=0).decode(_od_api_outputs(), LETTERBOX)
    assert dets.class_names == ["person"]
    assert dets.class_id.tolist() == [1]


def test_tf_od_api_reads_a_label_map(tmp_path):
    path = tmp_path / "label_map.pbtxt"
    path.write_text(
        "item {\n  name: '/m/01g317'\n  id: 1\n  display_name: 'person'\n}\nitem { id: 2 name: \"bicycle\" }\n"
    )
    assert read_label_map(path) == {0: "person", 1: "bicycle"}
    dets = TfOdApiDecoder(label_map=str(path)).decode(_od_api_outputs(), LETTERBOX, DecodeOptions(0.2))
    assert dets.class_names == ["person", "bicycle"]
    (tmp_path / "empty.pbtxt").write_text("nothing here")
    with pytest.raises(ConfigError, match="expected item"):
        read_label_map(tmp_path / "empty.pbtxt")


def test_tf_od_api_box_relative_masks_are_pasted_into_the_box():
    # 32x32 image = model input. Box x 0..32, y 0..16; its 4x4 mask is on in the left two columns.
    transform = ImageTransform.stretch((32, 32), (32, 32))
    mask = np.zeros((1, 1, 4, 4), np.float32)
    mask[0, 0, :, :2] = 1.0
    outputs = {
        "detection_boxes": np.array([[[0.0, 0.0, 0.5, 1.0]]], np.float32),
        "detection_scores": np.array([[0.9]], np.float32),
        "detection_classes": np.array([[1.0]], np.float32),
        "detection_masks": mask,
    }
    dets = TfOdApiDecoder().decode(outputs, transform, DecodeOptions(0.5))
    expected = np.zeros((32, 32), bool)
    expected[:16, :16] = True  # pixel 15's centre samples 0.5625 of the way from column 1 (on) to 2 (off)
    np.testing.assert_array_equal(dets.masks[0], expected)


def test_tf_od_api_masks_already_at_input_size_only_lose_the_letterbox():
    transform = ImageTransform.letterbox((16, 32), (32, 32))  # 8 px bands
    mask = np.zeros((1, 1, 32, 32), np.float32)
    mask[0, 0, 8:16, :] = 1.0  # the top half of the image content
    outputs = {
        "detection_boxes": np.array([[[0.25, 0.0, 0.75, 1.0]]], np.float32),
        "detection_scores": np.array([[0.9]], np.float32),
        "detection_classes": np.array([[1.0]], np.float32),
        "detection_masks": mask,
    }
    dets = TfOdApiDecoder().decode(outputs, transform, DecodeOptions(0.5))
    np.testing.assert_allclose(dets.xyxy, [[0, 0, 32, 16]], atol=1e-4)
    assert dets.masks[0, :8].all() and not dets.masks[0, 8:].any()


def test_tf_od_api_missing_output_names_what_was_expected():
    with pytest.raises(ModelError, match="expected outputs .*detection_scores.*found .*output_0"):
        TfOdApiDecoder().decode({"output_0": np.zeros((1, 10, 4))}, LETTERBOX)


def _tflite_ssd(order):
    values = {
        "boxes": np.array([[BOX, [0.5, 0.5, 0.6, 0.6], [0, 0, 0, 0]]], np.float32),
        "classes": np.array([[0.0, 2.0, 0.0]], np.float32),
        "scores": np.array([[0.75, 0.6, 0.0]], np.float32),
        "count": np.array([2.0], np.float32),
    }
    return {"TFLite_Detection_PostProcess%s" % (":%d" % i if i else ""): values[r] for i, r in enumerate(order)}


@pytest.mark.parametrize(
    "order",
    [("boxes", "classes", "scores", "count"), ("scores", "boxes", "count", "classes")],
    ids=["tf1-order", "tf2-order"],
)
def test_tflite_ssd_recognises_outputs_in_either_order(order):
    dets = TfliteSsdDecoder(labels=["person", "bicycle", "car"]).decode(
        _tflite_ssd(order), LETTERBOX, DecodeOptions(0.5)
    )
    np.testing.assert_allclose(dets.xyxy, [BOX_IN_IMAGE, [160, 120, 192, 152]], atol=1e-4)
    assert dets.class_names == ["person", "car"]
    np.testing.assert_allclose(dets.score, [0.75, 0.6])


def test_tflite_ssd_count_and_class_offset():
    outputs = _tflite_ssd(("boxes", "classes", "scores", "count"))
    outputs["TFLite_Detection_PostProcess:3"] = np.array([1.0], np.float32)
    dets = TfliteSsdDecoder(labels=["???", "person"], class_offset=1).decode(outputs, LETTERBOX, DecodeOptions(0.5))
    assert dets.class_names == ["person"]


def test_tflite_ssd_single_detection_model_tells_count_from_classes():
    outputs = {
        "a": np.array([[BOX]], np.float32),
        "b": np.array([[1.0]], np.float32),
        "c": np.array([[0.7]], np.float32),
        "d": np.array([1.0], np.float32),
    }
    dets = TfliteSsdDecoder().decode(outputs, LETTERBOX, DecodeOptions(0.5))
    assert dets.class_id.tolist() == [1]
    np.testing.assert_allclose(dets.score, [0.7])


def test_tflite_ssd_named_outputs():
    outputs = _tflite_ssd(("boxes", "classes", "scores", "count"))
    names = {"boxes": "TFLite_Detection_PostProcess", "classes": "TFLite_Detection_PostProcess:1"}
    names.update(scores="TFLite_Detection_PostProcess:2", count="TFLite_Detection_PostProcess:3")
    dets = TfliteSsdDecoder(outputs=names).decode(outputs, LETTERBOX, DecodeOptions(0.5))
    assert len(dets) == 2
    with pytest.raises(ConfigError, match="expected keys among"):
        TfliteSsdDecoder(outputs={"logits": "x"})


def test_tflite_ssd_rejects_a_raw_ssd_head():
    with pytest.raises(ModelError, match="expected the 4 outputs of TFLite_Detection_PostProcess"):
        TfliteSsdDecoder().decode({"raw_boxes": np.zeros((1, 896, 16)), "raw_scores": np.zeros((1, 896, 1))}, LETTERBOX)
