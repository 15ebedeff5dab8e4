"""The compile_kernels job's per-kernel locks: a job waits for a kernel being compiled on its
machine instead of compiling a second copy beside it (vcfbert.kernels.ready)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import tempfile
import threading
import time

import pytest

from vcfbert import kernels
from vcfbert.top_rows import _top_rows

NAME = "vcfbert.top_rows:_top_rows"

_HOLDER = """
import sys, time
from vcfbert.kernels import compiling
with compiling(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def own_temp(tmp_path, monkeypatch):
    """This test's own temporary folder (the locks live there) and no kernel checked yet."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(kernels, "_READY", set())
    return tmp_path


def _hold(seconds: float) -> subprocess.Popen:
    """A process holding NAME's lock for ``seconds``, once it says so."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, NAME, str(seconds)],
                            stdout=subprocess.PIPE, text=True, env=os.environ.copy())
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_lock_path_is_per_kernel_and_numba_cache(own_temp, monkeypatch):
    path = kernels.lock_path(NAME)
    assert path.parent.parent == own_temp
    assert kernels.lock_path("vcfbert.rows:_pack_rows_into") != path
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(own_temp / "other"))
    assert kernels.lock_path(NAME) != path


def test_ready_takes_a_function_of_a_module_without_a_spec(own_temp, monkeypatch):
    """A stand-in defined in a script (``__main__``, whose ``__spec__`` is None) is checked
    like any kernel: bench/kernel_sections.py wraps the kernel this way, and find_spec's
    ValueError stopped it."""
    def stand_in():
        return None

    monkeypatch.setattr(sys.modules["__main__"], "__spec__", None)
    stand_in.__module__ = "__main__"
    assert kernels.lock_path("__main__:stand_in").parent.parent == own_temp
    assert kernels.ready(stand_in) == 0.0


def test_ready_waits_while_the_kernel_is_being_compiled(own_temp):
    # held 3 s: the waits asserted below (> 1 s) leave 2 s for a loaded machine to run this
    # test between the holder's "held" and the call
    proc = _hold(3.0)
    try:
        t0 = time.perf_counter()
        waited = kernels.ready(_top_rows)
        assert 1.0 < waited <= time.perf_counter() - t0 + 0.01
        assert proc.wait(timeout=30) == 0  # it returned once the holder let go
    finally:
        proc.kill()


def test_ready_does_not_wait_without_a_compile_nor_twice(own_temp):
    assert kernels.ready(_top_rows) == 0.0  # no lock file at all
    proc = _hold(0.3)
    proc.wait(timeout=30)
    kernels._READY.clear()
    assert kernels.ready(_top_rows) < 0.1  # a lock file nobody holds
    proc = _hold(5.0)
    try:
        t0 = time.perf_counter()
        assert kernels.ready(_top_rows) == 0.0  # checked once per process
        assert time.perf_counter() - t0 < 0.5
    finally:
        proc.kill()


def test_threads_reaching_a_kernel_being_compiled_all_wait(own_temp):
    """A second thread must not call the kernel (and compile it) while the first waits."""
    proc = _hold(3.0)
    returned: list[float] = []
    try:
        t0 = time.perf_counter()

        def check() -> None:
            kernels.ready(_top_rows)
            returned.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=check) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        assert len(returned) == 3 and min(returned) > 1.0, returned
    finally:
        proc.kill()


def test_ready_gives_up_after_its_timeout(own_temp):
    proc = _hold(30.0)
    try:
        waited = kernels.ready(_top_rows, timeout=0.5)
        assert 0.4 < waited < 5.0
    finally:
        proc.kill()


def test_compile_kernels_holds_each_kernels_lock_while_compiling(own_temp, monkeypatch):
    held: dict[str, bool] = {}

    class Dispatcher:
        def __init__(self, name: str) -> None:
            self.name = name

        def compile(self, signature) -> None:
            with open(kernels.lock_path(self.name), "rb") as other:
                try:
                    fcntl.flock(other, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    held[self.name] = False
                except BlockingIOError:
                    held[self.name] = True

    monkeypatch.setattr(kernels, "KERNELS", {NAME: [()], "vcfbert.rows:_pack_rows_into": [()]})
    monkeypatch.setattr(kernels, "kernel", Dispatcher)
    assert set(kernels.compile_kernels()) == set(kernels.KERNELS)
    assert held == dict.fromkeys(kernels.KERNELS, True)
    kernels._READY.clear()
    assert kernels.ready(_top_rows) < 0.1  # released afterwards
