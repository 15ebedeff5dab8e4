"""Where the copying kernel's time goes: its sections timed on real inputs (numba kernels are
one opaque entry in cProfile).

    python bench/kernel_sections.py bench/out/ooa_speed/speed.vcfbert --window w0002
    python bench/kernel_sections.py <run> --window w0002 --source my_copy_kernel.py  # a variant

Runs one imputation job's first batches of one window (``impute_chunk``, 1 thread, as
``bench/profile_impute.py``) to capture the arguments of the fused kernel
(:func:`vcfbert.model.copy_kernel._all_queries_head`) for ``--batches`` batches, then compiles
copies of the kernel module (``--source``; default the installed one) each cut short at one
section boundary of ``_one_query`` (a ``return``) or of its per-interval loop (a
``continue``), all without the output head but the last two, and times each copy on the
captured batches (the best of ``--rounds`` interleaved rounds, in ms per query). The time of a
section is the difference between consecutive cumulative rows. A copy cut short computes less
than the kernel, so its outputs are meaningless; only the times are.

The cut points are found by the comments and statements of the kernel's source: when they
change, the script says which marker it no longer finds.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import tempfile
import time
from pathlib import Path

import numpy as np

# (label, the source text the cut goes before, the statement inserted there)
CUTS = [
    ("lump states", "    # Only the core needs the posterior and the match runs", "return"),
    ("+ alleles, emissions", "    # scaled forward pass; rows from f_lo on are kept in gamma",
     "return"),
    ("+ forward", "    # scaled backward pass from the last slot", "return"),
    ("+ backward, leave-one-out", "    # match runs at the core's intervals", "return"),
    ("+ match runs, per-site loop", "        ids = state_pattern[row]\n", "continue"),
    ("+ group sums (partial rows)", "        # the groups the query touched (carriers > 0;",
     "continue"),
    ("+ touched groups and their order", "        # visiting the groups longest run first",
     "continue"),
]
HEAD_CALL = "        if head_wt.shape[1] == 8:\n"  # the head's call, 8 units or any


def capture(run: Path, chrom: str, window: str, n_batches: int) -> list[list]:
    """The kernel's arguments of batches 2..n_batches + 1 of ``window`` (the first is skipped:
    it may compile)."""
    import vcfbert.model.copy_kernel as ck
    from vcfbert.impute import impute_chunk
    from vcfbert.runtime import cap_threads

    cap_threads(1)
    real = ck._all_queries_head
    calls: list[list] = []

    class Enough(Exception):
        pass

    def keep(*args):
        calls.append([a.copy() if isinstance(a, np.ndarray) else a for a in args])
        if len(calls) > n_batches:
            raise Enough
        return real(*args)

    r = run / "results"
    ck._all_queries_head = keep
    try:
        with tempfile.TemporaryDirectory() as tmp:
            impute_chunk(checkpoint=str(r / "train/model.pt"),
                         key_encoder=str(r / "train/model.keys.npz"), contig=chrom,
                         window_ids=[window], reference_h5=str(r / f"ingest/{chrom}/reference.h5"),
                         targets_h5=str(r / f"ingest/{chrom}/targets.h5"),
                         windows_tsv=str(r / f"windows/{chrom}.tsv"),
                         mask_h5=str(r / f"masks/{chrom}/final.h5"), out=f"{tmp}/c.vcf.gz",
                         batch_size=32, device="cpu", threads=1, match_states=96)
    except Enough:
        pass
    finally:
        ck._all_queries_head = real
    if len(calls) <= n_batches:
        raise SystemExit(f"{window} has fewer than {n_batches + 1} batches: use fewer")
    return calls[1:]


def variant(source: str, name: str, directory: str):
    """The module compiled from ``source`` (no numba cache: each copy is its own; its
    imports from the package made absolute, as the copy lives outside it)."""
    path = Path(directory) / f"copy_kernel_{name}.py"
    source = re.sub(r"^from \.\.(\w)", r"from vcfbert.\1", source, flags=re.M)
    source = re.sub(r"^from \.(\w)", r"from vcfbert.model.\1", source, flags=re.M)
    path.write_text(source.replace("cache=True", "cache=False"))
    spec = importlib.util.spec_from_file_location(f"copy_kernel_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cut_sources(source: str) -> dict[str, str]:
    """The kernel module's ``source`` cut short at each section (:data:`CUTS`), in order, then
    whole without the output head, then whole: {row label: module source}."""
    no_head = source.replace(HEAD_CALL, "        if b >= 0:\n            continue\n" + HEAD_CALL, 1)
    if no_head == source:
        raise SystemExit(f"kernel source changed: {HEAD_CALL.strip()!r} not found")
    cuts = {}
    for label, marker, statement in CUTS:
        if marker not in source:
            raise SystemExit(f"kernel source changed: cut {label!r} not found "
                             f"({marker.strip()[:60]!r})")
        indent = marker[:len(marker) - len(marker.lstrip())]
        cuts[label] = no_head.replace(marker, f"{indent}{statement}\n{marker}", 1)
    cuts["+ ALT sites (whole kernel, no head)"] = no_head
    cuts["+ output head (whole kernel)"] = source
    return cuts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--window", default="w0002")
    ap.add_argument("--batches", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--source", type=Path, default=None,
                    help="a copy_kernel.py to time (default: the installed one); it gets the "
                         "installed kernel's arguments, so it must take the same")
    a = ap.parse_args()
    import vcfbert.model.copy_kernel as ck

    source = (a.source or Path(ck.__file__)).read_text()
    batches = capture(a.run_dir, a.chrom, a.window, a.batches)
    n_queries = sum(batch[0].shape[0] for batch in batches)
    modules = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, (label, cut) in enumerate(cut_sources(source).items()):
            modules[label] = variant(cut, f"cut{i}", tmp)
        for module in modules.values():  # compile
            for batch in batches:
                module._all_queries_head(*batch)
        best = dict.fromkeys(modules, float("inf"))
        for _ in range(a.rounds):
            for label, module in modules.items():
                t0 = time.perf_counter()
                for batch in batches:
                    module._all_queries_head(*batch)
                best[label] = min(best[label], (time.perf_counter() - t0) / n_queries * 1e3)
    print(f"{a.window}: {n_queries} queries in {len(batches)} batches, ms per query "
          f"(best of {a.rounds} rounds)")
    print("| section (cumulative) | ms | section ms |\n|---|---|---|")
    previous = 0.0
    for label, ms in best.items():
        print(f"| {label} | {ms:.3f} | {ms - previous:+.3f} |")
        previous = ms


if __name__ == "__main__":
    main()
