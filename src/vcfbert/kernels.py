"""Compile the numba kernels ahead of the jobs that use them.

Every kernel is ``@numba.njit(cache=True)``: the first process that calls it compiles it (up
to a few seconds each; the demo's ``compile_kernels`` job took 12.2 s when it listed ten) and
writes the machine code to numba's cache (``__pycache__`` beside the module, or
``NUMBA_CACHE_DIR``); later processes load it in milliseconds. In a fresh install, or after an
upgrade, the first training epoch would pay that compilation on the workflow's critical path.
The workflow's ``compile_kernels`` job runs :func:`compile_kernels` instead at the start, at
the lowest CPU priority (``nice 19``) beside the reference's parsing and the first key jobs,
so that the epochs, imputation and evaluation jobs find the cache filled. (Without the low
priority it slowed the parsing, which keeps more than one core busy, by about as much as it
saved: tried and reverted in 921bce5.)

Nothing depends on it for correctness: a kernel missing from the cache (another CPU, a
read-only install, a signature not listed here) is compiled where it is first called, as
without this module. A job that reaches a kernel while this machine's ``compile_kernels`` is
compiling that very kernel waits for it (:func:`ready`) instead of compiling a second copy
beside it: on the demo the first epoch's validation compiled the copying kernel (15 s) while
``compile_kernels`` compiled the same one. :data:`KERNELS` lists each top-level kernel
called from Python with the argument types the pipeline calls it with (the kernels they call
are compiled into them); ``test_jobs_find_every_kernel_compiled_ahead``
(tests/unit/test_train_impute.py) checks that
a training epoch, an imputation, its evaluation and target parsing after
:func:`compile_kernels` compile nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import importlib.util
import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from numba import types

log = logging.getLogger(__name__)


def _a(dtype: types.Type, ndim: int, readonly: bool = False) -> types.Array:
    """A C-contiguous array type (what ``np.ascontiguousarray`` hands the kernels)."""
    return types.Array(dtype, ndim, "C", readonly=readonly)


_i8, _i16, _i32, _i64 = types.int8, types.int16, types.int32, types.int64
_u8, _f32, _f64, _b = types.uint8, types.float32, types.float64, types.boolean

# "module:function" -> the argument types of each signature the pipeline calls it with, in
# the order the workflow needs them (training first: the first epoch starts soonest)
KERNELS: dict[str, list[tuple[types.Type, ...]]] = {
    "vcfbert.model.hmm_kernel:scaled_passes_into": [(
        _a(_f32, 3), _a(_f32, 2), _a(_f32, 2), _a(_f32, 3), _a(_f32, 3), _a(_f32, 2),
        _a(_f32, 2), _a(_f32, 2), _a(_f32, 3), _i64, _i64)],
    "vcfbert.model.hmm_kernel:scaled_passes_grad_into": [(
        _a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_f32, 2),
        _a(_f32, 2), _a(_f32, 2), _a(_f32, 2), _a(_f32, 2), _a(_f32, 3), _a(_f32, 2),
        _a(_f32, 2), _i64, _i64)],
    "vcfbert.model.features:_run_totals_into": [(
        _a(_b, 3), _a(_b, 2), _a(_i64, 1), _a(_f32, 3))],
    "vcfbert.match_states:_select_states": [(
        _a(_i8, 2), _a(_b, 1), _a(types.uint64, 2), _a(_i64, 1), _a(_i64, 1), _a(_i64, 1),
        _a(_i64, 1), _a(_f32, 2),
        _a(_b, 2), _a(_i64, 2), _i64, _a(_i64, 2), _a(_i64, 1))],
    "vcfbert.top_rows:_top_rows": [(_a(_f32, 2), _i64, _a(_i64, 2), _a(_f32, 2))],
    "vcfbert.model.copy_kernel:_all_queries_head": [(
        _a(_i8, 2), _a(_i64, 2), _a(_b, 2), _a(types.uint64, 2), _i64, _a(_i16, 2), _a(_i64, 1),
        _a(_i64, 1), _a(_i32, 1), _a(_i32, 1), _a(_f32, 2), _a(_f32, 3), _a(_f32, 2),
        _a(_f32, 2), _a(_f32, 1), _a(_i64, 1), _i64, _i64,
        _a(_f32, 2), _a(_f32, 3), _a(_f32, 3), _a(_f32, 3), _a(_i64, 1), _a(_i64, 1),
        _a(_f32, 2), _a(_f32, 1), _f32, _f32, _a(_f32, 2))],
    "vcfbert.model.copy_kernel:_interval_patterns": [(_a(types.uint64, 2), _a(_i64, 1),
                                                      _a(_i16, 2))],
    "vcfbert.rows:_pack_rows_into": [(_a(_u8, 2), _a(types.uint64, 2))],
    "vcfbert.vcf_cells:_transpose_into": [  # a block of a core's columns, or all of them
        (types.Array(_f32, 2, "A"), _a(_f32, 2)), (_a(_f32, 2), _a(_f32, 2))],
    "vcfbert.vcf_cells:_site_stats": [(
        _a(_f32, 2), _a(_b, 1), _a(_b, 1), _a(_f64, 1), _a(_f64, 1))],
    "vcfbert.vcf_cells:_records": [(
        _a(_f32, 2), _a(_u8, 1, readonly=True), _a(_i64, 1), _a(_i64, 1), _a(_b, 1),
        _a(_b, 1), _b, _a(_u8, 1), _a(_i64, 1))],
    "vcfbert.calibration:_sums_kernel": [(_a(_f32, 2), _a(_b, 2), _a(_b, 2), _b, _a(_f64, 2))],
    "vcfbert.evaluate_stream:_block_sums": [(
        _a(_f32, 2), _a(_f32, 2), _a(_f32, 2), _a(_i64, 1), _a(_b, 1), _a(_i64, 1), _a(_b, 2),
        _a(_f64, 3), _a(_f64, 1))],
    "vcfbert.evaluate_stream:_doses_of_rows": [(
        _a(_i16, 3), _a(_f32, 2), _a(_i64, 1), _a(_b, 1), _a(_b, 1), _b, _a(_f32, 2),
        _a(_f32, 2))],
    "vcfbert.evaluate_stream:_alt_counts": [(_a(_i16, 3), _a(_i64, 1), _a(_i16, 1),
                                             _a(_i8, 2))],
    "vcfbert.io.transpose:_allele_counts": [(_a(_i8, 2), _a(_i64, 1), _a(_i64, 1))],
    "vcfbert.io.vcf_text:_parse_lines": [(
        _a(_u8, 1, readonly=True), _a(_i64, 1), _a(_i64, 1), _a(_i64, 1), _i64, _b,
        _a(_i64, 3), _a(_i16, 3), _a(_f32, 2), _a(_i32, 1))],
    "vcfbert.io.vcf_calls:_prepare_calls": [(
        _a(_i16, 3), _b, _a(_b, 2), _a(_b, 2), _a(_b, 2), _a(_i8, 2))],
}


def kernel(name: str) -> Callable:
    """The numba dispatcher ``"module:function"`` of :data:`KERNELS`."""
    module, function = name.split(":")
    return getattr(importlib.import_module(module), function)


def lock_path(name: str) -> Path:
    """The lock file ``compile_kernels`` holds while it compiles the kernel ``name`` of
    :data:`KERNELS`: in this machine's temporary folder (a cluster node's own, so only jobs on
    the node that compiles wait), one per kernel source file, function and numba cache folder
    (``NUMBA_CACHE_DIR``: two caches never wait for each other)."""
    module, function = name.split(":")
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # e.g. a function of __main__, which has no spec
        spec = None
    origin = os.path.realpath(spec.origin) if spec is not None and spec.origin else module
    key = f"{origin}:{function}:{os.environ.get('NUMBA_CACHE_DIR', '')}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:20]
    return Path(tempfile.gettempdir()) / f"vcfbert-kernels-{os.getuid()}" / f"{digest}.lock"


@contextlib.contextmanager
def compiling(name: str) -> Iterator[None]:
    """Hold the kernel ``name``'s lock (:func:`lock_path`, exclusive) while compiling it, so
    that :func:`ready` in other processes waits; nothing is held if the lock cannot be made
    (a read-only temporary folder, a file system without ``flock``)."""
    try:
        path = lock_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a+b")  # noqa: SIM115 - closed (the lock released) after the compile
    except OSError:
        yield
        return
    with handle:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


_READY: set[Callable] = set()  # the kernels (dispatchers) this process checked
_READY_LOCK = threading.Lock()  # one check at a time: no thread calls a kernel another awaits


def ready(dispatcher: Callable, timeout: float = 600.0) -> float:
    """Before the first call of a kernel of :data:`KERNELS` (its numba ``dispatcher``) in this
    process: if ``compile_kernels`` is compiling it on this machine right now, wait until it
    is done (at most ``timeout`` seconds), so that the call loads it from numba's cache
    rather than compiling it a second time. Threads that reach it meanwhile wait too. Returns
    the seconds waited (0 when nobody was compiling it, on later calls, or when the lock
    cannot be read)."""
    if dispatcher in _READY:
        return 0.0
    with _READY_LOCK:
        if dispatcher in _READY:
            return 0.0
        function = getattr(dispatcher, "py_func", dispatcher)
        name = f"{function.__module__}:{function.__name__}"
        waited = _wait_for_compile(name, timeout)
        _READY.add(dispatcher)
    if waited > 0.05:
        log.info("waited %.1f s for compile_kernels to finish %s", waited, name)
    return waited


def _wait_for_compile(name: str, timeout: float) -> float:
    """Seconds spent until the lock of ``name`` (:func:`lock_path`) could be shared, polled
    every 50 ms; 0 without a lock file or when it cannot be read."""
    path = lock_path(name)
    if not path.exists():
        return 0.0
    t0 = time.perf_counter()
    try:
        with open(path, "rb") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break  # released on close
                except BlockingIOError:
                    if time.perf_counter() - t0 > timeout:
                        break
                    time.sleep(0.05)
    except OSError:
        return 0.0
    return time.perf_counter() - t0


def compile_kernels() -> dict[str, float]:
    """Compile (or load from numba's cache) every signature of :data:`KERNELS`, each under
    its lock (:func:`compiling`); returns the seconds each kernel took. A kernel that fails
    to compile is logged and skipped: the job that calls it compiles it, or reports the error
    itself."""
    seconds: dict[str, float] = {}
    for name in KERNELS:
        t0 = time.perf_counter()
        try:
            dispatcher = kernel(name)
            with compiling(name):
                for signature in KERNELS[name]:
                    dispatcher.compile(signature)
        except Exception as exc:  # noqa: BLE001 - an optimisation only: never fail the run
            log.warning("could not compile %s ahead (%s: %s); it compiles where it is used",
                        name, type(exc).__name__, exc)
            continue
        seconds[name] = round(time.perf_counter() - t0, 3)
        log.info("%s: %.2f s", name, seconds[name])
    return seconds
