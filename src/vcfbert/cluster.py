"""Cluster requests sized to the data, and a clear stop instead of a job that pends for ever.

Requests (the rules call these as Snakemake resource callables):

* memory: ``(floor + per-rule MB × data size) × attempt``, rounded up to 100 MB. The data size
  is what a job holds in memory, not the compressed size of its files: the reference
  haplotypes it reads (``2S × V`` bytes of the int8 matrix, from the HDF5 shape), the
  targets' probabilities it writes (``2T × V × 4`` bytes), the index keys, or the VCFs it
  streams. ``attempt`` is 1 on the first try and grows with each retry (``retries`` in the
  SLURM profile), so a job killed for memory is re-submitted with twice, then three times, the
  request. The formulas and what the demo and the 6,000-haplotype benchmark used are in
  docs/cluster.md.
* threads: what the work can use (training: one thread per ~750 reference haplotypes, 2 to 8;
  phasing: Beagle's threads only when the targets are unphased), never more than the largest
  node of the partition offers.

Before a job is submitted to SLURM, its memory request is compared with the largest node of its
partition (``sinfo``); a request no node can satisfy stops the run with one line naming the
rule, the request, the limit and the fix. A job that is pending for a reason SLURM will never
lift (``PartitionConfig``, ``PartitionTimeLimit``, a QOS or association limit, …) — e.g. after
``--set-resources`` asked for too much — is found by :class:`PendingWatch` within a minute: the
run stops with one line instead of waiting silently.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MB = 1e6


@dataclass(frozen=True)
class MemoryFormula:
    """``floor_mb + per_data_mb × data MB``, the data measured by the rule's ``data`` function."""

    floor_mb: int
    per_data_mb: float


# rule -> formula; the data each rule's size is measured by: see data_mb()
FORMULAS: dict[str, MemoryFormula] = {
    # streams blocks of 4,096 variants, several in flight (the text read ahead on a thread,
    # ~2x the block; the parsed and transposed block; the block the store's writer thread
    # holds); the floor holds numpy, h5py and the compiled parser: data = 2S x 4096 bytes
    # (reference_block_mb). Measured peaks: 322 MB for 600 samples (data 4.9 MB), 627 MB for
    # 3,000 (24.6 MB), 685 MB for 4,050 (33.2 MB); 200 + 4x data asked for half of that.
    "parse_reference": MemoryFormula(350, 16.0),
    # pass-through of phased targets (Beagle, when it phases: beagle_mb)
    "phase_targets": MemoryFormula(300, 0.0),
    # one window of the reference: data = genotype MB / windows
    "encode": MemoryFormula(300, 1.5),
    # the window's keys: data = the key file's MB
    "build_index": MemoryFormula(300, 3.0),
    # the windows' arrays stay cached up to train.window_cache_gib; the floor holds torch, the
    # model and the batch's [b, k, n] tensors with their gradients: data = genotype MB of the
    # reference stores, at most the cache's bound (training_cache_mb)
    "train_epoch": MemoryFormula(1500, 2.5),
    # a window's span of the reference and two windows' float32 probabilities: data =
    # chunk_data_mb (measured on ooa_speed: 1,191 MB peak for 13 windows of 2,000 target
    # haplotypes, data 352 MB; 2,443 MiB for 20,000 haplotypes, data 1,454 MB)
    "impute_chunk": MemoryFormula(700, 2.0),
    # torch, numba, the model, 4 cached windows of the reference and 15 float64 sums per
    # variant: data = genotype MB of the reference stores (measured: 1,156 MB peak for 597 MB,
    # ooa_speed)
    "calibrate_dr2": MemoryFormula(1000, 0.5),
}


def round_up(mb: float) -> int:
    return int(math.ceil(mb / 100.0) * 100)


def request_mb(rule: str, data_mb: float, attempt: int = 1) -> int:
    """Memory request (MB) of ``rule`` for ``data_mb`` of data, on try ``attempt`` (1, 2, …)."""
    f = FORMULAS[rule]
    return round_up((f.floor_mb + f.per_data_mb * max(0.0, data_mb)) * max(1, int(attempt)))


def _exists(paths: Iterable[str] | str) -> list[str]:
    """The paths that are existing files (Snakemake passes not-yet-known inputs of checkpoint
    rules as placeholder strings, and one path as a plain string)."""
    if isinstance(paths, str):
        paths = [paths]
    return [str(p) for p in paths if p and os.path.isfile(str(p))]


def genotype_mb(stores: Iterable[str]) -> float:
    """MB of the int8 haplotype matrices ``[2S, V]`` of the stores that exist (0 for the others:
    Snakemake also evaluates requests before the inputs are made)."""
    total = 0.0
    for path in _exists(stores):
        n_h, n_v = _shape(path)
        total += n_h * n_v / MB
    return total


def training_cache_mb(stores: Iterable[str], window_cache_gib: float) -> float:
    """MB of reference windows a training job keeps: the stores' genotypes
    (:func:`genotype_mb`), at most ``window_cache_gib`` GiB (0: no bound)."""
    data = genotype_mb(stores)
    return min(data, window_cache_gib * 2**30 / MB) if window_cache_gib > 0 else data


def file_mb(paths: Iterable[str]) -> float:
    return sum(os.path.getsize(p) for p in _exists(paths)) / MB


def windows_count(windows_tsv: str) -> int:
    if not _exists(windows_tsv):
        return 1
    with open(windows_tsv) as fh:
        return max(1, sum(1 for _ in fh) - 1)


def chunk_data_mb(reference_h5: str, targets_h5: str, windows_tsv: str,
                  span_cores: float = 5.0) -> float:
    """The data an imputation job holds at once, whatever its number of windows: the
    reference over one window's span (``span_cores`` cores wide: its core and both flanks,
    ``1 + 2 * flank_sites / core_sites``) and the float32 probabilities ``[2T, window
    variants]`` of two windows (the one predicted and the one being written; the job streams
    its windows, :func:`vcfbert.impute.impute_chunk`)."""

    n_windows = windows_count(windows_tsv)
    ref = genotype_mb([reference_h5])
    n_targets = _shape(targets_h5)[0]  # target haplotypes (2T)
    n_var = _shape(reference_h5)[1]
    two_windows = min(n_var, 2 * n_var / n_windows)  # variants of two windows' cores
    return min(1.0, span_cores / n_windows) * ref + n_targets * two_windows * 4 / MB


def _shape(store: str) -> tuple[int, int]:
    """Shape of a store's ``call_haplotype`` (0, 0 when it is not there yet)."""
    import h5py

    for path in _exists(store):
        try:
            with h5py.File(path, "r") as h5:
                return tuple(int(n) for n in h5["call_haplotype"].shape)
        except (OSError, KeyError):
            break
    return 0, 0


@functools.lru_cache(maxsize=8)
def needs_phasing(target_vcf: str, max_records: int = 2000) -> bool:
    """Whether the targets have unphased heterozygous calls (in their first records); a file
    that cannot be read counts as phased here (phase_targets reports it in one line)."""
    from .errors import VcfbertError
    from .phase import unphased_samples

    if not _exists(target_vcf):
        return False
    try:
        return unphased_samples(target_vcf, max_records=max_records)[0] > 0
    except VcfbertError:
        return False


def beagle_mb(reference_vcf: str, target_vcf: str, attempt: int = 1) -> int:
    """Beagle 5.4 phasing: the JVM and the reference (1.5 GB + 60 × the bgzipped VCFs' MB;
    Beagle imputing the 6,000-haplotype benchmark's 16 MB of VCFs peaked at 2.4 GB)."""
    return round_up((1500 + 60 * file_mb([reference_vcf, target_vcf])) * max(1, int(attempt)))


def reference_block_mb(reference_vcf: str) -> float:
    """MB of one block of 4,096 variants of the reference (int8, 2 haplotypes per sample)."""
    from .io.vcf import sample_ids

    if not _exists(reference_vcf):
        return 0.0
    return 2 * len(sample_ids(reference_vcf)) * 4096 / MB


def training_threads(reference_h5: Iterable[str]) -> int:
    """Threads a training epoch uses well: one per ~750 reference haplotypes, 2 to 8."""
    n_h = max((_shape(path)[0] for path in _exists(reference_h5)), default=0)
    return max(2, min(8, n_h // 750))


# --- what the partition offers ---------------------------------------------------------------


@dataclass(frozen=True)
class PartitionLimits:
    """The largest node of a SLURM partition: CPUs and memory (MB)."""

    partition: str
    cpus: int
    mem_mb: int


def _sinfo(partition: str) -> list[str]:
    cmd = ["sinfo", "-h", "-o", "%P|%c|%m"] + (["-p", partition] if partition else [])
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    return res.stdout.splitlines() if res.returncode == 0 else []


@functools.lru_cache(maxsize=16)
def partition_limits(partition: str = "") -> PartitionLimits | None:
    """Limits of ``partition`` (the cluster's default one when empty) from ``sinfo``; None
    when SLURM cannot be asked."""
    if not shutil.which("sinfo"):
        return None
    rows = []
    for line in _sinfo(partition):
        name, cpus, mem = (line.split("|") + ["", "", ""])[:3]
        default = name.endswith("*")
        name = name.rstrip("*")
        if partition and name != partition or not partition and not default:
            continue
        try:
            rows.append((name, int(cpus.rstrip("+")), int(mem.rstrip("+"))))
        except ValueError:
            continue
    if not rows:
        return None
    return PartitionLimits(rows[0][0], max(r[1] for r in rows), max(r[2] for r in rows))


def default_partition(workflow) -> str:
    """``slurm_partition`` of the default resources (the SLURM profile sets it), else ""."""
    resources = getattr(getattr(workflow, "resource_settings", None), "default_resources", None)
    for arg in getattr(resources, "args", None) or []:
        key, _, value = str(arg).partition("=")
        if key.strip() == "slurm_partition":
            return value.strip().strip("'\"")
    return ""


def on_slurm(workflow) -> bool:
    """Whether Snakemake submits jobs to SLURM (the executor is known once the run starts)."""
    plugin = getattr(workflow, "executor_plugin", None)
    return getattr(plugin, "name", "") == "slurm"


class RequestTooLarge(Exception):
    """A request no node of the partition can satisfy (one line, for the user)."""


def fit_threads(threads: int, workflow, partition: str = "") -> int:
    """``threads``, capped at the largest node's CPUs when jobs go to SLURM."""
    limits = partition_limits(partition) if on_slurm(workflow) else None
    return max(1, min(threads, limits.cpus)) if limits else max(1, threads)


def check_memory(rule: str, mem_mb: int, workflow, partition: str = "") -> int:
    """``mem_mb``, or :class:`RequestTooLarge` when SLURM jobs go to a partition whose largest
    node has less memory."""
    limits = partition_limits(partition) if on_slurm(workflow) else None
    if limits and mem_mb > limits.mem_mb:
        message = (f"rule {rule} needs mem_mb={mem_mb} but the largest node of partition "
                   f"{limits.partition} has {limits.mem_mb} MB: choose a partition with larger "
                   f"nodes (slurm_partition in profiles/slurm/config.yaml), or, if you know the "
                   f"job needs less, --set-resources {rule}:mem_mb=<MB>")
        print(f"vcfbert: error: {message}", file=sys.stderr)
        raise RequestTooLarge(message)
    return mem_mb


# --- jobs pending for ever ------------------------------------------------------------------

# squeue reasons that SLURM never lifts on its own for a pending job
NEVER_STARTS = ("PartitionConfig", "PartitionNodeLimit", "PartitionTimeLimit", "BadConstraints",
                "InvalidQOS", "InvalidAccount", "QOSMaxCpuPerJobLimit", "QOSMaxMemoryPerJob",
                "QOSMaxWallDurationPerJobLimit", "QOSMaxGRESPerJob", "QOSMaxNodePerJobLimit",
                "AssocMaxCpuPerJobLimit", "AssocMaxWallDurationPerJobLimit",
                "AssocMaxNodePerJobLimit", "AssocMaxGRESPerJob")


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    reason: str
    rule: str
    cpus: str
    mem: str
    partition: str
    time_limit: str


def parse_squeue(text: str, rules: set[str]) -> list[PendingJob]:
    """Pending jobs of ``rules`` that will never start, from
    ``squeue -h -t PD -o '%i|%r|%k|%C|%m|%P|%l'`` (the SLURM plugin comments ``rule_<name>…``)."""
    found = []
    for line in text.splitlines():
        parts = line.strip().split("|")
        if len(parts) < 7:
            continue
        job_id, reason, comment, cpus, mem, partition, limit = parts[:7]
        rule = comment[len("rule_"):].split("_wildcards_")[0] if comment.startswith("rule_") else ""
        if rule in rules and reason.strip("()") in NEVER_STARTS:
            found.append(PendingJob(job_id, reason.strip("()"), rule, cpus, mem, partition,
                                    limit))
    return found


def describe(job: PendingJob) -> str:
    return (f"SLURM job {job.job_id} (rule {job.rule}) can never start: pending with reason "
            f"{job.reason} (it asks for {job.cpus} CPUs, {job.mem} memory, time {job.time_limit} "
            f"on partition {job.partition}); lower the request, e.g. --set-resources "
            f"{job.rule}:mem_mb=<MB> or --set-threads {job.rule}=<N>, or choose another "
            "partition (slurm_partition in profiles/slurm/config.yaml)")


class PendingWatch:
    """Polls ``squeue`` for this user's jobs of the workflow's rules that can never start;
    on the first, prints one line, cancels them and interrupts Snakemake (which cancels the
    rest of its jobs and exits with an error)."""

    def __init__(self, rules: set[str], *, interval_s: float = 20.0,
                 on_stuck: Callable[[list[PendingJob]], None] | None = None) -> None:
        self.rules = rules
        self.interval_s = interval_s
        self.on_stuck = on_stuck or self._stop_run
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="vcfbert-pending-watch",
                                       daemon=True)

    def start(self) -> PendingWatch:
        self.thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def poll(self) -> list[PendingJob]:
        user = os.environ.get("USER") or os.environ.get("LOGNAME") or ""
        cmd = ["squeue", "-h", "-t", "PD", "-o", "%i|%r|%k|%C|%m|%P|%l"]
        cmd += ["-u", user] if user else ["--me"]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        return parse_squeue(res.stdout, self.rules) if res.returncode == 0 else []

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                stuck = self.poll()
            except (OSError, subprocess.SubprocessError):
                continue
            if stuck:
                self.on_stuck(stuck)
                return

    @staticmethod
    def _stop_run(stuck: list[PendingJob]) -> None:
        import signal

        print(f"vcfbert: error: {describe(stuck[0])}", file=sys.stderr, flush=True)
        Path("logs").mkdir(exist_ok=True)
        with open(Path("logs") / "slurm_pending.log", "a") as fh:
            fh.writelines(describe(j) + "\n" for j in stuck)
        subprocess.run(["scancel", *[j.job_id for j in stuck]], capture_output=True)
        os.kill(os.getpid(), signal.SIGINT)
