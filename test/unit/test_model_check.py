"""Model files checked before a runtime parses them: the default TFLite models pass, damaged copies
of them (truncated, pointing outside the file, naming things that do not exist) are one ModelError
line; a truncated model through the real loader is that line, not a segmentation fault."""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper

from dl_vision import assets
from dl_vision.errors import ModelError
from dl_vision.model_check import _FlatBuffer, check_model_file, check_tflite

ROOT = Path(__file__).resolve().parents[2]
TFLITE_MODELS = [k for k in assets.MODELS if assets.ASSETS[k].filename.endswith(".tflite")]


@pytest.mark.parametrize("key", TFLITE_MODELS)
def test_every_default_tflite_model_passes(key):
    assert check_model_file("tflite", assets.fetch(key)) == "check_tflite"


@pytest.mark.parametrize("key", ["face_detection_full_range", "selfie_segmentation"])
def test_truncated_copies_are_one_line_naming_the_file(tmp_path, key):
    data = assets.fetch(key).read_bytes()
    cuts = [8, 100, 1000, 3000] + [len(data) * k // 16 for k in range(1, 16)]
    for cut in cuts:
        path = tmp_path / ("cut_%d.tflite" % cut)
        path.write_bytes(data[:cut])
        with pytest.raises(ModelError) as info:
            check_tflite(path)
        message = str(info.value)
        assert message.startswith("%s: expected a complete TFLite flatbuffer, found " % path), message
        assert "beyond the end of the file" in message or "not inside the file" in message, message
        assert "(the file has %d bytes)" % cut in message and "\n" not in message


@pytest.mark.parametrize(
    "content, found",
    [
        (b"", "found 0 bytes"),
        (b"\x89PNG\r\n\x1a\n" + bytes(64), "found b'\\r\\n\\x1a\\n'"),
        (b"ABCDEFGH", "found b'EFGH'"),
    ],
)
def test_files_that_are_no_flatbuffer_name_the_identifier(tmp_path, content, found):
    path = tmp_path / "model.tflite"
    path.write_bytes(content)
    with pytest.raises(
        ModelError, match=re.escape("expected a TFLite flatbuffer (file identifier TFL3 at byte 4), " + found)
    ):
        check_tflite(path)


def _first_operator_field(data: bytes, slot: int) -> int:
    """Byte position of field ``slot`` of the first operator of the first subgraph."""
    buffer = _FlatBuffer(data)
    model = buffer.fields(buffer.follow(0, ""), "")[0]
    subgraph = buffer.fields(buffer.tables(model[2], "")[0], "")[0]
    operator = buffer.fields(buffer.tables(subgraph[3], "")[0], "")[0]
    return operator[slot] if slot in operator else -1


@pytest.mark.parametrize(
    "slot, value, message",
    [
        (0, 9999, "operator 0 naming operator code 9999 of"),  # opcode_index
        (1, None, "operator 0 inputs naming tensor 100000 of"),  # the first input's index
    ],
)
def test_indices_to_things_that_do_not_exist_are_caught(tmp_path, slot, value, message):
    data = bytearray(assets.fetch("face_detection_short_range").read_bytes())
    position = _first_operator_field(bytes(data), slot)
    assert position > 0
    if value is None:  # follow the inputs vector to its first element
        position = position + struct.unpack_from("<I", data, position)[0] + 4
        value = 100000
    struct.pack_into("<I", data, position, value)
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match=message):
        check_tflite(path)


def test_a_sparse_index_outside_its_dimension_is_caught(tmp_path):
    """The face model's weights are sparse; TFLite densifies them at allocation trusting each index."""
    data = bytearray(assets.fetch("face_detection_full_range").read_bytes())
    buffer = _FlatBuffer(bytes(data))
    model = buffer.fields(buffer.follow(0, ""), "")[0]
    subgraph = buffer.fields(buffer.tables(model[2], "")[0], "")[0]
    sparse = [t for t in (buffer.fields(p, "")[0] for p in buffer.tables(subgraph[0], "")) if 6 in t]
    sparsity = buffer.fields(buffer.follow(sparse[0][6], ""), "")[0]
    last_level = buffer.fields(buffer.tables(sparsity[2], "")[-1], "")[0]
    indices = buffer.fields(buffer.follow(last_level[5], ""), "")[0]
    first, length = buffer.vector(indices[0], 1, "")  # the face model's indices are uint8
    assert length > 0
    data[first] = 255  # beyond the dimension (32 or 8 wide)
    path = tmp_path / "model.tflite"
    path.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="sparse level of dimension 3 whose segments or indices do not fit"):
        check_tflite(path)


def test_missing_unreadable_and_empty_files(tmp_path):
    with pytest.raises(ModelError, match="model file .*absent.tflite does not exist"):
        check_model_file("tflite", tmp_path / "absent.tflite")
    with pytest.raises(ModelError, match="cannot be read"):
        check_model_file("tflite", tmp_path)  # a directory
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelError, match="expected a model file, found an empty file"):
        check_model_file("onnx", tmp_path / "empty.onnx")
    (tmp_path / "saved").mkdir()
    with pytest.raises(ModelError, match="expected a model directory, found an empty directory"):
        check_model_file("saved_model", tmp_path / "saved")
    assert check_model_file("tensorrt", tmp_path / "empty.onnx") is None  # no check for engines


def test_a_truncated_model_through_the_loader_is_an_error_not_a_crash(tmp_path):
    """The issue's case (the first 3,000 bytes of the face model) in a child: TFLite itself segfaults on it."""
    truncated = tmp_path / "face.tflite"
    truncated.write_bytes(assets.fetch("face_detection_full_range").read_bytes()[:3000])
    spec = (ROOT / "config" / "models" / "face.yaml").read_text()
    (tmp_path / "face.yaml").write_text(spec.replace("{asset: face_detection_full_range}", str(truncated)))
    code = (
        "import sys\n"
        "from dl_vision.errors import ModelError\n"
        "from dl_vision.pipeline import Detector\n"
        "try:\n"
        "    Detector.from_spec(sys.argv[1])\n"
        "except ModelError as err:\n"
        "    print(err)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "face.yaml")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "%s: expected a complete TFLite flatbuffer" % truncated in result.stdout


def _onnx_model(path, input_shape):
    """A Conv + Reshape ONNX model (a YOLO-style head); an input of rank 2 makes ONNX Runtime abort."""
    weights = np.random.default_rng(0).normal(0, 0.1, (6, 3, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"], pads=[1, 1, 1, 1]),
            helper.make_node("Reshape", ["c", "shape"], ["output0"]),
        ],
        "head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 6, 64])],
        [
            helper.make_tensor("w", TensorProto.FLOAT, weights.shape, weights.tobytes(), raw=True),
            helper.make_tensor("shape", TensorProto.INT64, [3], [0, 6, 64]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def test_an_onnx_model_that_crashes_onnx_runtime_is_caught_in_a_child_and_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path / "cache"))
    good = _onnx_model(tmp_path / "good.onnx", [1, 3, 8, 8])
    assert check_model_file("onnx", good) == "check_onnx"
    bad = _onnx_model(tmp_path / "bad.onnx", [1, 3])  # what one bit flip in a 10 KB model did
    with pytest.raises(ModelError, match="found one that crashes it \\(SIGABRT in a test load\\)"):
        check_model_file("onnx", bad)
    verdicts = sorted(p.read_text() for p in (tmp_path / "cache" / "model_checks").glob("*.json"))
    assert len(verdicts) == 2 and '"verdict": "ok"' in verdicts[0] + verdicts[1]
    monkeypatch.setattr(subprocess, "run", None)  # cached: no second child
    assert check_model_file("onnx", good) == "check_onnx"
    with pytest.raises(ModelError, match="SIGABRT"):
        check_model_file("onnx", bad)
