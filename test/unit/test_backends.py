"""TensorFlow (SavedModel, Keras), ONNX Runtime and TensorRT backends on small models built here.

Each model has the signature of the real thing it stands for: a SavedModel with the TF
Object Detection API's input and output names, an ONNX model with YOLOv8's
(batch, 4 + nc, N) head, a Keras file. Backend + decoder runs end to end.
"""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import onnx
import pytest

from dl_vision.backends.base import check_feeds
from dl_vision.backends.onnxruntime import OnnxRuntimeBackend, select_providers
from dl_vision.decoders.base import DecodeOptions
from dl_vision.decoders.tf_od_api import TfOdApiDecoder
from dl_vision.decoders.yolo import YoloDecoder
from dl_vision.errors import BackendUnavailableError, ConfigError, ModelError
from dl_vision.geometry import ImageTransform

# YOLOv8-style head: 2 classes, 32 candidates; the model reshapes its (B, 3, 8, 8) input into (B, 6, 32).
CLASSES, CANDIDATES, SIDE = 2, 32, 8


def _yolo_onnx(path, dynamic_batch):
    from onnx import TensorProto, helper

    batch = "batch" if dynamic_batch else 1
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "head_shape"], ["output0"])],
        "yolov8_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 4 + CLASSES, CANDIDATES])],
        [helper.make_tensor("head_shape", TensorProto.INT64, [3], [0, 4 + CLASSES, CANDIDATES])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by older ONNX Runtime builds (JetPack's)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def _head_input(cx):
    """An input whose reshaped head holds one class-1 box (cx, 20, 10, 10) scoring 0.9."""
    head = np.zeros((4 + CLASSES, CANDIDATES), np.float32)
    head[:, 5] = [cx, 20, 10, 10, 0.05, 0.9]
    return head.reshape(1, 3, SIDE, SIDE)


@pytest.fixture(scope="module")
def yolo_models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    return {
        "static": _yolo_onnx(folder / "yolov8_static.onnx", dynamic_batch=False),
        "dynamic": _yolo_onnx(folder / "yolov8_dynamic.onnx", dynamic_batch=True),
    }


def test_onnx_yolov8_head_end_to_end(yolo_models):
    backend = OnnxRuntimeBackend(yolo_models["static"], providers=["cpu"], threads=1)
    assert [(i.name, i.shape) for i in backend.inputs] == [("images", (1, 3, 8, 8))]
    assert [(o.name, o.shape) for o in backend.outputs] == [("output0", (1, 6, 32))]
    assert not backend.supports_batch
    outputs = backend.run(_head_input(cx=30))
    # Letterbox of a 16x64 image into 64x64: scale 1, 24 px bands; the box (25, 15, 35, 25) moves up 24 px.
    transform = ImageTransform.letterbox((16, 64), (64, 64))
    dets = YoloDecoder(labels=["cat", "dog"]).decode(outputs, transform, DecodeOptions(0.5))
    np.testing.assert_allclose(dets.xyxy, [[25, 0, 35, 1]], atol=1e-4)  # y clipped to the 16 px image
    assert dets.class_names == ["dog"]


def test_onnx_dynamic_batch_runs_several_images_at_once(yolo_models):
    backend = OnnxRuntimeBackend(yolo_models["dynamic"], providers=["cpu"])
    assert backend.supports_batch
    batch = np.concatenate([_head_input(cx=30), _head_input(cx=40)])
    outputs = backend.run(batch)
    assert outputs["output0"].shape == (2, 6, 32)
    decoder, transform = YoloDecoder(), ImageTransform.stretch((64, 64), (64, 64))
    centres = [float(decoder.decode({"output0": outputs["output0"][i : i + 1]}, transform).xyxy[0, 0]) for i in (0, 1)]
    assert centres == [25.0, 35.0]


def test_onnx_yolov8_seg_head_end_to_end(tmp_path):
    """YOLOv8-seg signature: images -> output0 (1, 4 + nc + nm, N) and output1 prototypes (1, nm, H/4, W/4)."""
    from onnx import TensorProto, helper

    classes, coefficients, side = 2, 2, 16
    channels = 4 + classes + coefficients
    candidates = 3 * side * side // channels  # 96
    protos = np.zeros((1, coefficients, side // 4, side // 4), np.float32)
    protos[0, 0, :, :2] = 1.0  # left half of the input +1, right half -1
    protos[0, 0, :, 2:] = -1.0
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "head_shape"], ["output0"]),
            helper.make_node("Identity", ["prototypes"], ["output1"]),
        ],
        "yolov8_seg_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, side, side])],
        [
            helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, channels, candidates]),
            helper.make_tensor_value_info("output1", TensorProto.FLOAT, list(protos.shape)),
        ],
        [
            helper.make_tensor("head_shape", TensorProto.INT64, [3], [0, channels, candidates]),
            helper.make_tensor("prototypes", TensorProto.FLOAT, list(protos.shape), protos.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "yolov8_seg.onnx"))
    backend = OnnxRuntimeBackend(tmp_path / "yolov8_seg.onnx", providers=["cpu"])
    head = np.zeros((channels, candidates), np.float32)
    head[:, 7] = [8, 8, 16, 16, 0.9, 0.0, 10.0, 0.0]  # whole-input box, class 0, mask = 10 * prototype 0
    outputs = backend.run(head.reshape(1, 3, side, side))
    # An 8x16 image letterboxed into 16x16 (4 px bands): the box is the whole image, the left half is on.
    dets = YoloDecoder().decode(outputs, ImageTransform.letterbox((8, 16), (16, 16)), DecodeOptions(0.5))
    np.testing.assert_allclose(dets.xyxy, [[0, 0, 16, 8]], atol=1e-4)
    expected = np.zeros((8, 16), bool)
    expected[:, :8] = True
    np.testing.assert_array_equal(dets.masks[0], expected)


def test_onnx_shape_mismatch_names_expected_and_found(yolo_models):
    backend = OnnxRuntimeBackend(yolo_models["static"], providers=["cpu"])
    with pytest.raises(ModelError, match=r"expected shape \(1, 3, 8, 8\), found \(1, 3, 16, 16\)"):
        backend.run(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(ModelError, match="expected dtype float32, found uint8"):
        backend.run(np.zeros((1, 3, 8, 8), np.uint8))
    with pytest.raises(ModelError, match="input 'images' missing"):
        backend.run({"input": np.zeros((1, 3, 8, 8), np.float32)})


def test_onnx_bad_files(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        OnnxRuntimeBackend(tmp_path / "missing.onnx")
    text = tmp_path / "notes.onnx"
    text.write_text("this is not a protobuf")
    with pytest.raises(ModelError, match="is not a loadable ONNX model"):
        OnnxRuntimeBackend(text)


def test_onnx_unavailable_providers_are_dropped_with_a_logged_reason(yolo_models, caplog):
    available = select_providers(None, ["CPUExecutionProvider"], ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert available == ["CPUExecutionProvider"]
    with caplog.at_level(logging.WARNING, logger="dl_vision"):
        chosen = select_providers(
            ["tensorrt", "CUDAExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        )
    assert chosen == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert "TensorrtExecutionProvider is not in this build" in caplog.text
    # The real session on this machine: whatever GPU providers are asked for, it runs.
    backend = OnnxRuntimeBackend(yolo_models["static"], providers=["tensorrt", "cuda", "cpu"])
    assert backend.providers[-1] == "CPUExecutionProvider"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"providers": ["gpu"]}, ConfigError, "expected ONNX Runtime providers"),
        ({"threads": 0}, ConfigError, "expected an integer in 1..256, found 0"),
        ({"threads": 100000}, ConfigError, "expected an integer in 1..256, found 100000"),
    ],
)
def test_onnx_bad_runtime_options(yolo_models, kwargs, error, message):
    with pytest.raises(error, match=message):
        OnnxRuntimeBackend(yolo_models["static"], **kwargs)


def test_check_feeds_accepts_dynamic_dimensions():
    from dl_vision.backends.base import TensorInfo

    infos = [TensorInfo("x", (None, 4), np.float32)]
    assert check_feeds("test", infos, np.zeros((7, 4), np.float32))["x"].shape == (7, 4)
    with pytest.raises(ModelError, match=r"expected shape \(None, 4\), found \(4,\)"):
        check_feeds("test", infos, np.zeros(4, np.float32))


# --- TensorFlow: one import per module (TF start-up is seconds) ---------------------------------


@pytest.fixture(scope="module")
def tf():
    import tensorflow

    return tensorflow


@pytest.fixture(scope="module")
def od_api_saved_model(tf, tmp_path_factory):
    """A SavedModel with the TF2 OD API's serving signature around a Keras layer.

    Its one detection's box is fixed; its score is the mean input pixel / 255, so the
    test can see that the image really flows through.
    """
    scorer = tf.keras.layers.GlobalAveragePooling2D()

    class Detector(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([1, None, None, 3], tf.uint8, name="input_tensor")])
        def serve(self, input_tensor):
            score = tf.reduce_mean(scorer(tf.cast(input_tensor, tf.float32)), axis=1) / 255.0
            return {
                "detection_boxes": tf.constant([[[0.25, 0.1, 0.75, 0.5], [0.0, 0.0, 0.1, 0.1]]]),
                "detection_scores": tf.stack([score, tf.zeros_like(score)], axis=1),
                "detection_classes": tf.constant([[1.0, 2.0]]),
                "num_detections": tf.constant([2.0]),
            }

    detector = Detector()
    path = tmp_path_factory.mktemp("tf") / "saved_model"
    tf.saved_model.save(detector, str(path), signatures={"serving_default": detector.serve})
    return path


def test_saved_model_od_api_end_to_end(od_api_saved_model):
    from dl_vision.backends.tensorflow import SavedModelBackend

    backend = SavedModelBackend(od_api_saved_model)
    assert [(i.name, i.shape, i.dtype) for i in backend.inputs] == [("input_tensor", (1, None, None, 3), np.uint8)]
    assert sorted(o.name for o in backend.outputs) == sorted(
        ["detection_boxes", "detection_scores", "detection_classes", "num_detections"]
    )
    image = np.full((1, 320, 320, 3), 204, np.uint8)  # mean 204 -> score 0.8
    outputs = backend.run(image)
    dets = TfOdApiDecoder(labels=["person"]).decode(
        outputs, ImageTransform.letterbox((240, 320), (320, 320)), DecodeOptions(0.5)
    )
    np.testing.assert_allclose(dets.xyxy, [[32, 40, 160, 200]], atol=1e-4)
    np.testing.assert_allclose(dets.score, [0.8], atol=1e-6)
    assert dets.class_names == ["person"]


def test_saved_model_errors(od_api_saved_model, tmp_path):
    from dl_vision.backends.tensorflow import SavedModelBackend

    with pytest.raises(ModelError, match="expected a directory holding saved_model.pb"):
        SavedModelBackend(tmp_path / "nowhere")
    with pytest.raises(ModelError, match="expected signature 'detect', found"):
        SavedModelBackend(od_api_saved_model, signature="detect")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "saved_model.pb").write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="is not a loadable SavedModel"):
        SavedModelBackend(broken)
    backend = SavedModelBackend(od_api_saved_model)
    with pytest.raises(ModelError, match=r"expected shape \(1, None, None, 3\), found \(2, 8, 8, 3\)"):
        backend.run(np.zeros((2, 8, 8, 3), np.uint8))


@pytest.fixture(scope="module")
def keras_files(tf, tmp_path_factory):
    """A 1x1 convolution with known weights (out = 2 * in + 1 per channel) as .keras and .h5."""
    inputs = tf.keras.Input((4, 4, 1), name="image")
    conv = tf.keras.layers.Conv2D(1, 1, name="heat")
    model = tf.keras.Model(inputs, conv(inputs))
    conv.set_weights([np.full((1, 1, 1, 1), 2.0, np.float32), np.ones(1, np.float32)])
    folder = tmp_path_factory.mktemp("keras")
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    return folder


@pytest.mark.parametrize("name", ["model.keras", "model.h5"])
def test_keras_backend_runs_batches(keras_files, name):
    from dl_vision.backends.tensorflow import KerasBackend

    backend = KerasBackend(keras_files / name)
    assert [(i.name, i.shape) for i in backend.inputs] == [("image", (None, 4, 4, 1))]
    # Keras 2 (TF 2.13, Python 3.8) reports tf.DType, Keras 3 a name: both become numpy dtypes.
    assert [i.dtype for i in backend.inputs + backend.outputs] == [np.dtype(np.float32)] * 2
    assert backend.supports_batch
    batch = np.arange(3 * 16, dtype=np.float32).reshape(3, 4, 4, 1)
    (output,) = backend.run(batch).values()
    np.testing.assert_allclose(output, 2 * batch + 1)


def test_keras_errors(keras_files, tmp_path):
    from dl_vision.backends.tensorflow import KerasBackend

    with pytest.raises(ModelError, match="expected a file ending in .keras/.h5/.hdf5"):
        KerasBackend(tmp_path / "model.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        KerasBackend(tmp_path / "missing.keras")
    fake = tmp_path / "fake.keras"
    fake.write_text("not a zip archive")
    with pytest.raises(ModelError, match="is not a loadable Keras model"):
        KerasBackend(fake)
    with pytest.raises(ModelError, match=r"expected shape \(None, 4, 4, 1\), found \(1, 5, 5, 1\)"):
        KerasBackend(keras_files / "model.keras").run(np.zeros((1, 5, 5, 1), np.float32))


# --- TensorRT ------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_missing_is_a_clear_error(tmp_path):
    from dl_vision.backends.tensorrt import TensorRTBackend

    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(BackendUnavailableError, match="python3-libnvinfer"):
        TensorRTBackend(engine)


def test_tensorrt_rejects_other_files(tmp_path):
    from dl_vision.backends.tensorrt import TensorRTBackend

    with pytest.raises(ModelError, match=r"expected an engine file ending in .engine/.plan/.trt or an .onnx model"):
        TensorRTBackend(tmp_path / "model.pt")
    with pytest.raises(ModelError, match="does not exist"):
        TensorRTBackend(tmp_path / "model.engine")


def test_tensorrt_engine_from_the_yolov8_onnx(yolo_models, tmp_path):
    trt = pytest.importorskip("tensorrt", reason="TensorRT is not installed (Jetson / NVIDIA GPU only)")
    from dl_vision.backends.cuda_memory import CudaDevice
    from dl_vision.backends.tensorrt import TensorRTBackend
    from dl_vision.engines.build import BatchProfile, build_serialized_engine

    cuda = CudaDevice(0)
    with cuda.activate():
        data = build_serialized_engine(trt, yolo_models["dynamic"], "fp32", BatchProfile(1, 2, 4))
    cuda.close()
    engine = tmp_path / "yolov8.engine"
    engine.write_bytes(data)
    backend = TensorRTBackend(engine)
    assert backend.supports_batch
    batch = np.concatenate([_head_input(cx=30), _head_input(cx=40)])
    np.testing.assert_allclose(backend.run(batch)["output0"], batch.reshape(2, 6, 32))
    with pytest.raises(ModelError, match="outside the engine's optimisation profile"):
        backend.run(np.zeros((8, 3, SIDE, SIDE), np.float32))
    backend.close()


# --- Through the pipeline: spec -> pre-processing -> backend -> decoder ------------------------


def _pixel_head_onnx(path):
    """YOLOv8 signature (batch, 3, 8, 8) -> (batch, 6, 32) whose head is the input pixels themselves.

    The pipeline feeds RGB / 255; the graph multiplies the box channels back by 255,
    so a test can paint a head into an image: box channels in pixels, class scores in 0..1.
    """
    from onnx import TensorProto, helper

    scale = np.array([255, 255, 255, 255, 1, 1], np.float32).reshape(1, 6, 1)
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["images", "head_shape"], ["head"]),
            helper.make_node("Mul", ["head", "channel_scale"], ["output0"]),
        ],
        "yolov8_pixel_head",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, SIDE, SIDE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + CLASSES, CANDIDATES])],
        [
            helper.make_tensor("head_shape", TensorProto.INT64, [3], [0, 4 + CLASSES, CANDIDATES]),
            helper.make_tensor("channel_scale", TensorProto.FLOAT, [1, 6, 1], scale.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _painted_image(box, score_pixel, class_index):
    """An 8x8 BGR image whose (RGB, NCHW, flattened) pixels form a head with one candidate."""
    head = np.zeros((4 + CLASSES, CANDIDATES), np.uint8)
    head[:4, 9] = box
    head[4 + class_index, 9] = score_pixel
    rgb = head.reshape(3, SIDE, SIDE).transpose(1, 2, 0)
    return np.ascontiguousarray(rgb[..., ::-1])


def test_detector_runs_an_onnx_yolov8_spec(tmp_path):
    from dl_vision.pipeline import Detector
    from dl_vision.spec import ModelSpec

    spec = ModelSpec.from_dict(
        {
            "name": "pixel_yolo",
            "task": "detection",
            "file": str(_pixel_head_onnx(tmp_path / "pixel_yolo.onnx")),
            "format": "onnx",
            "input": {"size": [SIDE, SIDE], "color": "rgb", "layout": "nchw", "normalization": "unit"},
            "decoder": {"type": "yolo", "params": {"version": "v8"}},
            "labels": ["cat", "dog"],
            "runtime": {"providers": ["cpu"], "threads": 1},
        }
    )
    detector = Detector.from_spec(spec)
    dets = detector(_painted_image([4, 4, 4, 2], 230, class_index=1))  # cx, cy, w, h
    np.testing.assert_allclose(dets.xyxy, [[2, 3, 6, 5]], atol=1e-3)
    np.testing.assert_allclose(dets.score, [230 / 255.0], atol=1e-5)
    assert dets.class_names == ["dog"]
    assert set(detector.timings) == {"preprocess", "inference", "postprocess"}
    batch = detector.predict_batch(
        [_painted_image([4, 4, 4, 2], 230, 1), _painted_image([5, 3, 2, 2], 200, 0), np.zeros((8, 8, 3), np.uint8)]
    )
    assert [d.class_names for d in batch] == [["dog"], ["cat"], []]
    np.testing.assert_allclose(batch[1].xyxy, [[4, 2, 6, 4]], atol=1e-3)


def test_detector_runs_a_tf_od_api_saved_model_spec(od_api_saved_model):
    from dl_vision.pipeline import Detector
    from dl_vision.spec import ModelSpec

    spec = ModelSpec.from_dict(
        {
            "name": "od_api",
            "task": "detection",
            "file": str(od_api_saved_model),
            "format": "saved_model",
            "input": {"size": [64, 64], "resize": "letterbox", "normalization": "none"},
            "decoder": {"type": "tf_od_api"},
            "labels": ["person"],
            "thresholds": {"score": 0.3},
        }
    )
    detector = Detector.from_spec(spec)
    # A 32x64 image letterboxed into 64x64: 16 px black bands, so the mean input pixel (the score) is 204 / 2.
    dets = detector(np.full((32, 64, 3), 204, np.uint8))
    # Normalised box (0.25, 0.1, 0.75, 0.5) = model (6.4, 16, 32, 48) -> image (6.4, 0, 32, 32).
    np.testing.assert_allclose(dets.xyxy, [[6.4, 0, 32, 32]], atol=1e-3)
    np.testing.assert_allclose(dets.score, [0.4], atol=1e-3)
    assert dets.class_names == ["person"]
