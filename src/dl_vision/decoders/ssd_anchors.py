"""MediaPipe-style SSD decoding: anchor generation, box/keypoint regression, then (weighted) NMS.

BlazeFace and its kin (MediaPipe's face, palm and pose detectors) predict, for
every anchor, offsets of a box centre and size (plus optional keypoints)
relative to a fixed anchor grid, and one logit per class. The anchor grid is
not stored in the model; it is rebuilt here from the same options MediaPipe's
``SsdAnchorsCalculator`` takes, and the regression is decoded the way its
``TensorsToDetectionsCalculator`` does:

``x_center = raw_x / x_scale * anchor_w + anchor_x`` (same for y),
``w = raw_w / w_scale * anchor_w`` (or ``exp(raw_w / w_scale) * anchor_w``),
all in units of the model input (0..1), then to pixels.

Anchors are ``(x_center, y_center, width, height)``, normalised to the model input.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.decoders.nms import nms, weighted_nms
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections

#: Margin, in score, between the logit cutoff and the score threshold; float32 sigmoids are
#: off by a few 1e-7 at most.
SIGMOID_SLACK = 1e-5


def _layer_scale(min_scale: float, max_scale: float, index: int, count: int) -> float:
    """Anchor scale of stride layer ``index`` of ``count``: linear from min to max (their mean if one layer)."""
    if count == 1:
        return (min_scale + max_scale) / 2.0
    return min_scale + (max_scale - min_scale) * index / (count - 1.0)


def generate_anchors(
    input_size: Tuple[int, int],
    strides: Sequence[int],
    min_scale: float = 0.1484375,
    max_scale: float = 0.75,
    aspect_ratios: Sequence[float] = (1.0,),
    interpolated_scale_aspect_ratio: float = 1.0,
    anchor_offset: Tuple[float, float] = (0.5, 0.5),
    fixed_anchor_size: bool = True,
    reduce_boxes_in_lowest_layer: bool = False,
    feature_map_sizes: Optional[Sequence[Tuple[int, int]]] = None,
) -> np.ndarray:
    """SSD anchors the way MediaPipe's ``SsdAnchorsCalculator`` lays them out.

    Consecutive layers with the same stride share one feature map; each layer
    adds one anchor per aspect ratio (plus one at the geometric mean of this and
    the next scale when ``interpolated_scale_aspect_ratio > 0``). Anchors are
    ordered by feature map, then row, column, and anchor within the cell.

    Args:
        input_size: (height, width) of the model input, pixels.
        strides: stride of each layer, pixels.
        min_scale: scale of the first layer, as a fraction of the input.
        max_scale: scale of the last layer.
        aspect_ratios: width/height ratios of the anchors of each layer.
        interpolated_scale_aspect_ratio: ratio of the extra in-between-scale
            anchor; 0 disables it.
        anchor_offset: (x, y) of an anchor centre inside its cell, in cells.
        fixed_anchor_size: anchors are 1x1 (the network regresses absolute
            sizes); BlazeFace models use this.
        reduce_boxes_in_lowest_layer: the first layer gets three anchors
            (scale 0.1 at ratio 1, ratio 2 and 0.5 at its scale).
        feature_map_sizes: (height, width) per layer, instead of
            ``ceil(input / stride)``.

    Returns:
        (N, 4) float32 ``x_center, y_center, width, height`` normalised to the input.
    """
    height, width = input_size
    count = len(strides)
    if count == 0:
        raise ConfigError("decoder.params.strides: expected at least one stride, found none")
    if feature_map_sizes is not None and len(feature_map_sizes) != count:
        raise ConfigError(
            "decoder.params.feature_map_sizes: expected %d (one per stride), found %d" % (count, len(feature_map_sizes))
        )
    layers: List[np.ndarray] = []
    layer = 0
    while layer < count:
        ratios: List[float] = []
        scales: List[float] = []
        last = layer
        while last < count and strides[last] == strides[layer]:
            scale = _layer_scale(min_scale, max_scale, last, count)
            if last == 0 and reduce_boxes_in_lowest_layer:
                ratios += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ratio in aspect_ratios:
                    ratios.append(float(ratio))
                    scales.append(scale)
                if interpolated_scale_aspect_ratio > 0.0:
                    next_scale = 1.0 if last == count - 1 else _layer_scale(min_scale, max_scale, last + 1, count)
                    scales.append(math.sqrt(scale * next_scale))
                    ratios.append(float(interpolated_scale_aspect_ratio))
            last += 1
        root = np.sqrt(np.asarray(ratios, dtype=np.float64))
        anchor_w = np.asarray(scales) * root
        anchor_h = np.asarray(scales) / root
        if feature_map_sizes is not None:
            rows, cols = (int(v) for v in feature_map_sizes[layer])
        else:
            rows, cols = int(math.ceil(height / strides[layer])), int(math.ceil(width / strides[layer]))
        per_cell = len(scales)
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        grid = np.empty((rows, cols, per_cell, 4), dtype=np.float64)
        grid[..., 0] = ((xs + anchor_offset[0]) / cols)[..., None]
        grid[..., 1] = ((ys + anchor_offset[1]) / rows)[..., None]
        grid[..., 2] = 1.0 if fixed_anchor_size else anchor_w
        grid[..., 3] = 1.0 if fixed_anchor_size else anchor_h
        layers.append(grid.reshape(-1, 4))
        layer = last
    return np.concatenate(layers).astype(np.float32)


class SsdAnchorsDecoder(Decoder):
    """Decoder for MediaPipe-style SSD models (``decoder: {type: ssd_anchors}``).

    Args:
        labels: class table.
        strides: anchor layer strides, pixels (e.g. ``[4]`` for BlazeFace full range).
        min_scale, max_scale, aspect_ratios, interpolated_scale_aspect_ratio,
        anchor_offset, fixed_anchor_size, reduce_boxes_in_lowest_layer,
        feature_map_sizes: anchor options, see :func:`generate_anchors`.
        box_order: ``"xywh"`` (MediaPipe's ``reverse_output_order: true``) or ``"yxhw"``.
        box_scale: ``[x_scale, y_scale, w_scale, h_scale]`` dividing the raw
            regression; default: the model input width, height, width, height.
        apply_exponential_on_box_size: sizes are log-encoded.
        box_offset: index of the first box value in each anchor's regression row.
        num_keypoints: keypoints per detection.
        keypoint_offset: index of the first keypoint value.
        values_per_keypoint: values per keypoint (the first two are x, y).
        sigmoid_score: apply a sigmoid to the class outputs (they are logits).
        score_clipping: clip logits to ``[-c, c]`` before the sigmoid (avoids overflow).
        nms: ``"weighted"`` (BlazeFace) or ``"plain"``.
        boxes_output, scores_output: output names; default: picked by shape
            (the regression output has more values per anchor).

    Raises:
        ConfigError: a parameter is invalid.
    """

    name = "ssd_anchors"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        strides: Sequence[int] = (8, 16, 16, 16),
        min_scale: float = 0.1484375,
        max_scale: float = 0.75,
        aspect_ratios: Sequence[float] = (1.0,),
        interpolated_scale_aspect_ratio: float = 1.0,
        anchor_offset: Sequence[float] = (0.5, 0.5),
        fixed_anchor_size: bool = True,
        reduce_boxes_in_lowest_layer: bool = False,
        feature_map_sizes: Optional[Sequence[Sequence[int]]] = None,
        box_order: str = "xywh",
        box_scale: Optional[Sequence[float]] = None,
        apply_exponential_on_box_size: bool = False,
        box_offset: int = 0,
        num_keypoints: int = 0,
        keypoint_offset: int = 4,
        values_per_keypoint: int = 2,
        sigmoid_score: bool = True,
        score_clipping: Optional[float] = None,
        nms: str = "weighted",
        boxes_output: Optional[str] = None,
        scores_output: Optional[str] = None,
    ) -> None:
        super().__init__(labels)
        if not strides or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in strides):
            raise ConfigError("decoder.params.strides: expected a list of positive integers, found %r" % (strides,))
        if not 0 < min_scale <= max_scale:
            raise ConfigError(
                "decoder.params.min_scale/max_scale: expected 0 < min_scale <= max_scale, found %r, %r"
                % (min_scale, max_scale)
            )
        if len(anchor_offset) != 2:
            raise ConfigError("decoder.params.anchor_offset: expected [x, y], found %r" % (anchor_offset,))
        if box_order not in ("xywh", "yxhw"):
            raise ConfigError("decoder.params.box_order: expected xywh or yxhw, found %r" % (box_order,))
        if box_scale is not None and (len(box_scale) != 4 or any(float(v) == 0 for v in box_scale)):
            raise ConfigError(
                "decoder.params.box_scale: expected four non-zero numbers [x, y, w, h], found %r" % (box_scale,)
            )
        if nms not in ("weighted", "plain"):
            raise ConfigError("decoder.params.nms: expected weighted or plain, found %r" % (nms,))
        if num_keypoints < 0 or values_per_keypoint < 2:
            raise ConfigError(
                "decoder.params: expected num_keypoints >= 0 and values_per_keypoint >= 2, found %r, %r"
                % (num_keypoints, values_per_keypoint)
            )
        self.anchor_options: Dict[str, Any] = dict(
            strides=[int(s) for s in strides],
            min_scale=float(min_scale),
            max_scale=float(max_scale),
            aspect_ratios=[float(a) for a in aspect_ratios],
            interpolated_scale_aspect_ratio=float(interpolated_scale_aspect_ratio),
            anchor_offset=(float(anchor_offset[0]), float(anchor_offset[1])),
            fixed_anchor_size=bool(fixed_anchor_size),
            reduce_boxes_in_lowest_layer=bool(reduce_boxes_in_lowest_layer),
            feature_map_sizes=None if feature_map_sizes is None else [tuple(s) for s in feature_map_sizes],
        )
        self.box_order = box_order
        self.box_scale = None if box_scale is None else [float(v) for v in box_scale]
        self.exp_size = bool(apply_exponential_on_box_size)
        self.box_offset = int(box_offset)
        self.num_keypoints = int(num_keypoints)
        self.keypoint_offset = int(keypoint_offset)
        self.values_per_keypoint = int(values_per_keypoint)
        self.sigmoid_score = bool(sigmoid_score)
        self.score_clipping = None if score_clipping is None else float(score_clipping)
        self.nms = nms
        self.boxes_output = boxes_output
        self.scores_output = scores_output
        self._anchors: Dict[Tuple[int, int], np.ndarray] = {}

    def anchors(self, input_size: Tuple[int, int]) -> np.ndarray:
        """(N, 4) anchors for a model input of (height, width), generated once and cached."""
        key = (int(input_size[0]), int(input_size[1]))
        if key not in self._anchors:
            self._anchors[key] = generate_anchors(key, **self.anchor_options)
        return self._anchors[key]

    def _logit_cutoff(self, threshold: float) -> float:
        """A logit below which no anchor can score ``threshold``: the cheap pre-test before the sigmoid.

        The sigmoid is monotonic, so ``sigmoid(x) >= t`` needs ``x >= log(t / (1 - t))``; the
        cutoff is taken at ``t - SIGMOID_SLACK`` so that float32 rounding of the sigmoid cannot
        make it drop an anchor the exact test on the scores would keep.
        """
        if not self.sigmoid_score:
            return threshold
        p = threshold - SIGMOID_SLACK
        if p <= 0.0:
            return -math.inf
        if p >= 1.0:
            return math.inf
        return math.log(p / (1.0 - p))

    def _split_outputs(self, outputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """(N, coords) regression and (N, classes) logits from the outputs of one image."""

        def squeeze(name: str, array: np.ndarray) -> np.ndarray:
            array = np.asarray(array)
            if array.ndim == 3 and array.shape[0] == 1:
                array = array[0]
            if array.ndim != 2:
                raise ModelError(
                    "ssd_anchors: output %r: expected shape (1, anchors, values), found %s" % (name, array.shape)
                )
            return array

        names = list(outputs)
        for wanted in (self.boxes_output, self.scores_output):
            if wanted is not None and wanted not in outputs:
                raise ModelError("ssd_anchors: expected an output named %r, found %s" % (wanted, names))
        if self.boxes_output is not None and self.scores_output is not None:
            boxes_name, scores_name = self.boxes_output, self.scores_output
        else:
            if len(outputs) != 2:
                raise ModelError(
                    "ssd_anchors: expected 2 outputs (regression, scores), found %d: %s; "
                    "name them with boxes_output/scores_output" % (len(outputs), names)
                )
            a, b = names
            widths = {n: np.asarray(outputs[n]).shape[-1] for n in names}
            if self.boxes_output is not None or self.scores_output is not None:
                boxes_name = self.boxes_output or (b if self.scores_output == a else a)
                scores_name = self.scores_output or (b if boxes_name == a else a)
            elif widths[a] == widths[b]:
                raise ModelError(
                    "ssd_anchors: cannot tell regression from scores among %s (same shape): "
                    "set boxes_output and scores_output" % names
                )
            else:
                boxes_name, scores_name = (a, b) if widths[a] > widths[b] else (b, a)
        return squeeze(boxes_name, outputs[boxes_name]), squeeze(scores_name, outputs[scores_name])

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's regression and scores into face (or other) detections.

        Raises:
            ModelError: outputs do not match the anchors or the keypoint layout.
        """
        options = options or DecodeOptions()
        raw_boxes, raw_scores = self._split_outputs(outputs)
        in_h, in_w = transform.input_size
        anchors = self.anchors((in_h, in_w))
        if raw_boxes.shape[0] != anchors.shape[0] or raw_scores.shape[0] != anchors.shape[0]:
            raise ModelError(
                "ssd_anchors: the anchor options give %d anchors, the model outputs %d boxes and %d scores"
                % (anchors.shape[0], raw_boxes.shape[0], raw_scores.shape[0])
            )
        needed = max(self.box_offset + 4, self.keypoint_offset + self.num_keypoints * self.values_per_keypoint)
        if raw_boxes.shape[1] < needed:
            raise ModelError(
                "ssd_anchors: expected at least %d regression values per anchor (box + %d keypoints), found %d"
                % (needed, self.num_keypoints, raw_boxes.shape[1])
            )
        logits = raw_scores.astype(np.float32, copy=False)
        if self.score_clipping is not None:
            # np.minimum/np.maximum: same values as np.clip, without its slow Python wrapper.
            logits = np.minimum(np.maximum(logits, -self.score_clipping), self.score_clipping)
        # Only anchors whose best logit clears the cutoff get scored; the exact test follows.
        best = logits[:, 0] if logits.shape[1] == 1 else logits.max(axis=1)
        keep = np.nonzero(best >= self._logit_cutoff(options.score_threshold))[0]
        if keep.size == 0:
            return Detections.empty(self.labels)
        probs = logits[keep]
        if self.sigmoid_score:
            # The tanh form of the sigmoid cannot overflow, whatever the logits.
            probs = 0.5 * (1.0 + np.tanh(0.5 * probs))
        if probs.shape[1] == 1:
            class_id = np.zeros(keep.size, np.int64)
            score = probs[:, 0]
        else:
            class_id = np.argmax(probs, axis=1)
            score = probs[np.arange(keep.size), class_id]
        passed = score >= options.score_threshold
        if not passed.any():
            return Detections.empty(self.labels)
        keep, score, class_id = keep[passed], score[passed], class_id[passed]
        reg = raw_boxes[keep].astype(np.float32, copy=False)
        anc = anchors[keep]
        scale = np.array(self.box_scale or (in_w, in_h, in_w, in_h), dtype=np.float32)  # x, y, w, h
        size = np.array((in_w, in_h), dtype=np.float32)
        o = self.box_offset
        raw = reg[:, o : o + 4] if self.box_order == "xywh" else reg[:, [o + 1, o, o + 3, o + 2]]
        centre = raw[:, :2] / scale[:2] * anc[:, 2:] + anc[:, :2]
        extent = raw[:, 2:] / scale[2:]
        if self.exp_size:
            extent = np.exp(extent)
        half = extent * anc[:, 2:] / 2
        # Normalised model-input units -> model-input pixels.
        boxes = np.concatenate([(centre - half) * size, (centre + half) * size], axis=1)
        keypoints = None
        if self.num_keypoints:
            start = self.keypoint_offset
            points = reg[:, start : start + self.num_keypoints * self.values_per_keypoint]
            points = points.reshape(keep.size, self.num_keypoints, self.values_per_keypoint)[:, :, :2]
            if self.box_order != "xywh":
                points = points[:, :, ::-1]
            keypoints = (points / scale[:2] * anc[:, None, 2:] + anc[:, None, :2]) * size
        boxes, score, class_id, keypoints = self._suppress(boxes, score, class_id, keypoints, options)
        # Box corners and keypoints go to image pixels in one call.
        points = boxes.reshape(-1, 2, 2)
        if keypoints is not None:
            points = np.concatenate([points, keypoints], axis=1)
        points = transform.points_to_image(points)
        return Detections(
            points[:, :2].reshape(-1, 4),
            score,
            class_id,
            self.labels,
            keypoints=None if keypoints is None else points[:, 2:],
        )

    def _suppress(
        self,
        boxes: np.ndarray,
        score: np.ndarray,
        class_id: np.ndarray,
        keypoints: Optional[np.ndarray],
        options: DecodeOptions,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[np.ndarray]]:
        """NMS per class (or across classes), best first, capped at ``max_detections``."""
        # Candidates all of class 0 (as with one-class models) need no per-class bookkeeping.
        classes = None if options.class_agnostic_nms or not class_id.any() else class_id
        if self.nms == "weighted":
            result = weighted_nms(boxes, score, options.nms_iou, keypoints, classes, options.max_detections)
            return result.xyxy, result.score, class_id[result.index], result.keypoints
        kept = nms(boxes, score, options.nms_iou, classes, options.max_detections)
        return boxes[kept], score[kept], class_id[kept], None if keypoints is None else keypoints[kept]
