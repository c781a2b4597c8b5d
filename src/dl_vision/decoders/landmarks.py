"""Landmark regression outputs (MediaPipe face mesh and the like): one object's K points.

The model sees a crop of one object and returns its K landmarks as a flat tensor of ``(x, y[, z,
...])`` values in input-tensor pixels, and a presence score (a logit or a probability) saying
whether the object is there at all. The decoder turns that into a :class:`Detections` of at most
one object:

* keypoints ``(1, K, 2)`` in input-image pixels (z and further values are dropped), each scored
  with the presence score (the model gives no per-point confidence);
* score: the presence score;
* box: the extent of the landmarks.

A presence below the score threshold gives an empty result.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional, Sequence, Union

import numpy as np

from dl_vision.decoders.base import DecodeOptions, Decoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.structures import Detections, KeypointSchema

ACTIVATIONS = ("sigmoid", "none")


class LandmarksDecoder(Decoder):
    """Decode a landmark model's flat points and presence score into one object.

    Args:
        labels: class names; the object is class 0.
        num_landmarks: K, the number of points.
        values_per_landmark: values per point in the flat output, x and y first (3 for x, y, z).
        landmarks_output: name of the flat landmark output.
        score_output: name of the presence output.
        score_activation: ``sigmoid`` (the presence is a logit) or ``none`` (a probability).
        keypoint_names: optional K names (with ``skeleton``, pairs of names, for drawing).
        skeleton: optional edges between named points.

    Raises:
        ConfigError: a parameter is invalid.
    """

    name = "landmarks"

    def __init__(
        self,
        labels: Union[None, Sequence[str], Mapping[int, str]] = None,
        num_landmarks: int = 0,
        values_per_landmark: int = 3,
        landmarks_output: str = "",
        score_output: str = "",
        score_activation: str = "sigmoid",
        keypoint_names: Optional[Sequence[str]] = None,
        skeleton: Optional[Sequence[Sequence[str]]] = None,
    ) -> None:
        super().__init__(labels)
        for field, value, least in (
            ("num_landmarks", num_landmarks, 1),
            ("values_per_landmark", values_per_landmark, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ConfigError("decoder.params.%s: expected an integer >= %d, found %r" % (field, least, value))
        for field, value in (("landmarks_output", landmarks_output), ("score_output", score_output)):
            if not isinstance(value, str) or not value:
                raise ConfigError("decoder.params.%s: expected an output name, found %r" % (field, value))
        if score_activation not in ACTIVATIONS:
            raise ConfigError(
                "decoder.params.score_activation: expected one of %s, found %r"
                % ("|".join(ACTIVATIONS), score_activation)
            )
        self.keypoint_schema: Optional[KeypointSchema] = None
        if keypoint_names is not None:
            try:
                self.keypoint_schema = KeypointSchema.from_names(keypoint_names, skeleton or [])
            except ConfigError as err:
                raise ConfigError("decoder.params.%s" % err) from None
            if len(self.keypoint_schema.names) != num_landmarks:
                raise ConfigError(
                    "decoder.params.keypoint_names: expected %d names (num_landmarks), found %d"
                    % (num_landmarks, len(self.keypoint_schema.names))
                )
        self.num_landmarks = num_landmarks
        self.values_per_landmark = values_per_landmark
        self.landmarks_output = landmarks_output
        self.score_output = score_output
        self.score_activation = score_activation

    def _output(self, outputs: Dict[str, np.ndarray], name: str, size: int) -> np.ndarray:
        if name not in outputs:
            raise ModelError("landmarks: expected output %r, found %s" % (name, sorted(outputs)))
        array = np.asarray(outputs[name], np.float32)
        if array.size != size:
            raise ModelError("landmarks: output %r: expected %d values, found shape %s" % (name, size, array.shape))
        return array.reshape(-1)

    def decode(
        self,
        outputs: Dict[str, np.ndarray],
        transform: ImageTransform,
        options: Optional[DecodeOptions] = None,
    ) -> Detections:
        """Decode one image's landmarks.

        Raises:
            ModelError: an output is missing or has the wrong number of values.
        """
        options = options or DecodeOptions()
        flat = self._output(outputs, self.landmarks_output, self.num_landmarks * self.values_per_landmark)
        presence = float(self._output(outputs, self.score_output, 1)[0])
        if self.score_activation == "sigmoid":
            presence = float(1.0 / (1.0 + np.exp(-np.clip(presence, -80.0, 80.0))))
        if presence < options.score_threshold or options.max_detections < 1:
            return Detections.empty(self.labels)
        points = transform.points_to_image(flat.reshape(self.num_landmarks, self.values_per_landmark)[:, :2])
        box = np.concatenate([points.min(axis=0), points.max(axis=0)])
        return Detections(
            box[None],
            np.array([presence], np.float32),
            np.zeros(1, np.int32),
            self.labels,
            keypoints=points[None],
            keypoint_scores=np.full((1, self.num_landmarks), presence, np.float32),
            keypoint_schema=self.keypoint_schema,
        )
