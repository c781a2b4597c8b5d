"""TensorFlow 2 Object Detection API outputs (SSD, EfficientDet, Faster/Mask R-CNN exports).

An exported ``saved_model`` returns, per image:

* ``detection_boxes`` (N, 4): ``ymin, xmin, ymax, xmax`` normalised to the input tensor;
* ``detection_scores`` (N,), ``detection_classes`` (N,) float, **1-based** ids of the label map;
* ``num_detections``: how many of the N rows are valid;
* ``detection_masks`` (Mask R-CNN, optional): (N, mh, mw) probabilities inside each box
  (the exporter's default), or already reframed to the input tensor's size.

Class ids in the returned :class:`Detections` are ``raw id - label_id_offset`` (1 by
default), so a plain list of names (``[person, bicycle, ...]``) lines up; a label
map file (``label_map.pbtxt``) can be given instead and gets the same offset.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Union

import cv2
import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.decoders.nms import select_detections
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections, LabelTable

REQUIRED = ("detection_boxes", "detection_scores", "detection_classes")

_ITEM = re.compile(r"item\s*\{(.*?)\}", re.S)
_FIELD = re.compile(r"""(\w+)\s*:\s*(?:"([^"]*)"|'([^']*)'|(-?\d+))""")


def read_label_map(path: Union[str, Path], label_id_offset: int = 1) -> LabelTable:
    """Read an Object Detection API ``label_map.pbtxt`` into ``{id - offset: name}``.

    ``display_name`` is preferred over ``name`` when an item has both.

    Raises:
        ConfigError: the file is missing or holds no ``item { id: ... name: ... }`` entries.
    """
    path = Path(os.path.expandvars(os.path.expanduser(str(path))))
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError("decoder.params.label_map: cannot read %s: %s" % (path, err)) from err
    table: LabelTable = {}
    for body in _ITEM.findall(text):
        fields = {m.group(1): m.group(2) or m.group(3) or m.group(4) for m in _FIELD.finditer(body)}
        if "id" in fields and ("display_name" in fields or "name" in fields):
            table[int(fields["id"]) - label_id_offset] = fields.get("display_name") or fields["name"]
    if not table:
        raise ConfigError(
            "decoder.params.label_map: expected item { id: N name: '...' } entries in %s, found none" % path
        )
    return table


def _one_image(name: str, array: np.ndarray, rank: int) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == rank + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != rank:
        raise ModelError(
            "tf_od_api: %s: expected %d dimensions (plus a batch of 1), found %s" % (name, rank, array.shape)
        )
    return array


class TfOdApiDecoder(Decoder):
    """Decode TF2 Object Detection API outputs.

    Args:
        labels: class names indexed by ``raw id - label_id_offset``.
        label_id_offset: subtracted from ``detection_classes`` (the API's ids start at 1).
        label_map: a ``label_map.pbtxt`` (absolute, ``~`` or ``$VAR`` path); replaces ``labels``.
    """

    name = "tf_od_api"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        label_id_offset: int = 1,
        label_map: Optional[str] = None,
    ) -> None:
        super().__init__(labels)
        if isinstance(label_id_offset, bool) or not isinstance(label_id_offset, int):
            raise ConfigError("decoder.params.label_id_offset: expected an integer, found %r" % (label_id_offset,))
        self.label_id_offset = label_id_offset
        if label_map is not None:
            self.labels = read_label_map(label_map, label_id_offset)

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's outputs (masks included when the model has them).

        Raises:
            ModelError: a required output is missing or has the wrong shape.
        """
        options = options or DecodeOptions()
        missing = [name for name in REQUIRED if name not in outputs]
        if missing:
            raise ModelError("tf_od_api: expected outputs %s, found %s" % (list(REQUIRED), sorted(outputs)))
        boxes = _one_image("detection_boxes", outputs["detection_boxes"], 2).astype(np.float32)
        scores = _one_image("detection_scores", outputs["detection_scores"], 1).astype(np.float32)
        classes = _one_image("detection_classes", outputs["detection_classes"], 1)
        if boxes.shape[1] != 4 or scores.shape[0] != boxes.shape[0] or classes.shape[0] != boxes.shape[0]:
            raise ModelError(
                "tf_od_api: expected boxes (N, 4), scores (N,), classes (N,), found %s, %s, %s"
                % (boxes.shape, scores.shape, classes.shape)
            )
        count = boxes.shape[0]
        if "num_detections" in outputs:
            count = min(count, int(np.asarray(outputs["num_detections"]).reshape(-1)[0]))
        class_id = np.rint(classes[:count]).astype(np.int64) - self.label_id_offset
        in_h, in_w = transform.input_size
        # ymin, xmin, ymax, xmax (0..1) -> x0, y0, x1, y1 model-input pixels.
        model_xyxy = boxes[:count][:, [1, 0, 3, 2]] * np.array([in_w, in_h, in_w, in_h], np.float32)
        kept = select_detections(
            model_xyxy,
            scores[:count],
            class_id,
            options.score_threshold,
            options.nms_iou,
            options.max_detections,
            options.class_agnostic_nms,
        )
        xyxy = transform.boxes_to_image(model_xyxy[kept])
        masks = None
        if "detection_masks" in outputs:
            raw = _one_image("detection_masks", outputs["detection_masks"], 3)[:count][kept]
            # Unclipped boxes: a mask must stretch over its whole box, also where the box leaves the image.
            boxes_px = transform.boxes_to_image(model_xyxy[kept], clip=False)
            masks = self._masks(raw.astype(np.float32), boxes_px, transform, options.mask_threshold)
        return Detections(xyxy, scores[kept], class_id[kept], self.labels, masks=masks)

    @staticmethod
    def _masks(raw: np.ndarray, xyxy: np.ndarray, transform: ImageTransform, threshold: float) -> np.ndarray:
        """(K, H, W) bool masks in input-image pixels from box-relative (or input-sized) probabilities."""
        height, width = transform.image_size
        masks = np.zeros((raw.shape[0], height, width), dtype=bool)
        if raw.shape[1:] == tuple(transform.input_size):
            # Already reframed by the exporter to the input tensor: undo the letterbox only.
            for k in range(raw.shape[0]):
                masks[k] = transform.map_to_image(raw[k]) > threshold
            return masks
        for k in range(raw.shape[0]):
            # Paste the box-relative mask into its box: resize to the box's size in image pixels.
            x0, y0, x1, y1 = xyxy[k]
            left, top = max(int(np.floor(x0)), 0), max(int(np.floor(y0)), 0)
            right, bottom = min(int(np.ceil(x1)), width), min(int(np.ceil(y1)), height)
            if right <= left or bottom <= top:
                continue
            # Sample the mask at the centres of the covered pixels, in box units; edge values reach the box edge.
            mh, mw = raw.shape[1:]
            xs = ((np.arange(left, right) + 0.5 - x0) / max(x1 - x0, 1e-6) * mw - 0.5).astype(np.float32)
            ys = ((np.arange(top, bottom) + 0.5 - y0) / max(y1 - y0, 1e-6) * mh - 0.5).astype(np.float32)
            map_x = np.repeat(xs[None, :], ys.size, axis=0)
            map_y = np.repeat(ys[:, None], xs.size, axis=1)
            patch = cv2.remap(raw[k], map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            masks[k, top:bottom, left:right] = patch > threshold
        return masks
