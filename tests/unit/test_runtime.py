"""runtime.prefetched: the one-ahead preparation the imputation and validation loops use."""

from __future__ import annotations

import threading

import pytest

from vcfbert.runtime import prefetched


def test_prefetched_keeps_order_and_runs_one_ahead():
    started: list[int] = []
    lock = threading.Lock()

    def prepare(x: int) -> int:
        with lock:
            started.append(x)
        return x * x

    seen = []
    for i, (x, y) in enumerate(prefetched(range(7), prepare)):
        with lock:
            assert len(started) <= i + 2  # the current item and at most the next one
        seen.append((x, y))
    assert seen == [(x, x * x) for x in range(7)]
    assert sorted(started) == list(range(7))
    assert list(prefetched([], prepare)) == []


def test_prefetched_raises_at_the_failing_item():
    def prepare(x: int) -> int:
        if x == 2:
            raise ValueError("window 2 is unreadable")
        return x

    got = []
    with pytest.raises(ValueError, match="window 2"):
        for x, _ in prefetched(range(5), prepare):
            got.append(x)
    assert got == [0, 1]
