"""The latest-frame worker: the newest item wins, counters add up, errors do not stop it, batches are fair."""

from __future__ import annotations

import threading
from typing import List, Optional

import pytest

from dl_vision.errors import ConfigError
from dl_vision.ros.latest_frame import LatestFrameWorker


def test_items_put_while_busy_are_replaced_by_the_newest() -> None:
    release = threading.Event()
    started = threading.Event()
    seen: List[int] = []
    done = threading.Event()

    def process(items: List[int]) -> List[None]:
        (item,) = items
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(10)
        if item == 9:
            done.set()
        return [None]

    worker = LatestFrameWorker(process).start()
    worker.put(0)
    assert started.wait(10)
    for item in range(1, 10):  # arrive while item 0 is still being processed
        worker.put(item)
    release.set()
    assert done.wait(10)
    worker.stop()
    assert seen == [0, 9]
    counts = worker.counters.snapshot()
    assert counts == {"received": 10, "processed": 2, "skipped": 8, "errors": 0}
    assert not worker.alive


def test_a_failing_item_is_counted_and_the_next_one_processed() -> None:
    failures: List[str] = []
    processed = threading.Event()
    failed = threading.Event()

    def process(items: List[str]) -> List[None]:
        if items == ["bad"]:
            raise ValueError("bad frame")
        processed.set()
        return [None]

    def on_error(item: str, err: Exception) -> None:
        failures.append("%s: %s" % (item, err))
        failed.set()

    worker = LatestFrameWorker(process, on_error).start()
    worker.put("bad")
    assert failed.wait(10)
    worker.put("good")
    assert processed.wait(10)
    worker.stop()
    assert failures == ["bad: bad frame"]
    counts = worker.counters.snapshot()
    assert counts["errors"] == 1 and counts["processed"] == 1 and counts["received"] == 2


def test_none_is_a_valid_item_and_stop_ends_an_idle_worker() -> None:
    got = threading.Event()
    items: List[object] = []

    def process(taken: List[object]) -> List[None]:
        items.extend(taken)
        got.set()
        return [None]

    worker = LatestFrameWorker(process).start()
    worker.put(None)
    assert got.wait(10)
    worker.stop(timeout=10)
    assert items == [None] and not worker.alive


def test_sources_take_turns_and_each_keeps_only_its_newest_frame() -> None:
    release = threading.Event()
    started = threading.Event()
    seen: List[str] = []
    done = threading.Event()

    def process(items: List[str]) -> List[None]:
        (item,) = items
        seen.append(item)
        if item == "a0":
            started.set()
            release.wait(10)
        if len(seen) == 4:
            done.set()
        return [None]

    worker = LatestFrameWorker(process).start()
    worker.put("a0", source="a")
    assert started.wait(10)
    # While a0 is processed: b waits first, then c, then a; newer frames replace older ones in place.
    for item, source in (("b1", "b"), ("c1", "c"), ("a1", "a"), ("b2", "b"), ("a2", "a"), ("c2", "c")):
        worker.put(item, source=source)
    worker.drop(source="c")
    release.set()
    assert done.wait(10)
    worker.stop()
    assert seen == ["a0", "b2", "c2", "a2"]
    assert worker.counters.snapshot() == {"received": 8, "processed": 4, "skipped": 4, "errors": 0}
    by_source = worker.source_counters()
    assert by_source["a"] == {"received": 3, "processed": 2, "skipped": 1, "errors": 0}
    assert by_source["b"] == {"received": 2, "processed": 1, "skipped": 1, "errors": 0}
    assert by_source["c"] == {"received": 3, "processed": 1, "skipped": 2, "errors": 0}


class _Batches:
    """A ``process`` callback that records each call's items; the first call waits for :attr:`release`.

    Items starting with ``bad`` fail alone (their outcome is an error); an item ``boom`` makes the whole
    call raise (a model failure).
    """

    def __init__(self, calls_expected: int) -> None:
        self.calls: List[List[str]] = []
        self.calls_expected = calls_expected
        self.started, self.release, self.done = threading.Event(), threading.Event(), threading.Event()

    def __call__(self, items: List[str]) -> List[Optional[Exception]]:
        self.calls.append(list(items))
        if len(self.calls) == 1:
            self.started.set()
            self.release.wait(10)
        if len(self.calls) == self.calls_expected:
            self.done.set()
        if "boom" in items:
            raise RuntimeError("model failed")
        return [ValueError("cannot decode %s" % item) if item.startswith("bad") else None for item in items]


def _run_while_busy(max_batch: int, calls: int, waiting: List[tuple], on_error=None) -> tuple:
    """Put ``waiting`` ``(item, source)`` pairs while a first item is processed; the worker and its calls."""
    process = _Batches(calls)
    worker = LatestFrameWorker(process, on_error, max_batch=max_batch).start()
    worker.put("first", source="first")
    assert process.started.wait(10)
    for item, source in waiting:
        worker.put(item, source=source)
    process.release.set()
    assert process.done.wait(10)
    worker.stop()
    return worker, process.calls


def test_a_batch_takes_the_longest_waiting_sources_and_the_rest_go_next() -> None:
    # b, c, d then a start waiting; b's newer frame replaces its older one and keeps b's place.
    waiting = [("b1", "b"), ("c1", "c"), ("d1", "d"), ("b2", "b"), ("a1", "a")]
    _, calls = _run_while_busy(max_batch=2, calls=3, waiting=waiting)
    assert calls == [["first"], ["b2", "c1"], ["d1", "a1"]]
    _, calls = _run_while_busy(max_batch=8, calls=2, waiting=waiting)
    assert calls == [["first"], ["b2", "c1", "d1", "a1"]]  # never more than are waiting


def test_batches_share_an_overload_fairly() -> None:
    sources = ["cam%d" % i for i in range(5)]
    taken: List[List[str]] = []
    finished = threading.Event()
    worker: LatestFrameWorker

    def process(items: List[str]) -> List[None]:
        taken.append(items)
        for source in sources:  # every camera sends a frame while the model runs
            worker.put(source, source=source)
        if len(taken) == 20:
            finished.set()
        return [None] * len(items)

    worker = LatestFrameWorker(process, max_batch=2)
    for source in sources:
        worker.put(source, source=source)
    worker.start()
    assert finished.wait(10)
    worker.stop()
    # A source left out goes first in the next call, so each of 5 sources is taken in every 3 calls
    # (ceil(5 / 2)) although all of them send a new frame during every call.
    assert all(len(items) == 2 for items in taken[:20])
    for start in range(18):
        window = {item for items in taken[start : start + 3] for item in items}
        assert window == set(sources), (start, taken[start : start + 3])
    by_source = worker.source_counters()
    for source in sources:
        counts = by_source[source]
        assert counts["processed"] >= 20 // 3, counts
        # Every frame is accounted for once: processed, skipped, or still waiting in its slot.
        assert counts["received"] - counts["processed"] - counts["skipped"] in (0, 1), counts


def test_a_bad_frame_in_a_batch_fails_alone_and_a_failed_batch_fails_each_frame() -> None:
    errors: List[str] = []
    waiting = [("good_b", "b"), ("bad_c", "c"), ("good_d", "d")]
    worker, calls = _run_while_busy(4, 2, waiting, on_error=lambda item, err: errors.append("%s: %s" % (item, err)))
    assert calls == [["first"], ["good_b", "bad_c", "good_d"]]
    assert errors == ["bad_c: cannot decode bad_c"]
    assert worker.counters.snapshot() == {"received": 4, "processed": 3, "skipped": 0, "errors": 1}
    by_source = worker.source_counters()
    assert by_source["c"]["errors"] == 1 and by_source["b"]["processed"] == by_source["d"]["processed"] == 1

    errors.clear()
    worker, calls = _run_while_busy(4, 2, [("x", "b"), ("boom", "c")], on_error=lambda i, e: errors.append(i))
    assert calls[1] == ["x", "boom"] and errors == ["x", "boom"]
    assert worker.counters.snapshot() == {"received": 3, "processed": 1, "skipped": 0, "errors": 2}


def test_a_wrong_number_of_outcomes_counts_the_batch_as_errors() -> None:
    failed = threading.Event()
    seen: List[str] = []

    def on_error(item: str, err: Exception) -> None:
        seen.append("%s: %s" % (item, err))
        if len(seen) == 2:
            failed.set()

    worker = LatestFrameWorker(lambda items: [None], on_error, max_batch=2)
    worker.put("a", source="a")
    worker.put("b", source="b")
    worker.start()
    assert failed.wait(10)
    worker.stop()
    assert seen == ["a: process: expected 2 outcomes, found 1", "b: process: expected 2 outcomes, found 1"]
    assert worker.counters.snapshot()["errors"] == 2


@pytest.mark.parametrize("max_batch", [0, -1, 1.5, True, "2"])
def test_max_batch_must_be_a_positive_integer(max_batch) -> None:
    with pytest.raises(ConfigError, match="max_batch: expected a positive integer, found"):
        LatestFrameWorker(lambda items: [None] * len(items), max_batch=max_batch)
