"""In-process measurements: the model alone, and the node's whole per-frame work.

No master and no rospy: the frame is serialised as rospy would send it, and the node's own
:class:`~dl_vision.frame_processor.FrameProcessor` deserialises, decodes, runs the model and builds
the output messages, reporting each stage's time, so the figures are the node's, not a copy's.
"""

from __future__ import annotations

import io
import time
from typing import Dict, List

import numpy as np
from sensor_msgs.msg import Image

from dl_vision import messages
from dl_vision.benchmark.summary import PIPELINE_STAGES, ratio
from dl_vision.frame_processor import FrameProcessor
from dl_vision.latency import summarize_ms
from dl_vision.pipeline import Detector

#: The stages counted as our node's overhead: everything but the model and rospy's transport.
OVERHEAD_STAGES = ("decode", "detector/preprocess", "detector/postprocess", "message_build")


def measure_model_only(detector: Detector, frame: np.ndarray, iterations: int, warmup: int = 10) -> Dict[str, object]:
    """Time ``detector.backend.run`` alone on the pre-processed ``frame``.

    Returns:
        ``{"inference_ms": summary}`` (see :func:`~dl_vision.latency.summarize_ms`).
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


def _serialized(frame: np.ndarray) -> bytes:
    """``frame`` as the wire bytes of a ``sensor_msgs/Image`` (what rospy hands the node)."""
    buffer = io.BytesIO()
    messages.bgr_to_image_msg(frame, messages.make_header(frame_id="bench_camera")).serialize(buffer)
    return buffer.getvalue()


def measure_pipeline(detector: Detector, frame: np.ndarray, iterations: int, warmup: int = 10) -> Dict[str, object]:
    """Time each stage ``detector_node`` runs per frame, on the serialised ``frame``.

    Returns:
        ``{"stages_ms": {stage: summary}, "total_ms": summary, "overhead_ms": summary,
        "detections": n}``; ``overhead_ms`` sums :data:`OVERHEAD_STAGES` per frame (so its
        median is a real frame's, not a sum of medians).
    """
    processor = FrameProcessor(detector)
    types = messages.genpy_types()
    wire = _serialized(frame)
    rows: List[List[float]] = []
    found = 0
    for i in range(warmup + iterations):
        result = processor.process_serialized(wire, Image, types=types)
        if i >= warmup:
            rows.append([processor.timings[stage] for stage in PIPELINE_STAGES])
            found = len(result.detections)
    table = np.asarray(rows, dtype=np.float64).reshape(-1, len(PIPELINE_STAGES))
    overhead_columns = [PIPELINE_STAGES.index(s) for s in OVERHEAD_STAGES]
    return {
        "stages_ms": {name: summarize_ms(table[:, i]) for i, name in enumerate(PIPELINE_STAGES)},
        "total_ms": summarize_ms(table.sum(axis=1)),
        "overhead_ms": summarize_ms(table[:, overhead_columns].sum(axis=1)),
        "detections": found,
    }


def measure_batch(
    detector: Detector, frame: np.ndarray, cameras: int, rounds: int, warmup: int = 3
) -> Dict[str, object]:
    """Time the node's work on one frame of each of ``cameras`` cameras: as one batch, and one by one.

    Each round runs both, one after the other, so that the load of a shared machine hits both alike.

    Returns:
        ``{"cameras", "rounds", "batched_ms": summary, "in_turn_ms": summary, "speedup"}``: the time
        for all cameras' frames as one :meth:`~FrameProcessor.process_serialized_batch` call and as
        ``cameras`` :meth:`~FrameProcessor.process_serialized` calls; ``speedup`` is the ratio of
        their medians (above 1: the batch is faster).
    """
    processor = FrameProcessor(detector)
    types = messages.genpy_types()
    wires = [_serialized(frame)] * cameras
    batched: List[float] = []
    in_turn: List[float] = []
    for i in range(warmup + rounds):
        start = time.perf_counter()
        processor.process_serialized_batch(wires, Image, types=types)
        middle = time.perf_counter()
        for wire in wires:
            processor.process_serialized(wire, Image, types=types)
        end = time.perf_counter()
        if i >= warmup:
            batched.append((middle - start) * 1e3)
            in_turn.append((end - middle) * 1e3)
    batched_summary, in_turn_summary = summarize_ms(batched), summarize_ms(in_turn)
    return {
        "cameras": cameras,
        "rounds": rounds,
        "batched_ms": batched_summary,
        "in_turn_ms": in_turn_summary,
        "speedup": ratio(in_turn_summary["p50"], batched_summary["p50"]),
    }
