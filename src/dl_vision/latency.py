"""Summaries of latency and timing samples, shared by the benchmark and the live evaluation."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np

#: Percentiles every latency summary reports.
PERCENTILES = (50, 90, 95, 99)


def summarize_ms(samples_ms: Sequence[float]) -> Dict[str, Optional[float]]:
    """Count, mean, p50/p90/p95/p99 and max of samples in milliseconds.

    Args:
        samples_ms: durations in milliseconds, any order.

    Returns:
        ``{"n", "mean", "p50", "p90", "p95", "p99", "max"}``; every statistic is None when
        there are no samples (a run that produced nothing must not read as 0 ms).
    """
    values = np.asarray(samples_ms, dtype=np.float64).reshape(-1)
    out: Dict[str, Optional[float]] = {"n": int(values.size)}
    if values.size == 0:
        out.update({"mean": None, "max": None})
        out.update({"p%d" % p: None for p in PERCENTILES})
        return out
    out["mean"] = round(float(values.mean()), 3)
    for p, v in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
        out["p%d" % p] = round(float(v), 3)
    out["max"] = round(float(values.max()), 3)
    return out
