"""Where an imputation job's CPU time goes: seconds of thread CPU time inside each of its main
functions, summed over all the job's threads (cProfile sees one thread; py-spy cannot tell a
numba kernel running from a thread waiting for it), and the memory each first touched (minor
page faults).

    python bench/job_cpu.py bench/out/ooa_speed/speed.vcfbert [--chunk c0000] [--threads 2]

Runs one ``impute_chunk`` job of a finished run in this process, as the workflow's job runs
it (its config's ``impute`` settings, output ``GT:DS:GP``, its DR2 calibration when the run
has one), with each function below wrapped to add the thread CPU time of its calls
(``time.thread_time``, on whichever thread they run) and the pages it faulted in
(``getrusage(RUSAGE_THREAD)``'s minor faults × the 4 KiB page: memory touched for the first
time, which the kernel must map and zero; a transparent huge page's one fault maps 2 MiB, so
with ``NUMPY_MADVISE_HUGEPAGE=1`` the figure undercounts) to a table. A row marked · is a part of
the row above it. Functions that hand their work to other threads (``predict_window``, the
writer) are not rows: their threads' functions are. Prints the table, the job's wall time and the
process's CPU time: what the rows do not cover is the imports, the job's setup and the
smaller steps. The job's piece is written to a temporary directory. numpy is imported as the
workflow's jobs import it: without transparent huge pages (``NUMPY_MADVISE_HUGEPAGE=0``,
:func:`vcfbert.runtime.export_for_jobs`) unless the variable is set.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import yaml

from vcfbert.runtime import NUMPY_HUGE_PAGES  # imports no numpy

# before numpy's import (vcfbert's below), as rules/common.smk sets it for every job
os.environ.setdefault(NUMPY_HUGE_PAGES, "0")
PAGE_MIB = resource.getpagesize() / 2**20

# (module, attribute, label): a label's indent marks a part of the row above it
WRAPPED = [
    ("vcfbert.predict", "fast_logits", "a batch's model (fast_logits)"),
    ("vcfbert.predict", "copy_head_logits", "  copying kernel and output head (numba)"),
    ("vcfbert.model.network:VcfBert", "encode_context", "  transformer (encode_context)"),
    ("vcfbert.predict", "shared_copy_parameters", "  HMM parameters (shared_copy_parameters)"),
    ("vcfbert.model.network:VcfBert", "slot_embedding", "  slot embedding"),
    ("vcfbert.model.network:VcfBert", "head_first_layer", "  output head's first layer"),
    ("vcfbert.predict", "_with_match_states", "a batch's copying states"),
    ("vcfbert.match_states", "merge_match_states", "  match-length search (numba)"),
    ("vcfbert.index:KeySearcher", "search_scored", "  top states by key (topk)"),
    ("vcfbert.match_states", "key_similarities", "  key similarities"),
    ("vcfbert.predict", "query_keys", "a batch's query keys"),
    ("vcfbert.windowdata:ConsecutiveWindowReader", "get", "window reading (reader.get)"),
    ("vcfbert.model.copy_kernel", "window_tables", "window tables"),
    ("vcfbert.keyencoder", "encode_keys", "reference keys"),
    ("vcfbert.vcf_pieces", "core_dosages", "core dosages (DR2, ER2)"),
    ("vcfbert.imputed_vcf", "format_records", "record text (format_records)"),
    ("vcfbert.vcf_cells", "records", "  cells (numba)"),
    ("vcfbert.vcf_cells", "by_variant", "  transpose (by_variant)"),
    ("vcfbert.io.bgzf", "compress_block", "BGZF compression (libdeflate)"),
]


def minor_faults() -> int:
    """The calling thread's minor page faults so far."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_minflt


def wrap_all(table: dict[str, list[float]]) -> None:
    """Replace each function of :data:`WRAPPED` by one adding its calls' thread CPU time,
    count and minor page faults to ``table[label]``."""
    lock = threading.Lock()
    for module_name, attr, label in WRAPPED:
        module_path, _, cls = module_name.partition(":")
        owner = importlib.import_module(module_path)
        if cls:
            owner = getattr(owner, cls)
        real = getattr(owner, attr)

        def timed(*args, _real=real, _label=label, **kwargs):
            t, f = time.thread_time(), minor_faults()
            try:
                return _real(*args, **kwargs)
            finally:
                spent, faults = time.thread_time() - t, minor_faults() - f
                with lock:
                    row = table.setdefault(_label, [0.0, 0, 0])
                    row[0] += spent
                    row[1] += 1
                    row[2] += faults

        setattr(owner, attr, functools.wraps(real)(timed))


def impute_chunk_kwargs(run_dir: Path, chrom: str, chunk: str, threads: int) -> dict:
    """``steps.impute_chunk``'s arguments (but ``out``) for one job of a finished run, as its
    rule gives them (its config's ``impute`` settings, output ``GT:DS:GP``, its DR2
    calibration when the run has one), on ``threads`` threads."""
    r = run_dir / "results"
    imp = yaml.safe_load((run_dir / "config.yaml").read_text()).get("impute", {})
    calibration = r / "train/dr2_calibration.json"
    return dict(checkpoint=str(r / "train/model.pt"), key_encoder=str(r / "train/model.keys.npz"),
                contig=chrom, chunk=chunk, windows_per_job=int(imp.get("windows_per_job", 16)),
                reference_h5=str(r / f"ingest/{chrom}/reference.h5"),
                targets_h5=str(r / f"ingest/{chrom}/targets.h5"),
                windows_tsv=str(r / f"windows/{chrom}.tsv"),
                mask_h5=str(r / f"masks/{chrom}/final.h5"),
                batch_size=int(imp.get("batch_size", 32)), device="cpu", threads=threads,
                copying_states=int(imp.get("copying_states", 0)),
                dr2_calibration=str(calibration) if calibration.exists() else "",
                match_states=int(imp.get("match_states", 0)), gp=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--chunk", default="c0000")
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    r = a.run_dir / "results"
    if not (a.run_dir / "config.yaml").exists() or not (r / "train/model.pt").exists():
        raise SystemExit(f"{a.run_dir}: not a finished run (no config.yaml or "
                         "results/train/model.pt); give speed.py's <outdir>/speed.vcfbert")
    from vcfbert import steps  # noqa: E402 - after the arguments: the imports take a while

    table: dict[str, list[float]] = collections.OrderedDict()
    wrap_all(table)
    kwargs = impute_chunk_kwargs(a.run_dir, a.chrom, a.chunk, a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        t0, c0 = time.time(), time.process_time()
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        steps.impute_chunk(**kwargs, out=f"{tmp}/piece.vcf.gz")
        wall, cpu = time.time() - t0, time.process_time() - c0
        faulted = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) * PAGE_MIB
    print(f"impute_chunk {a.chunk} of {a.run_dir}: {wall:.2f} s wall, {cpu:.2f} s CPU "
          f"({a.threads} threads), {faulted:,.0f} MiB faulted in ({NUMPY_HUGE_PAGES}="
          f"{os.environ[NUMPY_HUGE_PAGES]})\n")
    print("| function | CPU s | share of the job's CPU | calls | MiB faulted in |\n"
          "|---|---|---|---|---|")
    for _, _, label in WRAPPED:
        if label in table:
            seconds, calls, faults = table[label]
            name = label.lstrip()
            indent = "&nbsp;&nbsp;· " if label != name else ""
            print(f"| {indent}{name} | {seconds:.2f} | {seconds / cpu:.0%} | {calls} | "
                  f"{faults * PAGE_MIB:,.0f} |")


if __name__ == "__main__":
    main()
