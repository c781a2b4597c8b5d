"""The frozen-graph backend and the ONNX export on a small TF1 graph the tests build.

The graph has the TF Object Detection API's input signature (``image_tensor``: uint8
[N, H, W, 3], any size) and two outputs whose values are easy to check: the mean of each
colour channel and the image size.
"""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import tensorflow as tf
import yaml

from dl_vision import export
from dl_vision.backends import create_backend
from dl_vision.backends.frozen_graph import FrozenGraphBackend
from dl_vision.errors import ConfigError, ModelError

OUTPUTS = ["channel_means", "size"]


@pytest.fixture(scope="module")
def graph_file(tmp_path_factory):
    graph = tf.Graph()
    with graph.as_default():
        image = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name="image_tensor")
        tf.identity(tf.reduce_mean(tf.cast(image, tf.float32), axis=[1, 2]), name="channel_means")
        tf.identity(tf.shape(image)[1:3], name="size")
    path = tmp_path_factory.mktemp("graph") / "frozen_inference_graph.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    return path


def _images(batch, height, width):
    rng = np.random.default_rng(height * width)
    return rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize("shape", [(1, 300, 300), (1, 480, 640), (2, 31, 17)])
def test_any_image_size_and_batch_runs(graph_file, shape):
    backend = FrozenGraphBackend(graph_file, inputs=["image_tensor"], outputs=OUTPUTS, threads=1)
    images = _images(*shape)
    result = backend.run(images)
    assert sorted(result) == OUTPUTS
    np.testing.assert_allclose(result["channel_means"], images.mean(axis=(1, 2)), rtol=1e-4)  # float32 sums
    assert result["size"].tolist() == list(shape[1:])
    assert backend.supports_batch


def test_tensor_info_and_names_with_output_index(graph_file):
    backend = FrozenGraphBackend(graph_file, outputs=["channel_means:0", "size"])
    # Inputs default to the graph's placeholders; ":0" is dropped from the reported names.
    assert [(i.name, i.shape, i.dtype) for i in backend.inputs] == [("image_tensor", (None, None, None, 3), np.uint8)]
    assert [(o.name, o.shape, o.dtype) for o in backend.outputs] == [
        ("channel_means", (None, 3), np.float32),
        ("size", (2,), np.int32),
    ]
    backend.close()


def test_registered_as_format_frozen_graph(graph_file):
    backend = create_backend("frozen_graph", graph_file, inputs=["image_tensor"], outputs=OUTPUTS, threads=2)
    assert isinstance(backend, FrozenGraphBackend) and backend.runtime == "tensorflow"
    with pytest.raises(
        ConfigError, match="runtime.signature: not an option of backend frozen_graph; expected one of inputs"
    ):
        create_backend("frozen_graph", graph_file, outputs=OUTPUTS, signature="serving_default")


@pytest.mark.parametrize(
    "options, error, message",
    [
        ({}, ConfigError, r"runtime.outputs: expected a list of tensor names, e.g. \[image_tensor\], found None"),
        ({"outputs": []}, ConfigError, "runtime.outputs: expected a list of tensor names"),
        ({"outputs": OUTPUTS, "inputs": [""]}, ConfigError, "runtime.inputs: expected a list of tensor names"),
        ({"outputs": OUTPUTS, "threads": 0}, ConfigError, "runtime.threads: expected an integer in 1..256, found 0"),
        ({"outputs": ["detection_boxes"]}, ModelError, "expected a tensor detection_boxes, found none.*image_tensor"),
        ({"outputs": ["size:1"]}, ModelError, "expected a tensor size:1, found none"),
    ],
)
def test_bad_options_name_the_field(graph_file, options, error, message):
    with pytest.raises(error, match=message):
        FrozenGraphBackend(graph_file, **options)


def test_missing_and_corrupt_files_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="frozen graph file .*missing.pb does not exist"):
        FrozenGraphBackend(tmp_path / "missing.pb", outputs=OUTPUTS)
    garbage = tmp_path / "garbage.pb"
    garbage.write_bytes(b"\xff\x00 not a protobuf")
    with pytest.raises(ModelError, match="garbage.pb is not a binary TensorFlow GraphDef"):
        FrozenGraphBackend(garbage, outputs=OUTPUTS)


def test_wrong_input_dtype_is_a_model_error(graph_file):
    backend = FrozenGraphBackend(graph_file, outputs=OUTPUTS)
    with pytest.raises(ModelError, match="input 'image_tensor': expected dtype uint8, found float32"):
        backend.run(np.zeros((1, 8, 8, 3), np.float32))


@pytest.fixture(scope="module")
def graph_spec(graph_file):
    spec = {
        "name": "tiny_graph",
        "task": "detection",
        "file": str(graph_file),
        "format": "frozen_graph",
        "input": {"size": [32, 32], "normalization": "none"},
        "decoder": "tf_od_api",
        "runtime": {"inputs": ["image_tensor"], "outputs": OUTPUTS},
    }
    path = graph_file.parent / "tiny_graph.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_onnx_export_computes_what_the_graph_computes(graph_file, graph_spec, tmp_path):
    made = export.export_onnx(graph_spec, tmp_path / "out" / "tiny.onnx")
    assert made["inputs"] == ["image_tensor"] and made["outputs"] == OUTPUTS and made["opset"] == 13
    session = onnxruntime.InferenceSession(made["path"], providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image_tensor"]
    assert [o.name for o in session.get_outputs()] == OUTPUTS
    reference = FrozenGraphBackend(graph_file, outputs=OUTPUTS)
    for shape in [(1, 300, 300), (2, 48, 64)]:  # the export keeps the graph's dynamic dimensions
        images = _images(*shape)
        onnx_means, onnx_size = session.run(None, {"image_tensor": images})
        expected = reference.run(images)
        np.testing.assert_allclose(onnx_means, expected["channel_means"], rtol=1e-5)
        assert onnx_size.tolist() == expected["size"].tolist()


def test_export_command_writes_and_reports(graph_spec, tmp_path, capsys):
    out = tmp_path / "tiny.onnx"
    assert export.main([str(graph_spec), str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "export_onnx: wrote %s (opset 13" % out in printed
    assert "inputs image_tensor, outputs channel_means, size" in printed


def test_export_command_refuses_other_formats_in_one_line(tmp_path, capsys):
    assert export.main(["face", str(tmp_path / "face.onnx")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("export_onnx: error: ")
    assert "face.yaml: format: export_onnx converts frozen_graph models, found tflite" in err[0]
    assert not (tmp_path / "face.onnx").exists()


def test_a_graph_that_refuses_the_warm_up_input_still_loads(tmp_path, caplog):
    graph = tf.Graph()
    with graph.as_default():
        counts = tf.compat.v1.placeholder(tf.int32, [None], name="counts")
        with tf.control_dependencies([tf.compat.v1.assert_positive(counts)]):
            tf.identity(counts * 2, name="doubled")
    path = tmp_path / "positive_only.pb"
    path.write_bytes(graph.as_graph_def().SerializeToString())
    with caplog.at_level("INFO", logger="dl_vision"):
        backend = FrozenGraphBackend(path, outputs=["doubled"])
    assert "no warm-up run on zeros" in caplog.text
    assert backend.run(np.array([1, 2, 3], np.int32))["doubled"].tolist() == [2, 4, 6]
    with pytest.raises(ModelError, match="frozen graph inference failed"):
        backend.run(np.array([0], np.int32))
