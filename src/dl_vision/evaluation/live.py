"""Live evaluation: play a bag through the running nodes and score what they published.

:func:`run_live` starts ``launch/evaluate_live.launch`` with ``roslaunch`` (``rosbag play --clock``
on sim time, a vision node, and ``eval_recorder``), waits for it to finish, then scores the recorded
outputs with the offline machinery (matched to ground truth by header stamp) and adds what only
a live run shows: dropped frames, end-to-end latency percentiles and output rate. Nothing here
imports rospy; ROS is reached through the ``roslaunch`` command.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import IMAGE_TYPES, BagReader
from dl_vision.evaluation.offline import GroundTruthSource, Scoring, check_inputs, evaluate_bag
from dl_vision.evaluation.predictions import RecordedPredictions
from dl_vision.evaluation.report import LiveStats, Report
from dl_vision.latency import summarize_ms
from dl_vision.spec import load_spec

NODE_NAME = "/eval_vision"
NODE_TYPES = {"detect": "detector_node", "segment": "segmenter_node", "both": "vision_node"}


def live_stats(timing: Dict[str, Any], output_topic: str) -> LiveStats:
    """Drops, latency percentiles and output rate from the recorder's timing JSON.

    Args:
        timing: ``{"expected_frames", "inputs": {stamp: t}, "outputs": {topic: {stamp: t}}}``
            (arrival times in seconds on one monotonic clock).
        output_topic: the output whose latency is measured.

    Raises:
        EvaluationError: no frame reached the recorder or the node published nothing.
    """
    inputs = {int(k): float(v) for k, v in timing["inputs"].items()}
    outputs = {int(k): float(v) for k, v in timing["outputs"].get(output_topic, {}).items()}
    if not inputs:
        raise EvaluationError("live: no image reached the recorder (did the bag play on the expected topic?)")
    if not outputs:
        raise EvaluationError("live: the node published nothing on %s for %d frames" % (output_topic, len(inputs)))
    latencies = [(outputs[s] - inputs[s]) * 1e3 for s in outputs if s in inputs]
    span = max(outputs.values()) - min(inputs.values())
    dropped = len([s for s in inputs if s not in outputs])
    return LiveStats(
        expected_frames=int(timing.get("expected_frames", 0)),
        received_frames=len(inputs),
        processed=len(outputs),
        dropped=dropped,
        dropped_fraction=dropped / len(inputs),
        latency_ms=summarize_ms(latencies),
        latencies_ms=[round(v, 3) for v in latencies],
        output_rate_hz=len(outputs) / span if span > 0 else None,
    )


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


@dataclass
class LiveSettings:
    """How the bag is played through which node.

    Attributes:
        task: ``detect``, ``segment`` or ``both``.
        model: detector spec (name or path).
        segmenter_model: segmenter spec.
        rate: playback rate factor.
        timeout_s: wall-clock limit of the launch.
        own_master: start a private ROS master on a free port (``use_sim_time`` and the played
            topics then cannot disturb, or be disturbed by, another master on this machine);
            False uses ``$ROS_MASTER_URI``.
    """

    task: str = "detect"
    model: str = "coco"
    segmenter_model: str = "person_segmentation"
    rate: float = 1.0
    timeout_s: float = 600.0
    own_master: bool = True


def run_live(
    bag, image_topic: str, truth: GroundTruthSource, out_dir, settings: LiveSettings, scoring: Optional[Scoring] = None
) -> Report:
    """Play ``bag`` through a vision node, record its outputs, and score them.

    Args:
        bag: the evaluation bag (its ``image_topic`` is played, nothing else).
        image_topic: ``sensor_msgs/Image`` topic in the bag, or a ``CompressedImage`` one named
            ``<base>/compressed`` (the node then subscribes with ``transport: compressed``).
        truth: ground truth (COCO file or topics of ``bag``).
        out_dir: where ``live_outputs.bag``, ``live_timing.json`` and ``roslaunch.log`` go.
        settings: the node and the playback.
        scoring: classes and thresholds (default threshold: the detector spec's).

    Returns:
        The offline report of the recorded outputs, in mode ``live``, with :class:`LiveStats`.

    Raises:
        EvaluationError: the launch failed or timed out, the bag or topic is unusable, or scoring failed.
    """
    task, model, segmenter_model, rate = settings.task, settings.model, settings.segmenter_model, settings.rate
    timeout_s = settings.timeout_s
    if task not in NODE_TYPES:
        raise EvaluationError("live: expected task in %s, found %r" % (sorted(NODE_TYPES), task))
    bag = Path(bag).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    check_inputs(bag, image_topic, truth)
    detector_spec = load_spec(model) if task in ("detect", "both") else None
    segmenter_spec = load_spec(segmenter_model) if task in ("segment", "both") else None
    with BagReader(bag) as reader:
        msgtype = reader.check_topic(image_topic, IMAGE_TYPES)
        frames = reader.count(image_topic)
    node_image, transport = image_topic, "raw"
    if msgtype != IMAGE_TYPES[0]:
        if not image_topic.endswith("/compressed"):
            raise EvaluationError(
                "live: a CompressedImage topic must be named <image>/compressed, found %s" % image_topic
            )
        node_image, transport = image_topic[: -len("/compressed")], "compressed"
    detect, segment = task in ("detect", "both"), task in ("segment", "both")
    outputs_bag, timing_json = out / "live_outputs.bag", out / "live_timing.json"
    for stale in (outputs_bag, timing_json):
        if stale.exists():
            stale.unlink()
    command = [
        "roslaunch",
        "--skip-log-check",
        "dl_vision",
        "evaluate_live.launch",
        "bag:=%s" % bag,
        "image:=%s" % node_image,
        "transport:=%s" % transport,
        "play_topic:=%s" % image_topic,
        "node_type:=%s" % NODE_TYPES[task],
        "model:=%s" % model,
        "segmenter_model:=%s" % segmenter_model,
        "rate:=%s" % rate,
        "output_bag:=%s" % outputs_bag,
        "timing_json:=%s" % timing_json,
        "expected_frames:=%d" % frames,
        "record_detections:=%s" % str(detect).lower(),
        "record_class_map:=%s" % str(segment).lower(),
    ]
    env = dict(os.environ)
    if settings.own_master:
        port = _free_port()
        env["ROS_MASTER_URI"] = "http://localhost:%d" % port
        command[1:1] = ["--port", str(port)]
    log_path = out / "roslaunch.log"
    with open(log_path, "w") as log:
        try:
            subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, timeout=timeout_s, check=False, env=env)
        except subprocess.TimeoutExpired as err:
            message = "live: roslaunch did not finish within %.0f s (log: %s)" % (timeout_s, log_path)
            raise EvaluationError(message) from err
        except OSError as err:
            raise EvaluationError("live: cannot run roslaunch (%s); source the workspace's setup.bash" % err) from err
    if not timing_json.is_file() or not outputs_bag.is_file():
        raise EvaluationError("live: the recorder wrote no results; see %s" % log_path)
    det_topic, seg_topic = NODE_NAME + "/detections", NODE_NAME + "/class_map"
    stats = live_stats(json.loads(timing_json.read_text()), det_topic if detect else seg_topic)
    recorded = RecordedPredictions(
        outputs_bag,
        det_topic if detect else None,
        seg_topic if segment else None,
        detector_spec.labels if detector_spec else None,
        segmenter_spec.labels if segmenter_spec else None,
        name=(detector_spec or segmenter_spec).name,
        score_threshold=detector_spec.thresholds.score_threshold if detector_spec else None,
    )
    report = evaluate_bag(bag, image_topic, truth, recorded, scoring, progress=False)
    report.mode, report.live = "live", stats
    report.source.batch_size, report.source.rate, report.source.outputs_bag = None, rate, str(outputs_bag)
    if stats.dropped:
        report.warnings.append(
            "live: %d of %d received frames got no output (dropped); scores cover the rest"
            % (stats.dropped, stats.received_frames)
        )
    return report
