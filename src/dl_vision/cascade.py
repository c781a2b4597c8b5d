"""Two-stage models: a detector, then a second model on each chosen detection's crop.

A cascade spec (``task: cascade``, see :class:`~dl_vision.spec.CascadeSpec`) names a detection
spec and second stages. Each second stage takes the first stage's detections of its classes (the
largest ``max_per_frame`` of a frame), crops each box with a margin (grown to a square where the
model wants one; parts outside the image are black), runs its model on all crops of the batch
at once (one run where the model takes a batch), maps the result back into image pixels and
attaches it to that detection:

* ``keypoints``: the crop's best detection's keypoints and their scores (MoveNet on a person
  crop: multi-person pose);
* ``mask``: the crop's pixels of the detection's class (or of any non-background class) inside
  the detection's box: an instance mask (the selfie segmenter on a person crop).

The result is the first stage's :class:`~dl_vision.structures.Detections`, every class kept, with
``keypoints``/``keypoint_scores`` (NaN and 0 for detections not refined: other classes, or over
the cap) and ``masks`` (empty for detections not refined)::

    pose = Detector.from_spec("person_pose")     # a Cascade: the Detector interface
    people = pose(image_bgr)                     # Detections: persons with 17 keypoints each
    pose.timings   # {"preprocess": .., "inference": .., "postprocess": .., "movenet/crop": .., ...}

:class:`CascadeSegmenter` turns a cascade's instance masks into a class map, so a cascade with a
mask stage also serves where a segmenter is expected (``Segmenter.from_spec("person_masks")``).
"""

from __future__ import annotations

import math
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from dl_vision.decoders import DecodeOptions
from dl_vision.errors import ConfigError
from dl_vision.spec import CascadeSpec, SecondStageSpec, load_spec
from dl_vision.structures import Detections, KeypointSchema, LabelTable, Segmentation

#: An integer crop window ``(x0, y0, x1, y1)`` in image pixels (exclusive ends; may leave the image).
Window = Tuple[int, int, int, int]


def crop_window(box: np.ndarray, margin: float, square: bool) -> Window:
    """The crop of one ``x_min, y_min, x_max, y_max`` box, grown by ``margin`` of its size on each side.

    Args:
        box: (4,) float pixels.
        margin: fraction of the box's width (height) added left and right (top and bottom).
        square: grow the shorter side to the longer one, around the box's centre.

    Returns:
        Integer ``(x0, y0, x1, y1)`` with at least one pixel per side; it may extend past the image.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    width = max(x1 - x0, 1.0) * (1.0 + 2.0 * margin)
    height = max(y1 - y0, 1.0) * (1.0 + 2.0 * margin)
    if square:
        width = height = max(width, height)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = int(math.floor(cx - width / 2.0)), int(math.floor(cy - height / 2.0))
    return left, top, left + max(int(round(width)), 1), top + max(int(round(height)), 1)


def extract_crop(image: np.ndarray, window: Window) -> np.ndarray:
    """The pixels of ``window`` (a copy), black where it leaves the image. (h, w, C) uint8 like ``image``."""
    height, width = image.shape[:2]
    x0, y0, x1, y1 = window
    inside = image[max(y0, 0) : min(y1, height), max(x0, 0) : min(x1, width)]
    pads = (max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0))
    if inside.size == 0:  # a window entirely outside the image
        return np.zeros((y1 - y0, x1 - x0) + image.shape[2:], image.dtype)
    if not any(pads):
        return inside.copy()
    return cv2.copyMakeBorder(inside, *pads, cv2.BORDER_CONSTANT, value=0)


def paste_mask(
    crop_mask: np.ndarray,
    window: Window,
    box: np.ndarray,
    image_size: Tuple[int, int],
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """A crop's (h, w) bool mask placed in an (H, W) image mask, kept inside ``box`` (rounded outward).

    ``out``: an (H, W) bool array to overwrite instead of allocating one.
    """
    height, width = image_size
    x0, y0, x1, y1 = window
    bx0, by0 = max(int(math.floor(box[0])), x0, 0), max(int(math.floor(box[1])), y0, 0)
    bx1, by1 = min(int(math.ceil(box[2])), x1, width), min(int(math.ceil(box[3])), y1, height)
    if out is None:
        out = np.zeros((height, width), bool)
    else:
        out[:] = False
    if bx1 > bx0 and by1 > by0:
        out[by0:by1, bx0:bx1] = crop_mask[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0]
    return out


class _Stage:
    """A second stage: its spec and its loaded model."""

    def __init__(self, spec: SecondStageSpec, model: Any, key: str) -> None:
        self.spec = spec
        self.model = model
        self.key = key  # the prefix of its timings
        if spec.score is not None:
            model.options.score_threshold = spec.score

    def selected(self, detections: Detections) -> np.ndarray:
        """Indices of the detections this stage runs on: its classes, the largest boxes first, capped."""
        wanted = np.isin(np.asarray(detections.class_names, dtype=object), self.spec.classes)
        chosen = np.flatnonzero(wanted)
        wh = detections.xyxy[chosen, 2:] - detections.xyxy[chosen, :2]
        order = np.argsort(-(wh[:, 0] * wh[:, 1]), kind="stable")
        return chosen[order[: self.spec.max_per_frame]]


class Cascade:
    """A detector followed by second models on its detections' crops (the :class:`Detector` interface).

    Build it with :meth:`from_spec` (or ``Detector.from_spec`` of a cascade spec).

    Attributes:
        spec: the cascade spec.
        detector: the first stage.
        stages: the second stages, in spec order.
        timings: milliseconds of the last call's stages: the first stage's ``preprocess``,
            ``inference``, ``postprocess``, and per second stage ``<model>/crop``,
            ``<model>/preprocess``, ``<model>/inference``, ``<model>/postprocess`` (all its crops)
            and ``<model>/attach`` (mapping results back).
    """

    task = "detection"  # what it gives, as Detector.task

    def __init__(self, spec: CascadeSpec, detector: Any, stages: Sequence[Tuple[SecondStageSpec, Any]]) -> None:
        self.spec = spec
        self.detector = detector
        self.stages: List[_Stage] = []
        for stage_spec, model in stages:
            key = model.spec.name
            if any(stage.key == key for stage in self.stages):
                key = "%s_%d" % (key, len(self.stages))
            self.stages.append(_Stage(stage_spec, model, key))
        self.timings: Dict[str, float] = {}

    @classmethod
    def from_spec(cls, spec: Any, **runtime_overrides: Any) -> "Cascade":
        """Load a cascade spec's models.

        Args:
            spec: a cascade spec name, YAML path or :class:`CascadeSpec`.
            **runtime_overrides: backend options given to every stage (e.g. ``threads=2``).

        Raises:
            ConfigError: the spec is not a cascade, or a stage's spec is bad.
            ModelError, AssetError, BackendUnavailableError: a model cannot load.
        """
        from dl_vision.pipeline import Detector, Segmenter  # the pipeline imports this module

        spec = load_spec(spec)
        if not isinstance(spec, CascadeSpec):
            raise ConfigError("%s: expected a cascade (task: cascade), found task %s" % (spec.source, spec.task))
        detector = Detector.from_spec(spec.detector, **runtime_overrides)
        stages = [
            (
                stage,
                (Detector if stage.attach == "keypoints" else Segmenter).from_spec(stage.model, **runtime_overrides),
            )
            for stage in spec.second_stages
        ]
        return cls(spec, detector, stages)

    @property
    def options(self) -> DecodeOptions:
        """The first stage's thresholds (score, NMS, cap): what a node's live settings change."""
        return self.detector.options

    @property
    def labels(self) -> LabelTable:
        """``{class_id: name}`` of the first stage."""
        return self.detector.labels

    @property
    def backend(self) -> Any:
        """The first stage's backend (whether frames batch, its runtime and provider)."""
        return self.detector.backend

    @property
    def keypoint_schema(self) -> Optional[KeypointSchema]:
        """Names and skeleton of the attached keypoints, when the keypoint model names them."""
        for stage in self.stages:
            if stage.spec.attach == "keypoints":
                return stage.model.keypoint_schema
        return None

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect objects in one BGR image and refine the chosen ones (see the module docstring).

        Raises:
            ImageConversionError: the image is not a uint8 mono/BGR/BGRA array.
            ModelError: a model's outputs do not fit its decoder.
        """
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Detections]:
        """Run the cascade on several images; each second stage runs once on all their crops."""
        images = list(images)
        found = self.detector.predict_batch(images)
        timings = dict(self.detector.timings)
        for stage in self.stages:
            found = self._refine(stage, images, found, timings)
        self.timings = timings
        return found

    def _refine(
        self, stage: _Stage, images: List[np.ndarray], found: List[Detections], timings: Dict[str, float]
    ) -> List[Detections]:
        """Run one second stage on the chosen detections of every image; record its timings."""
        start = time.perf_counter()
        jobs = []  # (image index, detection index, window)
        crops = []
        for i, (image, dets) in enumerate(zip(images, found)):
            for d in stage.selected(dets):
                window = crop_window(dets.xyxy[d], stage.spec.margin, stage.spec.square)
                jobs.append((i, int(d), window))
                crops.append(extract_crop(image, window))
        cropped = time.perf_counter()
        results = stage.model.predict_batch(crops) if crops else []
        model_timings = stage.model.timings if crops else {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
        predicted = time.perf_counter()
        by_image: List[List[Tuple[int, Window, Any]]] = [[] for _ in images]
        for (i, d, window), result in zip(jobs, results):
            by_image[i].append((d, window, result))
        attach = self._attach_keypoints if stage.spec.attach == "keypoints" else self._attach_masks
        refined = [attach(stage, dets, image.shape[:2], done) for image, dets, done in zip(images, found, by_image)]
        timings["%s/crop" % stage.key] = (cropped - start) * 1e3
        for name, ms in model_timings.items():
            timings["%s/%s" % (stage.key, name)] = ms
        timings["%s/attach" % stage.key] = (time.perf_counter() - predicted) * 1e3
        return refined

    @staticmethod
    def _attach_keypoints(
        stage: _Stage, dets: Detections, image_size: Tuple[int, int], done: List[Tuple[int, Window, Detections]]
    ) -> Detections:
        schema = stage.model.keypoint_schema
        count = len(schema.names) if schema is not None else None
        for _, _, pose in done:
            if pose.keypoints is not None:
                count = pose.keypoints.shape[1]
        if count is None:  # a model that names no keypoints gave none this time
            return dets
        keypoints = np.full((len(dets), count, 2), np.nan, np.float32)
        scores = np.zeros((len(dets), count), np.float32)
        limits = np.array(image_size[::-1], np.float32)  # (width, height)
        for d, window, pose in done:
            if not len(pose) or pose.keypoints is None:
                continue
            best = int(np.argmax(pose.score))
            # A crop may reach past the image (black there): keypoints stay in the image, as decoders keep them.
            keypoints[d] = np.clip(pose.keypoints[best] + np.array(window[:2], np.float32), 0, limits)
            scores[d] = 1.0 if pose.keypoint_scores is None else pose.keypoint_scores[best]
        return Detections(dets.xyxy, dets.score, dets.class_id, dets.labels, dets.masks, keypoints, scores, schema)

    @staticmethod
    def _attach_masks(
        stage: _Stage, dets: Detections, image_size: Tuple[int, int], done: List[Tuple[int, Window, Segmentation]]
    ) -> Detections:
        if dets.masks is None:
            masks = np.zeros((len(dets),) + tuple(image_size), bool)
        else:
            masks = dets.masks.copy() if done else dets.masks
        names = dets.class_names
        for d, window, segmentation in done:
            wanted = [k for k, name in segmentation.labels.items() if name == names[d] and 0 <= k < 256]
            inside = np.zeros(256, bool)  # class id -> inside the instance; a lookup is 500x faster than np.isin
            inside[wanted or slice(1, None)] = True
            paste_mask(inside[segmentation.class_map], window, dets.xyxy[d], image_size, out=masks[d])
        return Detections(
            dets.xyxy,
            dets.score,
            dets.class_id,
            dets.labels,
            masks,
            dets.keypoints,
            dets.keypoint_scores,
            dets.keypoint_schema,
        )

    def close(self) -> None:
        """Release every stage's resources."""
        self.detector.close()
        for stage in self.stages:
            stage.model.close()

    def __repr__(self) -> str:
        return "Cascade(%r: %s -> %s)" % (
            self.spec.name,
            self.detector.spec.name,
            ", ".join(
                "%s (%s of %s)" % (s.model.spec.name, s.spec.attach, "/".join(s.spec.classes)) for s in self.stages
            ),
        )


class CascadeSegmenter:
    """A cascade's instance masks as a class map (the :class:`Segmenter` interface).

    Pixel values: 0 background, then one id per class the mask stages refine, in spec order
    (``person_masks``: ``{0: background, 1: person}``, the table of ``person_segmentation``).
    Where instances overlap, the higher-scoring one's class wins.

    Args:
        cascade: a cascade with at least one ``mask`` stage.

    Raises:
        ConfigError: the cascade attaches no masks.
    """

    task = "segmentation"  # what it gives, as Segmenter.task

    def __init__(self, cascade: Cascade) -> None:
        _check_mask_stage(cascade.spec)
        mask_stages = [stage for stage in cascade.stages if stage.spec.attach == "mask"]
        self.cascade = cascade
        names = ["background"]
        for stage in mask_stages:
            names += [name for name in stage.spec.classes if name not in names]
        self._labels: LabelTable = dict(enumerate(names))
        self._ids = {name: i for i, name in enumerate(names)}
        self._mask_model = mask_stages[0].model

    @classmethod
    def from_spec(cls, spec: Any, **runtime_overrides: Any) -> "CascadeSegmenter":
        """Load a cascade spec with a mask stage (see :meth:`Cascade.from_spec`).

        Raises:
            ConfigError: the spec is not a cascade or has no mask stage (checked before loading models).
        """
        spec = load_spec(spec)
        if isinstance(spec, CascadeSpec):
            _check_mask_stage(spec)
        return cls(Cascade.from_spec(spec, **runtime_overrides))

    @property
    def spec(self) -> CascadeSpec:
        """The cascade spec."""
        return self.cascade.spec

    @property
    def labels(self) -> LabelTable:
        """``{0: "background", 1: <first refined class>, ...}``."""
        return self._labels

    @property
    def options(self) -> DecodeOptions:
        """The first mask stage's thresholds (``mask_threshold``: its foreground probability)."""
        return self._mask_model.options

    @property
    def backend(self) -> Any:
        """The first stage's backend."""
        return self.cascade.backend

    @property
    def keypoint_schema(self) -> None:
        """None: a class map has no keypoints."""
        return None

    @property
    def timings(self) -> Dict[str, float]:
        """The cascade's stage timings of the last call."""
        return self.cascade.timings

    def __call__(self, image: np.ndarray) -> Segmentation:
        """The class map of one BGR image."""
        return self.predict_batch([image])[0]

    def predict_batch(self, images: Sequence[np.ndarray]) -> List[Segmentation]:
        """Class maps of several images (see :meth:`Cascade.predict_batch`)."""
        images = list(images)
        return [
            self.class_map(dets, image.shape[:2]) for dets, image in zip(self.cascade.predict_batch(images), images)
        ]

    def class_map(self, dets: Detections, image_size: Tuple[int, int]) -> Segmentation:
        """The class map of the cascade's detections (with their instance masks) on one image."""
        class_map = np.zeros(image_size, np.uint8)
        if dets.masks is not None:
            names = dets.class_names
            for d in np.argsort(dets.score, kind="stable"):  # ascending: the best-scored is painted last
                class_id = self._ids.get(names[d])
                if class_id is not None:
                    class_map[dets.masks[d]] = class_id
        return Segmentation(class_map, self._labels)

    def close(self) -> None:
        """Release the cascade's resources."""
        self.cascade.close()


def _check_mask_stage(spec: CascadeSpec) -> None:
    if not any(stage.attach == "mask" for stage in spec.second_stages):
        raise ConfigError("%s: a segmenter needs a cascade with a mask stage (attach: mask), found none" % spec.source)
