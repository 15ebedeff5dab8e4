"""Process set-up shared by the CLI and the Snakemake script adapters.

``run_step`` is what every ``scripts/*.py`` adapter calls: it sends logging (and stderr,
where tqdm writes) to the rule's log file, caps the threads of torch, FAISS and BLAS, and turns
the errors a user can fix into one line plus a non-zero exit status.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import errno
import gc
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from .errors import VcfbertError

log = logging.getLogger("vcfbert")
T = TypeVar("T")
U = TypeVar("U")


def cap_threads(threads: int) -> None:
    """Limit every thread pool we use to ``threads`` (BLAS, OpenMP/FAISS, torch)."""
    threads = max(1, int(threads))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ[var] = str(threads)
    # FAISS's OpenMP pool reads OMP_NUM_THREADS when faiss is first imported; only a faiss
    # that is already loaded needs telling (importing it here would load it into every job)
    if "faiss" in sys.modules:
        import faiss

        faiss.omp_set_num_threads(threads)
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(threads)


_FIXES = {
    errno.ENOSPC: "free disk space (or move results/ to a larger disk) and re-run",
    errno.EDQUOT: "free space within your quota and re-run",
    errno.EROFS: "the file system is read-only: run the workflow in a writable folder",
    errno.EACCES: "permission denied: run the workflow in a folder you can write to",
}


def describe_os_error(exc: OSError) -> str | None:
    """One line for the write failures a user can fix (full disk, quota, read-only), else None."""
    fix = _FIXES.get(exc.errno or -1)
    if fix is None:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return f"{exc.strerror or exc}{where}: {fix}; no partial output was kept"


def setup_logging(log_path: str | None = None, level: int = logging.INFO) -> None:
    """Log to ``log_path`` (appending) or to stderr, one timestamped line per message."""
    handlers: list[logging.Handler] = []
    if log_path:
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="a"))
    else:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    # faiss reports which CPU build it loaded at INFO: noise in every log that imports it
    logging.getLogger("faiss.loader").setLevel(logging.WARNING)


def exit_without_teardown() -> None:
    """End a finished job's process with status 0 now, skipping the interpreter's teardown;
    return instead (Python then exits as usual) while another non-daemon thread is alive.

    Tearing down an interpreter that imported torch takes ~0.4 s (``python -c "import
    torch"``: 1.39 s, 0.97 s with ``os._exit``), and an imputation job holding its arrays
    exited 0.68 s after its last record was written (0.05 s this way): on every job of the
    workflow, and on the imputation's critical path. What the teardown would do that matters
    is done first: the ``atexit`` handlers run (logging's among them: its handlers flushed and
    closed) and the standard streams are flushed. Files the job wrote are closed already: every
    output is written under a temporary name and renamed into place when its writer closes
    (:func:`vcfbert.atomic.atomic_path`), so a writer left open leaves no output, never a
    truncated one."""
    others = [t for t in threading.enumerate()
              if t is not threading.current_thread() and t.is_alive() and not t.daemon]
    if others:
        return
    atexit._run_exitfuncs()  # logging's own handler among them: its handlers flushed, closed
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


@contextlib.contextmanager
def run_step(smk: Any, name: str | None = None, *,
             exit_when_done: bool = True) -> Iterator[logging.Logger]:
    """Context for a Snakemake ``script:`` adapter.

    Redirects logging and stderr to ``snakemake.log[0]``, caps threads to
    ``snakemake.threads``, and converts :class:`VcfbertError` into one error line (in the
    log and on the terminal) and exit status 1; any other exception is logged with its
    traceback and re-raised. When the block succeeds, the process ends there
    (:func:`exit_without_teardown`, ``exit_when_done``): nothing after the ``with`` block
    runs, as nothing would in a job's script.
    """
    log_path = smk.log[0] if len(smk.log) else None
    setup_logging(log_path)
    cap_threads(getattr(smk, "threads", 1))
    step = name or getattr(smk, "rule", "vcfbert")
    terminal = sys.stderr
    stderr_file = open(log_path, "a", buffering=1) if log_path else None  # noqa: SIM115
    try:
        if stderr_file is not None:
            sys.stderr = stderr_file
        yield logging.getLogger(f"vcfbert.{step}")
    except VcfbertError as exc:
        logging.getLogger(f"vcfbert.{step}").error("%s", exc)
        print(f"vcfbert {step}: error: {exc}", file=terminal)
        sys.exit(1)
    except OSError as exc:
        message = describe_os_error(exc)
        if message is None:
            raise
        logging.getLogger(f"vcfbert.{step}").error("%s", message)
        print(f"vcfbert {step}: error: {message}", file=terminal)
        sys.exit(1)
    except Exception:
        # a bug, not a user error: keep the traceback in the rule's log too (it would only
        # reach the job's terminal, e.g. the SLURM log, after stderr is restored)
        logging.getLogger(f"vcfbert.{step}").exception("unexpected error")
        raise
    finally:
        sys.stderr = terminal
        if stderr_file is not None:
            stderr_file.close()
    if exit_when_done:
        exit_without_teardown()


# numpy asks Linux for transparent huge pages (madvise) for every array of 4 MiB or more, read
# once, when numpy is imported. A job's arrays are mostly written once into fresh memory (a
# window's reference alleles, its probabilities, a block of VCF text), and on the 2-core
# machines this project is measured on, a 2 MiB page's first touch cost ~3 ms per MiB against
# ~0.5 ms per MiB in 4 KiB pages (100 MB filled: 0.29-0.37 s against 0.054 s): ~3.5 s of an
# imputation job's 39 CPU seconds on ``ooa_speed`` (docs/model.md, "Inference speed").
NUMPY_HUGE_PAGES = "NUMPY_MADVISE_HUGEPAGE"


def workflow_command(smk: Any) -> str:
    """The command line that started the workflow (set by rules/common.smk), for headers."""
    return os.environ.get("VCFBERT_COMMAND") or f"snakemake (rule {getattr(smk, 'rule', '?')})"


def export_for_jobs(*, src: str, command: str | None) -> None:
    """Environment that workflow jobs inherit: ``src`` on PYTHONPATH (so jobs import this
    package even in conda environments), the workflow's command line (for VCF headers) and
    numpy's huge pages off (:data:`NUMPY_HUGE_PAGES`, unless the user set it)."""
    parts = [src] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(parts))
    os.environ.setdefault(NUMPY_HUGE_PAGES, "0")
    if command:
        os.environ.setdefault("VCFBERT_COMMAND", command)


SNAKEMAKE_SCHEDULER_MODULE = "snakemake.scheduling.job_scheduler"


def release_scheduler_timers() -> int:
    """Cancel the Snakemake scheduler's pending re-scheduling timers; returns how many.

    For the workflow's ``onsuccess`` / ``onerror`` hooks. Snakemake 9's scheduler, whose rate
    limit (``--max-jobs-per-timespan``, 100 jobs per 1 s by default) it re-checks by timer,
    starts a ``threading.Timer`` of the limit's timespan after every pass over the ready jobs.
    The timers are not daemon threads, so the process waits for the last one before it exits:
    up to a second after the workflow has finished, on every run that ran a job (the
    imputation on ``ooa_speed`` exited 1.2 s after its last job; docs/model.md, "Inference
    speed"). A shorter timespan cannot be set (``"10/100ms"`` parses as 100 minutes) and
    ``"0s"`` would spin. When the hooks run the scheduler is done, so the semaphore a timer
    would release has no one waiting. Only timers whose function comes from Snakemake's
    scheduler module are cancelled; with another Snakemake this does nothing."""
    cancelled = 0
    for thread in threading.enumerate():
        if (isinstance(thread, threading.Timer)
                and getattr(thread.function, "__module__", None) == SNAKEMAKE_SCHEDULER_MODULE):
            thread.cancel()
            cancelled += 1
    return cancelled


def freeze_for_exit() -> None:
    """Move every object the process holds to the garbage collector's permanent generation
    (``gc.freeze``), for the workflow's ``onsuccess`` / ``onerror`` hooks: the interpreter's
    final collection at exit then does not walk them. The Snakemake process holds Snakemake's,
    pandas' and SQLAlchemy's module graphs; its teardown after the last job took 0.28-0.38 s,
    0.11-0.13 s with this (docs/model.md, "Inference speed"). Objects made afterwards are
    collected as usual; what is frozen is only not collected, and the process is ending."""
    gc.freeze()


def before_exit() -> None:
    """The workflow's ``onsuccess`` and ``onerror`` hooks: the scheduler's timers released
    (:func:`release_scheduler_timers`) and the process's objects frozen
    (:func:`freeze_for_exit`), so that the Snakemake process ends at once."""
    release_scheduler_timers()
    freeze_for_exit()


def read_ahead(items: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of the iterator ``items`` in order, produced on a thread of its own while
    the caller works on the previous one: at most ``depth`` items wait between the two.

    The text VCF reader produces its blocks this way (decompression and the compiled parser
    release the GIL), so that reading the next block overlaps with the caller's work on the
    current one. What producing an item raises is raised here, after the items before it. When
    the caller stops early (``break``, an exception, ``close()``), the producer stops at its
    next item and ``items`` is closed on its thread.
    """
    slots: queue.Queue = queue.Queue(max(1, depth))
    stop = threading.Event()
    done = object()

    def offer(entry: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not offer(("item", item)):
                    break
            else:
                offer(("end", done))
        except BaseException as exc:  # handed to the caller, raised at its place
            offer(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="read_ahead", daemon=True)
    worker.start()
    try:
        while True:
            kind, value = slots.get()
            if kind == "item":
                yield value
            elif kind == "error":
                raise value
            else:
                return
    finally:
        stop.set()
        worker.join()


def ordered_map(fn: Callable[[T], U], items: Iterable[T], *, threads: int,
                depth: int | None = None) -> Iterator[U]:
    """``fn(item)`` for each item, in order, computed on ``threads`` threads (``fn`` should
    release the GIL for most of its work): at most ``depth`` (default ``threads``) results
    wait beyond the one being handed out. What ``fn`` raises is raised at its item. When the
    caller stops early, the items not started are dropped."""
    if threads <= 1:
        yield from map(fn, items)
        return
    depth = threads if depth is None else max(1, depth)
    pool = ThreadPoolExecutor(threads)
    pending: collections.deque = collections.deque()
    try:
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) > depth:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def prefetched(items: Iterable[T], prepare: Callable[[T], U]) -> Iterator[tuple[T, U]]:
    """``(item, prepare(item))`` in order, ``prepare`` of the next item running on a thread
    of its own while the caller works on the current one (one item ahead: at most two
    prepared items are alive). What ``prepare`` raises is raised here, at its item.

    The first item's ``prepare`` starts at the call, not at the first ``next``: a caller can
    start it before a slow step of its own (the imputation job prepares its first window
    while torch is imported).

    The imputation and validation loops prepare a window (reading its reference arrays,
    its keys and exact index, the kernel's tables: serial steps) while the previous window is
    predicted on the other cores.
    """
    pool = ThreadPoolExecutor(1)
    it = iter(items)
    for item in it:
        return _prefetch_rest(pool, it, item, pool.submit(prepare, item), prepare)
    pool.shutdown()
    return iter(())


def _prefetch_rest(pool: ThreadPoolExecutor, it: Iterator[T], item: T, pending: Future[U],
                   prepare: Callable[[T], U]) -> Iterator[tuple[T, U]]:
    """:func:`prefetched` from its first item on, whose ``prepare`` is ``pending``."""
    with pool:
        while True:
            ready = pending.result()
            try:
                following = next(it)
            except StopIteration:
                yield item, ready
                return
            pending = pool.submit(prepare, following)
            yield item, ready
            item = following
