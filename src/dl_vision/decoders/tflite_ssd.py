"""TFLite SSD models ending in ``TFLite_Detection_PostProcess`` (e.g. SSD MobileNet).

The custom op already decodes anchors and runs NMS; it has four outputs per image:

* boxes (N, 4): ``ymin, xmin, ymax, xmax`` normalised to the model input;
* classes (N,): **0-based** class ids (as floats);
* scores (N,);
* count: how many of the N rows are valid.

TF1-exported models list them in that order; TF2 exports often order them
``scores, boxes, count, classes``. Boxes and count are recognised by shape;
of the two (N,) outputs the one holding whole numbers is the classes. Name the
outputs in ``decoder.params.outputs`` when a model defeats this.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.decoders.nms import select_detections
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections

ROLES = ("boxes", "classes", "scores", "count")


def _squeeze_batch(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array[0] if array.ndim >= 1 and array.shape[0] == 1 and array.ndim > 1 else array


class TfliteSsdDecoder(Decoder):
    """Decode ``TFLite_Detection_PostProcess`` outputs.

    Args:
        labels: class names indexed by ``class + class_offset``.
        class_offset: added to the op's 0-based classes (1 for label files that start with a background entry).
        outputs: ``{boxes|classes|scores|count: output name}`` to bypass recognition by shape.

    Raises:
        ConfigError: ``outputs`` names an unknown role.
    """

    name = "tflite_ssd"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        class_offset: int = 0,
        outputs: Optional[Mapping[str, str]] = None,
    ) -> None:
        super().__init__(labels)
        if isinstance(class_offset, bool) or not isinstance(class_offset, int):
            raise ConfigError("decoder.params.class_offset: expected an integer, found %r" % (class_offset,))
        self.class_offset = class_offset
        self.outputs = dict(outputs or {})
        unknown = sorted(set(self.outputs) - set(ROLES))
        if unknown:
            raise ConfigError("decoder.params.outputs: expected keys among %s, found %s" % (list(ROLES), unknown))

    def assign(self, outputs: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """``{role: array}`` with the batch dimension dropped.

        Raises:
            ModelError: four outputs cannot be told apart, or a named one is missing.
        """
        arrays = {name: _squeeze_batch(value) for name, value in outputs.items()}
        if len(self.outputs) == len(ROLES):
            missing = [n for n in self.outputs.values() if n not in arrays]
            if missing:
                raise ModelError("tflite_ssd: expected outputs %s, found %s" % (missing, sorted(arrays)))
            return {role: arrays[name] for role, name in self.outputs.items()}
        shapes = [tuple(np.shape(value)) for value in outputs.values()]
        boxes = [n for n, a in arrays.items() if a.ndim == 2 and a.shape[1] == 4]
        others = [n for n in arrays if n not in boxes]
        # The count has fewer dimensions than classes and scores ((1,) against (1, N)), even when N is 1.
        lowest = min((np.ndim(outputs[n]) for n in others), default=0)
        counts = [n for n in others if np.ndim(outputs[n]) == lowest and arrays[n].size == 1]
        rest = [arrays[n] for n in others if n not in counts]
        if len(arrays) != 4 or len(boxes) != 1 or len(counts) != 1 or any(r.ndim != 1 for r in rest):
            raise ModelError(
                "tflite_ssd: expected the 4 outputs of TFLite_Detection_PostProcess "
                "(boxes (1, N, 4), classes (1, N), scores (1, N), count (1,)), found shapes %s" % shapes
            )
        roles = {"boxes": arrays[boxes[0]], "count": arrays[counts[0]]}
        whole = [bool(np.all(np.equal(np.mod(r, 1), 0))) for r in rest]
        first_is_classes = whole[0] or not whole[1]
        roles["classes"], roles["scores"] = (rest[0], rest[1]) if first_is_classes else (rest[1], rest[0])
        return roles

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's post-processed SSD outputs.

        Raises:
            ModelError: the outputs are not those of ``TFLite_Detection_PostProcess``.
        """
        options = options or DecodeOptions()
        roles = self.assign(outputs)
        boxes = roles["boxes"].astype(np.float32)
        count = min(int(np.asarray(roles["count"]).reshape(-1)[0]), boxes.shape[0])
        scores = roles["scores"].astype(np.float32)[:count]
        class_id = np.rint(roles["classes"][:count]).astype(np.int64) + self.class_offset
        in_h, in_w = transform.input_size
        model_xyxy = boxes[:count][:, [1, 0, 3, 2]] * np.array([in_w, in_h, in_w, in_h], np.float32)
        kept = select_detections(
            model_xyxy,
            scores,
            class_id,
            options.score_threshold,
            options.nms_iou,
            options.max_detections,
            options.class_agnostic_nms,
        )
        return Detections(transform.boxes_to_image(model_xyxy[kept]), scores[kept], class_id[kept], self.labels)
