"""Pre-processing: geometry mapped back exactly, normalisation, quantized inputs, layouts."""

from __future__ import annotations

import numpy as np
import pytest

from dl_vision.backends.base import TensorInfo
from dl_vision.errors import ImageConversionError, ModelError
from dl_vision.preprocess import Preprocessor, as_bgr_image
from dl_vision.spec import InputSpec, Normalization

FLOAT_192 = TensorInfo("input", (1, 192, 192, 3), np.float32)
SYMMETRIC = Normalization.from_scale_offset(1 / 127.5, -1.0)


def _uniform(height: int, width: int, bgr=(10, 20, 30)) -> np.ndarray:
    image = np.empty((height, width, 3), np.uint8)
    image[:] = bgr
    return image


def test_letterbox_of_640x480_into_192x192_maps_back_exactly():
    pre = Preprocessor(InputSpec(resize="letterbox", normalization=SYMMETRIC), FLOAT_192)
    tensor, transform = pre(_uniform(480, 640))
    # scale = min(192 / 640, 192 / 480) = 0.3 -> content 192 x 144, bands of (192 - 144) / 2 = 24 rows.
    assert transform.scale == pytest.approx((0.3, 0.3))
    assert transform.pad == (0.0, 24.0)
    assert transform.content_box == (0, 24, 192, 168)
    # The content's corners in the model input are the image's corners.
    np.testing.assert_allclose(transform.boxes_to_image(np.array([[0, 24, 192, 168]])), [[0, 0, 640, 480]], atol=1e-4)
    # Model point (96, 60) -> image ((96 - 0) / 0.3, (60 - 24) / 0.3) = (320, 120).
    np.testing.assert_allclose(transform.points_to_image(np.array([96.0, 60.0])), [320.0, 120.0], atol=1e-4)
    # Points in the bands clip to the image edge.
    np.testing.assert_allclose(transform.points_to_image(np.array([96.0, 5.0])), [320.0, 0.0], atol=1e-4)
    assert tensor.shape == (1, 192, 192, 3) and tensor.dtype == np.float32
    # Padding rows: pad value 0 -> 0 / 127.5 - 1 = -1; content rows: RGB of BGR (10, 20, 30).
    np.testing.assert_allclose(tensor[0, 0, 0], [-1.0, -1.0, -1.0])
    np.testing.assert_allclose(tensor[0, 100, 100], [30 / 127.5 - 1, 20 / 127.5 - 1, 10 / 127.5 - 1], atol=1e-6)


def test_stretch_uses_one_scale_per_axis():
    pre = Preprocessor(InputSpec(resize="stretch"), FLOAT_192)
    _, transform = pre(_uniform(480, 640))
    assert transform.scale == pytest.approx((192 / 640, 192 / 480))  # (0.3, 0.4)
    assert transform.pad == (0.0, 0.0)
    np.testing.assert_allclose(
        transform.boxes_to_image(np.array([[48, 48, 96, 96]])), [[160, 120, 320, 240]], atol=1e-4
    )


def test_size_and_layout_come_from_the_model_when_the_spec_omits_them():
    pre = Preprocessor(InputSpec(), TensorInfo("images", (1, 3, 4, 6), np.float32))
    assert (pre.size, pre.layout) == ((4, 6), "nchw")
    tensor, _ = pre(_uniform(4, 6))
    assert tensor.shape == (1, 3, 4, 6)
    # NCHW channel 0 is red (BGR (10, 20, 30) -> R = 30), unnormalised.
    np.testing.assert_array_equal(tensor[0, :, 0, 0], [30, 20, 10])


def test_mean_std_bgr_order_and_gray():
    imagenet = Normalization([123.675, 116.28, 103.53], [58.395, 57.12, 57.375])
    pre = Preprocessor(InputSpec(color="bgr", normalization=imagenet), TensorInfo("x", (1, 2, 2, 3), np.float32))
    tensor, _ = pre(_uniform(2, 2))
    expected = [(10 - 123.675) / 58.395, (20 - 116.28) / 57.12, (30 - 103.53) / 57.375]
    np.testing.assert_allclose(tensor[0, 0, 0], expected, rtol=1e-5)
    gray = Preprocessor(InputSpec(color="gray"), TensorInfo("x", (1, 2, 2, 1), np.float32))
    tensor, _ = gray(_uniform(2, 2, (50, 50, 50)))
    assert tensor.shape == (1, 2, 2, 1)
    np.testing.assert_allclose(tensor[0, 0, 0], [50.0])


@pytest.mark.parametrize(
    "dtype, quantization, pixel, expected",
    [
        # [-1, 1] input quantized with scale 1/128, zero point 128: q = x * 128 + 128.
        (np.uint8, (1 / 128, 128), 64, 64),  # x = 64 / 127.5 - 1 = -0.498 -> q = 64.25 -> 64
        (np.uint8, (1 / 128, 128), 255, 255),  # x = 1 -> q = 256, clipped to 255
        (np.uint8, (1 / 128, 128), 0, 0),  # x = -1 -> q = 0
        # int8 with zero point 0: q = x * 128.
        (np.int8, (1 / 128, 0), 64, -64),  # -63.75 -> -64
        (np.int8, (1 / 128, 0), 255, 127),  # 128, clipped to 127
    ],
)
def test_quantized_inputs(dtype, quantization, pixel, expected):
    info = TensorInfo("x", (1, 2, 2, 3), dtype, quantization)
    tensor, _ = Preprocessor(InputSpec(normalization=SYMMETRIC), info)(_uniform(2, 2, (pixel,) * 3))
    assert tensor.dtype == dtype
    np.testing.assert_array_equal(tensor[0, 0, 0], [expected] * 3)


def test_raw_uint8_input_passes_pixels_through():
    info = TensorInfo("x", (1, 2, 2, 3), np.uint8)
    tensor, _ = Preprocessor(InputSpec(), info)(_uniform(2, 2, (1, 2, 250)))
    np.testing.assert_array_equal(tensor[0, 1, 1], [250, 2, 1])


@pytest.mark.parametrize(
    "normalization", [Normalization(), Normalization([-0.0], [1.0]), Normalization([0, 0, 0], [1])]
)
def test_an_identity_normalization_sends_raw_pixels_without_a_float_round_trip(normalization, monkeypatch):
    """The TF OD API models (coco: mean -0.0, std 1.0) take uint8 pixels as they are."""

    def no_float_path(*args, **kwargs):
        raise AssertionError("raw pixels were clipped back from floats")

    pre = Preprocessor(InputSpec(normalization=normalization), TensorInfo("x", (1, 2, 2, 3), np.uint8))
    monkeypatch.setattr(np, "clip", no_float_path)
    tensor, _ = pre(_uniform(2, 2, (1, 2, 250)))
    np.testing.assert_array_equal(tensor[0, 1, 1], [250, 2, 1])


def test_batch_of_different_sizes_gives_one_transform_each():
    pre = Preprocessor(InputSpec(), FLOAT_192)
    tensor, transforms = pre.batch([_uniform(480, 640), _uniform(192, 96)])
    assert tensor.shape == (2, 192, 192, 3)
    assert [t.pad for t in transforms] == [(0.0, 24.0), (48.0, 0.0)]
    with pytest.raises(ImageConversionError, match="empty batch"):
        pre.batch([])


@pytest.mark.parametrize(
    "spec, info, text",
    [
        (
            InputSpec(size=(128, 128)),
            FLOAT_192,
            r"input.size is \[128, 128\], the model's NHWC shape is \(1, 192, 192, 3\)",
        ),
        (InputSpec(color="gray"), FLOAT_192, "1-channel gray NHWC input, the model's shape is"),
        (InputSpec(), TensorInfo("x", (1, 192, 3), np.float32), "expected a 4-D image tensor"),
        (InputSpec(), TensorInfo("x", (1, None, None, 3), np.float32), "dynamic size"),
        (InputSpec(normalization=Normalization([1, 2], [1])), FLOAT_192, "2 mean / 1 std values"),
    ],
)
def test_spec_and_model_disagreeing_is_a_model_error(spec, info, text):
    with pytest.raises(ModelError, match=text):
        Preprocessor(spec, info)


@pytest.mark.parametrize(
    "image, shape",
    [
        (np.zeros((3, 4), np.uint8), (3, 4, 3)),
        (np.zeros((3, 4, 1), np.uint8), (3, 4, 3)),
        (np.zeros((3, 4, 4), np.uint8), (3, 4, 3)),
    ],
)
def test_mono_and_bgra_become_bgr(image, shape):
    assert as_bgr_image(image).shape == shape


@pytest.mark.parametrize(
    "image, text",
    [
        (np.zeros((3, 4, 3), np.float32), "expected a uint8 image, found dtype float32"),
        (np.zeros((3, 4, 2), np.uint8), r"expected an \(H, W, 3\) BGR image, found shape \(3, 4, 2\)"),
        (np.zeros((0, 4, 3), np.uint8), "non-empty"),
        ([[0]], "expected a numpy image array, found list"),
    ],
)
def test_bad_images_are_rejected(image, text):
    with pytest.raises(ImageConversionError, match=text):
        as_bgr_image(image)
