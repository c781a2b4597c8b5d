"""``rosrun dl_vision benchmark``: our node against the naive baseline, in one run.

For one model spec and input size it measures the model alone, the node's
per-frame pipeline in process, then both nodes through ROS at each requested
rate. ``--matrix`` repeats that over the README's sizes and camera counts and
writes the Markdown tables; ``--soak`` runs our node alone for a long time and
reports memory growth after warm-up. ``--max-batch`` (repeatable) runs our node
once per value of its ``~max_batch``, e.g. cameras in turn (1) against batched (4),
and with several cameras and a batch-capable model also times the frame processor
on all cameras' frames as one batch against the same frames one by one. A roscore
is started when none answers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Dict, List, Optional, Sequence, Tuple

import rospy

from dl_vision.benchmark import frames, inprocess
from dl_vision.benchmark.ros_harness import NodeUnderTest, ensure_master, measure_node, stop_process
from dl_vision.benchmark.summary import markdown_tables, ratio
from dl_vision.errors import ConfigError, DlVisionError
from dl_vision.pipeline import Detector

#: The README's scaling tables: every size with one camera, plus four cameras at 640x480.
MATRIX_SIZES = ("320x240", "640x480", "1280x720", "1920x1080")
MATRIX_MULTI_CAMERA = ("640x480", 4)
#: Overhead target at 640x480 bgr8 (issue 6), milliseconds.
OVERHEAD_TARGET_MS = 1.5


def parse_rate(text: str, capacity_hz: float, cameras: int) -> Dict[str, float]:
    """``"40"`` (Hz per camera) or ``"2x"`` (times the measured capacity, shared by the cameras).

    Returns:
        ``{"rate_hz_per_camera", "rate_factor"}`` (factor = offered total / capacity).
    """
    try:
        if text.endswith("x"):
            factor = float(text[:-1])
            per_camera = factor * capacity_hz / cameras
        else:
            per_camera = float(text)
            factor = per_camera * cameras / capacity_hz
    except ValueError:
        raise ConfigError(
            "--rate: expected Hz per camera (40) or a multiple of capacity (2x), found %r" % text
        ) from None
    if per_camera <= 0:
        raise ConfigError("--rate: expected a positive rate, found %r" % text)
    return {"rate_hz_per_camera": round(per_camera, 2), "rate_factor": round(factor, 2)}


def _ours(model: str, cameras: int, threads: Optional[int], max_batch: Optional[int] = None) -> List[NodeUnderTest]:
    """One ``detector_node``; with several cameras it subscribes to all of them and shares its model.

    ``max_batch`` sets its ``~max_batch`` (None: the node's default).
    """
    argv = ["rosrun", "dl_vision", "detector_node", "__name:=bench_ours", "_detector/model:=%s" % model]
    argv += [] if threads is None else ["_detector/threads:=%d" % threads]
    argv += [] if max_batch is None else ["_max_batch:=%d" % max_batch]
    if cameras == 1:
        argv.append("image:=/bench/cam0/image_raw")
    else:
        argv.append("_image_topics:=[%s]" % ", ".join("/bench/cam%d/image_raw" % i for i in range(cameras)))
        argv.append("_camera_names:=[%s]" % ", ".join("cam%d" % i for i in range(cameras)))
    return [NodeUnderTest(argv, ["/bench_ours"])]


def _ours_outputs(cameras: int) -> List[str]:
    """The detections topic of each camera of :func:`_ours`."""
    if cameras == 1:
        return ["/bench_ours/detections"]
    return ["/bench_ours/cam%d/detections" % i for i in range(cameras)]


def _naive(model: str, cameras: int, threads: Optional[int]) -> List[NodeUnderTest]:
    """One ``naive_detector_node`` subscribed to every camera (one model shared)."""
    topics = ["/bench/cam%d/image_raw" % i for i in range(cameras)]
    topics += [] if threads is None else ["_threads:=%d" % threads]
    return [
        NodeUnderTest(
            ["rosrun", "dl_vision", "naive_detector_node", "__name:=bench_naive", "_model:=%s" % model] + topics,
            ["/bench_naive"],
        )
    ]


def measure_in_process(
    model: str, size: str, iterations: int, threads: Optional[int] = None, cameras: int = 1
) -> Dict[str, object]:
    """Model-only and pipeline timings for one size (the frame is the sample photo scaled to it).

    With several cameras and a model that takes a batch, also ``batch``: one camera's frame from each
    camera processed as one batch against the same frames one at a time (``iterations // cameras`` rounds).
    """
    width, height = frames.parse_size(size)
    frame = frames.sample_frame(width, height)
    detector = Detector.from_spec(model, **({} if threads is None else {"threads": threads}))
    try:
        model_only = inprocess.measure_model_only(detector, frame, iterations)
        pipeline = inprocess.measure_pipeline(detector, frame, iterations)
        batch = (
            inprocess.measure_batch(detector, frame, cameras, max(5, iterations // cameras))
            if cameras > 1 and detector.backend.supports_batch
            else None
        )
    finally:
        detector.close()
    result = {
        "model_only": model_only,
        "pipeline": pipeline,
        "capacity_hz": round(1000.0 / pipeline["total_ms"]["p50"], 1),
    }
    if batch is not None:
        result["batch"] = batch
    return result


def run_one(
    args: argparse.Namespace, size: str, cameras: int, rates: Sequence[str], nodes: Sequence[str]
) -> Dict[str, object]:
    """Everything measured for one input size and camera count."""

    def say(text: str) -> None:
        print("[%s x%d] %s" % (size, cameras, text), file=sys.stderr, flush=True)

    say("in-process timings")
    result: Dict[str, object] = {
        "config": {
            "model": args.model,
            "size": size,
            "cameras": cameras,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "threads": args.threads,
        },
    }
    result.update(measure_in_process(args.model, size, args.iterations, args.threads, cameras))
    frame = frames.sample_frame(*frames.parse_size(size))
    image_topics = ["/bench/cam%d/image_raw" % i for i in range(cameras)]
    rows = []
    for rate_text in rates:
        rate = parse_rate(rate_text, result["capacity_hz"], cameras)
        for which, max_batch in _node_runs(nodes, args.max_batch):
            if which == "ours":
                under_test, outputs = (
                    _ours(args.model, cameras, args.threads, max_batch),
                    _ours_outputs(cameras),
                )
            else:
                under_test, outputs = (
                    _naive(args.model, cameras, args.threads),
                    ["/bench/cam%d/detections" % i for i in range(cameras)],
                )
            label = which if max_batch is None else "%s, max_batch %d" % (which, max_batch)
            say("%s at %sx capacity (%.1f Hz per camera)" % (label, rate["rate_factor"], rate["rate_hz_per_camera"]))
            row = measure_node(
                under_test,
                image_topics,
                outputs,
                frame,
                rate["rate_hz_per_camera"],
                args.duration,
                args.warmup,
                progress=say,
            )
            row.update(node=which, max_batch=max_batch, **rate)
            rows.append(row)
            say(
                "  p50 %s ms, p99 %s ms, %s Hz out"
                % (row["latency_ms"]["p50"], row["latency_ms"]["p99"], row["throughput_hz"])
            )
    result["ros"] = rows
    result["checks"] = _checks(result)
    return result


def _node_runs(nodes: Sequence[str], max_batches: Optional[Sequence[int]]) -> List[Tuple[str, Optional[int]]]:
    """``(node, max_batch)`` per measurement at one rate: ours once per ``--max-batch`` value."""
    runs: List[Tuple[str, Optional[int]]] = []
    for which in nodes:
        values = max_batches if which == "ours" and max_batches else [None]
        runs.extend((which, value) for value in values)
    return runs


def _checks(result: Dict[str, object]) -> Dict[str, object]:
    """The issue's targets, evaluated on one result (None where the run cannot say).

    With several ``--max-batch`` values the targets are checked on the first one's rows, and
    ``batched_vs_in_turn`` compares each other value with ``max_batch`` 1 at every rate.
    """
    frame_ms = result["pipeline"]["total_ms"]["p50"]
    overhead = result["pipeline"]["overhead_ms"]["p50"]
    checks: Dict[str, object] = {
        "overhead_p50_ms": overhead,
        "overhead_target_ms": OVERHEAD_TARGET_MS,
        "overhead_ok": overhead <= OVERHEAD_TARGET_MS,
        "frame_p50_ms": frame_ms,
    }
    ours_rows = [r for r in result["ros"] if r["node"] == "ours"]
    # One configuration of our node for the targets: the first --max-batch value measured.
    ours_rows = [r for r in ours_rows if r.get("max_batch") == ours_rows[0].get("max_batch")] if ours_rows else []
    overloaded = [r for r in result["ros"] if r["rate_factor"] > 1.0]
    ours = [r for r in ours_rows if r["rate_factor"] > 1.0]
    naive = [r for r in overloaded if r["node"] == "naive"]
    comparison = _batched_vs_in_turn(result["ros"])
    if comparison:
        checks["batched_vs_in_turn"] = comparison
    if ours:
        worst = max(ours, key=lambda r: r["rate_factor"])
        p99 = worst["latency_ms"]["p99"]
        checks["overload_p99_ms"] = p99
        checks["overload_p99_over_frame"] = ratio(p99, frame_ms)
        # The same frame's time through ROS when nothing waits: transport + processing, unloaded.
        unloaded = [r for r in ours_rows if r["rate_factor"] < 1.0]
        if unloaded:
            round_trip = min(unloaded, key=lambda r: r["rate_factor"])["latency_ms"]["p50"]
            checks["unloaded_latency_p50_ms"] = round_trip
            checks["overload_p99_over_unloaded_latency"] = ratio(p99, round_trip)
        node_frame_ms = worst.get("node_frame_time_ms")
        if node_frame_ms:
            checks["overload_node_frame_time_ms"] = node_frame_ms
            checks["overload_p99_over_node_frame_time"] = ratio(p99, node_frame_ms)
        checks["overload_latency_growth_ms_per_s"] = worst["latency_growth"]["slope_ms_per_s"]
        if naive:
            same = [r for r in naive if r["rate_factor"] == worst["rate_factor"]] or naive
            checks["naive_overload_p50_ms"] = same[0]["latency_ms"]["p50"]
            checks["naive_latency_growth_ms_per_s"] = same[0]["latency_growth"]["slope_ms_per_s"]
            checks["ours_to_naive_p50_latency_ratio"] = ratio(worst["latency_ms"]["p50"], same[0]["latency_ms"]["p50"])
    return checks


def _batched_vs_in_turn(rows: Sequence[Dict[str, object]]) -> List[Dict[str, object]]:
    """Per rate and batched ``max_batch``: its throughput and latency p50/p99 over the in-turn (1) run's."""
    in_turn = {r["rate_factor"]: r for r in rows if r["node"] == "ours" and r.get("max_batch") == 1}
    compared = []
    for row in rows:
        base = in_turn.get(row["rate_factor"])
        if row["node"] != "ours" or base is None or (row.get("max_batch") or 1) == 1:
            continue
        compared.append(
            {
                "rate_factor": row["rate_factor"],
                "max_batch": row["max_batch"],
                "throughput_ratio": ratio(row["throughput_hz"], base["throughput_hz"]),
                "latency_p50_ratio": ratio(row["latency_ms"]["p50"], base["latency_ms"]["p50"]),
                "latency_p99_ratio": ratio(row["latency_ms"]["p99"], base["latency_ms"]["p99"]),
            }
        )
    return compared


def soak(args: argparse.Namespace) -> Dict[str, object]:
    """Our node alone at ``--rate`` (default 1x capacity) for ``--duration`` s; RSS growth after ``--warmup``."""
    timings = measure_in_process(args.model, args.size, args.iterations, args.threads)
    rate = parse_rate(args.rate[0] if args.rate else "1x", timings["capacity_hz"], 1)
    frame = frames.sample_frame(*frames.parse_size(args.size))
    print("soak: %s at %.1f Hz for %.0f s" % (args.size, rate["rate_hz_per_camera"], args.duration), file=sys.stderr)
    row = measure_node(
        _ours(args.model, 1, args.threads),
        ["/bench/cam0/image_raw"],
        _ours_outputs(1),
        frame,
        rate["rate_hz_per_camera"],
        args.duration,
        args.warmup,
        sample_interval_s=5.0,
    )
    row.update(node="ours", **rate)
    return {
        "config": {
            "model": args.model,
            "size": args.size,
            "cameras": 1,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "mode": "soak",
        },
        **timings,
        "ros": [row],
    }


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``rosrun dl_vision benchmark``."""
    parser = argparse.ArgumentParser(prog="benchmark", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="face", help="model spec name or YAML path (default: face)")
    parser.add_argument("--size", default="640x480", help="input WIDTHxHEIGHT (default: 640x480)")
    parser.add_argument(
        "--rate",
        action="append",
        help="Hz per camera, or a multiple of capacity like 2x; repeatable (default: 0.5x and 2x)",
    )
    parser.add_argument("--cameras", type=int, default=1, help="camera topics sharing the model (default: 1)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds published per measurement (default: 20)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds left out at the start of each (default: 5)")
    parser.add_argument("--iterations", type=int, default=200, help="frames timed in process (default: 200)")
    parser.add_argument("--threads", type=int, help="inference threads of both nodes (default: the spec's)")
    parser.add_argument("--node", choices=("ours", "naive"), action="append", help="only these nodes (default: both)")
    parser.add_argument(
        "--max-batch",
        type=int,
        action="append",
        help="our node's ~max_batch; repeatable, one run each, e.g. 1 (in turn) and 4 (default: the node's)",
    )
    parser.add_argument("--matrix", action="store_true", help="all README sizes, 1 and 4 cameras")
    parser.add_argument("--soak", action="store_true", help="our node alone for --duration s (use >= 600)")
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--markdown", help="write the Markdown tables here")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse, measure, print; one-line errors and exit status 2 on bad input."""
    args = build_parser().parse_args(rospy.myargv(list(sys.argv if argv is None else argv))[1:])
    master = None
    try:
        if args.cameras < 1 or args.duration <= args.warmup:
            raise ConfigError(
                "expected --cameras >= 1 and --duration > --warmup, found %d and %.0f <= %.0f"
                % (args.cameras, args.duration, args.warmup)
            )
        if any(value < 1 for value in args.max_batch or []):
            raise ConfigError("--max-batch: expected positive integers, found %s" % args.max_batch)
        master = ensure_master()
        rospy.init_node("dl_vision_benchmark", disable_signals=True)
        rates = args.rate or ["0.5x", "2x"]
        nodes = args.node or ["ours", "naive"]
        if args.soak:
            runs = [soak(args)]
        elif args.matrix:
            runs = [run_one(args, size, 1, rates, nodes) for size in MATRIX_SIZES]
            runs.append(run_one(args, MATRIX_MULTI_CAMERA[0], MATRIX_MULTI_CAMERA[1], rates, nodes))
        else:
            runs = [run_one(args, args.size, args.cameras, rates, nodes)]
    except DlVisionError as err:
        print("benchmark: %s" % err, file=sys.stderr)
        return 2
    finally:
        if master is not None:
            rospy.signal_shutdown("benchmark done")
            stop_process(master)
    tables = markdown_tables(runs)
    print(tables)
    for run in runs:
        if "checks" in run:
            print("%s x%d checks: %s" % (run["config"]["size"], run["config"]["cameras"], json.dumps(run["checks"])))
        if run["config"].get("mode") == "soak":
            print("soak: %s" % json.dumps(run["ros"][0]["process"]))
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    document = {"created": stamp, "host_cpus": os.cpu_count(), "runs": runs}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(document, handle, indent=1)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(tables)
    return 0
