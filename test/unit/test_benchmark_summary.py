"""Benchmark arithmetic: summaries, latency growth, sizes and rates, /proc sampling, tables."""

from __future__ import annotations

import os

import numpy as np
import pytest

from dl_vision.benchmark.frames import parse_size, sample_frame
from dl_vision.benchmark.procfs import ProcessSampler, read_cpu_seconds, read_rss_bytes
from dl_vision.benchmark.summary import PIPELINE_STAGES, latency_growth, markdown_tables, ratio
from dl_vision.errors import ConfigError
from dl_vision.latency import summarize_ms


def test_summary_percentiles_match_numpy() -> None:
    samples = np.arange(1, 101, dtype=float)
    out = summarize_ms(samples[::-1])
    assert out["n"] == 100
    assert out["p50"] == pytest.approx(np.percentile(samples, 50))
    assert out["p99"] == pytest.approx(np.percentile(samples, 99))
    assert out["max"] == 100.0


def test_summary_of_nothing_is_none_not_zero() -> None:
    out = summarize_ms([])
    assert out["n"] == 0
    assert out["p50"] is None and out["mean"] is None


def test_latency_growth_sees_a_backlog_and_a_flat_run() -> None:
    t = np.linspace(0.0, 30.0, 301)
    growing = latency_growth(t, 10.0 + 50.0 * t)
    flat = latency_growth(t, np.full_like(t, 12.0))
    assert growing["slope_ms_per_s"] == pytest.approx(50.0)
    assert growing["last_p50_ms"] > growing["first_p50_ms"] + 1000
    assert flat["slope_ms_per_s"] == pytest.approx(0.0, abs=1e-9)
    assert latency_growth([1.0], [5.0])["slope_ms_per_s"] is None


@pytest.mark.parametrize(
    "numerator, denominator, expected", [(1.0, 4.0, 0.25), (None, 2.0, None), (3.0, 0.0, None), (2.0, None, None)]
)
def test_ratio(numerator, denominator, expected) -> None:
    assert ratio(numerator, denominator) == expected


@pytest.mark.parametrize(
    "text, expected, error",
    [
        ("640x480", (640, 480), None),
        ("1920X1080", (1920, 1080), None),
        ("640", None, ConfigError),
        ("0x480", None, ConfigError),
        ("axb", None, ConfigError),
        ("1x2x3", None, ConfigError),
    ],
)
def test_parse_size(text, expected, error) -> None:
    if error is not None:
        with pytest.raises(error):
            parse_size(text)
    else:
        assert parse_size(text) == expected


def test_sample_frame_keeps_the_photo_undistorted_on_grey() -> None:
    frame = sample_frame(640, 240)
    assert frame.shape == (240, 640, 3) and frame.dtype == np.uint8
    # 512x512 photo scaled to 240x240 and centred: grey bars left and right.
    assert (frame[:, :100] == 128).all() and (frame[:, -100:] == 128).all()
    assert not (frame[:, 320] == 128).all()


def test_procfs_reads_this_process() -> None:
    pid = os.getpid()
    assert read_rss_bytes(pid) > 10 * 2**20
    before = read_cpu_seconds(pid)
    sum(i * i for i in range(2_000_000))
    assert read_cpu_seconds(pid) > before
    sampler = ProcessSampler(pid, interval_s=0.01).start()
    sampler.stop()
    summary = sampler.summary()
    assert summary["rss_mb_first"] is not None and summary["rss_growth_percent"] is not None


def test_procfs_missing_process_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        read_rss_bytes(2**22 + 12345)


def test_markdown_tables_hold_one_row_per_size_and_per_node_run() -> None:
    stage = summarize_ms([1.0, 2.0])
    run = {
        "config": {"size": "640x480", "cameras": 1},
        "model_only": {"inference_ms": stage},
        "pipeline": {
            "stages_ms": {s: stage for s in PIPELINE_STAGES},
            "overhead_ms": stage,
            "total_ms": stage,
        },
        "capacity_hz": 100.0,
        "ros": [
            {
                "node": node,
                "offered_hz": 50.0,
                "rate_factor": 0.5,
                "throughput_hz": 49.0,
                "answered_fraction": 0.98,
                "latency_ms": stage,
                "latency_growth": {"first_p50_ms": 1.0, "last_p50_ms": None},
                "process": {"cpu_percent": None, "rss_mb_last": 500.0},
                **({"node_frame_time_ms": 7.5} if node == "ours" else {}),
            }
            for node in ("ours", "naive")
        ],
    }
    text = markdown_tables([run, run])
    assert text.count("| 640x480 | 1.50 |") == 1  # the per-frame table lists a size once
    assert "| 640x480 | 1 | 50 (0.5x capacity) | ours |" in text
    assert text.count("| naive |") == 2
    assert "n/a" in text  # a missing value reads n/a, never 0
    assert text.count("| 7.5 ms |") == 2  # our node's frame time in the run; the naive node reports none
    assert all(line.count("|") == 14 for line in text.splitlines() if "| ours |" in line or "| naive |" in line)


def _ros_row(max_batch, rate_factor, throughput_hz, p50, node="ours"):
    return {
        "node": node,
        "max_batch": max_batch,
        "offered_hz": 10.0,
        "rate_factor": rate_factor,
        "throughput_hz": throughput_hz,
        "answered_fraction": 0.5,
        "latency_ms": summarize_ms([p50, 2 * p50]),
        "latency_growth": {"first_p50_ms": p50, "last_p50_ms": p50},
        "process": {"cpu_percent": 150.0, "rss_mb_last": 800.0},
    }


@pytest.mark.ros  # benchmark.cli imports rospy
def test_batched_runs_get_their_own_table_rows_and_a_comparison_with_in_turn() -> None:
    from dl_vision.benchmark.cli import _batched_vs_in_turn, _node_runs

    assert _node_runs(["ours", "naive"], [1, 4]) == [("ours", 1), ("ours", 4), ("naive", None)]
    assert _node_runs(["ours"], None) == [("ours", None)]
    rows = [
        _ros_row(1, 0.5, 2.0, 250.0),
        _ros_row(4, 0.5, 2.0, 250.0),
        _ros_row(1, 3.0, 4.0, 400.0),
        _ros_row(4, 3.0, 8.0, 500.0),
        _ros_row(None, 3.0, 3.0, 900.0, node="naive"),
    ]
    comparison = _batched_vs_in_turn(rows)
    assert [(c["rate_factor"], c["max_batch"], c["throughput_ratio"]) for c in comparison] == [
        (0.5, 4, 1.0),
        (3.0, 4, 2.0),
    ]
    assert comparison[1]["latency_p50_ratio"] == pytest.approx(1.25)

    stage = summarize_ms([100.0, 100.0])
    run = {
        "config": {"size": "640x480", "cameras": 4},
        "model_only": {"inference_ms": stage},
        "pipeline": {"stages_ms": {s: stage for s in PIPELINE_STAGES}, "overhead_ms": stage, "total_ms": stage},
        "capacity_hz": 10.0,
        "batch": {
            "cameras": 4,
            "rounds": 5,
            "batched_ms": summarize_ms([200.0]),
            "in_turn_ms": summarize_ms([400.0]),
            "speedup": 2.0,
        },
        "ros": rows,
    }
    text = markdown_tables([run])
    assert "| 640x480 | 4 | 400.0 ms | 200.0 ms | 100.0 ms | 50.0 ms | 2.00x |" in text
    assert text.count("| ours, max_batch 4 |") == 2 and text.count("| ours, max_batch 1 |") == 2
    assert text.count("| naive |") == 1
    without_batch = dict(run, ros=rows[-1:])
    del without_batch["batch"]
    assert "speed-up" not in markdown_tables([without_batch])
