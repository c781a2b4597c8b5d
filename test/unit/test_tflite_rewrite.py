"""The shipped segmenter with MediaPipe's custom op rewritten into builtin ops: same outputs, any runtime.

The original model runs only where the TFLite runtime has ``Convolution2DTransposeBias``
(TensorFlow 2.17 here, through XNNPACK). There the rewritten model's outputs are compared with
the original's; on TensorFlow 2.13 (Python 3.8) the test checks that the original does not load
and the rewrite runs. Everywhere, the rewrite's last layer is compared with the custom op's
definition computed in numpy from the original model's own weights.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from dl_vision import assets
from dl_vision.errors import AssetError, ModelError
from dl_vision.tflite_rewrite import CUSTOM_OP, rewrite_transpose_conv_bias

PHOTOS = ["astronaut", "coffee", "chelsea", "camera", "rocket"]


def _interpreter(path, **options):
    interpreter = tf.lite.Interpreter(model_path=str(path), **options)
    interpreter.allocate_tensors()
    return interpreter


def _run(interpreter, image: np.ndarray) -> np.ndarray:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0, :, :, 0]


def _input(name: str) -> np.ndarray:
    """A sample photo as the segmenter's input: 256x256 RGB float32 in [0, 1], batch of 1."""
    bgr = cv2.imread(str(assets.fetch(name)), cv2.IMREAD_COLOR)
    return (cv2.resize(bgr[:, :, ::-1], (256, 256)).astype(np.float32) / 255.0)[None]


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def models():
    paths = assets.fetch_all(["selfie_segmentation", "selfie_segmentation_builtin_ops"])
    return paths["selfie_segmentation"], paths["selfie_segmentation_builtin_ops"]


def _op_names(path) -> list:
    tree = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [
        tree.operatorCodes[op.opcodeIndex].customCode or names[tree.operatorCodes[op.opcodeIndex].builtinCode]
        for op in tree.subgraphs[0].operators
    ]


def test_rewritten_model_has_the_builtin_op_in_place_of_the_custom_one(models) -> None:
    original, rewritten = (_op_names(p) for p in models)
    assert original.count(CUSTOM_OP) == 1
    position = original.index(CUSTOM_OP)
    assert rewritten[position] == "TRANSPOSE_CONV"
    assert rewritten[:position] + rewritten[position + 1 :] == original[:position] + original[position + 1 :]
    assert not any(isinstance(name, bytes) for name in rewritten), "custom ops left: %s" % rewritten


def test_rewritten_model_matches_the_original_where_the_original_runs(models) -> None:
    original, rewritten = models
    # The original runs only through XNNPACK; the rewrite runs there and on the reference kernels.
    reference = {"experimental_op_resolver_type": tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES}
    interpreters = [_interpreter(rewritten), _interpreter(rewritten, **reference)]
    try:
        expected_interpreter = _interpreter(original)
    except RuntimeError as err:
        # TensorFlow 2.13 (Python 3.8): the original does not load at all, the reason for the
        # rewrite; the rewrite runs (its last layer is checked against the op's definition below).
        assert CUSTOM_OP.decode() in str(err)
        assert tf.__version__.startswith("2.13.")
        assert _run(interpreters[0], _input("astronaut")).shape == (256, 256)
        return
    for photo in PHOTOS:
        image = _input(photo)
        expected = _run(expected_interpreter, image)
        for found in (_run(interpreter, image) for interpreter in interpreters):
            assert np.abs(found - expected).max() < 1e-3, photo
            assert _mask_iou(found > 0.5, expected > 0.5) >= 0.999, photo


def _transpose_conv_bias_inputs(path):
    """Tensor indices of the custom op's (input, weights, bias, output) and its options, from the original model."""
    tree = flatbuffer_utils.read_model(str(path))
    graph = tree.subgraphs[0]
    (op,) = [o for o in graph.operators if tree.operatorCodes[o.opcodeIndex].customCode == CUSTOM_OP]
    names = [graph.tensors[i].name.decode() for i in list(op.inputs) + list(op.outputs)]
    return names, bytes(bytearray(op.customOptions))


@pytest.mark.parametrize("photo", ["astronaut", "chelsea"])
def test_rewritten_last_layer_computes_the_custom_op(models, photo) -> None:
    original, rewritten = models
    (data_name, weights_name, bias_name, output_name), options = _transpose_conv_bias_inputs(original)
    assert options == b"\x01\x00\x00\x00\x02\x00\x00\x00\x02\x00\x00\x00"  # same padding, stride 2 x 2
    interpreter = _interpreter(rewritten, experimental_preserve_all_tensors=True)
    _run(interpreter, _input(photo))
    tensors = {d["name"]: d["index"] for d in interpreter.get_tensor_details()}
    data = interpreter.get_tensor(tensors[data_name])[0]  # (h, w, c)
    weights = interpreter.get_tensor(tensors[weights_name])  # (out, 2, 2, c), OHWI
    bias = interpreter.get_tensor(tensors[bias_name])
    # Kernel 2 x 2 at stride 2 with same padding: each input pixel fills its own 2 x 2 output block.
    blocks = np.einsum("hwc,oyxc->hywxo", data, weights) + bias
    height, width = data.shape[:2]
    expected = blocks.reshape(2 * height, 2 * width, -1)
    found = interpreter.get_tensor(tensors[output_name])[0]
    assert found.shape == expected.shape == (256, 256, 1)
    np.testing.assert_allclose(found, expected, atol=1e-4)


def test_models_without_the_op_or_not_models_are_model_errors(models) -> None:
    with pytest.raises(ModelError, match="expected a TFLite model using Convolution2DTransposeBias, found none"):
        rewrite_transpose_conv_bias(assets.fetch("face_detection_short_range").read_bytes())
    with pytest.raises(ModelError, match="expected a TFLite flatbuffer"):
        rewrite_transpose_conv_bias(b"not a flatbuffer at all")


def test_a_failed_derivation_is_an_asset_error(tmp_path, monkeypatch) -> None:
    photo = assets.fetch("rocket").read_bytes()
    monkeypatch.setenv("DL_VISION_CACHE", str(tmp_path))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "rocket.jpg").write_bytes(photo)  # a verified source, but a photo, not a model
    broken = assets.DerivedAsset("rocket_model", "model", "rocket", "rocket.tflite", rewrite_transpose_conv_bias)
    monkeypatch.setitem(assets.ASSETS, broken.key, broken)
    with pytest.raises(AssetError, match="cannot make rocket_model from rocket: expected a TFLite flatbuffer"):
        assets.fetch("rocket_model")
    assert not (tmp_path / "models" / "rocket.tflite").exists()
