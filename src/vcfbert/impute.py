"""Imputation of the targets: per window, ligation per chromosome, and the imputed VCF.

Chunk files (``results/impute/{chrom}/{chunk}.h5``) hold ALT probabilities ``hap_prob``
float32 [2T, n] for the chunk's core sites, and ``typed_loo_prob`` float32 [2T, n_typed] the
leave-one-out ALT probabilities at the core's typed sites (the copying HMM's prediction of
each typed site with the site's own emission divided out; see
:func:`vcfbert.model.copy_kernel.copy_features`). Ligation concatenates the cores (they tile
the chromosome, so no averaging is needed) and puts the observed alleles back at typed sites;
the result is ``results/impute/{chrom}.h5`` with ``hap_prob`` [2T, V], ``typed`` [V],
``typed_loo_prob`` [2T, M] over the targets' typed sites ``typed_variant_index`` [M],
``er2`` float32 [V] (INFO/ER2: NaN at untyped variants and where undefined) and, given a DR2
calibration, ``dr2`` float64 [V] (the recalibrated INFO/DR2 of untyped variants; NaN at typed
ones, whose DR2 the writer computes).
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import InputError, IntegrityError

if TYPE_CHECKING:
    from .io.h5store import TargetSet

log = logging.getLogger(__name__)


def impute_chunk(*, checkpoint: str, key_encoder: str, contig: str, window_ids: list[str],
                 reference_h5: str, targets_h5: str, windows_tsv: str, mask_h5: str, out: str,
                 batch_size: int = 64, device: str = "auto", threads: int = 1,
                 copying_states: int = 0) -> None:
    """Impute the core sites of consecutive windows for every target haplotype, ``threads``
    batches of target haplotypes at a time (one Python thread each; torch's and FAISS's own
    pools are then capped to one thread), with ``copying_states`` copying states (0: the
    model's own; :func:`vcfbert.checkpoint.model_from_checkpoint`).

    Per window: the reference haplotypes' retrieval keys under the targets' typed sites are
    computed with the final model's key encoder (numpy, ~10 ms) and searched exactly
    (``IndexFlatIP``, built in memory: the index a ``final`` shard job would write), then the
    model predicts the core sites (:func:`vcfbert.predict.predict_window`). Results are
    written window by window into one dataset ``hap_prob`` float32 [2T, n] covering the
    chunk's contiguous cores, so memory holds one window's output at a time; the
    leave-one-out ALT probabilities at the typed sites of each window's core go into
    ``typed_loo_prob`` float32 [2T, n_typed] (the chunk's typed sites, in order: only the
    window whose core holds a typed site provides it).
    """
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .data import Chromosome, query_tokens, read_window_arrays
    from .index import KeySearcher, flat_index
    from .io.h5store import read_targets
    from .keyencoder import encode_keys
    from .keyencoder import load as load_key_encoder
    from .masks import read_mask
    from .predict import predict_window
    from .runtime import cap_threads
    from .train import pick_device

    t0 = time.time()
    dev = pick_device(device)
    if threads > 1:
        cap_threads(1)
    chrom = Chromosome.load(contig, reference_h5, targets_h5, windows_tsv)
    layouts = [chrom.layout(w) for w in window_ids]
    for a, b in zip(layouts, layouts[1:], strict=False):
        if a.core_end != b.core_start:
            raise InputError(f"windows {window_ids} of {contig} are not consecutive")
    targets = read_targets(targets_h5)
    observed, _ = read_mask(mask_h5)
    model = model_from_checkpoint(load_checkpoint(checkpoint), copying_states).to(dev)
    params = load_key_encoder(key_encoder)
    lo, hi = layouts[0].core_start, layouts[-1].core_end
    n_h = targets.haplotypes.shape[0]
    typed_lo, typed_hi = np.searchsorted(targets.variant_ref_index, [lo, hi])
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        ds = h5.create_dataset("hap_prob", shape=(n_h, hi - lo), dtype=np.float32)
        ds_loo = h5.create_dataset("typed_loo_prob", shape=(n_h, typed_hi - typed_lo),
                                   dtype=np.float32)
        for wid, layout in zip(window_ids, layouts, strict=True):
            arrays = read_window_arrays(reference_h5, layout)
            slot_obs = chrom.slot_mask(observed, layout)
            keys = encode_keys(params, query_tokens(arrays.ref_slots, slot_obs),
                               layout.slot_core_dist)
            cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
            probs, loo = predict_window(model, layout, arrays, slot_obs, chrom.position,
                                        targets.haplotypes[:, cols],
                                        KeySearcher(flat_index(keys), dev,
                                                    never=chrom.second_copies(layout)),
                                        batch_size=batch_size,
                                        device=dev, index_is_current=True,
                                        progress=f"impute {contig}:{wid}", slot_loo=True,
                                        threads=threads)
            ds[:, layout.core_start - lo:layout.core_end - lo] = probs
            core_slots = layout.core_slots
            if core_slots.size:  # consecutive typed sites: one block of columns
                first = int(cols[core_slots[0]]) - typed_lo
                assert np.array_equal(cols[core_slots], np.arange(first, first + core_slots.size)
                                      + typed_lo)
                ds_loo[:, first:first + core_slots.size] = loo[:, core_slots]
        h5.attrs.update({"window_ids": ",".join(window_ids), "contig": contig,
                         "core_start": lo, "core_end": hi,
                         "format": "vcfbert-chunk-imputation"})
    log.info("%s %s..%s: %d haplotypes x %d sites in %.2f s on %s (%d thread%s)", contig,
             window_ids[0], window_ids[-1], n_h, hi - lo, time.time() - t0, dev, threads,
             "" if threads == 1 else "s")


def ligate(*, contig: str, reference_h5: str, targets_h5: str, windows_tsv: str,
           chunk_files: list[str], out: str, hap_rows: int = 2048,
           dr2_calibration: str = "") -> None:
    """Concatenate the imputed chunks of one chromosome and restore observed typed alleles;
    gather the leave-one-out probabilities at typed sites and compute INFO/ER2 from them;
    with ``dr2_calibration`` (a :mod:`vcfbert.calibration` file), compute the recalibrated
    INFO/DR2 of the untyped variants.

    Streams ``hap_rows`` haplotypes (rounded up to whole samples) of one chunk at a time into
    chunked datasets, so memory holds ``hap_rows`` x one chunk's core sites, whatever the
    number of targets; ER2's and DR2's sums are added up over those blocks
    (:func:`vcfbert.imputed_vcf.empirical_r2_sums`, :func:`vcfbert.calibration.dr2_sums`).
    Chunks written before the leave-one-out probabilities existed have none: their typed
    sites get no ER2 (a warning says so). The recalibrated DR2 goes into ``dr2`` float64 [V],
    NaN at typed variants (the writer computes theirs from the observed alleles, as before);
    without a calibration there is no ``dr2`` and the writer computes every DR2 (a log line
    says so).
    """
    from .calibration import conditional_dr2
    from .calibration import load as load_calibration
    from .imputed_vcf import empirical_r2
    from .io.h5store import read_targets, read_variant_table

    table = read_variant_table(reference_h5)
    n_var = table["position"].size
    targets = read_targets(targets_h5)
    n_h = targets.haplotypes.shape[0]
    cols = targets.variant_ref_index  # [M] sorted reference indices of typed sites
    typed = np.zeros(n_var, bool)
    typed[cols] = targets.site_called
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as h5:
        ds = h5.create_dataset("hap_prob", shape=(n_h, n_var), dtype=np.float32,
                               chunks=(min(n_h, 1024), max(1, min(n_var, 256))))
        ds_loo = h5.create_dataset("typed_loo_prob", shape=(n_h, cols.size), dtype=np.float32,
                                   chunks=(max(1, min(n_h, 1024)), max(1, min(cols.size, 256))),
                                   fillvalue=np.nan)
        sums, dr2_sums = _copy_chunks(contig, windows_tsv, chunk_files, targets, ds, ds_loo,
                                      hap_rows=hap_rows + hap_rows % 2,
                                      haploid=table["haploid"], dr2=bool(dr2_calibration))
        er2 = np.full(n_var, np.nan, np.float32)
        er2[cols] = np.where(targets.site_called, empirical_r2(sums), np.nan)
        h5.create_dataset("er2", data=er2)
        if dr2_calibration:
            cal = load_calibration(dr2_calibration)
            dr2 = cal.apply(conditional_dr2(dr2_sums), table["af"])
            dr2[typed] = np.nan
            h5.create_dataset("dr2", data=dr2)
            h5.attrs["dr2_calibration"] = os.path.basename(dr2_calibration)
        else:
            log.info("%s: no DR2 calibration given (a trained panel built before vcfbert fitted "
                     "one?): DR2 is written uncalibrated", contig)
        h5.create_dataset("typed_variant_index", data=cols.astype(np.int64))
        h5.create_dataset("typed", data=typed)
        h5.create_dataset("sample_id", data=np.array(targets.sample_id, dtype=object),
                          dtype=h5py.string_dtype("utf-8"))
        h5.create_dataset("sample_haploid", data=targets.sample_haploid.astype(bool))
        h5.attrs.update({"contig": contig, "format": "vcfbert-chromosome-imputation"})
    log.info("%s: ligated %d chunks, %d variants, %d typed, ER2 at %d%s", contig,
             len(chunk_files), n_var, typed.sum(), np.isfinite(er2).sum(),
             ", DR2 recalibrated" if dr2_calibration else "")


def _copy_chunks(contig: str, windows_tsv: str, chunk_files: list[str], targets: TargetSet,
                 ds: h5py.Dataset, ds_loo: h5py.Dataset, *, hap_rows: int,
                 haploid: np.ndarray, dr2: bool) -> tuple[np.ndarray, np.ndarray]:
    """Copy every chunk's probabilities into ``ds`` [2T, V] (observed alleles put back) and
    its leave-one-out probabilities into ``ds_loo`` [2T, M], ``hap_rows`` (even) haplotypes
    at a time; check that the chunks cover every variant once. ``haploid``: bool [V]
    variants outside the pseudo-autosomal regions.

    Returns:
        (float64 [6, M] the ER2 sums of every typed site (:func:`empirical_r2_sums`),
        float64 [9, V] the DR2 sums of every variant (:func:`vcfbert.calibration.dr2_sums`;
        zeros unless ``dr2``)).
    """
    from .calibration import SUM_ROWS, dr2_sums
    from .imputed_vcf import empirical_r2_sums
    from .windows import read_windows

    windows = read_windows(windows_tsv)
    n_h, n_var = ds.shape
    cols = targets.variant_ref_index
    male = targets.sample_haploid
    haploid = np.asarray(haploid, bool) & bool(np.asarray(male).any())  # as the writer
    haploid_typed = haploid[cols]
    sums = np.zeros((6, cols.size))
    d_sums = np.zeros((len(SUM_ROWS), n_var))
    covered = np.zeros(n_var, np.int32)
    bounds = dict(zip(windows["window_id"], zip(windows["core_start"], windows["core_end"],
                                                strict=True), strict=True))
    for path in chunk_files:
        with h5py.File(path, "r") as ch:
            lo, hi = int(ch.attrs["core_start"]), int(ch.attrs["core_end"])
            wids = str(ch.attrs["window_ids"]).split(",")
            if any(w not in bounds for w in wids) or (bounds[wids[0]][0], bounds[wids[-1]][1]) != (lo, hi):
                raise IntegrityError(f"{path}: cores do not match the windows table; "
                                     "delete results/impute and re-run")
            a, b = np.searchsorted(cols, [lo, hi])
            at = cols[a:b] - lo
            has_loo = "typed_loo_prob" in ch
            if not has_loo and b > a:
                log.warning("%s: no leave-one-out probabilities (written by an older vcfbert): "
                            "no ER2 at its %d typed sites; re-run its impute_chunk job to "
                            "get them", path, b - a)
            for h0 in range(0, n_h, hap_rows):  # a slice of haplotypes at a time
                h1 = min(n_h, h0 + hap_rows)
                block = ch["hap_prob"][h0:h1]
                obs = targets.haplotypes[h0:h1, a:b]
                block[:, at] = np.where(obs >= 0, obs.astype(np.float32), block[:, at])
                ds[h0:h1, lo:hi] = block
                if dr2:
                    d_sums[:, lo:hi] += dr2_sums(block, male[h0 // 2:h1 // 2], haploid[lo:hi])
                if has_loo and b > a:
                    loo = ch["typed_loo_prob"][h0:h1]
                    ds_loo[h0:h1, a:b] = loo
                    sums[:, a:b] += empirical_r2_sums(loo, obs, male[h0 // 2:h1 // 2],
                                                      haploid_typed[a:b])
        covered[lo:hi] += 1
    if (covered != 1).any():
        raise IntegrityError(f"{contig}: the imputed chunks do not cover every variant "
                             "exactly once; delete results/impute and re-run")
    return sums, d_sums


def write_vcf(*, chromosome_files: list[str], reference_h5: list[str], out: str,
              command: str, threads: int = 1, format_fields: list[str] | None = None) -> None:
    """Write ``imputed.vcf.gz`` (+ ``.tbi``) for all chromosomes, in the reference's order,
    reading the ligated probabilities a block of variants at a time."""
    import contextlib

    from .imputed_vcf import ChromosomeDosages, write_imputed_vcf
    from .io.h5store import open_store, read_variant_table

    chroms = []
    lengths: dict[str, int] = {}
    samples: list[str] | None = None
    with contextlib.ExitStack() as stack:
        for cpath, rpath in zip(chromosome_files, reference_h5, strict=True):
            table = read_variant_table(rpath)
            with open_store(rpath) as store:
                if "contig_length" in store.attrs:
                    lengths[str(store.attrs["contig"])] = int(store.attrs["contig_length"])
            h5 = stack.enter_context(h5py.File(cpath, "r"))
            these = list(h5["sample_id"].asstr()[()])
            if samples is not None and these != samples:
                raise InputError("the target samples differ between chromosomes; give one "
                                 "target VCF with the same samples on every chromosome")
            samples = these
            chroms.append(ChromosomeDosages(
                contig=str(h5.attrs["contig"]), position=table["position"],
                alleles=table["alleles"], ids=table["ids"], hap_prob=h5["hap_prob"],
                typed=h5["typed"][()], er2=h5["er2"][()] if "er2" in h5 else None,
                dr2=h5["dr2"][()] if "dr2" in h5 else None,
                haploid_samples=(h5["sample_haploid"][()] if "sample_haploid" in h5
                                 else None),
                haploid_variants=table["haploid"]))
        assert samples is not None
        write_imputed_vcf(out, chroms, samples, contig_lengths=lengths, command=command,
                          threads=threads, progress=True, format_fields=format_fields or [])
    log.info("wrote %s: %d chromosomes, %d variants, %d samples", out, len(chroms),
             sum(c.position.size for c in chroms), len(samples))


def ensure_parent(path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
