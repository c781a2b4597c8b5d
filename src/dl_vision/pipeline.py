"""Detector and Segmenter: a model spec turned into a callable, image in, result out.

Each call runs three timed stages: pre-process (resize/letterbox, colour,
normalisation), inference (the backend) and post-process (the decoder, back
in input-image pixels)::

    detector = Detector.from_spec("face")
    detections = detector(image_bgr)         # Detections, boxes in image_bgr's pixels
    detector.options.score_threshold = 0.7   # takes effect on the next call
    print(detector.timings)                  # {"preprocess": 0.4, "inference": 5.1, "postprocess": 0.2}

A cascade spec (``task: cascade``) loads through the same calls: ``Detector.from_spec`` gives a
:class:`~dl_vision.cascade.Cascade`, ``Segmenter.from_spec`` a
:class:`~dl_vision.cascade.CascadeSegmenter` (its instance masks as a class map), both with
this module's interface.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

import numpy as np

from dl_vision.backends import Backend, create_backend
from dl_vision.decoders import DecodeOptions, Decoder, create_decoder
from dl_vision.errors import ConfigError, ModelError
from dl_vision.geometry import ImageTransform
from dl_vision.preprocess import Preprocessor
from dl_vision.spec import CascadeSpec, ModelSpec, load_spec
from dl_vision.structures import Detections, KeypointSchema, LabelTable, Segmentation

SpecLike = Union[str, Path, ModelSpec, CascadeSpec]
_ModelT = TypeVar("_ModelT", bound="_Model")


class _Model:
    """What Detector and Segmenter share: spec, backend, pre-processor, decoder, options, timings.

    Args:
        spec: the validated model spec.
        backend: the loaded model.
        decoder: turns the model's outputs into results.

    Attributes:
        spec: the model spec.
        backend: the runtime holding the model.
        decoder: the output decoder.
        preprocessor: the image-to-tensor step.
        options: thresholds applied on every call; change them freely.
        timings: milliseconds of the last call's stages (``preprocess``,
            ``inference``, ``postprocess``); for a batch, the whole batch's.
    """

    task = ""

    def __init__(self, spec: ModelSpec, backend: Backend, decoder: Decoder) -> None:
        self._check_task(spec)
        if not backend.inputs:
            raise ModelError("%s: the model has no inputs" % spec.source)
        self.spec = spec
        self.backend = backend
        self.decoder = decoder
        self.preprocessor = Preprocessor(spec.input, backend.inputs[0])
        self.options: DecodeOptions = dataclasses.replace(spec.thresholds)
        self.timings: Dict[str, float] = {}

    @classmethod
    def from_spec(cls: Type[_ModelT], spec: SpecLike, **runtime_overrides: Any) -> _ModelT:
        """Load the model a spec names (a cascade's models for a cascade spec: see the module docstring).

        Args:
            spec: a spec name (``"face"``), a YAML path, or a :class:`ModelSpec` / :class:`CascadeSpec`.
            **runtime_overrides: backend options that replace the spec's
                ``runtime`` entries (e.g. ``threads=4``, ``providers=[...]``).

        Raises:
            ConfigError: bad spec, task, decoder or runtime option.
            ModelError: the model file is missing or does not fit the spec.
            AssetError: the default model could not be fetched.
            BackendUnavailableError: the spec's runtime is not installed.
        """
        spec = load_spec(spec)
        if isinstance(spec, CascadeSpec):
            from dl_vision.cascade import Cascade, CascadeSegmenter

            loader = Cascade if cls.task == "detection" else CascadeSegmenter
            return loader.from_spec(spec, **runtime_overrides)  # type: ignore[return-value]
        cls._check_task(spec)  # before loading anything
        runtime = dict(spec.runtime)
        runtime.update(runtime_overrides)
        try:
            decoder = create_decoder(spec.decoder.type, spec.decoder.params, spec.labels)
        except ConfigError as err:
            raise ConfigError("%s: %s" % (spec.source, err)) from err
        backend = create_backend(spec.format, spec.model_path(), **runtime)
        return cls(spec, backend, decoder)

    @classmethod
    def _check_task(cls, spec: ModelSpec) -> None:
        if spec.task != cls.task:
            raise ConfigError(
                "%s: task: %s needs a %s model, found %s" % (spec.source, cls.__name__, cls.task, spec.task)
            )

    @property
    def labels(self) -> LabelTable:
        """``{class_id: name}`` of the model's classes."""
        return self.decoder.labels

    @property
    def keypoint_schema(self) -> Optional[KeypointSchema]:
        """Names and skeleton of the keypoints the decoder gives, when it names them."""
        return getattr(self.decoder, "keypoint_schema", None)

    @property
    def input_size(self) -> Tuple[int, int]:
        """(height, width) of the model input."""
        return self.preprocessor.size

    def _predict(self, images: Sequence[np.ndarray]) -> List[Any]:
        start = time.perf_counter()
        if len(images) == 1:
            tensor, transform = self.preprocessor(images[0])
            transforms: List[ImageTransform] = [transform]
        else:
            tensor, transforms = self.preprocessor.batch(images)
        prepared = time.perf_counter()
        outputs = self.backend.run(tensor)
        inferred = time.perf_counter()
        if len(images) == 1:
            results = [self.decoder.decode(outputs, transforms[0], self.options)]
        else:
            results = [
                self.decoder.decode(_image_outputs(outputs, i, len(images)), t, self.options)
                for i, t in enumerate(transforms)
            ]
        done = time.perf_counter()
        # One assignment, so a reader on another thread never sees a half-updated dict.
        self.timings = {
            "preprocess": (prepared - start) * 1e3,
            "inference": (inferred - prepared) * 1e3,
            "postprocess": (done - inferred) * 1e3,
        }
        return results

    def _predict_many(self, images: Sequence[np.ndarray]) -> List[Any]:
        """One batched run where the model takes a batch, else one run per image (timings summed)."""
        images = list(images)
        if not images:
            return []
        if self.backend.supports_batch or len(images) == 1:
            return self._predict(images)
        results: List[Any] = []
        totals = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        for image in images:
            results.extend(self._predict([image]))
            for stage, ms in self.timings.items():
                totals[stage] += ms
        self.timings = totals
        return results

    def close(self) -> None:
        """Release the backend's resources."""
        self.backend.close()

    def __repr__(self) -> str:
        return "%s(%r, runtime=%s, input=%s)" % (
            type(self).__name__,
            self.spec.name,
            self.backend.runtime,
            self.preprocessor.size,
        )


def _image_outputs(outputs: Dict[str, np.ndarray], index: int, batch: int) -> Dict[str, np.ndarray]:
    """Image ``index``'s slice (batch axis kept, size 1) of a batched run's outputs."""
    sliced = {}
    for name, array in outputs.items():
        if array.ndim == 0 or array.shape[0] != batch:
            raise ModelError(
                "output %r: expected a batch axis of %d (one per image), found shape %s" % (name, batch, array.shape)
            )
        sliced[name] = array[index : index + 1]
    return sliced


class Detector(_Model):
    """An object detector: BGR image in, :class:`Detections` in its pixels out.

    Build it with :meth:`from_spec`. Images may be (H, W, 3) BGR, (H, W, 4)
    BGRA or (H, W) mono, uint8.
    """

    task = "detection"

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one image.

        Raises:
            ImageConversionError: the image is not a uint8 mono/BGR/BGRA array.
            ModelError: the model's outputs do not fit the decoder.
        """
        return self._predict([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Detect objects in several images (any sizes), batched when the model allows it."""
        return self._predict_many(images)


class Segmenter(_Model):
    """A semantic segmenter: BGR image in, :class:`Segmentation` of its size out.

    Build it with :meth:`from_spec`. ``options.mask_threshold`` is the
    foreground probability of single-channel (sigmoid) models.
    """

    task = "segmentation"

    def __call__(self, image: np.ndarray) -> Segmentation:
        """Segment one image.

        Raises:
            ImageConversionError: the image is not a uint8 mono/BGR/BGRA array.
            ModelError: the model's outputs do not fit the decoder.
        """
        return self._predict([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Segmentation]:
        """Segment several images (any sizes), batched when the model allows it."""
        return self._predict_many(images)
