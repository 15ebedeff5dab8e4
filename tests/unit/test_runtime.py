"""runtime.prefetched and runtime.read_ahead: the one-ahead preparation the imputation and
validation loops use, the text VCF reader's blocks produced on a thread, the device `auto`
picks, the Snakemake scheduler's timers released at the end of a workflow, and the
environment the workflow's jobs inherit."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from vcfbert.runtime import (
    NUMPY_HUGE_PAGES,
    export_for_jobs,
    ordered_map,
    prefetched,
    read_ahead,
    release_scheduler_timers,
)


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


def test_prefetched_starts_the_first_item_at_the_call():
    """The imputation job starts its first window's preparation, then imports torch: the
    first ``prepare`` must run before the caller asks for the first item."""
    started = threading.Event()

    def prepare(x: int) -> int:
        started.set()
        return x + 1

    items = prefetched(range(3), prepare)
    assert started.wait(10), "the first item's prepare did not start at the call"
    assert list(items) == [(0, 1), (1, 2), (2, 3)]


def test_an_imputation_jobs_first_window_needs_no_torch():
    """What the imputation job runs before torch's import (the device for a CPU request,
    the window's reading, keys, exact index and kernel tables) imports no torch, so that its
    first window is prepared while torch is imported (vcfbert.impute.predict_cores)."""
    code = (
        "import sys\n"
        "from vcfbert.devices import pick_device\n"
        "assert pick_device('auto', inference=True) == 'cpu' and pick_device('cpu') == 'cpu'\n"
        "import vcfbert.index, vcfbert.keyencoder, vcfbert.masks, vcfbert.windowdata\n"
        "import vcfbert.model.copy_kernel, vcfbert.io.h5store, vcfbert.runtime\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "from vcfbert.model import VcfBert\n"
        "assert 'torch' in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


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


def test_read_ahead_keeps_order_and_stays_within_its_depth():
    produced: list[int] = []

    def items():
        for x in range(20):
            produced.append(x)
            yield x

    got = []
    for x in read_ahead(items(), depth=2):
        time.sleep(0.005)  # let the producer run ahead as far as it may
        # the item handed over, ``depth`` waiting, and one being produced
        assert len(produced) <= x + 1 + 2 + 1
        got.append(x)
    assert got == list(range(20))
    assert list(read_ahead(iter([]))) == []


def test_read_ahead_raises_after_the_items_before_the_failure():
    def items():
        yield 0
        yield 1
        raise ValueError("block 2 is corrupt")

    got = []
    with pytest.raises(ValueError, match="block 2"):
        for x in read_ahead(items()):
            got.append(x)
    assert got == [0, 1]


def test_read_ahead_stops_and_closes_the_producer_when_the_caller_stops():
    closed = threading.Event()
    produced: list[int] = []

    def items():
        try:
            for x in range(10_000):
                produced.append(x)
                yield x
        finally:
            closed.set()

    for x in read_ahead(items()):
        if x == 3:
            break
    assert closed.wait(5), "the producer was not closed"
    assert len(produced) <= 3 + 1 + 1 + 1
    assert not any(t.name == "read_ahead" for t in threading.enumerate())


def test_ordered_map_keeps_order_raises_at_its_item_and_stops_early():
    """runtime.ordered_map: results in the items' order whatever order the threads finish
    in; an exception at its item, after the results before it; at most ``depth`` items
    started beyond the one handed out, and none started after the caller stops."""
    import random

    def slow_square(x: int) -> int:
        time.sleep(random.random() * 0.01)
        if x == 7:
            raise ValueError("seven")
        return x * x

    assert list(ordered_map(slow_square, range(7), threads=3)) == [x * x for x in range(7)]
    got = []
    with pytest.raises(ValueError, match="seven"):
        for y in ordered_map(slow_square, range(10), threads=3):
            got.append(y)
    assert got == [x * x for x in range(7)]
    started = []

    def record(x: int) -> int:
        started.append(x)
        return x

    for y in ordered_map(record, range(100), threads=2, depth=2):
        if y == 3:
            break
    assert max(started) <= 3 + 2 + 1


def test_auto_device_imputes_on_the_cpu_and_trains_on_a_visible_gpu(monkeypatch):
    """``device: auto`` trains on a visible GPU but imputes on the CPU, whose fused kernel
    was ~10x faster than the GPU's torch path (docs/gpu.md); an explicit ``cuda`` still
    imputes on the GPU, and one without a GPU is refused with what to set."""
    import torch

    from vcfbert.devices import pick_device
    from vcfbert.errors import InputError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_device("auto") == "cuda"
    assert pick_device("auto", inference=True) == "cpu"
    assert pick_device("cuda:1", inference=True) == "cuda:1"
    assert pick_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert pick_device("auto") == "cpu"
    with pytest.raises(InputError, match="device: auto"):
        pick_device("cuda", inference=True)


def test_the_schedulers_timer_is_released_and_no_other():
    """Snakemake's own re-scheduling timer (made by the installed Snakemake, not imitated) is
    cancelled, so the process need not wait for it; a timer of anyone else runs as set. If
    Snakemake renames the method, this test says the workaround in rules/common.smk is stale."""
    from snakemake.scheduling.job_scheduler import JobScheduler

    class Scheduler:  # what the method touches
        _open_jobs = threading.Semaphore(0)

    fired = threading.Event()
    other = threading.Timer(0.3, fired.set)
    other.start()
    before = set(threading.enumerate())
    t0 = time.perf_counter()
    JobScheduler._schedule_reevalutation(Scheduler(), 30)
    timers = [t for t in set(threading.enumerate()) - before if isinstance(t, threading.Timer)]
    assert len(timers) == 1
    assert release_scheduler_timers() == 1
    timers[0].join(5)
    assert not timers[0].is_alive() and time.perf_counter() - t0 < 5
    assert not Scheduler._open_jobs.acquire(blocking=False)  # its function never ran
    other.join(5)
    assert fired.is_set()
    assert release_scheduler_timers() == 0


_JOB = """
import atexit, sys, threading, time
from types import SimpleNamespace
from vcfbert.runtime import run_step
smk = SimpleNamespace(log=[sys.argv[1]], threads=1, rule="toy")
atexit.register(lambda: open(sys.argv[2], "w").write("atexit ran"))
with run_step(smk) as log:
    log.info("the work is done")
    print("to stdout", end="")  # no newline: still in the buffer
    if sys.argv[3] == "busy":  # a non-daemon thread still writing: the normal exit waits
        threading.Thread(target=lambda: (time.sleep(0.5),
                                         open(sys.argv[2] + ".thread", "w").write("x"))).start()
print("after the block")
"""


@pytest.mark.parametrize("busy", [False, True])
def test_a_finished_job_exits_at_once_having_flushed_what_teardown_would(tmp_path, busy):
    """The log line, stdout's buffer and the atexit handler's file are all there; code after
    the block runs only when a non-daemon thread holds the process (then its work completes)."""
    import subprocess
    import sys

    log, marker = tmp_path / "job.log", tmp_path / "atexit.txt"
    res = subprocess.run([sys.executable, "-c", _JOB, str(log), str(marker),
                          "busy" if busy else "idle"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "the work is done" in log.read_text()
    assert res.stdout.startswith("to stdout")
    assert marker.read_text() == "atexit ran"
    assert ("after the block" in res.stdout) == busy
    assert (tmp_path / "atexit.txt.thread").exists() == busy


def test_jobs_inherit_numpy_without_huge_pages_unless_the_user_chose(monkeypatch, tmp_path):
    # setenv first, so that the variable's state before the test is recorded and restored
    # (delenv of an absent variable records nothing, and export_for_jobs sets it directly)
    monkeypatch.setenv(NUMPY_HUGE_PAGES, "unset")
    monkeypatch.delenv(NUMPY_HUGE_PAGES)
    monkeypatch.setenv("PYTHONPATH", "")
    export_for_jobs(src=str(tmp_path), command=None)
    assert os.environ[NUMPY_HUGE_PAGES] == "0"
    assert os.environ["PYTHONPATH"] == str(tmp_path)
    # a job's process (a child, as Snakemake starts them) imports numpy with huge pages off
    probe = ("from numpy._core import multiarray as m; "
             "print(getattr(m, '_get_madvise_hugepage', lambda: 'n/a')())")
    seen = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True).stdout.strip()
    assert seen in ("False", "n/a")  # n/a: a numpy without the switch reads no setting
    monkeypatch.setenv(NUMPY_HUGE_PAGES, "1")  # the user's choice stands
    export_for_jobs(src=str(tmp_path), command=None)
    assert os.environ[NUMPY_HUGE_PAGES] == "1"


def test_freezing_for_exit_keeps_the_objects_out_of_the_final_collection():
    # in a child process: the freeze is for good, and this test process goes on
    probe = (f"import gc, sys; sys.path[:0] = {sys.path!r}; from vcfbert.runtime import "
             "freeze_for_exit; before = gc.get_freeze_count(); freeze_for_exit(); "
             "print(before, gc.get_freeze_count())")
    before, after = map(int, subprocess.run([sys.executable, "-c", probe], capture_output=True,
                                            text=True, check=True).stdout.split())
    assert before == 0 and after > 1000  # the imported modules' objects, frozen
