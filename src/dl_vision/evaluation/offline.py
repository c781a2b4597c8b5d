"""Offline evaluation: read a bag with rosbags (no ROS master), predict every frame, score it.

Predictions come either from a model run here (:class:`~dl_vision.pipeline.Detector` or
``Segmenter``, fed in batches through ``predict_batch``) or from outputs already recorded in a bag
(what the live evaluation records from the running nodes), matched to frames by header stamp.
Frames stream through: the bag is read chunk by chunk, ground-truth topics are paired with their
frames in a small window, and the metric accumulators keep only annotations and pixel counts, so
memory stays flat however long the bag is.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import (
    DETECTION_ARRAY,
    IMAGE,
    IMAGE_TYPES,
    BagReader,
    Frame,
    class_map_from_image,
    detections_from_message,
    image_to_bgr,
    stamp_to_ns,
)
from dl_vision.evaluation.coco_metrics import CocoAccumulator
from dl_vision.evaluation.confusion import ConfusionAccumulator
from dl_vision.evaluation.ground_truth import CocoGroundTruth, FrameTruth
from dl_vision.evaluation.segmentation_metrics import SegmentationAccumulator
from dl_vision.structures import Detections, LabelTable, Segmentation

LOG = logging.getLogger(__name__)

#: Frames waiting for their ground-truth message before they count as unlabelled.
PAIRING_WINDOW = 256


class GroundTruthSource:
    """Where the ground truth comes from: a COCO file and/or topics of the evaluated bag.

    Args:
        coco_json: COCO annotation file keyed to frames (see :mod:`dl_vision.evaluation.ground_truth`).
        detections_topic: ``dl_vision/DetectionArray`` ground-truth topic in the bag.
        class_map_topic: mono8 class-map ground-truth topic in the bag.
    """

    def __init__(
        self, coco_json=None, detections_topic: Optional[str] = None, class_map_topic: Optional[str] = None
    ) -> None:
        if not (coco_json or detections_topic or class_map_topic):
            raise EvaluationError("ground truth: expected a COCO JSON file or a ground-truth topic, found neither")
        self.coco_json = coco_json
        self.detections_topic = detections_topic
        self.class_map_topic = class_map_topic

    @property
    def topics(self) -> List[str]:
        """Ground-truth topics to read from the bag."""
        return [t for t in (self.detections_topic, self.class_map_topic) if t]


class Evaluation:
    """Accumulates one evaluation run: metrics, frame counts and throughput.

    Args:
        class_names: evaluated detection classes (predictions of other classes are ignored);
            ``None`` when there is no detection ground truth.
        seg_labels: ``{id: name}`` of the segmenter's classes; ``None`` without class-map truth.
        score_threshold: operating threshold for the confusion matrix and P/R/F1.
        iou_threshold: IoU a prediction needs to match a ground-truth box at the operating point.
    """

    def __init__(
        self,
        class_names: Optional[Sequence[str]],
        seg_labels: Optional[LabelTable],
        score_threshold: float,
        iou_threshold: float = 0.5,
    ) -> None:
        self.class_names = list(class_names) if class_names else None
        self.class_index = {n: i for i, n in enumerate(self.class_names or [])}
        self.coco: Optional[CocoAccumulator] = None
        self.confusion = ConfusionAccumulator(self.class_names, iou_threshold, score_threshold) if class_names else None
        self.segmentation = None
        if seg_labels is not None:
            self.segmentation = SegmentationAccumulator(max(seg_labels) + 1, seg_labels)
        self.counts = {"frames": 0, "evaluated": 0, "unlabelled": 0, "without_prediction": 0, "ignored_predictions": 0}
        self.warnings: List[str] = []

    def add(
        self, truth: FrameTruth, width: int, height: int, dets: Optional[Detections], seg: Optional[Segmentation]
    ) -> None:
        """Score one frame's predictions against its truth."""
        self.counts["evaluated"] += 1
        if self.class_names is not None and dets is not None:
            self._add_detections(truth, width, height, dets)
        if self.segmentation is not None and truth.class_map is not None and seg is not None:
            self.segmentation.add(truth.class_map, seg.class_map)

    def _add_detections(self, truth: FrameTruth, width: int, height: int, dets: Detections) -> None:
        names = dets.class_names
        keep = np.array([n in self.class_index for n in names], bool).reshape(-1)
        self.counts["ignored_predictions"] += int((~keep).sum())
        dets = dets[keep]
        pred_classes = np.array([self.class_index[n] for n in dets.class_names], np.int64)
        unknown = [n for n in truth.class_names if n not in self.class_index]
        if unknown:
            raise EvaluationError(
                "ground truth: class %r is not among the evaluated classes %s" % (unknown[0], self.class_names)
            )
        gt_classes = np.array([self.class_index[n] for n in truth.class_names], np.int64)
        if self.coco is None:
            use_masks = truth.masks is not None and dets.masks is not None
            self.coco = CocoAccumulator(self.class_names, masks=use_masks)
        pred_masks = dets.masks
        if self.coco.masks and pred_masks is None:
            pred_masks = np.zeros((0, height, width), bool)
        self.coco.add(
            width,
            height,
            truth.boxes,
            gt_classes,
            dets.xyxy,
            pred_classes,
            dets.score,
            gt_masks=truth.masks if self.coco.masks else None,
            pred_masks=pred_masks if self.coco.masks else None,
            gt_iscrowd=truth.iscrowd,
        )
        crowd = truth.iscrowd
        self.confusion.add(truth.boxes[~crowd], gt_classes[~crowd], dets.xyxy, pred_classes, dets.score)

    def result(self) -> Dict[str, Any]:
        """Metrics and counts as a JSON-ready dict.

        Raises:
            EvaluationError: no frame had both ground truth and a prediction.
        """
        if self.counts["evaluated"] == 0:
            raise EvaluationError(
                "evaluation: no frame had both ground truth and a prediction (%d frames read, %d unlabelled, "
                "%d without prediction)"
                % (self.counts["frames"], self.counts["unlabelled"], self.counts["without_prediction"])
            )
        out: Dict[str, Any] = {"frames": dict(self.counts), "warnings": list(self.warnings)}
        if self.coco is not None:
            out["detection"] = self.coco.result()
            out["detection"]["confusion"] = self.confusion.result()
        if self.segmentation is not None and self.segmentation.frames:
            out["segmentation"] = self.segmentation.result()
        if "detection" not in out and "segmentation" not in out:
            raise EvaluationError(
                "evaluation: the ground truth has nothing the predictions can be scored on "
                "(detections need boxes, segmentation needs class maps)"
            )
        return out

    def warn(self, message: str) -> None:
        """Record a warning in the report and log it."""
        LOG.warning(message)
        self.warnings.append(message)


def paired_frames(
    reader: BagReader,
    image_topic: str,
    truth: GroundTruthSource,
    coco: Optional[CocoGroundTruth],
    evaluation: Evaluation,
    decode: bool = True,
) -> Iterator[Tuple[Frame, FrameTruth]]:
    """Frames of ``image_topic`` with their ground truth, in bag order.

    Ground-truth messages are matched by header stamp within :data:`PAIRING_WINDOW` frames;
    frames that find no truth are counted as unlabelled in ``evaluation``.

    Args:
        decode: decode pixels (otherwise ``Frame.image`` is an empty (H, W, 0) array of the
            frame's size, enough when predictions come from a recording).
    """
    reader.check_topic(image_topic, IMAGE_TYPES)
    if truth.detections_topic:
        reader.check_topic(truth.detections_topic, (DETECTION_ARRAY,))
    if truth.class_map_topic:
        reader.check_topic(truth.class_map_topic, (IMAGE,))
    pending: "OrderedDict[int, Dict[str, Any]]" = OrderedDict()
    wanted = set(truth.topics)
    index = 0

    def complete(entry: Dict[str, Any]) -> bool:
        return "frame" in entry and wanted.issubset(entry)

    def emit(entry: Dict[str, Any]) -> Optional[Tuple[Frame, FrameTruth]]:
        frame = entry["frame"]
        evaluation.counts["frames"] += 1
        result = coco.lookup(frame) if coco is not None else None
        if truth.topics and wanted.issubset(entry):
            result = result or FrameTruth()
            if truth.detections_topic:
                gt = detections_from_message(entry[truth.detections_topic])
                result.boxes, result.class_names = gt.xyxy.astype(np.float64), gt.class_names
                result.iscrowd, result.masks = np.zeros(len(gt), bool), gt.masks
            if truth.class_map_topic:
                result.class_map = class_map_from_image(entry[truth.class_map_topic])
        if result is None:
            evaluation.counts["unlabelled"] += 1
            return None
        return frame, result

    for topic, bag_time, msg in reader.messages([image_topic] + truth.topics):
        stamp = stamp_to_ns(msg.header.stamp)
        entry = pending.setdefault(stamp, {})
        if topic == image_topic:
            if decode or not hasattr(msg, "height"):  # a CompressedImage's size is known only decoded
                image = image_to_bgr(msg)
            else:
                image = np.zeros((int(msg.height), int(msg.width), 0), np.uint8)
            entry["frame"] = Frame(index, stamp, bag_time, msg.header.frame_id, image)
            index += 1
        else:
            entry[topic] = msg
        if complete(entry):
            del pending[stamp]
            paired = emit(entry)
            if paired:
                yield paired
        while len(pending) > PAIRING_WINDOW:
            _, old = pending.popitem(last=False)
            if "frame" in old:
                paired = emit(old)
                if paired:
                    yield paired
    for entry in pending.values():
        if "frame" in entry:
            paired = emit(entry)
            if paired:
                yield paired


def evaluate_bag(
    bag,
    image_topic: str,
    truth: GroundTruthSource,
    detector: Any = None,
    segmenter: Any = None,
    recorded: Optional[Dict[int, Tuple[Optional[Detections], Optional[Segmentation]]]] = None,
    class_names: Optional[Sequence[str]] = None,
    seg_labels: Optional[LabelTable] = None,
    score_threshold: Optional[float] = None,
    iou_threshold: float = 0.5,
    batch_size: int = 8,
    progress: Optional[bool] = None,
) -> Dict[str, Any]:
    """Score a detector and/or segmenter on every labelled frame of a bag.

    Args:
        bag: path of the ROS 1 bag.
        image_topic: ``sensor_msgs/Image`` or ``CompressedImage`` topic to evaluate.
        truth: the ground truth.
        detector, segmenter: models (``dl_vision.pipeline`` objects) run here, or ``None``.
        recorded: instead of models, predictions already made, ``{header stamp ns: (Detections,
            Segmentation)}``; frames missing from it are counted in ``frames.without_prediction``.
        class_names: evaluated detection classes (default: the COCO file's categories, else the
            detector's labels).
        seg_labels: segmentation classes (default: the segmenter's labels).
        score_threshold: operating threshold of the confusion matrix and P/R/F1 (default: the
            detector's current ``options.score_threshold``, else 0.5).
        iou_threshold: IoU of a match at the operating point.
        batch_size: frames per ``predict_batch`` call.
        progress: show a tqdm bar (default: when stderr is a terminal).

    Returns:
        The report dict (see :mod:`dl_vision.evaluation.report`).

    Raises:
        EvaluationError: missing topic, empty bag, ground truth that matches no frame, nothing to score.
    """
    if detector is None and segmenter is None and recorded is None:
        raise EvaluationError("evaluation: expected a detector, a segmenter or recorded predictions, found none")
    coco = CocoGroundTruth(truth.coco_json, image_topic) if truth.coco_json else None
    if class_names is None and (coco is not None or truth.detections_topic):
        class_names = coco.class_names if coco is not None else None
        if class_names is None and detector is not None:
            class_names = [detector.labels[k] for k in sorted(detector.labels)]
        if class_names is None:
            class_names = _truth_class_names(bag, truth.detections_topic)
    if seg_labels is None and truth.class_map_topic and segmenter is not None:
        seg_labels = dict(segmenter.labels)
    if truth.class_map_topic and seg_labels is None:
        raise EvaluationError("evaluation: class-map ground truth needs the segmenter's labels, found none")
    if score_threshold is None:
        score_threshold = float(detector.options.score_threshold) if detector is not None else 0.5
    evaluation = Evaluation(class_names, seg_labels, score_threshold, iou_threshold)
    timing = {"model_s": 0.0, "stage_ms": {}}
    started = time.perf_counter()
    with BagReader(bag) as reader:
        total = reader.count(image_topic)
        show = sys.stderr.isatty() if progress is None else progress
        with tqdm(total=total, unit="frame", disable=not show, desc="evaluate") as bar:
            frames = paired_frames(reader, image_topic, truth, coco, evaluation, decode=recorded is None)
            for batch in _batches(frames, batch_size if recorded is None else 1):
                if recorded is None:
                    predictions = _predict(batch, detector, segmenter, timing)
                else:
                    predictions = [recorded.get(frame.stamp_ns) for frame, _ in batch]
                for (frame, frame_truth), predicted in zip(batch, predictions):
                    if predicted is None:
                        evaluation.counts["without_prediction"] += 1
                        continue
                    height, width = frame.image.shape[:2]
                    evaluation.add(frame_truth, width, height, predicted[0], predicted[1])
                bar.n = evaluation.counts["frames"]
                bar.update(0)
    elapsed = time.perf_counter() - started
    if coco is not None:
        if not coco.matched_images:
            raise EvaluationError(
                "ground truth %s: none of its %d images matches a frame of %s in %s "
                "(by ros_stamp_ns or frame_index)" % (coco.path, coco.num_images, image_topic, bag)
            )
        if coco.unmatched():
            evaluation.warn(
                "ground truth %s: %d of %d labelled images match no frame of %s"
                % (coco.path, coco.unmatched(), coco.num_images, image_topic)
            )
    if evaluation.counts["unlabelled"]:
        evaluation.warn(
            "%d of %d frames have no ground truth and were not scored"
            % (evaluation.counts["unlabelled"], evaluation.counts["frames"])
        )
    report = evaluation.result()
    rate = evaluation.counts["frames"] / elapsed if elapsed else None
    report["throughput"] = {"wall_s": elapsed, "frames_per_s": rate}
    if recorded is None:
        report["throughput"]["model_s"] = timing["model_s"]
        report["throughput"]["model_frames_per_s"] = (
            evaluation.counts["evaluated"] / timing["model_s"] if timing["model_s"] else None
        )
        report["throughput"]["stage_ms_mean"] = {
            k: v / max(evaluation.counts["evaluated"], 1) for k, v in timing["stage_ms"].items()
        }
    report["source"] = {
        "bag": str(Path(bag)),
        "image_topic": image_topic,
        "ground_truth": str(truth.coco_json) if truth.coco_json else truth.topics,
        "score_threshold": score_threshold,
        "iou_threshold": iou_threshold,
        "batch_size": batch_size if recorded is None else None,
    }
    return report


def _batches(items: Iterator[Any], size: int) -> Iterator[List[Any]]:
    batch: List[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _predict(
    batch: List[Tuple[Frame, FrameTruth]], detector: Any, segmenter: Any, timing: Dict[str, Any]
) -> List[Tuple[Optional[Detections], Optional[Segmentation]]]:
    images = [frame.image for frame, _ in batch]
    start = time.perf_counter()
    dets: List[Optional[Detections]] = [None] * len(images)
    segs: List[Optional[Segmentation]] = [None] * len(images)
    for model, out in ((detector, dets), (segmenter, segs)):
        if model is None:
            continue
        out[:] = model.predict_batch(images)
        for stage, ms in (getattr(model, "timings", None) or {}).items():
            timing["stage_ms"][stage] = timing["stage_ms"].get(stage, 0.0) + float(ms)
    timing["model_s"] += time.perf_counter() - start
    return list(zip(dets, segs))


def _truth_class_names(bag, topic: str) -> List[str]:
    """Class names present on a ground-truth ``DetectionArray`` topic (a first pass of small messages)."""
    names = set()
    with BagReader(bag) as reader:
        reader.check_topic(topic, (DETECTION_ARRAY,))
        for _, _, msg in reader.messages([topic]):
            names.update(str(d.class_name) for d in msg.detections)
    if not names:
        raise EvaluationError("ground truth topic %s holds no object; AP is undefined" % topic)
    return sorted(names)


def load_recorded(
    bag,
    detections_topic: Optional[str] = None,
    class_map_topic: Optional[str] = None,
    labels: Optional[LabelTable] = None,
) -> Dict[int, Tuple[Optional[Detections], Optional[Segmentation]]]:
    """Recorded model outputs of a bag, ``{input header stamp ns: (Detections, Segmentation)}``.

    Raises:
        EvaluationError: a topic is missing or empty.
    """
    out: Dict[int, Tuple[Optional[Detections], Optional[Segmentation]]] = {}
    topics = [t for t in (detections_topic, class_map_topic) if t]
    with BagReader(bag) as reader:
        if detections_topic:
            reader.check_topic(detections_topic, (DETECTION_ARRAY,))
        if class_map_topic:
            reader.check_topic(class_map_topic, (IMAGE,))
        for topic, _, msg in reader.messages(topics):
            stamp = stamp_to_ns(msg.header.stamp)
            dets, seg = out.get(stamp, (None, None))
            if topic == detections_topic:
                dets = detections_from_message(msg, labels)
            else:
                seg = Segmentation(class_map_from_image(msg), labels or {})
            out[stamp] = (dets, seg)
    return out
