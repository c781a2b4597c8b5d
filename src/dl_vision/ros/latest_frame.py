"""Keep only the newest frame of each camera and process them on one worker thread.

rospy runs subscriber callbacks on each connection's receive thread; doing
inference there makes frames queue up in the socket, so latency grows without
bound when the model is slower than the camera. Here the callback only stores
the message in a mailbox with one slot per source (camera), overwriting, and
counting as skipped, a frame that was never taken, and a worker thread takes
the newest frames when it is free. Sources are served in the order their
waiting frame first arrived, so several cameras sharing one model take turns
and none starves. No rospy in this module: it is tested without a master.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Dict, Hashable, Optional, Tuple

_STOP = object()


class FrameCounters:
    """Thread-safe frame counters.

    Attributes (read through :meth:`snapshot`):
        received: frames handed to :meth:`LatestFrameWorker.put`.
        processed: frames the worker finished without an exception.
        skipped: frames overwritten before the worker took them, or dropped on purpose.
        errors: frames whose processing raised.
    """

    _FIELDS = ("received", "processed", "skipped", "errors")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(self._FIELDS, 0)

    def add(self, field: str, amount: int = 1) -> None:
        """Increase one counter (``received``, ``processed``, ``skipped`` or ``errors``)."""
        with self._lock:
            self._values[field] += amount

    def snapshot(self) -> Dict[str, int]:
        """A consistent copy of all counters."""
        with self._lock:
            return dict(self._values)


class LatestFrameWorker:
    """A mailbox with one slot per source plus the thread that empties it.

    Args:
        process: called on the worker thread with each taken item. Exceptions
            are counted as errors and passed to ``on_error``; the worker goes on.
        on_error: called with ``(item, exception)`` after a failed ``process``.
        name: the thread's name.
    """

    def __init__(
        self,
        process: Callable[[Any], None],
        on_error: Optional[Callable[[Any, Exception], None]] = None,
        name: str = "latest-frame-worker",
    ) -> None:
        self._process = process
        self._on_error = on_error
        self._condition = threading.Condition()
        #: source -> newest waiting item, in the order each source's wait began.
        self._pending: "collections.OrderedDict[Hashable, Any]" = collections.OrderedDict()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.counters = FrameCounters()
        self._source_counters: Dict[Hashable, FrameCounters] = {}

    def start(self) -> "LatestFrameWorker":
        """Start the worker thread; returns self."""
        self._thread.start()
        return self

    def put(self, item: Any, source: Hashable = None) -> None:
        """Store ``item`` as the newest frame of ``source`` (call from a subscriber callback; never blocks long).

        A frame of the same source still waiting is replaced (and counted as
        skipped); the source keeps its turn.
        """
        with self._condition:
            if source in self._pending:
                self._count(source, "skipped")
            self._pending[source] = item
            self._count(source, "received")
            self._condition.notify()

    def drop(self, source: Hashable = None) -> None:
        """Count a frame of ``source`` as received and skipped without storing it (e.g. every task is off)."""
        with self._condition:
            self._count(source, "received")
            self._count(source, "skipped")

    def source_counters(self) -> Dict[Hashable, Dict[str, int]]:
        """``{source: counters snapshot}`` for every source seen so far."""
        with self._condition:
            return {source: counters.snapshot() for source, counters in self._source_counters.items()}

    def _count(self, source: Hashable, field: str) -> None:
        self.counters.add(field)
        if source not in self._source_counters:
            self._source_counters[source] = FrameCounters()
        self._source_counters[source].add(field)

    def _take(self) -> Tuple[Hashable, Any]:
        """``(source, item)`` of the longest-waiting source, waiting for one; :data:`_STOP` once stopping."""
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return _STOP
            return self._pending.popitem(last=False)

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is _STOP:
                return
            source, item = taken
            try:
                self._process(item)
            except Exception as err:  # the node must survive any one bad frame
                with self._condition:
                    self._count(source, "errors")
                if self._on_error is not None:
                    self._on_error(item, err)
            else:
                with self._condition:
                    self._count(source, "processed")

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Ask the worker to finish (a frame in progress completes) and wait up to ``timeout`` s."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()
