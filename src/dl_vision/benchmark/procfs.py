"""CPU time and resident memory of another process, sampled from Linux's /proc.

psutil is not a dependency: two /proc files give what the benchmark needs, and
reading them costs a few microseconds per sample.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Dict, List, Optional, Tuple

import numpy as np

from dl_vision.errors import ConfigError

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def read_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds consumed so far by all threads of ``pid``.

    Raises:
        ConfigError: the process does not exist (any more).
    """
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError as err:
        raise ConfigError("process %d: expected a running process, found none (%s)" % (pid, err)) from err
    # The command name (field 2) may hold spaces and parentheses; fields after the last ')' are fixed.
    fields = stat[stat.rindex(b")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / float(_CLOCK_TICKS)


def read_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (from /proc/PID/statm).

    Raises:
        ConfigError: the process does not exist (any more).
    """
    try:
        with open("/proc/%d/statm" % pid, "rb") as f:
            return int(f.read().split()[1]) * _PAGE_SIZE
    except OSError as err:
        raise ConfigError("process %d: expected a running process, found none (%s)" % (pid, err)) from err


class ProcessSampler:
    """Samples a process's CPU seconds and RSS on a background thread.

    Usage: ``sampler.start()``, run the workload, ``sampler.stop()``, then
    :meth:`summary` for a time window. Samples are ``(wall seconds, cpu seconds,
    rss bytes)`` with wall time from ``time.monotonic()``.
    """

    def __init__(self, pid: int, interval_s: float = 0.5) -> None:
        self.pid = int(pid)
        self.interval_s = float(interval_s)
        self.samples: List[Tuple[float, float, int]] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def sample(self) -> None:
        """Take one sample now (ignored once the process has exited)."""
        try:
            self.samples.append((time.monotonic(), read_cpu_seconds(self.pid), read_rss_bytes(self.pid)))
        except ConfigError:
            self._stop.set()

    def start(self) -> "ProcessSampler":
        """Start sampling every ``interval_s`` seconds."""
        self.sample()
        self._thread = threading.Thread(target=self._loop, name="proc-sampler-%d" % self.pid, daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def stop(self) -> None:
        """Stop sampling (takes a last sample first)."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def summary(self, start: Optional[float] = None, end: Optional[float] = None) -> Dict[str, Optional[float]]:
        """CPU use and RSS between monotonic times ``start`` and ``end`` (whole run when None).

        Returns:
            ``cpu_percent`` (100 = one core busy), ``rss_mb_first``, ``rss_mb_last``,
            ``rss_mb_max`` and ``rss_growth_percent`` (last against first sample
            of the window); None values when the window holds under two samples.
        """
        rows = [s for s in self.samples if (start is None or s[0] >= start) and (end is None or s[0] <= end)]
        keys = ("cpu_percent", "rss_mb_first", "rss_mb_last", "rss_mb_max", "rss_growth_percent")
        if len(rows) < 2:
            return {k: None for k in keys}
        arr = np.asarray(rows, dtype=np.float64)
        wall = arr[-1, 0] - arr[0, 0]
        rss_mb = arr[:, 2] / 1e6
        return {
            "cpu_percent": round(100.0 * (arr[-1, 1] - arr[0, 1]) / wall, 1) if wall > 0 else None,
            "rss_mb_first": round(float(rss_mb[0]), 1),
            "rss_mb_last": round(float(rss_mb[-1]), 1),
            "rss_mb_max": round(float(rss_mb.max()), 1),
            "rss_growth_percent": round(100.0 * (rss_mb[-1] - rss_mb[0]) / rss_mb[0], 2),
        }
