"""Command lines of the evaluation scripts: ``evaluate``, ``make_eval_bag``, ``export_bag_frames``,
``compare_reports``. Each ``*_main`` parses, runs and returns the exit status; a user's mistake
is one ``error:`` line on stderr and status 2, a failed ``--fail-under`` gate status 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional

from dl_vision.errors import DlVisionError
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


def _truth_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="ROS 1 bag to evaluate on")
    parser.add_argument("--topic", default="/camera/image_raw", help="image topic in the bag")
    parser.add_argument("--gt", help="COCO JSON whose images name bag frames (ros_stamp_ns or frame_index)")
    parser.add_argument("--gt-topic", help="dl_vision/DetectionArray ground-truth topic in the bag")
    parser.add_argument("--gt-class-map-topic", help="mono8 class-map ground-truth topic in the bag")
    parser.add_argument("--model", default="face", help="detector model spec name or YAML path")
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
        "repeatable, e.g. --fail-under mAP=0.5",
    )


def evaluate_main(argv: Optional[List[str]] = None) -> int:
    """``evaluate offline|live``: score a model on a bag and write the report."""
    parser = argparse.ArgumentParser(prog="evaluate", description="Score a detector/segmenter on a rosbag.")
    sub = parser.add_subparsers(dest="mode", required=True)
    offline = sub.add_parser("offline", help="read the bag directly and run the model here (no ROS master)")
    _truth_arguments(offline)
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
    live = sub.add_parser("live", help="play the bag through the vision node (roslaunch) and score its outputs")
    _truth_arguments(live)
    live.add_argument("--rate", type=float, default=1.0, help="playback rate factor")
    live.add_argument("--timeout", type=float, default=600.0, help="wall-clock limit of the run, seconds")
    from dl_vision.evaluation.agreement import add_agreement_arguments, agreement_main

    add_agreement_arguments(sub.add_parser("agreement", help="score a candidate model against a reference model"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    if args.mode == "agreement":
        return agreement_main(args)
    try:
        report = _run_evaluation(args)
        write_report(report, args.out)
        failures = check_gates(report, parse_gates(args.fail_under))
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    for name, value in headline_metrics(report).items():
        print("%-20s %.4f" % (name, value))
    print("report: %s/report.md" % args.out)
    for failure in failures:
        print("FAIL %s" % failure, file=sys.stderr)
    return STATUS_GATE_FAILED if failures else 0


def _run_evaluation(args: argparse.Namespace) -> Report:
    """Check the bag, its topics, the ground truth and the specs, then (and only then) load models and run."""
    from dl_vision.evaluation.offline import GroundTruthSource, Scoring, check_inputs, evaluate_bag
    from dl_vision.spec import load_spec

    truth = GroundTruthSource(args.gt, args.gt_topic, args.gt_class_map_topic)
    task = args.task or (
        "both"
        if (args.gt or args.gt_topic) and args.gt_class_map_topic
        else "segment"
        if args.gt_class_map_topic
        else "detect"
    )
    allow_partial = getattr(args, "allow_partial", False)  # an offline option only
    check_inputs(args.bag, args.topic, truth, allow_partial)
    detector_spec = load_spec(args.model) if task in ("detect", "both") else None
    segmenter_spec = load_spec(args.segmenter or "person_segmentation") if task in ("segment", "both") else None
    scoring = Scoring(score_threshold=args.score_threshold, iou_threshold=args.iou_threshold)
    if args.mode == "live":
        from dl_vision.evaluation.live import LiveSettings, run_live

        settings = LiveSettings(
            task=task,
            model=detector_spec.source if detector_spec else args.model,
            segmenter_model=segmenter_spec.source if segmenter_spec else "person_segmentation",
            rate=args.rate,
            timeout_s=args.timeout,
        )
        return run_live(args.bag, args.topic, truth, args.out, settings, scoring)
    from dl_vision.evaluation.predictions import ModelPredictions
    from dl_vision.frame_processor import FrameProcessor
    from dl_vision.pipeline import Detector, Segmenter

    detector = Detector.from_spec(detector_spec) if detector_spec else None
    if detector is not None and args.score_floor is not None:
        if scoring.score_threshold is None:  # the confusion matrix stays at the operating threshold
            scoring.score_threshold = detector.options.score_threshold
        detector.options.score_threshold = args.score_floor
    segmenter = Segmenter.from_spec(segmenter_spec) if segmenter_spec else None
    predictions = ModelPredictions(FrameProcessor(detector, segmenter), args.batch_size)
    return evaluate_bag(
        args.bag,
        args.topic,
        truth,
        predictions,
        scoring,
        progress=False if args.no_progress else None,
        allow_partial=allow_partial,
    )


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
    """``compare_reports``: baseline vs candidate metrics with deltas, optional gates on the candidate."""
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
    args = parser.parse_args(argv)
    try:
        baseline, candidate = load_report(args.baseline), load_report(args.candidate)
        failures = check_gates(candidate, parse_gates(args.fail_under))
        drops = parse_gates(args.max_drop)
    except DlVisionError as err:
        print("error: %s" % err, file=sys.stderr)
        return STATUS_USER_ERROR
    rows = compare(baseline, candidate)
    print("| metric | baseline | candidate | delta |\n|---|---|---|---|")
    for name, base, cand, delta in rows:
        print("| %s | %s | %s | %s |" % (name, _num(base), _num(cand), "n/a" if delta is None else "%+.4f" % delta))
        if name in drops and delta is not None and -delta > drops[name]:
            failures.append("%s dropped by %.4f (allowed %.4f)" % (name, -delta, drops[name]))
    for name in drops:
        if name not in {r[0] for r in rows if r[3] is not None}:
            failures.append("%s: not in both reports" % name)
    for failure in failures:
        print("FAIL %s" % failure, file=sys.stderr)
    return STATUS_GATE_FAILED if failures else 0


def _num(value: Optional[float]) -> str:
    return "n/a" if value is None else "%.4f" % value
