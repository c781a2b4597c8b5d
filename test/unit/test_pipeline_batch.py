"""Batched prediction through the pipeline on a real dynamic-batch ONNX model built in tmp_path."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from dl_vision.pipeline import Segmenter
from dl_vision.spec import ModelSpec


@pytest.fixture()
def brightness_segmenter(tmp_path) -> Segmenter:
    """A (N, 8, 8, 3) -> (N, 8, 8, 1) model: the mean of the channels, as a foreground probability."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["image"], ["probability"], axes=[3], keepdims=1)],
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 8, 8, 3])],
        [helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 8, 8, 1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "brightness.onnx"))
    spec = ModelSpec.from_dict(
        {
            "name": "brightness",
            "task": "segmentation",
            "file": "brightness.onnx",
            "format": "onnx",
            "input": {"resize": "stretch", "normalization": "unit"},
            "decoder": "semantic",
            "labels": ["dark", "bright"],
        },
        base_dir=tmp_path,
    )
    return Segmenter.from_spec(spec)


def test_batch_is_one_run_sliced_per_image(brightness_segmenter):
    segmenter = brightness_segmenter
    assert segmenter.backend.supports_batch
    runs = []
    real_run = segmenter.backend.run
    segmenter.backend.run = lambda tensor: runs.append(tensor.shape) or real_run(tensor)
    bright = np.full((30, 40, 3), 230, np.uint8)
    dark = np.full((12, 10), 20, np.uint8)  # mono, another size
    half = np.zeros((16, 16, 3), np.uint8)
    half[:, 8:] = 255  # right half bright
    results = segmenter.predict_batch([bright, dark, half])
    assert runs == [(3, 8, 8, 3)]  # one inference for the three images
    assert [r.class_map.shape for r in results] == [(30, 40), (12, 10), (16, 16)]
    assert results[0].class_map.all() and not results[1].class_map.any()
    np.testing.assert_array_equal(results[2].class_map[:, :7], 0)
    np.testing.assert_array_equal(results[2].class_map[:, 9:], 1)
    np.testing.assert_allclose(results[0].confidence, 230 / 255, rtol=1e-5)
    # The same as one call per image.
    np.testing.assert_array_equal(segmenter(half).class_map, results[2].class_map)
    assert set(segmenter.timings) == {"preprocess", "inference", "postprocess"}
