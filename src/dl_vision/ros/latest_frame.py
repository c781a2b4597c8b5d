"""Keep only the newest frame of each camera and process them on one worker thread.

rospy runs subscriber callbacks on each connection's receive thread; doing
inference there makes frames queue up in the socket, so latency grows without
bound when the model is slower than the camera. Here the callback only stores
the message in a mailbox with one slot per source (camera), overwriting, and
counting as skipped, a frame that was never taken, and a worker thread takes
the newest frames when it is free. Sources are served in the order their
waiting frame first arrived, so several cameras sharing one model take turns
and none starves. With ``max_batch`` > 1 the worker takes the newest frame of up
to that many waiting sources at once, longest-waiting first, for a model that
runs them as one batch; the sources left over keep their place at the head of
the line. It never waits for a batch to fill: what is waiting when the worker is
free is what it takes. No rospy in this module: it is tested without a master.
"""

from __future__ import annotations

import collections
import threading
from typing import Any, Callable, Dict, Hashable, List, Optional, Sequence

from dl_vision.errors import ConfigError

_STOP = object()


class FrameCounters:
    """Thread-safe frame counters.

    Attributes (read through :meth:`snapshot`):
        received: frames handed to :meth:`LatestFrameWorker.put`.
        processed: frames the worker finished without an error.
        skipped: frames overwritten before the worker took them, or dropped on purpose.
        errors: frames whose processing failed.
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


#: What a ``process`` callback returns per item: None when it was processed, else what it failed with.
Outcome = Optional[Exception]


class LatestFrameWorker:
    """A mailbox with one slot per source plus the thread that empties it.

    Args:
        process: called on the worker thread with a list of taken items (the newest of each of up
            to ``max_batch`` sources, longest-waiting source first); returns one :data:`Outcome`
            per item, in order. An exception it raises fails every item of the call; either way
            the worker goes on.
        on_error: called with ``(item, exception)`` for each failed item.
        name: the thread's name.
        max_batch: the most items handed to one ``process`` call (1: one source at a time).

    Raises:
        ConfigError: ``max_batch`` is not a positive integer.
    """

    def __init__(
        self,
        process: Callable[[List[Any]], Sequence[Outcome]],
        on_error: Optional[Callable[[Any, Exception], None]] = None,
        name: str = "latest-frame-worker",
        max_batch: int = 1,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError("max_batch: expected a positive integer, found %r" % (max_batch,))
        self._process = process
        self._on_error = on_error
        self.max_batch = max_batch
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

    def _take(self) -> Any:
        """``[(source, item), ...]`` of up to ``max_batch`` longest-waiting sources, waiting for one;
        :data:`_STOP` once stopping."""
        with self._condition:
            while not self._pending and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return _STOP
            return [self._pending.popitem(last=False) for _ in range(min(self.max_batch, len(self._pending)))]

    def _run(self) -> None:
        while True:
            taken = self._take()
            if taken is _STOP:
                return
            items = [item for _, item in taken]
            try:
                outcomes = list(self._process(items))
                if len(outcomes) != len(items):
                    raise RuntimeError("process: expected %d outcomes, found %d" % (len(items), len(outcomes)))
            except Exception as err:  # the node must survive anything one batch does
                outcomes = [err] * len(items)
            with self._condition:
                for (source, _), outcome in zip(taken, outcomes):
                    self._count(source, "processed" if outcome is None else "errors")
            if self._on_error is not None:
                for item, outcome in zip(items, outcomes):
                    if outcome is not None:
                        self._on_error(item, outcome)

    def stop(self, timeout: Optional[float] = 5.0) -> None:
        """Ask the worker to finish (a batch in progress completes) and wait up to ``timeout`` s."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        """True while the worker thread runs."""
        return self._thread.is_alive()
