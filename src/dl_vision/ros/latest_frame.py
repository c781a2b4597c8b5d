"""Keep only the newest frame and process it on a worker thread.

rospy runs subscriber callbacks on each connection's receive thread; doing
inference there makes frames queue up in the socket, so latency grows without
bound when the model is slower than the camera. Here the callback only stores
the message in a one-slot mailbox (overwriting, and counting as skipped, a
frame that was never taken) and a worker thread takes whatever is newest when
it is free. No rospy in this module: it is tested without a master.
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, Optional

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
    """A one-slot mailbox plus the thread that empties it.

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
        self._item: Any = None
        self._has_item = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self.counters = FrameCounters()

    def start(self) -> "LatestFrameWorker":
        """Start the worker thread; returns self."""
        self._thread.start()
        return self

    def put(self, item: Any) -> None:
        """Store ``item`` as the newest frame (call from the subscriber callback; never blocks long)."""
        with self._condition:
            if self._has_item:
                self.counters.add("skipped")
            self._item = item
            self._has_item = True
            self.counters.add("received")
            self._condition.notify()

    def _take(self) -> Any:
        """The newest item, waiting for one; :data:`_STOP` once stopping."""
        with self._condition:
            while not self._has_item and not self._stopping:
                self._condition.wait()
            if self._stopping:
                return _STOP
            item, self._item, self._has_item = self._item, None, False
            return item

    def _run(self) -> None:
        while True:
            item = self._take()
            if item is _STOP:
                return
            try:
                self._process(item)
            except Exception as err:  # the node must survive any one bad frame
                self.counters.add("errors")
                if self._on_error is not None:
                    self._on_error(item, err)
            else:
                self.counters.add("processed")

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
