"""MoveNet SinglePose (Lightning, Thunder) outputs: one person's keypoints.

The model returns ``(1, 1, K, 3)``: per keypoint ``(y, x, score)``, with ``y`` and ``x`` in
[0, 1] of the input tensor (letterboxed, so they map back to the image exactly) and K = 17
COCO keypoints. The decoder turns that into a :class:`Detections` of at most one ``person``:

* keypoints ``(1, K, 2)`` in input-image pixels and their scores ``(1, K)``;
* score: the mean keypoint score (MoveNet has no person score of its own);
* box: the extent of the keypoints scoring at least ``keypoint_threshold``. It spans the
  joints, not the silhouette (the top of the head and the hands' ends lie outside it).

A pose whose score is below the score threshold, or with fewer than two confident keypoints
(no box), gives an empty result.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections, KeypointSchema


class MoveNetDecoder(Decoder):
    """Decode MoveNet SinglePose's ``(1, 1, K, 3)`` output into one person.

    Args:
        labels: class names; the pose is class 0.
        keypoint_names: the K keypoint names, in the model's order.
        skeleton: edges to draw, as pairs of keypoint names.
        keypoint_threshold: keypoint score from which a keypoint counts towards the box, 0..1.
        output: name of the model output (default: the model's only output).

    Attributes:
        keypoint_schema: the keypoint names and skeleton (given to every result).
    """

    name = "movenet"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        keypoint_names: Optional[Sequence[str]] = None,
        skeleton: Optional[Sequence[Sequence[str]]] = None,
        keypoint_threshold: float = 0.3,
        output: Optional[str] = None,
    ) -> None:
        super().__init__(labels)
        try:
            self.keypoint_schema = KeypointSchema.from_names(keypoint_names, skeleton or [])
        except ConfigError as err:
            raise ConfigError("decoder.params.%s" % err) from None
        if isinstance(keypoint_threshold, bool) or not isinstance(keypoint_threshold, (int, float)):
            raise ConfigError(
                "decoder.params.keypoint_threshold: expected a number in [0, 1], found %r" % (keypoint_threshold,)
            )
        if not 0.0 <= keypoint_threshold <= 1.0:
            raise ConfigError(
                "decoder.params.keypoint_threshold: expected a number in [0, 1], found %r" % (keypoint_threshold,)
            )
        self.keypoint_threshold = float(keypoint_threshold)
        self.output = output

    def _raw(self, outputs: Dict[str, np.ndarray]) -> np.ndarray:
        if self.output is not None:
            if self.output not in outputs:
                raise ModelError("movenet: expected output %r, found %s" % (self.output, sorted(outputs)))
            raw = outputs[self.output]
        elif len(outputs) == 1:
            raw = next(iter(outputs.values()))
        else:
            raise ModelError(
                "movenet: the model has outputs %s: name the keypoint output in decoder.params.output" % sorted(outputs)
            )
        raw = np.asarray(raw, dtype=np.float32)
        count = len(self.keypoint_schema.names)
        if raw.size != count * 3:
            raise ModelError(
                "movenet: expected (1, 1, %d, 3) keypoints (y, x, score), found shape %s" % (count, raw.shape)
            )
        return raw.reshape(count, 3)

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's pose.

        Raises:
            ModelError: the output is missing or does not hold K keypoints.
        """
        options = options or DecodeOptions()
        raw = self._raw(outputs)
        scores = raw[:, 2]
        score = float(scores.mean())
        confident = scores >= self.keypoint_threshold
        if score < options.score_threshold or confident.sum() < 2 or options.max_detections < 1:
            return Detections.empty(self.labels)
        in_h, in_w = transform.input_size
        model_xy = raw[:, [1, 0]] * np.array([in_w, in_h], np.float32)
        keypoints = transform.points_to_image(model_xy)
        box = np.concatenate([keypoints[confident].min(axis=0), keypoints[confident].max(axis=0)])
        return Detections(
            box[None],
            np.array([score], np.float32),
            np.zeros(1, np.int32),
            self.labels,
            keypoints=keypoints[None],
            keypoint_scores=scores[None],
            keypoint_schema=self.keypoint_schema,
        )
