"""Summaries of timing samples: percentiles, rates and latency growth over a run.

Pure numpy; no ROS import, so the numbers can be recomputed from a saved JSON file.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

#: Stages of one frame through the node, in order: the frame processor's stage names.
PIPELINE_STAGES = (
    "deserialize",
    "decode",
    "detector/preprocess",
    "detector/inference",
    "detector/postprocess",
    "message_build",
)


def latency_growth(
    times_s: Sequence[float], latencies_ms: Sequence[float], window_s: float = 5.0
) -> Dict[str, Optional[float]]:
    """How latency moves over a run: medians of its first and last windows and a fitted slope.

    A node that keeps up (or drops stale frames) has a flat latency; a node whose
    queue fills has a latency that climbs by the overload ratio every second.

    Args:
        times_s: receive time of each output, seconds (any origin, ascending).
        latencies_ms: latency of each output in milliseconds, same length.
        window_s: length of the first and last windows in seconds.

    Returns:
        ``{"first_p50_ms", "last_p50_ms", "slope_ms_per_s"}``; None where there
        are too few samples to say.
    """
    t = np.asarray(times_s, dtype=np.float64).reshape(-1)
    lat = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
    out: Dict[str, Optional[float]] = {"first_p50_ms": None, "last_p50_ms": None, "slope_ms_per_s": None}
    if t.size < 2:
        return out
    first = lat[t <= t[0] + window_s]
    last = lat[t >= t[-1] - window_s]
    out["first_p50_ms"] = round(float(np.median(first)), 3)
    out["last_p50_ms"] = round(float(np.median(last)), 3)
    if t[-1] > t[0]:
        out["slope_ms_per_s"] = round(float(np.polyfit(t - t[0], lat, 1)[0]), 3)
    return out


def ratio(numerator: Optional[float], denominator: Optional[float]) -> Optional[float]:
    """``numerator / denominator`` rounded to 3 places, None when either is missing or the denominator is 0."""
    if numerator is None or not denominator:
        return None
    return round(float(numerator) / float(denominator), 3)


def _cell(value: Optional[float], digits: int = 1) -> str:
    return "n/a" if value is None else "%.*f" % (digits, value)


def _node_label(row: dict) -> str:
    """``ours``, ``naive``, or ``ours, max_batch 4`` when the run set our node's ``~max_batch``."""
    max_batch = row.get("max_batch")
    return row["node"] if max_batch is None else "%s, max_batch %d" % (row["node"], max_batch)


def markdown_tables(runs: Sequence[dict]) -> str:
    """The README's benchmark tables from benchmark results (one dict per ``benchmark`` invocation).

    Returns:
        Markdown: a per-frame cost table (one row per input size), a batched-against-in-turn table
        when a run measured one (several cameras, a batch-capable model) and a through-ROS table
        (one row per node, ``~max_batch``, rate and camera count).
    """
    lines = [
        "| input | model only p50 | deserialize | decode | pre-process | inference | post-process | message build"
        " | overhead p50 (p90) | frame p50 | capacity |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    seen = set()
    for run in runs:
        size = run["config"]["size"]
        if size in seen:
            continue
        seen.add(size)
        stages = run["pipeline"]["stages_ms"]
        lines.append(
            "| %s | %s | %s | %s | %s | %s | %s | %s | %s (%s) | %s | %s Hz |"
            % (
                size,
                _cell(run["model_only"]["inference_ms"]["p50"], 2),
                *(_cell(stages[s]["p50"], 2) for s in PIPELINE_STAGES),
                _cell(run["pipeline"]["overhead_ms"]["p50"], 2),
                _cell(run["pipeline"]["overhead_ms"]["p90"], 2),
                _cell(run["pipeline"]["total_ms"]["p50"], 2),
                _cell(run["capacity_hz"], 0),
            )
        )
    batches = [run for run in runs if "batch" in run]
    if batches:
        lines += [
            "",
            "| input | cameras | one by one (all cameras) | as one batch | per frame one by one | per frame batched"
            " | speed-up |",
            "|---|---|---|---|---|---|---|",
        ]
        for run in batches:
            batch = run["batch"]
            cameras = batch["cameras"]
            in_turn, batched = batch["in_turn_ms"]["p50"], batch["batched_ms"]["p50"]
            lines.append(
                "| %s | %d | %s ms | %s ms | %s ms | %s ms | %s |"
                % (
                    run["config"]["size"],
                    cameras,
                    _cell(in_turn),
                    _cell(batched),
                    _cell(None if in_turn is None else in_turn / cameras),
                    _cell(None if batched is None else batched / cameras),
                    "n/a" if batch["speedup"] is None else "%.2fx" % batch["speedup"],
                )
            )
    lines += [
        "",
        "| input | cameras | offered (Hz, all cameras) | node | output (Hz) | answered | latency p50 | p90 | p99"
        " | p50 first 5 s -> last 5 s | node frame time | CPU | RSS |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        cameras = run["config"]["cameras"]
        for row in run["ros"]:
            lat, growth, proc = row["latency_ms"], row["latency_growth"], row["process"]
            answered = row["answered_fraction"]
            lines.append(
                "| %s | %d | %s (%sx capacity) | %s | %s | %s | %s ms | %s ms | %s ms | %s -> %s ms | %s"
                " | %s%% | %s MB |"
                % (
                    run["config"]["size"],
                    cameras,
                    _cell(None if row["offered_hz"] is None else row["offered_hz"] * cameras, 0),
                    _cell(row["rate_factor"], 1),
                    _node_label(row),
                    _cell(row["throughput_hz"], 1),
                    "n/a" if answered is None else "%.0f%%" % (100 * answered),
                    _cell(lat["p50"]),
                    _cell(lat["p90"]),
                    _cell(lat["p99"]),
                    _cell(growth["first_p50_ms"], 0),
                    _cell(growth["last_p50_ms"], 0),
                    "n/a" if row.get("node_frame_time_ms") is None else "%s ms" % _cell(row["node_frame_time_ms"]),
                    _cell(proc["cpu_percent"], 0),
                    _cell(proc["rss_mb_last"], 0),
                )
            )
    return "\n".join(lines) + "\n"
