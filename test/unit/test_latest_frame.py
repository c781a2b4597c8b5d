"""The latest-frame worker: the newest item wins, counters add up, errors do not stop it."""

from __future__ import annotations

import threading
from typing import List

from dl_vision.ros.latest_frame import LatestFrameWorker


def test_items_put_while_busy_are_replaced_by_the_newest() -> None:
    release = threading.Event()
    started = threading.Event()
    seen: List[int] = []
    done = threading.Event()

    def process(item: int) -> None:
        seen.append(item)
        if item == 0:
            started.set()
            release.wait(10)
        if item == 9:
            done.set()

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

    def process(item: str) -> None:
        if item == "bad":
            raise ValueError("bad frame")
        processed.set()

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

    def process(item: object) -> None:
        items.append(item)
        got.set()

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

    def process(item: str) -> None:
        seen.append(item)
        if item == "a0":
            started.set()
            release.wait(10)
        if len(seen) == 4:
            done.set()

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
