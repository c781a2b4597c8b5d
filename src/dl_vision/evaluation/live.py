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
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

from dl_vision.errors import EvaluationError
from dl_vision.evaluation.bag_io import IMAGE_TYPES, BagReader
from dl_vision.evaluation.offline import GroundTruthSource, evaluate_bag, load_recorded
from dl_vision.spec import load_spec

NODE_NAME = "/eval_vision"
NODE_TYPES = {"detect": "detector_node", "segment": "segmenter_node", "both": "vision_node"}


def latency_summary(timing: Dict[str, Any], output_topic: str) -> Dict[str, Any]:
    """Drops, latency percentiles and output rate from the recorder's timing JSON.

    Args:
        timing: ``{"expected_frames", "inputs": {stamp: t}, "outputs": {topic: {stamp: t}}}``
            (arrival times in seconds on one monotonic clock).
        output_topic: the output whose latency is measured.

    Returns:
        ``expected_frames``, ``received_frames`` (images that reached the recorder), ``processed``,
        ``dropped`` and ``dropped_fraction`` (of received frames without output), ``latency_ms``
        (mean, p50, p90, p95, p99, max), ``latencies_ms`` (per processed frame) and
        ``output_rate_hz`` (outputs over the span from first input to last output).

    Raises:
        EvaluationError: no frame reached the recorder or the node published nothing.
    """
    inputs = {int(k): float(v) for k, v in timing["inputs"].items()}
    outputs = {int(k): float(v) for k, v in timing["outputs"].get(output_topic, {}).items()}
    if not inputs:
        raise EvaluationError("live: no image reached the recorder (did the bag play on the expected topic?)")
    if not outputs:
        raise EvaluationError("live: the node published nothing on %s for %d frames" % (output_topic, len(inputs)))
    latencies = np.array([(outputs[s] - inputs[s]) * 1e3 for s in outputs if s in inputs], np.float64)
    span = max(outputs.values()) - min(inputs.values())
    dropped = len([s for s in inputs if s not in outputs])
    return {
        "expected_frames": int(timing.get("expected_frames", 0)),
        "received_frames": len(inputs),
        "processed": len(outputs),
        "dropped": dropped,
        "dropped_fraction": dropped / len(inputs),
        "latency_ms": {
            "mean": float(latencies.mean()),
            "p50": float(np.percentile(latencies, 50)),
            "p90": float(np.percentile(latencies, 90)),
            "p95": float(np.percentile(latencies, 95)),
            "p99": float(np.percentile(latencies, 99)),
            "max": float(latencies.max()),
        },
        "latencies_ms": [round(float(v), 3) for v in latencies],
        "output_rate_hz": len(outputs) / span if span > 0 else None,
    }


def _free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def run_live(
    bag,
    image_topic: str,
    truth: GroundTruthSource,
    out_dir,
    task: str = "detect",
    model: str = "face",
    segmenter_model: str = "person_segmentation",
    rate: float = 1.0,
    timeout_s: float = 600.0,
    score_threshold: Optional[float] = None,
    iou_threshold: float = 0.5,
    own_master: bool = True,
) -> Dict[str, Any]:
    """Play ``bag`` through a vision node, record its outputs, and score them.

    Args:
        bag: the evaluation bag (its ``image_topic`` is played, nothing else).
        image_topic: ``sensor_msgs/Image`` topic in the bag, or a ``CompressedImage`` one named
            ``<base>/compressed`` (the node then subscribes with ``transport: compressed``).
        truth: ground truth (COCO file or topics of ``bag``).
        out_dir: where ``live_outputs.bag``, ``live_timing.json`` and ``roslaunch.log`` go.
        task: ``detect``, ``segment`` or ``both``.
        model, segmenter_model: spec names of the detector and segmenter.
        rate: playback rate factor.
        timeout_s: wall-clock limit of the launch.
        score_threshold: operating threshold (default: the detector spec's score threshold).
        iou_threshold: IoU of a match at the operating point.
        own_master: start a private ROS master on a free port (``use_sim_time`` and the played
            topics then cannot disturb, or be disturbed by, another master on this machine);
            ``False`` uses ``$ROS_MASTER_URI``.

    Returns:
        The offline report of the recorded outputs plus ``live`` (see :func:`latency_summary`).

    Raises:
        EvaluationError: the launch failed or timed out, the bag or topic is unusable, or scoring failed.
    """
    if task not in NODE_TYPES:
        raise EvaluationError("live: expected task in %s, found %r" % (sorted(NODE_TYPES), task))
    bag = Path(bag).resolve()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
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
    if own_master:
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
    timing = json.loads(timing_json.read_text())
    det_topic, seg_topic = NODE_NAME + "/detections", NODE_NAME + "/class_map"
    live = latency_summary(timing, det_topic if detect else seg_topic)
    det_labels = load_spec(model).labels if detect else None
    seg_labels = load_spec(segmenter_model).labels if segment else None
    if score_threshold is None and detect:
        score_threshold = load_spec(model).thresholds.score_threshold
    recorded = load_recorded(
        outputs_bag, det_topic if detect else None, seg_topic if segment else None, labels=det_labels or seg_labels
    )
    if detect and segment:
        seg_only = load_recorded(outputs_bag, None, seg_topic, labels=seg_labels)
        recorded = {s: (d, seg_only.get(s, (None, None))[1]) for s, (d, _) in recorded.items()}
    class_names = None
    if detect and not truth.coco_json:
        class_names = [det_labels[k] for k in sorted(det_labels)]
    report = evaluate_bag(
        bag,
        image_topic,
        truth,
        recorded=recorded,
        class_names=class_names,
        seg_labels=seg_labels if truth.class_map_topic else None,
        score_threshold=score_threshold,
        iou_threshold=iou_threshold,
        progress=False,
    )
    report.update(mode="live", model=model if detect else segmenter_model, live=live)
    report["source"].update(rate=rate, outputs_bag=str(outputs_bag))
    if live["dropped"]:
        report["warnings"].append(
            "live: %d of %d received frames got no output (dropped); scores cover the rest"
            % (live["dropped"], live["received_frames"])
        )
    return report
