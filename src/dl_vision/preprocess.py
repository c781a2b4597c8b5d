"""Image to input tensor: resize or letterbox, colour order, normalisation, layout, dtype.

The result comes with the :class:`~dl_vision.geometry.ImageTransform` that maps
model-input pixels back to the caller's image, so decoders return boxes in the
caller's pixels.
"""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from dl_vision.backends.base import TensorInfo
from dl_vision.errors import ImageConversionError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.spec import InputSpec


def as_bgr_image(image: np.ndarray) -> np.ndarray:
    """Check a caller's image and return it as (H, W, 3) uint8 BGR.

    Args:
        image: (H, W, 3) BGR, (H, W, 4) BGRA or (H, W) / (H, W, 1) grayscale, uint8.

    Raises:
        ImageConversionError: any other shape or dtype.
    """
    if not isinstance(image, np.ndarray):
        raise ImageConversionError("expected a numpy image array, found %s" % type(image).__name__)
    if image.dtype != np.uint8:
        raise ImageConversionError("expected a uint8 image, found dtype %s" % image.dtype)
    if image.ndim == 3 and image.shape[2] == 3:
        bgr = image
    elif image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        bgr = cv2.cvtColor(image.reshape(image.shape[:2]), cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        bgr = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    else:
        raise ImageConversionError("expected an (H, W, 3) BGR image, found shape %s" % (image.shape,))
    if bgr.shape[0] == 0 or bgr.shape[1] == 0:
        raise ImageConversionError("expected a non-empty image, found shape %s" % (image.shape,))
    return bgr


class Preprocessor:
    """Turns BGR uint8 images into the input tensor of one model.

    Args:
        spec: the spec's ``input`` section.
        tensor: the model's first input as the backend reports it; its static
            shape fills in ``size`` and ``layout`` when the spec leaves them out
            and is checked against them otherwise, and its dtype/quantization
            decide the output dtype.

    Raises:
        ModelError: the spec and the model disagree (size, channels, layout).

    Attributes:
        size: (height, width) of the model input.
        layout: ``"nhwc"`` or ``"nchw"``.
        dtype: numpy dtype of the produced tensor.
    """

    def __init__(self, spec: InputSpec, tensor: TensorInfo) -> None:
        self.spec = spec
        shape = tensor.shape
        channels = 1 if spec.color == "gray" else 3
        if len(shape) != 4:
            raise ModelError(
                "model input %r: expected a 4-D image tensor (NHWC or NCHW), found shape %s" % (tensor.name, shape)
            )
        layout = spec.layout
        if layout == "auto":
            layout = "nchw" if shape[1] == channels and shape[3] != channels else "nhwc"
        hw = shape[1:3] if layout == "nhwc" else shape[2:4]
        c = shape[3] if layout == "nhwc" else shape[1]
        if c is not None and c != channels:
            raise ModelError(
                "model input %r: spec asks for %d-channel %s %s input, the model's shape is %s"
                % (tensor.name, channels, spec.color, layout.upper(), shape)
            )
        if spec.size is not None:
            for spec_dim, model_dim in zip(spec.size, hw):
                if model_dim is not None and model_dim != spec_dim:
                    raise ModelError(
                        "model input %r: spec input.size is %s, the model's %s shape is %s"
                        % (tensor.name, list(spec.size), layout.upper(), shape)
                    )
            size = spec.size
        elif hw[0] is None or hw[1] is None:
            raise ModelError(
                "model input %r has a dynamic size %s: the spec must give input.size" % (tensor.name, shape)
            )
        else:
            size = (int(hw[0]), int(hw[1]))
        self.size: Tuple[int, int] = (int(size[0]), int(size[1]))
        self.layout = layout
        self.dtype = tensor.dtype
        norm = spec.normalization
        if len(norm.mean) not in (1, channels) or len(norm.std) not in (1, channels):
            raise ModelError(
                "input.normalization has %d mean / %d std values for a %d-channel input"
                % (len(norm.mean), len(norm.std), channels)
            )
        self._mean = np.array(norm.mean, np.float32).reshape(1, 1, -1)
        self._inv_std = (1.0 / np.array(norm.std, np.float32)).reshape(1, 1, -1)
        self._identity = bool(np.all(self._mean == 0) and np.all(self._inv_std == 1))
        quant = tensor.quantization
        self._quant = quant if quant is not None and quant[0] else None
        if np.issubdtype(self.dtype, np.integer):
            info = np.iinfo(self.dtype)
            self._range: Optional[Tuple[int, int]] = (info.min, info.max)
        else:
            self._range = None

    def transform_for(self, image_size: Tuple[int, int]) -> ImageTransform:
        """The image-to-input map for an image of (height, width) ``image_size``."""
        if self.spec.resize == "letterbox":
            return ImageTransform.letterbox(image_size, self.size)
        return ImageTransform.stretch(image_size, self.size)

    def _one(self, image: np.ndarray) -> Tuple[np.ndarray, ImageTransform]:
        bgr = as_bgr_image(image)
        transform = self.transform_for(bgr.shape[:2])
        # Resize before the colour conversion: it is cheaper on the smaller image.
        resized = transform.apply(bgr, pad_value=self.spec.pad_value)
        if self.spec.color == "rgb":
            pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2RGB)
        elif self.spec.color == "gray":
            pixels = cv2.cvtColor(resized, cv2.COLOR_BGR2GRAY)[:, :, None]
        else:
            pixels = resized
        return self._to_dtype(pixels), transform

    def _to_dtype(self, pixels: np.ndarray) -> np.ndarray:
        """(h, w, C) uint8 pixels -> normalised values in the model's dtype (quantized if need be)."""
        if self._range is not None and self._quant is None and self._identity:
            return pixels.astype(self.dtype, copy=False)  # raw-pixel integer input (e.g. uint8 TF OD API models)
        values = pixels.astype(np.float32)
        if not self._identity:
            values -= self._mean
            values *= self._inv_std
        if self._quant is not None:
            # real = (q - zero_point) * scale  =>  q = real / scale + zero_point
            scale, zero_point = self._quant
            values = np.round(values / scale + zero_point)
        if self._range is not None:
            return np.clip(values, self._range[0], self._range[1]).astype(self.dtype)
        return values.astype(self.dtype, copy=False)

    def __call__(self, image: np.ndarray) -> Tuple[np.ndarray, ImageTransform]:
        """Pre-process one BGR uint8 image.

        Returns:
            ``(tensor, transform)``: a (1, h, w, C) or (1, C, h, w) array in the
            model's dtype, and the image-to-input map.
        """
        tensor, transform = self._one(image)
        return self._layout(tensor[None]), transform

    def batch(self, images: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[ImageTransform]]:
        """Pre-process several images (any sizes) into one (N, ...) tensor and N transforms."""
        if not len(images):
            raise ImageConversionError("expected at least one image, found an empty batch")
        parts = [self._one(im) for im in images]
        return self._layout(np.stack([p[0] for p in parts])), [p[1] for p in parts]

    def _layout(self, nhwc: np.ndarray) -> np.ndarray:
        if self.layout == "nchw":
            return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
        return nhwc
