"""Command lines of the evaluation scripts: ``evaluate``, ``make_eval_bag``, ``export_bag_frames``,
``compare_reports``. Each ``*_main`` parses, runs and returns the exit status; a user's mistake
is one ``error:`` line on stderr and status 2, a failed ``--fail-under`` gate status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from dl_vision.errors import DlVisionError, EvaluationError
from dl_vision.evaluation.report import (
    Report,
    check_gates,
    compare,
    headline_metrics,
    load_report,
    parse_gates,
    write_report,
)

STATUS_GATE_FAILED = 1
STATUS_USER_ERROR = 2


def _truth_arguments(parser: argparse.ArgumentParser, many_bags: bool) -> None:
    if many_bags:
        parser.add_argument(
            "--bag",
            action="extend",
            nargs="+",
            default=[],
            metavar="BAG",
            help="bags to evaluate: files, folders (every *.bag below) or quoted globs; repeatable",
        )
        parser.add_argument("--manifest", help="YAML file listing bags with their ground truth (instead of --bag)")
    else:
        parser.add_argument("--bag", required=True, help="ROS 1 bag to evaluate on")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic in the bag")
    parser.add_argument(
        "--gt",
        help="COCO JSON whose images name bag frames (ros_stamp_ns or frame_index); for several bags a folder "
        "of <bag name>.gt.json files or a pattern such as '{dir}/{stem}.gt.json'",
    )
    parser.add_argument("--gt-topic", help="dl_vision/DetectionArray ground-truth topic in the bag")
    parser.add_argument("--gt-class-map-topic", help="mono8 class-map ground-truth topic in the bag")
    parser.add_argument("--model", default="coco", help="detector model spec name or YAML path (default: coco)")
    parser.add_argument("--segmenter", help="segmenter model spec (scored against --gt-class-map-topic)")
    parser.add_argument(
        "--task", choices=("detect", "segment", "both"), help="what to run (default: from the ground truth given)"
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        help="operating threshold of P/R/F1 and the confusion matrix (default: the spec's)",
    )
    parser.add_argument("--iou-threshold", type=float, default=0.5, help="IoU of a match at the operating point")
    parser.add_argument("--out", required=True, help="directory for report.json, report.md and plots")
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="exit 1 when METRIC is below VALUE (above, for latency_* and dropped_fraction); "
        "repeatable, e.g. --fail-under mAP=0.5; for several bags, on the pooled metrics",
    )


def _fleet_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several bags, Ray")
    group.add_argument(
        "--strict", action="store_true", help="a bag that cannot be read or scored stops the run (else: its error)"
    )
    group.add_argument(
        "--ray",
        metavar="WHERE",
        help="score on Ray: 'local' (a Ray instance on this machine), 'auto' (the cluster this machine "
        "joined with ray start) or a cluster address (host:6379, ray://host:10001)",
    )
    group.add_argument("--actors", type=int, help="Ray actors (default: as many as the free CPUs/GPUs hold)")
    group.add_argument("--actor-cpus", type=float, default=1.0, help="CPUs per actor, also its inference threads")
    group.add_argument(
        "--actor-gpus", type=float, help="GPUs per actor (default: 1 when the spec's runtime uses a GPU, else 0)"
    )
    group.add_argument(
        "--shard-frames",
        type=int,
        help="split bags into bag-time ranges of about this many frames (default: 1000 with --ray, else no split)",
    )
    group.add_argument("--max-retries", type=int, default=2, help="times a shard is rerun after its worker died")
    group.add_argument("--threads", type=int, help="inference threads (default: the spec's; with --ray: --actor-cpus)")


def evaluate_main(argv: Optional[List[str]] = None) -> int:
    """``evaluate offline|live|agreement``: score a model on one bag or many and write the report."""
    parser = argparse.ArgumentParser(prog="evaluate", description="Score a detector/segmenter on rosbags.")
    sub = parser.add_subparsers(dest="mode", required=True)
    offline = sub.add_parser("offline", help="read the bags directly and run the model here or on Ray (no ROS master)")
    _truth_arguments(offline, many_bags=True)
    offline.add_argument("--batch-size", type=int, default=8, help="frames per predict_batch call")
    offline.add_argument(
        "--score-floor",
        type=float,
        help="model score threshold while predicting (e.g. 0.05 for full COCO curves); "
        "default: the spec's, as the node publishes",
    )
    offline.add_argument("--no-progress", action="store_true", help="no progress bar")
    offline.add_argument(
        "--allow-partial",
        action="store_true",
        help="evaluate the readable frames of a damaged (unindexed, truncated) bag; the report says how many were lost",
    )
    _fleet_arguments(offline)
    live = sub.add_parser("live", help="play the bag through the vision node (roslaunch) and score its outputs")
    _truth_arguments(live, many_bags=False)
    live.add_argument("--rate", type=float, default=1.0, help="playback rate factor")
    live.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit of the run, seconds")
    from dl_vision.evaluation.agreement import add_agreement_arguments, agreement_main

    add_agreement_arguments(sub.add_parser("agreement", help="score a candidate model against a reference model"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.mode == "agreement":
        return agreement_main(args)
    try:
        outcome = _run_evaluation(args)
        if isinstance(outcome, Report):
            report = outcome
            write_report(report, args.out)
        else:
            from dl_vision.evaluation.fleet_report import write_fleet_report

            write_fleet_report(outcome.report, outcome.bag_reports, args.out)
            report = outcome.report.overall
            if report is None:
                _print_bags(outcome.report)
                raise EvaluationError("fleet: no pooled metrics: %s" % outcome.report.overall_error)
        failures = check_gates(report, parse_gates(args.fail_under))
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    for name, value in headline_metrics(report).items():
        print("%-20s %.4f" % (name, value))
    if not isinstance(outcome, Report):
        _print_bags(outcome.report)
    print("report: %s/report.md" % args.out)
    for failure in failures:
        print("FAIL %s" % failure, file=sys.stderr)
    return STATUS_GATE_FAILED if failures else 0


def _print_bags(fleet, shown: int = 10) -> None:
    """The worst bags, one line each; bags not scored as warnings on stderr."""
    metric = fleet.sort_metric
    print("bags, worst first by %s (%d bags; all in report.md):" % (metric, len(fleet.bags)))
    for row in fleet.bags[:shown]:
        value = row.metrics.get(metric)
        status = "not scored" if row.error else "%s %s" % (metric, "n/a" if value is None else "%.4f" % value)
        print("  %-40s %s" % (row.name, status))
    for row in fleet.bags:
        if row.error:
            print("warning: bag %s not scored: %s" % (row.name, row.error), file=sys.stderr)


def _run_evaluation(args: argparse.Namespace):
    """Check the bags, their topics, the ground truth and the specs, then (and only then) load models and run.

    Returns:
        A :class:`Report` (live, or one bag), or a :class:`~dl_vision.evaluation.fleet.FleetRun`.
    """
    from dl_vision.evaluation.offline import GroundTruthSource, Scoring, check_inputs, evaluate_bag
    from dl_vision.spec import load_spec

    scoring = Scoring(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold)
    if args.mode == "live":
        from dl_vision.evaluation.live import LiveSettings, run_live

        truth = GroundTruthSource(args.gt, args.gt_topic, args.gt_class_map_topic)
        task = _task(args.task, truth.has_boxes, bool(truth.class_map_topic))
        check_inputs(args.bag, args.topic, truth)
        detector_spec, segmenter_spec = _specs(args, task, load_spec)
        settings = LiveSettings(
            task=task,
            model=detector_spec.source if detector_spec else args.model,
            segmenter_model=segmenter_spec.source if segmenter_spec else "person_segmentation",
            rate=args.rate,
            timeout_s=args.timeout,
        )
        return run_live(args.bag, args.topic, truth, args.out, settings, scoring)
    from dl_vision.evaluation.fleet import LocalExecutor, bag_inputs, evaluate_fleet, read_manifest
    from dl_vision.evaluation.predictions import ModelSettings

    if bool(args.manifest) == bool(args.bag):
        raise EvaluationError("offline: expected --bag or --manifest (one of them), found %s" % _given(args))
    if args.manifest:
        bags = read_manifest(args.manifest, args.topic)
    else:
        bags = bag_inputs(args.bag, args.topic, args.gt, args.gt_topic, args.gt_class_map_topic)
    task = _task(args.task, any(b.truth.has_boxes for b in bags), any(b.truth.class_map_topic for b in bags))
    fleet = bool(args.manifest) or len(bags) > 1
    progress = False if args.no_progress else None
    if not fleet and not args.ray:
        check_inputs(bags[0].path, bags[0].topic, bags[0].truth, args.allow_partial)
    detector_spec, segmenter_spec = _specs(args, task, load_spec)
    settings = ModelSettings(
        detector_spec,
        segmenter_spec,
        args.batch_size,
        args.score_floor,
        {"threads": args.threads} if args.threads else {},
    )
    if not fleet and not args.ray:
        predictions = settings.build()
        return evaluate_bag(
            bags[0].path, bags[0].topic, bags[0].truth, predictions, scoring, progress, args.allow_partial
        )
    if args.ray:
        try:
            from dl_vision.evaluation.ray_runner import RayExecutor
        except ImportError as err:
            raise EvaluationError(
                "--ray: expected Ray to be installed, found %s; install it with "
                "pip install -r bootstrap/requirements-ray.txt (or bash bootstrap/setup.sh ray)" % err
            ) from None
        executor = RayExecutor(settings, args.ray, args.actors, args.actor_cpus, args.actor_gpus, args.max_retries)
        shard_frames = args.shard_frames or 1000
    else:
        executor, shard_frames = LocalExecutor(settings), args.shard_frames
    with executor:
        run = evaluate_fleet(
            bags, executor, scoring, shard_frames, args.strict or not fleet, progress, args.allow_partial
        )
    if fleet:
        return run
    report = run.bag_reports[bags[0].name]
    report.warnings += run.report.warnings
    return report


def _task(task: Optional[str], boxes: bool, class_maps: bool) -> str:
    """The ``--task``, or what the ground truth calls for."""
    if task:
        return task
    return "both" if boxes and class_maps else "segment" if class_maps else "detect"


def _specs(args: argparse.Namespace, task: str, load_spec):
    """``(detector spec, segmenter spec)`` of the task (None for a model it does not run)."""
    detector = load_spec(args.model) if task in ("detect", "both") else None
    segmenter = load_spec(args.segmenter or "person_segmentation") if task in ("segment", "both") else None
    return detector, segmenter


def _given(args: argparse.Namespace) -> str:
    return "both" if args.manifest and args.bag else "neither"


def make_eval_bag_main(argv: Optional[List[str]] = None) -> int:
    """``make_eval_bag``: image folder or video (+ COCO annotations) -> evaluation bag."""
    from dl_vision.evaluation.bag_building import make_eval_bag

    parser = argparse.ArgumentParser(prog="make_eval_bag", description=make_eval_bag.__doc__.split("\n")[0])
    parser.add_argument("source", help="image folder (file-name order) or video file")
    parser.add_argument("bag", help="bag to create")
    parser.add_argument("--annotations", help="COCO JSON of the source (images by file_name or frame_index)")
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--rate", type=float, default=10.0, help="frame rate of the stamps, Hz")
    parser.add_argument("--gt-topic", default="/ground_truth/detections", help="ground-truth topic ('' for none)")
    parser.add_argument("--gt-json", help="COCO JSON keyed to the bag (default: <bag>.gt.json)")
    parser.add_argument("--compressed", choices=("jpeg", "png"), help="write sensor_msgs/CompressedImage")
    parser.add_argument("--class-maps", help="folder of mono8 PNG class-id maps named like the images")
    parser.add_argument("--class-map-topic", default="/ground_truth/class_map")
    args = parser.parse_args(argv)
    try:
        result = make_eval_bag(
            args.source,
            args.bag,
            args.topic,
            args.annotations,
            args.rate,
            gt_topic=args.gt_topic or None,
            gt_json=args.gt_json,
            compressed=args.compressed,
            class_maps=args.class_maps,
            class_map_topic=args.class_map_topic,
        )
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    print(
        "wrote %(bag)s: %(frames)d frames, %(labelled)d labelled, %(class_maps)d class maps; "
        "ground truth %(ground_truth)s" % result
    )
    return 0


def export_bag_frames_main(argv: Optional[List[str]] = None) -> int:
    """``export_bag_frames``: bag -> PNG frames + COCO skeleton for labelling."""
    from dl_vision.evaluation.bag_building import export_bag_frames

    parser = argparse.ArgumentParser(prog="export_bag_frames", description=export_bag_frames.__doc__.split("\n")[0])
    parser.add_argument("bag")
    parser.add_argument("out_dir")
    parser.add_argument("--topic", default="/camera/image_raw")
    parser.add_argument("--every", type=int, default=1, help="keep every N-th frame")
    parser.add_argument("--classes", default="", help="comma-separated category names for the skeleton")
    args = parser.parse_args(argv)
    try:
        result = export_bag_frames(
            args.bag, args.topic, args.out_dir, args.every, [c for c in args.classes.split(",") if c]
        )
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    print("wrote %(frames)d frames and %(annotations)s" % result)
    return 0


def compare_reports_main(argv: Optional[List[str]] = None) -> int:
    """``compare_reports``: baseline vs candidate metrics with deltas, optional gates on the candidate;
    for two fleet reports also per-bag deltas, most regressed first."""
    parser = argparse.ArgumentParser(prog="compare_reports", description="Compare two evaluation reports.")
    parser.add_argument("baseline", help="report.json (or its directory)")
    parser.add_argument("candidate", help="report.json (or its directory)")
    parser.add_argument(
        "--fail-under",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="exit 1 when the candidate's METRIC is below VALUE (repeatable)",
    )
    parser.add_argument(
        "--max-drop",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="exit 1 when the candidate's METRIC is more than VALUE below the baseline's",
    )
    parser.add_argument(
        "--max-bag-drop",
        action="append",
        default=[],
        metavar="METRIC=VALUE",
        help="fleet reports: exit 1 when a bag's METRIC is more than VALUE below the baseline's, "
        "or the candidate did not score a bag the baseline did",
    )
    parser.add_argument("--bag-metric", help="fleet reports: the metric of the per-bag table (default: mAP or mIoU)")
    args = parser.parse_args(argv)
    try:
        baseline, candidate = load_report(args.baseline), load_report(args.candidate)
        base_overall, cand_overall = _pooled(baseline, args.baseline), _pooled(candidate, args.candidate)
        failures = check_gates(cand_overall, parse_gates(args.fail_under))
        drops = parse_gates(args.max_drop)
        bag_drops = parse_gates(args.max_bag_drop)
        fleets = not isinstance(baseline, Report) and not isinstance(candidate, Report)
        if (bag_drops or args.bag_metric) and not fleets:
            raise EvaluationError("--max-bag-drop, --bag-metric: expected two fleet reports, found a single-bag one")
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    rows = compare(base_overall, cand_overall)
    print("| metric | baseline | candidate | delta |\n|---|---|---|---|")
    for name, base, cand, delta in rows:
        print("| %s | %s | %s | %s |" % (name, _num(base), _num(cand), "n/a" if delta is None else "%+.4f" % delta))
        if name in drops and delta is not None and -delta > drops[name]:
            failures.append("%s dropped by %.4f (allowed %.4f)" % (name, -delta, drops[name]))
    for name in drops:
        if name not in {r[0] for r in rows if r[3] is not None}:
            failures.append("%s: not in both reports" % name)
    if fleets:
        from dl_vision.evaluation.fleet_report import bag_regressions, compare_bags

        metrics = [args.bag_metric or baseline.sort_metric]
        metrics += [m for m in bag_drops if m not in metrics]
        for metric in metrics:
            print("\n| bag | baseline %s | candidate | delta | note |\n|---|---|---|---|---|" % metric)
            deltas = compare_bags(baseline, candidate, metric)
            for d in deltas:
                delta = "n/a" if d.delta is None else "%+.4f" % d.delta
                print("| %s | %s | %s | %s | %s |" % (d.name, _num(d.baseline), _num(d.candidate), delta, d.note))
            if metric in bag_drops:
                failures += bag_regressions(deltas, metric, bag_drops[metric])
    for failure in failures:
        print("FAIL %s" % failure, file=sys.stderr)
    return STATUS_GATE_FAILED if failures else 0


def _pooled(report, path: str) -> Report:
    """A single-bag report itself, a fleet report's pooled one."""
    if isinstance(report, Report):
        return report
    if report.overall is None:
        raise EvaluationError("%s: the fleet report has no pooled metrics (%s)" % (path, report.overall_error))
    return report.overall


def _num(value: Optional[float]) -> str:
    return "n/a" if value is None else "%.4f" % value
