"""Fleet evaluation: many bags, each with its own ground truth, scored here or on a Ray cluster,
with the numbers of one pass over the bags.

:func:`evaluate_fleet` checks every bag before a model loads, splits the bags into shards (a bag,
or a bag-time range of a large one), has an :class:`Executor` score the shards
(:class:`LocalExecutor` in this process, :class:`~dl_vision.evaluation.ray_runner.RayExecutor` on a
pool of Ray actors), then computes at the driver, once, each bag's report and the report pooled
over all bags. A bag that cannot be read or scored becomes that bag's error, and the rest is
scored; ``strict`` makes it fatal.

Bags come from paths, folders (every ``*.bag`` below), globs, or a YAML manifest::

    topic: /camera/image_raw            # default for every entry
    bags:
      - bag: site_a/run1.bag            # relative to the manifest
        gt: site_a/run1.gt.json         # COCO JSON keyed to the bag's frames
      - bag: site_b/run7.bag
        gt_topic: /ground_truth/detections
        topic: /front/image_raw
        name: site_b/front              # the bag's row name (default: its path below the common folder)
"""

from __future__ import annotations

import abc
import dataclasses
import glob
import os
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import yaml
from tqdm import tqdm

from dl_vision.errors import DlVisionError, EvaluationError
from dl_vision.evaluation.bag_io import BagReader
from dl_vision.evaluation.fleet_report import BagRow, FleetReport, sort_worst_first
from dl_vision.evaluation.ground_truth import CocoGroundTruth
from dl_vision.evaluation.offline import (
    BagPlan,
    Evaluation,
    GroundTruthSource,
    Scoring,
    Shard,
    ShardResult,
    bag_report,
    check_inputs,
    keypoint_truth,
    plan_bag,
    score_shard,
)
from dl_vision.evaluation.predictions import ModelSettings, PredictionInfo, PredictionSource
from dl_vision.evaluation.report import Report, Source, headline_metrics
from dl_vision.latency import summarize_ms

#: What an executor hands back for a shard: its result, or why it could not be scored.
Outcome = Union[ShardResult, str]


@dataclass
class BagInput:
    """One bag of a fleet run.

    Attributes:
        path: the bag file.
        topic: its image topic.
        truth: its ground truth.
        name: its name in the report.
    """

    path: str
    topic: str
    truth: GroundTruthSource
    name: str


def expand_bag_paths(patterns: Sequence[str]) -> List[Path]:
    """Bag files from paths, folders (every ``*.bag`` below, sorted) and globs, in argument order.

    A path that does not exist is kept (it becomes that bag's error).

    Raises:
        EvaluationError: a folder or glob holds no bag, or a bag is listed twice.
    """
    paths: List[Path] = []
    for pattern in patterns:
        if any(c in pattern for c in "*?["):
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if p.endswith(".bag"))
            if not found:
                raise EvaluationError("--bag %s: expected bags matching the pattern, found none" % pattern)
        elif Path(pattern).is_dir():
            found = sorted(Path(pattern).rglob("*.bag"))
            if not found:
                raise EvaluationError("--bag %s: expected *.bag files in the folder, found none" % pattern)
        else:
            found = [Path(pattern)]
        paths.extend(found)
    seen = set()
    for path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise EvaluationError("--bag: %s is listed twice" % path)
        seen.add(key)
    return paths


def bag_names(paths: Sequence[Path]) -> List[str]:
    """Each bag's path below the bags' common folder (the file name alone for a single bag)."""
    absolute = [os.path.abspath(p) for p in paths]
    if len(absolute) == 1:
        return [os.path.basename(absolute[0])]
    common = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [os.path.relpath(p, common) for p in absolute]


def bag_truth_file(template: str, bag: Path) -> str:
    """The COCO file of ``bag`` from ``--gt``: a file, a folder holding ``<stem>.gt.json``, or a
    pattern with ``{stem}`` (the bag's name without ``.bag``) and ``{dir}`` (its folder)."""
    if "{" in template:
        return template.format(stem=bag.stem, dir=str(bag.parent))
    if Path(template).is_dir():
        return str(Path(template) / (bag.stem + ".gt.json"))
    return template


def bag_inputs(
    patterns: Sequence[str],
    topic: str,
    coco_json: Optional[str] = None,
    detections_topic: Optional[str] = None,
    class_map_topic: Optional[str] = None,
) -> List[BagInput]:
    """The bags named on a command line, each with its ground truth.

    Args:
        patterns: ``--bag`` arguments (files, folders, globs).
        topic: the image topic of every bag.
        coco_json: ``--gt`` (see :func:`bag_truth_file`); a plain file only for a single bag.
        detections_topic, class_map_topic: ground-truth topics, the same in every bag.

    Raises:
        EvaluationError: see :func:`expand_bag_paths`; one COCO file named for several bags.
    """
    paths = expand_bag_paths(patterns)
    if coco_json and len(paths) > 1 and "{" not in coco_json and not Path(coco_json).is_dir():
        raise EvaluationError(
            "--gt %s: expected one ground truth per bag for %d bags: a folder of <bag name>.gt.json files, "
            "a pattern such as '{dir}/{stem}.gt.json', or a --manifest" % (coco_json, len(paths))
        )
    return [
        BagInput(
            str(path),
            topic,
            GroundTruthSource(coco_json and bag_truth_file(coco_json, path), detections_topic, class_map_topic),
            name,
        )
        for path, name in zip(paths, bag_names(paths))
    ]


def read_manifest(path, topic: str) -> List[BagInput]:
    """The bags a YAML manifest lists (see the module's docstring); relative paths are taken from
    the manifest's folder.

    Args:
        path: the manifest.
        topic: the image topic of entries (and of the manifest) that name none.

    Raises:
        EvaluationError: unreadable YAML, an entry without ``bag`` or without ground truth,
            unknown keys, or a name used twice.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise EvaluationError("manifest %s: expected a readable YAML file (%s)" % (path, err)) from err
    entries = data.get("bags") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries:
        raise EvaluationError(
            "manifest %s: expected a non-empty 'bags' list, found %r" % (path, type(entries).__name__)
        )
    default_topic = data.get("topic", topic) if isinstance(data, dict) else topic
    keys = {"bag", "gt", "gt_topic", "gt_class_map_topic", "topic", "name"}

    def local(value: str) -> str:
        return str(path.parent / os.path.expanduser(value))

    paths = [Path(local(e["bag"])) for e in entries if isinstance(e, dict) and "bag" in e]
    names = bag_names(paths) if len(paths) == len(entries) else []
    bags = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "bag" not in entry:
            raise EvaluationError(
                "manifest %s: entry %d: expected a mapping with 'bag', found %r" % (path, i + 1, entry)
            )
        unknown = sorted(set(entry) - keys)
        if unknown:
            raise EvaluationError(
                "manifest %s: entry %d: unknown keys %s (expected %s)" % (path, i + 1, unknown, sorted(keys))
            )
        try:
            truth = GroundTruthSource(
                entry.get("gt") and local(entry["gt"]), entry.get("gt_topic"), entry.get("gt_class_map_topic")
            )
        except EvaluationError as err:
            raise EvaluationError("manifest %s: entry %d (%s): %s" % (path, i + 1, entry["bag"], err)) from err
        bags.append(BagInput(str(paths[i]), entry.get("topic", default_topic), truth, entry.get("name", names[i])))
    seen = set()
    for bag in bags:
        if bag.name in seen:
            raise EvaluationError("manifest %s: the name %r is used twice" % (path, bag.name))
        seen.add(bag.name)
    return bags


class CocoFiles:
    """Parsed COCO ground-truth files by (path, topic), a few kept (a bag's shards come together)."""

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self._parsed: "OrderedDict[Tuple[str, str], CocoGroundTruth]" = OrderedDict()

    def get(self, shard: Shard) -> Optional[CocoGroundTruth]:
        """The shard's COCO ground truth, or None when its truth is in topics only."""
        if not shard.truth.coco_json:
            return None
        key = (str(shard.truth.coco_json), shard.image_topic)
        if key not in self._parsed:
            self._parsed[key] = CocoGroundTruth(shard.truth.coco_json, shard.image_topic)
            while len(self._parsed) > self.size:
                self._parsed.popitem(last=False)
        self._parsed.move_to_end(key)
        return self._parsed[key]


class Executor(abc.ABC):
    """Scores shards somewhere; a context manager that releases its workers on exit."""

    warnings: List[str]

    @abc.abstractmethod
    def start(self, shards: int) -> None:
        """Get ready for about ``shards`` shards: load the models, start the workers."""

    @abc.abstractmethod
    def info(self) -> PredictionInfo:
        """The models' name, batch size, labels and operating threshold (starts the executor)."""

    @abc.abstractmethod
    def run(self, shards: Sequence[Shard]) -> Iterator[Tuple[Shard, Outcome]]:
        """Score the shards; yields each with its result, or with why it failed, as they finish."""

    def describe(self) -> Dict[str, Any]:
        """Where and how the shards ran, for the report."""
        return {}

    @abc.abstractmethod
    def close(self) -> None:
        """Release the workers and their models."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LocalExecutor(Executor):
    """Scores the shards one after the other in this process.

    Args:
        models: the models to load (on first use), or a prediction source already built.
    """

    def __init__(self, models: Union[ModelSettings, PredictionSource]) -> None:
        self._settings = models if isinstance(models, ModelSettings) else None
        self._predictions = None if isinstance(models, ModelSettings) else models
        self._coco = CocoFiles()
        self.warnings = []

    def _source(self) -> PredictionSource:
        if self._predictions is None:
            self._predictions = self._settings.build()
        return self._predictions

    def start(self, shards: int) -> None:
        self._source()

    def info(self) -> PredictionInfo:
        return self._source().info()

    def run(self, shards: Sequence[Shard]) -> Iterator[Tuple[Shard, Outcome]]:
        predictions = self._source()
        for shard in shards:
            try:
                yield shard, score_shard(shard, predictions, self._coco.get(shard))
            except DlVisionError as err:
                yield shard, str(err)

    def describe(self) -> Dict[str, Any]:
        return {"runner": "local"}

    def close(self) -> None:
        if self._settings is not None:
            self._predictions = None


@dataclass
class FleetRun:
    """What :func:`evaluate_fleet` returns.

    Attributes:
        report: the fleet report (pooled metrics, rows worst first).
        bag_reports: ``{bag name: Report}`` of the bags that were scored.
    """

    report: FleetReport
    bag_reports: Dict[str, Report]


def evaluate_fleet(
    bags: Sequence[BagInput],
    executor: Executor,
    scoring: Optional[Scoring] = None,
    shard_frames: Optional[int] = None,
    strict: bool = False,
    progress: Optional[bool] = None,
    allow_partial: bool = False,
) -> FleetRun:
    """Score many bags: every bag's report, the report pooled over all of them, rows worst first.

    Args:
        bags: the bags, each with its topic and ground truth.
        executor: where the shards are scored (its models load after the bags are checked).
        scoring: classes and thresholds, the same for every bag.
        shard_frames: most frames per shard (bags are split into bag-time ranges); None: a shard per bag.
        strict: a bag that cannot be read or scored stops the run (else it is that bag's error).
        progress: show a tqdm bar of frames over all shards (default: when stderr is a terminal).
        allow_partial: score the readable frames of damaged bags (each in one shard; the bag's
            report says what was lost) instead of reporting them as errors.

    Raises:
        EvaluationError: ``strict`` and a bag failed (naming it), no bag passed the checks, or the
            executor could not start.
    """
    scoring = scoring or Scoring()
    started = time.perf_counter()
    errors: Dict[int, str] = {}

    def fail(index: int, message: str) -> None:
        if strict:
            raise EvaluationError("bag %s: %s" % (bags[index].name, message))
        errors.setdefault(index, message)

    frames: Dict[int, int] = {}
    for i, bag in enumerate(bags):
        try:
            check_inputs(bag.path, bag.topic, bag.truth, allow_partial)
            with BagReader(bag.path, allow_partial) as reader:
                frames[i] = reader.count(bag.topic)
        except DlVisionError as err:
            fail(i, str(err))
    if not frames:
        raise EvaluationError("fleet: none of the %d bags can be read; %s: %s" % (len(bags), bags[0].name, errors[0]))
    executor.start(sum(-(-n // shard_frames) if shard_frames else 1 for n in frames.values()))
    info = executor.info()
    plans: Dict[int, BagPlan] = {}
    for i, bag in enumerate(bags):
        if i in errors:
            continue
        try:
            plans[i] = plan_bag(bag.path, bag.topic, bag.truth, info, scoring, i, shard_frames, allow_partial)
        except DlVisionError as err:
            fail(i, str(err))
    shards = [shard for plan in plans.values() for shard in plan.shards]
    results: Dict[int, List[ShardResult]] = {i: [] for i in plans}
    show = sys.stderr.isatty() if progress is None else progress
    with tqdm(total=sum(s.frames for s in shards), unit="frame", disable=not show, desc="evaluate") as bar:
        for shard, outcome in executor.run(shards):
            if isinstance(outcome, str):
                fail(shard.bag_index, "%s: %s" % (shard.describe(), outcome))
            else:
                results[shard.bag_index].append(outcome)
                bar.update(outcome.counts.frames)
    bag_reports: Dict[str, Report] = {}
    rows = []
    for i, bag in enumerate(bags):
        row = BagRow(bag.name, bag.path, frames.get(i))
        if i in plans and i not in errors:
            done = sorted(results[i], key=lambda r: r.shard.number)
            try:
                report = bag_report(plans[i], done, info, _span_s(done))
            except DlVisionError as err:
                fail(i, str(err))
            else:
                bag_reports[bag.name] = report
                row.evaluated, row.metrics = report.frames.evaluated, headline_metrics(report)
                row.model_ms = summarize_ms([rec.model_ms for r in done for rec in r.records])
                row.warnings = list(report.warnings)
        row.error = errors.get(i)
        rows.append(row)
    scored = [i for i in plans if i not in errors]
    warnings = ["bag %s not scored: %s" % (bags[i].name, errors[i]) for i in sorted(errors)] + list(executor.warnings)
    overall = overall_error = None
    if len(scored) == 1:  # pooling one bag gives its own report: no second COCOeval
        overall = dataclasses.replace(bag_reports[bags[scored[0]].name], mode="fleet")
    else:
        try:
            pooled = [r for i in scored for r in results[i]]
            overall = pooled_report([plans[i] for i in scored], pooled, info, _span_s(pooled))
        except DlVisionError as err:
            overall_error = str(err)
    segmentation_only = not any("mAP" in r.metrics for r in rows) and any("mIoU" in r.metrics for r in rows)
    sort_metric = "mIoU" if segmentation_only else "mAP"
    execution = dict(executor.describe(), shards=len(shards), shard_frames=shard_frames)
    execution["wall_s"] = time.perf_counter() - started
    fleet = FleetReport(
        model=info.name,
        sort_metric=sort_metric,
        bags=sort_worst_first(rows, sort_metric),
        overall=overall,
        overall_error=overall_error,
        execution=execution,
        warnings=warnings,
    )
    return FleetRun(fleet, bag_reports)


def _span_s(results: Sequence[ShardResult]) -> float:
    """Seconds from the start of the first shard to the end of the last (on the workers' clocks)."""
    if not results:
        return 0.0
    return max(r.started_at + r.wall_s for r in results) - min(r.started_at for r in results)


def pooled_report(
    plans: Sequence[BagPlan], results: Sequence[ShardResult], info: PredictionInfo, wall_s: float
) -> Report:
    """One report over the shards of many bags, as if they were one recording.

    Detection classes are the union of the bags' (in order of first appearance); instance masks
    are scored when every scored frame has them.

    Raises:
        EvaluationError: no bag, or nothing to score.
    """
    if not plans:
        raise EvaluationError("fleet: no bag could be scored")
    class_names: List[str] = []
    for plan in plans:
        class_names += [n for n in plan.class_names or [] if n not in class_names]
    seg_labels = next((p.seg_labels for p in plans if p.seg_labels is not None), None)
    keypoints = {keypoint_truth(p.coco) for p in plans} - {None}
    first = plans[0]
    evaluation = Evaluation(
        class_names or None,
        seg_labels,
        first.score_threshold,
        first.iou_threshold,
        next(iter(keypoints)) if len(keypoints) == 1 else None,
    )
    if len(keypoints) > 1:
        evaluation.warn("the bags label different keypoints (%s): no pooled keypoint metrics" % sorted(keypoints))
    evaluation.add(results)
    source = Source(
        bag=os.path.commonpath([os.path.dirname(os.path.abspath(p.bag)) for p in plans]),
        image_topic=", ".join(sorted({p.image_topic for p in plans})),
        ground_truth="per bag (%d bags)" % len(plans),
        score_threshold=first.score_threshold,
        iou_threshold=first.iou_threshold,
        batch_size=info.batch_size,
    )
    return evaluation.report("fleet", info.name, source, results, wall_s)
