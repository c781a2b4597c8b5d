"""Evaluation reports: the typed :class:`Report`, JSON, Markdown and PNG plots, headline metrics,
comparisons and CI gates.

A report is built in one place (:meth:`dl_vision.evaluation.offline.Evaluation.report`, for a bag
or a fleet, plus :class:`LiveStats` for a live run); the metric sections hold what the accumulators compute
(:mod:`~dl_vision.evaluation.coco_metrics`, :mod:`~dl_vision.evaluation.confusion`,
:mod:`~dl_vision.evaluation.segmentation_metrics`). Plots use matplotlib's Agg backend (no
display needed): PR curves at IoU 0.5 per class, the detection confusion matrix with its
background row/column, and the live latency histogram.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, TypeVar, Union

from dl_vision.errors import EvaluationError

#: Metrics where a smaller value is better (a gate on them is an upper bound).
LOWER_IS_BETTER = ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms", "dropped_fraction")


@dataclass
class FrameCounts:
    """What happened to the frames of the evaluated topic.

    Attributes:
        frames: image messages read.
        evaluated: frames with ground truth and a prediction, scored.
        unlabelled: frames without ground truth (not scored).
        without_prediction: labelled frames the predictions lack (not scored).
        ignored_predictions: predicted objects of classes outside the evaluated ones.
    """

    frames: int = 0
    evaluated: int = 0
    unlabelled: int = 0
    without_prediction: int = 0
    ignored_predictions: int = 0


@dataclass
class Source:
    """What was evaluated, and how.

    Attributes:
        bag: the bag file.
        image_topic: the evaluated image topic.
        ground_truth: the COCO file, or the ground-truth topics of the bag.
        score_threshold: operating threshold of the confusion matrix and P/R/F1.
        iou_threshold: IoU of a match at the operating point.
        batch_size: frames per model run (offline, models run here), else None.
        rate: playback rate factor (live), else None.
        outputs_bag: the recorded outputs (live), else None.
    """

    bag: str
    image_topic: str
    ground_truth: Union[str, List[str]]
    score_threshold: Optional[float]
    iou_threshold: float
    batch_size: Optional[int] = None
    rate: Optional[float] = None
    outputs_bag: Optional[str] = None


@dataclass
class Throughput:
    """Time the evaluation took.

    Attributes:
        wall_s: wall-clock seconds of the whole run.
        frames_per_s: frames read per wall-clock second.
        model_s: seconds inside the models (when they ran here).
        model_frames_per_s: evaluated frames per model second.
        stage_ms_mean: mean milliseconds per frame of each processing stage.
    """

    wall_s: float
    frames_per_s: Optional[float]
    model_s: Optional[float] = None
    model_frames_per_s: Optional[float] = None
    stage_ms_mean: Dict[str, float] = field(default_factory=dict)


@dataclass
class DetectionMetrics:
    """Detection scores (see :meth:`CocoAccumulator.result` and :meth:`ConfusionAccumulator.result`).

    Attributes:
        images, ground_truth_objects, predictions: what COCOeval saw.
        bbox: box metrics (``mAP``, ``AP50``, ``AP75``, ..., ``per_class_ap``, ``pr_curve_iou50``).
        confusion: the confusion matrix, P/R/F1 at the operating point.
        segm: instance-mask metrics, when the ground truth has masks.
    """

    images: int
    ground_truth_objects: int
    predictions: int
    bbox: Dict[str, Any]
    confusion: Dict[str, Any]
    segm: Optional[Dict[str, Any]] = None


@dataclass
class LiveStats:
    """What only a live run shows (see :func:`dl_vision.evaluation.live.live_stats`).

    Attributes:
        expected_frames: frames on the played topic.
        received_frames: images that reached the recorder.
        processed: frames the node answered.
        dropped: received frames without an answer; ``dropped_fraction`` of the received.
        latency_ms: end-to-end latency summary (``n``, ``mean``, ``p50`` ... ``max``).
        latencies_ms: per answered frame.
        output_rate_hz: answers per second from the first input to the last output.
    """

    expected_frames: int
    received_frames: int
    processed: int
    dropped: int
    dropped_fraction: float
    latency_ms: Dict[str, Optional[float]]
    latencies_ms: List[float]
    output_rate_hz: Optional[float]


@dataclass
class Report:
    """The result of one evaluation run; ``to_dict()`` is what ``report.json`` holds.

    Attributes:
        mode: ``offline``, ``live``, or ``fleet`` (pooled over the bags of a fleet run).
        model: the evaluated spec's name.
        source, frames, throughput: see their types.
        warnings: partial matches and other things a reader must know.
        detection: detection scores, when detections were scored.
        segmentation: ``mean_iou``, ``pixel_accuracy``, ``per_class_iou``, ... when class maps were.
        keypoints: ``pck`` per tolerance, ``per_keypoint_pck@0.2`` and ``oks`` (COCO keypoint AP),
            when the ground truth has keypoints (see :class:`KeypointAccumulator`).
        live: live-run statistics.
    """

    mode: str
    model: str
    source: Source
    frames: FrameCounts
    throughput: Throughput
    warnings: List[str] = field(default_factory=list)
    detection: Optional[DetectionMetrics] = None
    segmentation: Optional[Dict[str, Any]] = None
    keypoints: Optional[Dict[str, Any]] = None
    live: Optional[LiveStats] = None

    def to_dict(self) -> Dict[str, Any]:
        """The report as JSON-ready nested dicts (sections that are None are left out)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, data: Any) -> "Report":
        """Rebuild a report from :meth:`to_dict`'s output.

        Raises:
            EvaluationError: a section is missing or has the wrong shape.
        """
        try:
            return _build(cls, data)
        except (KeyError, TypeError, ValueError) as err:
            raise EvaluationError("report: expected the fields of a dl_vision report, found %s" % err) from err


_T = TypeVar("_T")
_SECTIONS = {
    "source": Source,
    "frames": FrameCounts,
    "throughput": Throughput,
    "detection": DetectionMetrics,
    "live": LiveStats,
}


def _build(cls: Type[_T], data: Any) -> _T:
    if not isinstance(data, dict):
        raise TypeError("a mapping for %s, not %s" % (cls.__name__, type(data).__name__))
    names = {f.name for f in dataclasses.fields(cls)}
    values = {k: v for k, v in data.items() if k in names}
    if cls is Report:
        for key, section in _SECTIONS.items():
            if values.get(key) is not None:
                values[key] = _build(section, values[key])
    return cls(**values)


def headline_metrics(report: Report) -> Dict[str, float]:
    """The report's scalar metrics under short names (``mAP``, ``AP50``, ``mIoU``, ``AP/face``,
    ``PCK@0.2``, ``keypoint_AP`` ...).

    Undefined metrics (``None`` in the report) are left out.
    """
    out: Dict[str, Optional[float]] = {}
    det = report.detection
    if det:
        bbox = det.bbox
        out.update({"mAP": bbox["mAP"], "AP50": bbox["AP50"], "AP75": bbox["AP75"], "AR100": bbox["AR100"]})
        for name, ap in bbox["per_class_ap"].items():
            out["AP/" + name] = ap
        if det.segm:
            out.update({"mask_mAP": det.segm["mAP"], "mask_AP50": det.segm["AP50"]})
        conf = det.confusion
        out.update({"precision": conf["precision"], "recall": conf["recall"], "f1": conf["f1"]})
    seg = report.segmentation
    if seg:
        out.update({"mIoU": seg["mean_iou"], "pixel_accuracy": seg["pixel_accuracy"]})
        for name, iou in seg["per_class_iou"].items():
            out["IoU/" + name] = iou
    keypoints = report.keypoints
    if keypoints:
        for alpha, value in keypoints["pck"].items():
            out["PCK@" + alpha] = value
        oks = keypoints["oks"] or {}
        out.update({"keypoint_AP": oks.get("AP"), "keypoint_AP50": oks.get("AP50")})
    out["fps"] = report.throughput.frames_per_s
    live = report.live
    if live:
        for key in ("mean", "p50", "p95", "p99"):
            out["latency_%s_ms" % key] = live.latency_ms.get(key)
        out["dropped_fraction"] = live.dropped_fraction
        out["fps"] = live.output_rate_hz
    return {k: float(v) for k, v in out.items() if v is not None}


def write_report(report: Report, out_dir) -> Dict[str, Path]:
    """Write ``report.json``, ``report.md`` and the PNG plots into ``out_dir``.

    Returns:
        ``{kind: path}`` of the written files.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = {"json": out / "report.json", "markdown": out / "report.md"}
    files["json"].write_text(json.dumps(report.to_dict(), indent=2, sort_keys=True) + "\n")
    files.update(_plots(report, out))
    files["markdown"].write_text(markdown(report, {k: p.name for k, p in files.items() if p.suffix == ".png"}))
    return files


def load_report(path) -> Any:
    """Read a ``report.json`` (or the directory holding one): a :class:`Report`, or a
    :class:`~dl_vision.evaluation.fleet_report.FleetReport` when it is a fleet run's.

    Raises:
        EvaluationError: no such file, not JSON, or not a report.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise EvaluationError("report: expected a report.json at %s (%s)" % (path, err)) from err
    try:
        if isinstance(data, dict) and data.get("kind") == "fleet":
            from dl_vision.evaluation.fleet_report import FleetReport

            return FleetReport.from_dict(data)
        return Report.from_dict(data)
    except EvaluationError as err:
        raise EvaluationError("%s: %s" % (path, err)) from err


def format_value(value: Any) -> str:
    """A metric as a Markdown cell: ``n/a`` for None, four decimals for floats."""
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return "%.4f" % value
    return str(value)


def markdown(report: Report, plots: Optional[Dict[str, str]] = None) -> str:
    """The report as a Markdown document (headline table, per-class tables, confusion matrix, plots)."""
    lines = ["# Evaluation report (%s)" % report.mode, ""]
    lines += [
        "- bag: `%s`, topic `%s`" % (report.source.bag, report.source.image_topic),
        "- model: `%s`" % report.model,
        "- frames: %s" % ", ".join("%s %s" % kv for kv in dataclasses.asdict(report.frames).items()),
        "",
    ]
    lines += ["| metric | value |", "|---|---|"]
    lines += ["| %s | %s |" % (k, format_value(v)) for k, v in headline_metrics(report).items()]
    det = report.detection
    if det:
        conf = det.confusion
        lines += [
            "",
            "## Confusion matrix (score >= %.2f, IoU >= %.2f; rows ground truth, columns predicted)"
            % (conf["score_threshold"], conf["iou_threshold"]),
            "",
        ]
        lines += ["| | " + " | ".join(conf["labels"]) + " |", "|---" * (len(conf["labels"]) + 1) + "|"]
        for label, row in zip(conf["labels"], conf["matrix"]):
            lines.append("| **%s** | %s |" % (label, " | ".join(str(v) for v in row)))
        lines += ["", "| class | AP | AP50 | precision | recall | F1 |", "|---|---|---|---|---|---|"]
        for name, ap in det.bbox["per_class_ap"].items():
            pc = conf["per_class"].get(name, {})
            lines.append(
                "| %s | %s | %s | %s | %s | %s |"
                % (
                    name,
                    format_value(ap),
                    format_value(det.bbox["per_class_ap50"][name]),
                    format_value(pc.get("precision")),
                    format_value(pc.get("recall")),
                    format_value(pc.get("f1")),
                )
            )
    seg = report.segmentation
    if seg:
        lines += [
            "",
            "## Segmentation (%d frames, %d scored pixels)" % (seg["frames"], seg["pixels"]),
            "",
            "| class | IoU |",
            "|---|---|",
        ]
        lines += ["| %s | %s |" % (name, format_value(iou)) for name, iou in seg["per_class_iou"].items()]
    keypoints = report.keypoints
    if keypoints:
        lines += [
            "",
            "## Keypoints (%s: %d objects, %d labelled keypoints; PCK tolerance = alpha x box diagonal)"
            % (keypoints["class"], keypoints["objects"], keypoints["keypoints"]),
            "",
            "| keypoint | PCK@0.2 |",
            "|---|---|",
        ]
        lines += ["| %s | %s |" % (name, format_value(v)) for name, v in keypoints["per_keypoint_pck@0.2"].items()]
    live = report.live
    if live:
        lines += [
            "",
            "## Live run",
            "",
            "- frames: %d received, %d processed, %d dropped (%.1f%%); output rate %s Hz"
            % (
                live.received_frames,
                live.processed,
                live.dropped,
                100 * live.dropped_fraction,
                format_value(live.output_rate_hz),
            ),
            "- end-to-end latency ms: "
            + ", ".join("%s %s" % (k, format_value(v)) for k, v in live.latency_ms.items() if k != "n"),
        ]
    stages = report.throughput.stage_ms_mean
    if stages:
        lines += ["", "Model stages, mean ms per frame: " + ", ".join("%s %.2f" % kv for kv in sorted(stages.items()))]
    if report.warnings:
        lines += ["", "## Warnings", ""] + ["- " + w for w in report.warnings]
    for kind, name in sorted((plots or {}).items()):
        lines += ["", "![%s](%s)" % (kind, name)]
    return "\n".join(lines) + "\n"


def _plots(report: Report, out: Path) -> Dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    files: Dict[str, Path] = {}
    det = report.detection
    if det and det.bbox["pr_curve_iou50"]:
        fig, ax = plt.subplots(figsize=(5, 4))
        for name, curve in det.bbox["pr_curve_iou50"].items():
            label = "%s (AP50 %.3f)" % (name, det.bbox["per_class_ap50"][name])
            ax.plot(curve["recall"], curve["precision"], label=label)
        ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="PR curves, IoU 0.5")
        ax.legend(loc="lower left", fontsize="small")
        files["pr_curves"] = _save(fig, out / "pr_curves.png", plt)
    if det:
        conf = det.confusion
        labels = conf["labels"]
        fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(labels), 1 + 0.6 * len(labels)))
        ax.imshow(conf["matrix"], cmap="Blues")
        for r, row in enumerate(conf["matrix"]):
            for c, value in enumerate(row):
                ax.text(c, r, str(value), ha="center", va="center", fontsize="small")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
        ax.set_yticks(range(len(labels)), labels)
        ax.set(xlabel="predicted", ylabel="ground truth", title="confusion matrix")
        files["confusion_matrix"] = _save(fig, out / "confusion_matrix.png", plt)
    latencies = report.live.latencies_ms if report.live else None
    if latencies:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.hist(latencies, bins=min(50, max(5, len(latencies) // 5)))
        ax.set(xlabel="end-to-end latency (ms)", ylabel="frames", title="live latency")
        files["latency_histogram"] = _save(fig, out / "latency_histogram.png", plt)
    return files


def _save(fig, path: Path, plt) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def compare(baseline: Report, candidate: Report) -> List[Tuple[str, Optional[float], Optional[float], Optional[float]]]:
    """Rows ``(metric, baseline, candidate, candidate - baseline)`` over the union of headline metrics."""
    base, cand = headline_metrics(baseline), headline_metrics(candidate)
    rows = []
    for name in list(base) + [n for n in cand if n not in base]:
        b, c = base.get(name), cand.get(name)
        rows.append((name, b, c, None if b is None or c is None else c - b))
    return rows


def parse_gates(specs: Sequence[str]) -> Dict[str, float]:
    """``["mAP=0.5", "AP50=0.8"]`` -> ``{"mAP": 0.5, "AP50": 0.8}``.

    Raises:
        EvaluationError: an item is not ``metric=number``.
    """
    gates = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        try:
            gates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise EvaluationError("--fail-under: expected metric=number (e.g. mAP=0.5), found %r" % spec)
    return gates


def check_gates(report: Report, gates: Dict[str, float]) -> List[str]:
    """Failed gates as messages; empty when all pass.

    A metric passes when it is at least its value (at most, for latencies and drop fraction).
    A gate on a metric the report does not have fails (a missing number is never a pass).
    """
    metrics = headline_metrics(report)
    failures = []
    for name, limit in gates.items():
        value = metrics.get(name)
        if value is None:
            failures.append("%s: not in the report (have: %s)" % (name, ", ".join(sorted(metrics))))
        elif name in LOWER_IS_BETTER and value > limit:
            failures.append("%s = %.4f is above the limit %.4f" % (name, value, limit))
        elif name not in LOWER_IS_BETTER and value < limit:
            failures.append("%s = %.4f is under the floor %.4f" % (name, value, limit))
    return failures
