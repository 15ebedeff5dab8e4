"""cProfile of one imputation job (``impute_chunk``) of a finished workflow run, one thread.

    python bench/profile_impute.py bench/out/ooa_speed/speed.vcfbert --windows w0010 [--top 15]
    python bench/profile_impute.py <run> --windows w0002,w0003 --threads 2   # wall time only
    python bench/profile_impute.py <run> --windows w0002,w0003 --time-only   # 1 thread, no profile
    python bench/profile_impute.py <run> --windows w0003 --match-states 96   # states by match length

Runs the job's function on the given windows twice (the first run compiles or loads the numba
kernel from its cache, as every job but the first does), profiles the second and prints the
top entries by own time, with the seconds per target haplotype-window. The run directory must
hold ``results/train/model.pt`` and the ingest, windows and mask files of a finished run.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import tempfile
import time
from pathlib import Path

import numpy as np


def describe_patterns(results: Path, chrom: str, windows: list[str]) -> None:
    """Print, per window, how many distinct ALT-carrying allele patterns the copy kernel's
    tables hold (:func:`vcfbert.model.copy_kernel.window_tables`) and the mean number of ALT
    alleles per reference haplotype in the core: the work the pattern pooling saves."""
    from vcfbert.data import Chromosome, WindowGeometry
    from vcfbert.model.copy_kernel import window_tables
    from vcfbert.windowdata import read_window_arrays

    chromosome = Chromosome.load(chrom, str(results / f"ingest/{chrom}/reference.h5"),
                                 str(results / f"ingest/{chrom}/targets.h5"),
                                 str(results / f"windows/{chrom}.tsv"))
    for wid in windows:
        layout = chromosome.layout(wid)
        arrays = read_window_arrays(str(results / f"ingest/{chrom}/reference.h5"), layout)
        geo = WindowGeometry.of(layout, chromosome.position)
        t = window_tables(arrays.ref_slots, arrays.ref_core, geo.site_interval.numpy())
        rows = int((np.diff(np.searchsorted(geo.site_interval.numpy(),
                                            np.arange(t.first_interval, t.first_interval
                                                      + t.pattern_id.shape[1] + 1))) > 0).sum())
        print(f"{wid}: {layout.n_sites} core sites in {rows} intervals, "
              f"{t.alt_ptr.size - 1} ALT-carrying patterns ({(t.alt_ptr.size - 1) / rows:.0f} "
              f"per interval) for {arrays.ref_core.shape[0]} haplotypes, "
              f"{arrays.ref_core.sum(1).mean():.0f} ALT alleles per haplotype in the core")
        distinct = distinct_candidates(results, chromosome, layout, arrays, t.hap_class)
        print(f"{wid}: {t.hap_class.max() + 1} distinct sequences over the window's slots and "
              f"core among the {arrays.ref_core.shape[0]} haplotypes; a query's copying "
              f"states hold {distinct.mean():.0f} distinct sequences on average "
              f"({distinct.min()}-{distinct.max()}; the first {distinct.size} target "
              "haplotypes): the states the kernel runs after lumping identical ones")


def distinct_candidates(results: Path, chromosome, layout, arrays, hap_class: np.ndarray,
                        n_queries: int = 256) -> np.ndarray:
    """int [q]: distinct sequences (``hap_class``) among the copying states of the first
    ``n_queries`` target haplotypes, retrieved as the imputation does (final model's keys,
    exact index, top ``k_keep``)."""
    import torch

    from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint
    from vcfbert.encode import query_keys
    from vcfbert.index import KeySearcher, flat_index
    from vcfbert.io.h5store import read_targets
    from vcfbert.keyencoder import encode_keys
    from vcfbert.keyencoder import load as load_key_encoder
    from vcfbert.masks import read_mask
    from vcfbert.windowdata import query_tokens

    contig = chromosome.contig
    model = model_from_checkpoint(load_checkpoint(str(results / "train/model.pt"))).eval()
    observed, _ = read_mask(str(results / f"masks/{contig}/final.h5"))
    slot_obs = chromosome.slot_mask(observed, layout)
    keys = encode_keys(load_key_encoder(str(results / "train/model.keys.npz")),
                       query_tokens(arrays.ref_slots, slot_obs), layout.slot_core_dist)
    targets = read_targets(str(results / f"ingest/{contig}/targets.h5"))
    cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
    with torch.no_grad():
        q_keys = query_keys(model, layout, targets.haplotypes[:n_queries, cols], slot_obs,
                            device="cpu")
    cand, _ = KeySearcher(flat_index(keys), "cpu").search_scored(q_keys, model.cfg.k_keep,
                                                                 None)
    return np.array([np.unique(hap_class[c[c >= 0]]).size for c in cand])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--chrom", default="20")
    ap.add_argument("--windows", default="w0010", help="comma-separated consecutive windows")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=32, help="target haplotypes per pass")
    ap.add_argument("--threads", type=int, default=1,
                    help="batches at once (impute.threads); above 1 only the wall time is "
                         "printed (cProfile sees the calling thread alone)")
    ap.add_argument("--time-only", action="store_true", help="no profile: the wall time alone")
    ap.add_argument("--match-states", type=int, default=0,
                    help="copying states by match length (impute.match_states)")
    a = ap.parse_args()
    from vcfbert.runtime import cap_threads

    cap_threads(1)
    from vcfbert.impute import impute_chunk
    from vcfbert.io.h5store import read_targets

    r = a.run_dir / "results"
    windows = a.windows.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        kw = dict(checkpoint=str(r / "train/model.pt"), key_encoder=str(r / "train/model.keys.npz"),
                  contig=a.chrom, window_ids=windows,
                  reference_h5=str(r / f"ingest/{a.chrom}/reference.h5"),
                  targets_h5=str(r / f"ingest/{a.chrom}/targets.h5"),
                  windows_tsv=str(r / f"windows/{a.chrom}.tsv"),
                  mask_h5=str(r / f"masks/{a.chrom}/final.h5"), out=f"{tmp}/chunk.vcf.gz",
                  batch_size=a.batch_size, device="cpu", threads=a.threads,
                  match_states=a.match_states)
        impute_chunk(**kw)
        prof = cProfile.Profile() if a.threads == 1 and not a.time_only else None
        t0 = time.perf_counter()
        if prof is not None:
            prof.runcall(impute_chunk, **kw)
        else:
            impute_chunk(**kw)
        wall = time.perf_counter() - t0
    n_h = read_targets(str(r / f"ingest/{a.chrom}/targets.h5")).haplotypes.shape[0]
    if prof is not None:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(a.top)
        print(out.getvalue())
    describe_patterns(r, a.chrom, windows)
    print(f"{len(windows)} window(s) x {n_h} target haplotypes: {wall:.2f} s, "
          f"{1e3 * wall / (len(windows) * n_h):.2f} ms per haplotype-window ({a.threads} "
          f"thread{'' if a.threads == 1 else 's'})")


if __name__ == "__main__":
    main()
