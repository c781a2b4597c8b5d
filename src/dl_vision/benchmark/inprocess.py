"""In-process measurements: the model alone, and the node's whole per-frame pipeline.

No master and no rospy: messages are serialised and deserialised with the
generated message classes, as rospy does on either side of a connection, so the
stages a node pays for can be timed one by one on the same frame.
"""

from __future__ import annotations

import io
import time
from typing import Dict, List

import numpy as np
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from dl_vision.benchmark.summary import summarize_ms
from dl_vision.pipeline import Detector
from dl_vision.ros.image_conversion import bgr_to_image_msg, detections_to_msg, image_to_bgr

#: Stages of one frame through the node, in order (milliseconds each).
PIPELINE_STAGES = ("deserialize", "decode", "preprocess", "inference", "postprocess", "message_build")
#: The stages counted as our node's overhead: everything but the model and rospy's transport.
OVERHEAD_STAGES = ("decode", "preprocess", "postprocess", "message_build")


def _serialize(msg) -> bytes:
    buffer = io.BytesIO()
    msg.serialize(buffer)
    return buffer.getvalue()


def measure_model_only(detector: Detector, frame: np.ndarray, iterations: int, warmup: int = 10) -> Dict[str, object]:
    """Time ``detector.backend.run`` alone on the pre-processed ``frame``.

    Returns:
        ``{"inference_ms": summary}`` (see :func:`~dl_vision.benchmark.summary.summarize_ms`).
    """
    tensor, _ = detector.preprocessor(frame)
    for _ in range(warmup):
        detector.backend.run(tensor)
    samples: List[float] = []
    for _ in range(iterations):
        start = time.perf_counter()
        detector.backend.run(tensor)
        samples.append((time.perf_counter() - start) * 1e3)
    return {"inference_ms": summarize_ms(samples)}


def measure_pipeline(detector: Detector, frame: np.ndarray, iterations: int, warmup: int = 10) -> Dict[str, object]:
    """Time each stage ``detector_node`` runs per frame, on the serialised ``frame``.

    Stages: ``deserialize`` (bytes to ``sensor_msgs/Image``, done by rospy's
    receive thread), ``decode`` (message to pixels), the detector's
    ``preprocess``/``inference``/``postprocess``, and ``message_build``
    (``DetectionArray`` built and serialised, as ``publish`` does).

    Returns:
        ``{"stages_ms": {stage: summary}, "total_ms": summary, "overhead_ms":
        summary, "detections": n}``; ``overhead_ms`` sums :data:`OVERHEAD_STAGES`
        per frame (so its median is a real frame's, not a sum of medians).
    """
    wire = _serialize(bgr_to_image_msg(frame, Header(frame_id="bench_camera")))
    rows: List[List[float]] = []
    found = 0
    for i in range(warmup + iterations):
        t0 = time.perf_counter()
        msg = Image().deserialize(wire)
        t1 = time.perf_counter()
        image = image_to_bgr(msg, copy=False)
        t2 = time.perf_counter()
        detections = detector(image)
        t3 = time.perf_counter()
        _serialize(detections_to_msg(detections, msg.header, msg.width, msg.height, detector.spec.name))
        t4 = time.perf_counter()
        if i < warmup:
            continue
        stages = detector.timings
        rows.append(
            [
                (t1 - t0) * 1e3,
                (t2 - t1) * 1e3,
                stages["preprocess"],
                stages["inference"],
                stages["postprocess"],
                (t4 - t3) * 1e3,
            ]
        )
        found = len(detections)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(PIPELINE_STAGES))
    overhead_columns = [PIPELINE_STAGES.index(s) for s in OVERHEAD_STAGES]
    return {
        "stages_ms": {name: summarize_ms(table[:, i]) for i, name in enumerate(PIPELINE_STAGES)},
        "total_ms": summarize_ms(table.sum(axis=1)),
        "overhead_ms": summarize_ms(table[:, overhead_columns].sum(axis=1)),
        "detections": found,
    }
