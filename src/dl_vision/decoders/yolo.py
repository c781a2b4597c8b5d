"""YOLOv5 and YOLOv8 raw heads (as exported to ONNX / TensorRT / TFLite), with -seg masks.

Layouts, per image (the batch dimension of 1 is dropped first):

* YOLOv5: ``(N, 5 + nc [+ nm])`` rows ``cx, cy, w, h, objectness, class scores...``;
  a candidate's score is objectness x class score.
* YOLOv8: ``(4 + nc [+ nm], N)``, channels first, ``cx, cy, w, h, class scores...``
  (no objectness). Exports transposed to ``(N, 4 + nc)`` work too: the longer
  axis is always taken as the candidates.
* -seg models add ``nm`` (32) mask coefficients per candidate and a second
  output of prototypes ``(nm, mh, mw)`` (``mh = input height / 4``). An
  instance mask is ``sigmoid(coefficients @ prototypes)``, brought to the input
  image through the letterbox, thresholded at ``options.mask_threshold`` and
  cut to the box (only the box's pixels are computed).

Boxes are centre/size in model-input pixels (``normalized_boxes: true`` for
exports that divide by the input size).
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.decoders.nms import select_detections
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections

VERSIONS = ("auto", "v5", "v8")


def _drop_batch(name: str, array: np.ndarray, rank: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == rank + 1:
        if array.shape[0] != 1:
            raise ModelError("yolo: output %r: expected a batch of 1 per decode, found %d" % (name, array.shape[0]))
        array = array[0]
    if array.ndim != rank:
        raise ModelError(
            "yolo: output %r: expected %d dimensions (plus batch), found shape %s" % (name, rank, array.shape)
        )
    return array


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(x, -50.0, 50.0)))


class YoloDecoder(Decoder):
    """Decode YOLOv5 / YOLOv8 (detect or seg) raw outputs.

    Args:
        labels: class names; their count must match the head's classes when given.
        version: ``"v5"``, ``"v8"`` or ``"auto"`` (channels-first output means v8).
        normalized_boxes: boxes are in 0..1 of the model input rather than pixels.
        predictions: name of the candidates output (default: the one 3-D output).
        prototypes: name of the mask prototypes output (default: the one 4-D output, if any).

    Raises:
        ConfigError: an unknown version.
    """

    name = "yolo"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        version: str = "auto",
        normalized_boxes: bool = False,
        predictions: Optional[str] = None,
        prototypes: Optional[str] = None,
    ) -> None:
        super().__init__(labels)
        if version not in VERSIONS:
            raise ConfigError("decoder.params.version: expected one of %s, found %r" % (", ".join(VERSIONS), version))
        self.version = version
        self.normalized_boxes = bool(normalized_boxes)
        self.predictions = predictions
        self.prototypes = prototypes

    def _names(self, outputs: Dict[str, np.ndarray]) -> Tuple[str, Optional[str]]:
        """Names of the candidates output and of the prototypes output (None for detect heads)."""
        for wanted in (self.predictions, self.prototypes):
            if wanted is not None and wanted not in outputs:
                raise ModelError("yolo: expected output %r, found outputs %s" % (wanted, sorted(outputs)))
        if self.predictions is not None and (self.prototypes is not None or len(outputs) == 1):
            return self.predictions, self.prototypes
        if len(outputs) == 1:
            return next(iter(outputs)), None
        # Two outputs: the prototypes have one dimension more than the candidates.
        by_rank = sorted(outputs, key=lambda n: np.ndim(outputs[n]))
        if len(outputs) == 2 and np.ndim(outputs[by_rank[0]]) < np.ndim(outputs[by_rank[1]]):
            return by_rank[0], by_rank[1]
        raise ModelError(
            "yolo: expected one candidates output (+ one prototypes output for -seg), found %s; "
            "name them in decoder.params.predictions / prototypes" % _shapes(outputs)
        )

    def split(self, outputs: Dict[str, np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray], str]:
        """Candidates as (N, C) rows, prototypes (nm, mh, mw) or None, and the head version.

        Raises:
            ModelError: outputs missing, or channel counts that fit no YOLO head.
        """
        pred_name, proto_name = self._names(outputs)
        pred = _drop_batch(pred_name, outputs[pred_name], 2).astype(np.float32, copy=False)
        protos = None
        if proto_name is not None:
            protos = _drop_batch(proto_name, outputs[proto_name], 3).astype(np.float32, copy=False)
        channels_first = self._channels_first(pred.shape, 0 if protos is None else protos.shape[0])
        if channels_first:
            pred = pred.T
        mask_channels = 0 if protos is None else protos.shape[0]
        version = self.version
        if version == "auto":
            # With labels the channel count tells v8 (no objectness) from v5; without, the layout does.
            if self.labels and pred.shape[1] - mask_channels - len(self.labels) in (4, 5):
                version = "v8" if pred.shape[1] - mask_channels - len(self.labels) == 4 else "v5"
            else:
                version = "v8" if channels_first else "v5"
        box_channels = 4 if version == "v8" else 5
        classes = pred.shape[1] - box_channels - mask_channels
        if classes < 1 or (self.labels and classes != len(self.labels)):
            expected = "%d + %s classes + %d mask coefficients" % (
                box_channels,
                len(self.labels) if self.labels else "nc",
                mask_channels,
            )
            raise ModelError(
                "yolo %s: expected %s channels per candidate, found %d (output %r shape %s)"
                % (version, expected, pred.shape[1], pred_name, tuple(np.shape(outputs[pred_name])))
            )
        return pred, protos, version

    def _channels_first(self, shape: Tuple[int, int], mask_channels: int) -> bool:
        """Whether candidates run along the second axis: the axis whose size fits the labels, else the longer."""
        if self.labels:
            fits = {
                box + len(self.labels) + mask_channels
                for version, box in (("v8", 4), ("v5", 5))
                if self.version in ("auto", version)
            }
            if (shape[0] in fits) != (shape[1] in fits):
                return shape[0] in fits
        return shape[0] < shape[1]

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's YOLO outputs into detections (with masks for -seg heads).

        Raises:
            ModelError: the outputs fit no YOLO head (see :meth:`split`).
        """
        options = options or DecodeOptions()
        pred, protos, version = self.split(outputs)
        box_channels = 4 if version == "v8" else 5
        mask_channels = 0 if protos is None else protos.shape[0]
        class_end = pred.shape[1] - mask_channels
        class_scores = pred[:, box_channels:class_end]
        if version == "v5":
            class_scores = class_scores * pred[:, 4:5]
        class_id = np.argmax(class_scores, axis=1)
        score = class_scores[np.arange(pred.shape[0]), class_id]
        # Centre/size -> corners only for candidates above the threshold (a few of thousands).
        candidates = np.nonzero(score >= options.score_threshold)[0]
        cxcywh = pred[candidates, :4]
        if self.normalized_boxes:
            in_h, in_w = transform.input_size
            cxcywh = cxcywh * np.array([in_w, in_h, in_w, in_h], np.float32)
        half = cxcywh[:, 2:4] / 2.0
        boxes = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)
        kept = select_detections(
            boxes,
            score[candidates],
            class_id[candidates],
            options.score_threshold,
            options.nms_iou,
            options.max_detections,
            options.class_agnostic_nms,
        )
        rows = candidates[kept]
        xyxy = transform.boxes_to_image(boxes[kept])
        masks = None
        if protos is not None:
            masks = self._masks(pred[rows, class_end:], protos, xyxy, transform, options.mask_threshold)
        return Detections(xyxy, score[rows], class_id[rows], self.labels, masks=masks)

    @staticmethod
    def _masks(
        coefficients: np.ndarray,
        protos: np.ndarray,
        xyxy: np.ndarray,
        transform: ImageTransform,
        threshold: float,
    ) -> np.ndarray:
        """(K, H, W) bool instance masks in input-image pixels.

        Only the pixels inside each box are computed: the box's pixel centres are
        mapped through the letterbox into prototype coordinates, the mask
        probabilities of the prototype patch under the box are sampled there
        bilinearly (what upsampling the whole map would give), and thresholded.
        """
        height, width = transform.image_size
        masks = np.zeros((coefficients.shape[0], height, width), dtype=bool)
        nm, mh, mw = protos.shape
        fx, fy = mw / float(transform.input_size[1]), mh / float(transform.input_size[0])
        (scale_x, scale_y), (pad_x, pad_y) = transform.scale, transform.pad
        for k in range(coefficients.shape[0]):
            x0, y0 = np.floor(xyxy[k, :2]).astype(int)
            x1, y1 = np.ceil(xyxy[k, 2:]).astype(int)
            x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
            if x1 <= x0 or y1 <= y0:
                continue
            # Image pixel centres -> model-input pixels -> prototype cells (cell centres at integers).
            sx = ((np.arange(x0, x1) + 0.5) * scale_x + pad_x) * fx - 0.5
            sy = ((np.arange(y0, y1) + 0.5) * scale_y + pad_y) * fy - 0.5
            px0, px1 = max(int(np.floor(sx[0])), 0), min(int(np.floor(sx[-1])) + 2, mw)
            py0, py1 = max(int(np.floor(sy[0])), 0), min(int(np.floor(sy[-1])) + 2, mh)
            patch = protos[:, py0:py1, px0:px1]
            prob = _sigmoid(coefficients[k] @ patch.reshape(nm, -1)).reshape(patch.shape[1:]).astype(np.float32)
            map_x = np.repeat((sx - px0).astype(np.float32)[None, :], sy.size, axis=0)
            map_y = np.repeat((sy - py0).astype(np.float32)[:, None], sx.size, axis=1)
            # Replicated borders: like a resize, samples past the last cell take its value.
            sampled = cv2.remap(prob, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            masks[k, y0:y1, x0:x1] = sampled > threshold
        return masks


def _shapes(outputs: Mapping[str, Any]) -> Dict[str, Tuple[int, ...]]:
    return {name: tuple(np.shape(value)) for name, value in outputs.items()}
