"""Semantic segmentation decoding: per-pixel class scores to a class map of the input image.

A model with C >= 2 output channels gives one score per class and pixel; the
class map is their argmax (softmax, when asked, only changes the confidence,
not the winner). A model with one channel gives the foreground probability
(or logit) of class 1; pixels at or above ``options.mask_threshold`` are class 1,
the rest class 0.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import cv2
import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Segmentation

ACTIVATIONS = ("none", "sigmoid", "softmax")


class SemanticDecoder(Decoder):
    """Decoder for per-pixel class scores (``decoder: {type: semantic}``).

    Args:
        labels: class table (class 0 is usually background).
        activation: applied to the scores before thresholding or argmax:
            ``"none"`` (already probabilities), ``"sigmoid"`` (logits of one
            channel, or independent per-class logits) or ``"softmax"``.
        output: name of the scores output; default: the only output.
        layout: ``"nhwc"`` (``(1, h, w, C)``), ``"nchw"`` (``(1, C, h, w)``) or
            ``"auto"``: C is the axis (first or last) as long as the label table
            (or 1 long, for two labels), else the shorter one (NHWC on a tie).

    Raises:
        ConfigError: a parameter is invalid.
    """

    name = "semantic"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        activation: str = "none",
        output: Optional[str] = None,
        layout: str = "auto",
    ) -> None:
        super().__init__(labels)
        if activation not in ACTIVATIONS:
            raise ConfigError(
                "decoder.params.activation: expected one of %s, found %r" % ("|".join(ACTIVATIONS), activation)
            )
        if layout not in ("auto", "nhwc", "nchw"):
            raise ConfigError("decoder.params.layout: expected auto, nhwc or nchw, found %r" % (layout,))
        self.activation = activation
        self.output = output
        self.layout = layout

    def _scores(self, outputs: Dict[str, np.ndarray]) -> np.ndarray:
        """The (h, w, C) float32 scores of one image."""
        if self.output is not None:
            if self.output not in outputs:
                raise ModelError("semantic: expected an output named %r, found %s" % (self.output, list(outputs)))
            name = self.output
        elif len(outputs) == 1:
            name = next(iter(outputs))
        else:
            raise ModelError(
                "semantic: expected one output, found %d: %s; name it with decoder.params.output"
                % (len(outputs), list(outputs))
            )
        array = np.asarray(outputs[name], dtype=np.float32)
        if array.ndim == 4 and array.shape[0] == 1:
            array = array[0]
        if array.ndim == 2:
            return array[:, :, None]
        if array.ndim != 3:
            raise ModelError(
                "semantic: output %r: expected shape (1, h, w, C) or (1, C, h, w), found %s" % (name, array.shape)
            )
        layout = self.layout
        if layout == "auto":
            first, last = array.shape[0], array.shape[2]
            # C is as long as the label table, or 1 for a sigmoid model of background + one class.
            lengths = {len(self.labels), 1} if len(self.labels) <= 2 else {len(self.labels)}
            if (first in lengths) != (last in lengths):
                layout = "nchw" if first in lengths else "nhwc"
            else:
                layout = "nchw" if first < last else "nhwc"  # class axis shorter than an image side
        return np.ascontiguousarray(array.transpose(1, 2, 0)) if layout == "nchw" else array

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Segmentation:
        """Decode one image's scores into a class map of the input image's size.

        The scores are cropped to the letterbox content and resized (bilinear)
        to the image before the decision, so class borders are smooth at full
        resolution. ``confidence`` holds the winning class's probability (or the
        foreground probability for one channel).

        Raises:
            ModelError: the output is missing or has an unexpected shape.
        """
        options = options or DecodeOptions()
        scores = self._scores(outputs)
        channels = scores.shape[2]
        if self.activation == "sigmoid":
            scores = 1.0 / (1.0 + np.exp(-np.clip(scores, -80.0, 80.0)))
        elif self.activation == "softmax" and channels > 1:
            scores = np.exp(scores - scores.max(axis=2, keepdims=True))
            scores /= scores.sum(axis=2, keepdims=True)
        resized = transform.map_to_image(scores, interpolation=cv2.INTER_LINEAR)
        if resized.ndim == 2:  # cv2.resize drops a single channel
            resized = resized[:, :, None]
        if channels == 1:
            confidence = resized[:, :, 0]
            class_map = (confidence >= options.mask_threshold).astype(np.uint8)
        else:
            if channels > 256:
                raise ModelError("semantic: expected at most 256 classes (uint8 class map), found %d" % channels)
            class_map = np.argmax(resized, axis=2).astype(np.uint8)
            confidence = np.take_along_axis(resized, class_map[:, :, None].astype(np.intp), axis=2)[:, :, 0]
        return Segmentation(class_map, self.labels, confidence=confidence.astype(np.float32, copy=False))
