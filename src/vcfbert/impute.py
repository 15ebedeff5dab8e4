"""Imputation of the targets: per chunk of consecutive windows, and the imputed VCF.

An imputation job (``impute_chunk``) imputes every target haplotype at the core sites of a
run of consecutive windows and writes their finished VCF records: a BGZF piece without a
header, ``results/impute/{chrom}/{chunk}.vcf.gz``, and its sidecar ``{chunk}.json``
(:mod:`vcfbert.vcf_pieces`). Per window, the observed alleles are put back at typed sites,
INFO/ER2 comes from the leave-one-out ALT probabilities at the core's typed sites (the copying
HMM's prediction of each typed site with the site's own emission divided out; see
:func:`vcfbert.model.copy_kernel.copy_features`) and INFO/DR2, given a DR2 calibration, is the
recalibrated one at untyped variants (:mod:`vcfbert.calibration`). The cores tile the
chromosome, so the imputed VCF is the header followed by the pieces in order (``write_vcf``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError, IntegrityError

if TYPE_CHECKING:
    from .imputed_vcf import ChromosomeDosages
    from .io.h5store import TargetSet

log = logging.getLogger(__name__)


def predict_cores(*, checkpoint: str, key_encoder: str, contig: str, window_ids: list[str],
                  reference_h5: str, targets_h5: str, windows_tsv: str, mask_h5: str,
                  batch_size: int = 64, device: str = "auto", threads: int = 1,
                  copying_states: int = 0, targets: TargetSet | None = None,
                  match_states: int = 0, reference_at_sites_h5: str = ""
                  ) -> Iterator[tuple[int, int, np.ndarray, np.ndarray, np.ndarray]]:
    """The model's predictions for the targets at the cores of consecutive windows, one
    window at a time, in order.

    Per window: the reference haplotypes' retrieval keys under the targets' typed sites are
    computed with the final model's key encoder (numpy, ~10 ms) and searched exactly
    (``IndexFlatIP``, built in memory: the index a ``final`` shard job would write), then the
    model predicts the core sites (:func:`vcfbert.predict.predict_window`), ``threads``
    batches of target haplotypes at a time (one Python thread each; the caller caps torch's
    and FAISS's own pools), with ``copying_states`` copying states (0: the model's own;
    :func:`vcfbert.checkpoint.model_from_checkpoint`). ``targets``: the store ``targets_h5``
    already read (it is read here otherwise). ``reference_at_sites_h5``: the reference at the
    targets' typed sites when ``targets_h5`` holds no copy of it (a trained panel's
    ``reference_at_array.h5``): each window's slots are then read from it, not from the
    window's whole span of the reference store.

    Yields:
        (core_start, core_end, probs float32 [2T, core sites] ALT probabilities,
        loo float32 [2T, j] leave-one-out ALT probabilities at the core's typed sites,
        loo_cols int [j] those sites' indices among the targets' M sites).
    """
    # torch-free: the first window is read, keyed and tabled (~0.6 s on a 6,000-haplotype
    # panel) on a thread while torch is imported below (~1.2 s), where both used to run one
    # after the other at the job's start (the two share the interpreter's lock: ~1.4 cores
    # in use over those seconds, bench/job_start.py)
    from .devices import pick_device
    from .index import KeySearcher, flat_index
    from .io.h5store import read_targets
    from .keyencoder import encode_keys
    from .keyencoder import load as load_key_encoder
    from .layout import WindowLayout
    from .masks import read_mask
    from .model.copy_kernel import WindowTables, window_tables
    from .runtime import prefetched
    from .windowdata import (
        Chromosome,
        ConsecutiveWindowReader,
        WindowArrays,
        query_tokens,
    )

    dev = pick_device(device, inference=True)
    chrom = Chromosome.load(contig, reference_h5, targets_h5, windows_tsv, reference_at_sites_h5)
    layouts = [chrom.layout(w) for w in window_ids]
    for a, b in zip(layouts, layouts[1:], strict=False):
        if a.core_end != b.core_start:
            raise InputError(f"windows {window_ids} of {contig} are not consecutive")
    if targets is None:
        targets = read_targets(targets_h5)
    observed, _ = read_mask(mask_h5)
    params = load_key_encoder(key_encoder)
    reader = ConsecutiveWindowReader()  # each core's variants decompressed once
    fast = not dev.startswith("cuda")  # predict_window's default path

    def prepare(wid: str, layout: WindowLayout) -> tuple[WindowArrays, np.ndarray, KeySearcher,
                                                         WindowTables | None]:
        """A window's reference arrays, observed slots, exact index and kernel tables."""
        arrays = reader.get(chrom, wid, layout)
        slot_obs = chrom.slot_mask(observed, layout)
        keys = encode_keys(params, query_tokens(arrays.ref_slots, slot_obs),
                           layout.slot_core_dist)
        tables = (window_tables(arrays.ref_slots, arrays.ref_core, layout.site_interval)
                  if fast else None)
        searcher = KeySearcher(flat_index(keys), dev, never=chrom.second_copies(layout))
        return arrays, slot_obs, searcher, tables

    # the next window is prepared while this one is predicted: its serial steps (reading,
    # keys, tables: ~0.3 s a window on a 6,000-haplotype panel) no longer leave cores idle
    windows = prefetched(zip(window_ids, layouts, strict=True), lambda w: prepare(*w))

    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .predict import predict_window

    model = model_from_checkpoint(load_checkpoint(checkpoint), copying_states).to(dev)
    for (wid, layout), (arrays, slot_obs, searcher, tables) in windows:
        cols = np.searchsorted(targets.variant_ref_index, layout.slot_index)
        probs, loo = predict_window(model, layout, arrays, slot_obs, chrom.position,
                                    targets.haplotypes[:, cols], searcher,
                                    batch_size=batch_size, device=dev, index_is_current=True,
                                    fast=fast, tables=tables, progress=f"impute {contig}:{wid}",
                                    slot_loo=True, threads=threads, match_states=match_states)
        core = layout.core_slots
        yield (int(layout.core_start), int(layout.core_end), np.asarray(probs, np.float32),
               np.asarray(loo[:, core], np.float32), cols[core])
        # this window's outputs belong to the writer now: not kept while the next is
        # predicted, so that they are freed as soon as its records are written
        del probs, loo


def impute_chunk(*, checkpoint: str, key_encoder: str, contig: str, window_ids: list[str],
                 reference_h5: str, targets_h5: str, windows_tsv: str, mask_h5: str, out: str,
                 batch_size: int = 64, device: str = "auto", threads: int = 1,
                 copying_states: int = 0, dr2_calibration: str = "",
                 format_fields: list[str] | tuple[str, ...] = (), match_states: int = 0,
                 gp: bool = True, reference_at_sites_h5: str = "") -> None:
    """Impute the core sites of consecutive windows for every target haplotype
    (:func:`predict_cores`) and write their VCF records into the piece ``out`` (``.vcf.gz``,
    with its sidecar; see :mod:`vcfbert.vcf_pieces`).

    ``threads`` batches of target haplotypes at a time (one Python thread each; torch's and
    FAISS's own pools are capped to one thread, whatever ``threads``); the piece is
    compressed on as many threads, behind the imputation. Each core's records are formatted
    on a thread of their own while the next window is predicted (:func:`vcfbert.vcf_pieces.write_piece`), so
    memory holds at most two windows' outputs, whatever the number of windows.
    ``dr2_calibration`` (a :mod:`vcfbert.calibration` file; "" for none) recalibrates the DR2
    of untyped variants; ``format_fields``: the optional FORMAT fields (HDS, AP1, AP2);
    ``gp``: the cells have GP (``output.gp``; False: ``GT:DS``, Beagle's default);
    ``reference_at_sites_h5``: :func:`predict_cores`'.
    """
    from .calibration import load as load_calibration
    from .imputed_vcf import check_format_fields
    from .io.h5store import read_targets, read_variant_table
    from .runtime import cap_threads
    from .vcf_pieces import core_dosages, write_piece
    from .windows import read_window_table

    t0 = time.time()
    extra = check_format_fields(list(format_fields))
    # the job uses `threads` cores, one Python thread per batch: torch's, FAISS's and BLAS's
    # own pools get one thread each, also when `threads` is 1 (uncapped, two 1-thread jobs
    # sharing 2 cores outside Snakemake, whose jobs are capped as they start, ran ~4x slower)
    cap_threads(1)
    windows = read_window_table(windows_tsv)
    spans = [windows.row(w) for w in window_ids]
    lo, hi = spans[0]["core_start"], spans[-1]["core_end"]
    # the targets at the typed sites of these windows only (flanks included): the job's
    # genotypes grow with its chunk, not with the chromosome
    targets = read_targets(targets_h5, variants=(min(int(w["start_idx"]) for w in spans),
                                                 max(int(w["end_idx"]) for w in spans)))
    called = targets.site_called
    # the chunk's variants only: the whole chromosome's allele strings, read in every job,
    # are ~1.4 s and ~250 MB per million variants (0.14 s for ooa_speed's 99,451, scaled)
    table = read_variant_table(reference_h5, rows=(lo, hi))
    calibration = load_calibration(dr2_calibration) if dr2_calibration else None
    fitted = None if calibration is None else calibration.source.get("match_states", 0)
    if fitted is not None and int(fitted) != int(match_states):
        log.warning("the DR2 calibration %s was fitted with impute.match_states: %s and this "
                    "imputation uses %s: its DR2 may be off; impute with the setting it was "
                    "fitted with (a trained panel's is in its config)", dr2_calibration, fitted,
                    match_states)
    predictions = predict_cores(checkpoint=checkpoint, key_encoder=key_encoder, contig=contig,
                                window_ids=window_ids, reference_h5=reference_h5,
                                targets_h5=targets_h5, windows_tsv=windows_tsv,
                                mask_h5=mask_h5, batch_size=batch_size, device=device,
                                threads=threads, copying_states=copying_states,
                                targets=targets, match_states=match_states,
                                reference_at_sites_h5=reference_at_sites_h5)
    er2_sites = []

    def prepare(prediction: tuple[int, int, np.ndarray, np.ndarray, np.ndarray]
                ) -> ChromosomeDosages:
        core_lo, core_hi, probs, loo, loo_cols = prediction
        dosages = core_dosages(contig, table, targets, called, core_lo, core_hi, probs, loo,
                               loo_cols, calibration, table_start=lo)
        er2_sites.append(int(np.isfinite(dosages.er2).sum()))
        return dosages

    write_piece(out, predictions, prepare, contig=contig, core_start=lo, core_end=hi,
                samples=targets.sample_id, window_ids=window_ids, format_fields=extra,
                dr2_recalibrated=calibration is not None, threads=threads, gp=gp)
    log.info("%s %s..%s: %d haplotypes x %d sites (ER2 at %d typed sites%s) in %.2f s "
             "(%d thread%s)", contig, window_ids[0], window_ids[-1],
             targets.haplotypes.shape[0], hi - lo, sum(er2_sites),
             ", DR2 recalibrated" if calibration is not None else
             "; no DR2 calibration given: DR2 uncalibrated", time.time() - t0, threads,
             "" if threads == 1 else "s")


def write_vcf(*, pieces: list[str], targets_h5: list[str], reference_h5: list[str], out: str,
              command: str, threads: int = 1, format_fields: list[str] | None = None,
              gp: bool = True) -> None:
    """Write the imputed VCF (+ ``.tbi``) of one or several chromosomes (in the order of
    ``reference_h5``): the header, then every chromosome's pieces in order, their
    compressed bytes copied as they are (:mod:`vcfbert.vcf_pieces`).

    Checks first that each chromosome's pieces cover its variants exactly once and agree with
    its targets (same samples) and with ``format_fields`` and ``gp``; a mismatch names what
    to delete.
    """
    from tqdm import tqdm

    from .imputed_vcf import check_format_fields, imputed_header
    from .io.h5store import open_store, target_sample_ids
    from .io.tabix import ContigRecords
    from .io.vcf_writer import BgzipVcfWriter
    from .vcf_pieces import check_tiling, copy_piece, read_piece, samples_digest

    extra = list(check_format_fields(list(format_fields or [])))
    by_contig: dict[str, list] = {}
    for path in pieces:
        piece = read_piece(path)
        by_contig.setdefault(piece.contig, []).append(piece)
    samples: list[str] | None = None
    contigs: list[tuple[str, int | None]] = []
    ordered = []
    positions: dict[str, np.ndarray] = {}
    for rpath, tpath in zip(reference_h5, targets_h5, strict=True):
        with open_store(rpath) as store:
            contig = str(store.attrs["contig"])
            length = int(store.attrs["contig_length"]) if "contig_length" in store.attrs else None
            positions[contig] = store["variant_position"][()]
            n_var = int(positions[contig].shape[0])
        these = target_sample_ids(tpath)
        if samples is not None and these != samples:
            raise InputError("the target samples differ between chromosomes; give one "
                             "target VCF with the same samples on every chromosome")
        samples = these
        digest = samples_digest(these)
        chrom_pieces = check_tiling(contig, n_var, by_contig.pop(contig, []))
        for p in chrom_pieces:
            if p.samples_sha256 != digest or p.n_samples != len(these):
                raise IntegrityError(f"{p.path}: imputed for other target samples than "
                                     f"{tpath}; delete results/impute/ and re-run")
            if p.format_fields != extra:
                raise IntegrityError(f"{p.path}: written with FORMAT fields {p.format_fields}, "
                                     f"output.format_fields asks for {extra}; delete "
                                     "results/impute/ and re-run")
            if p.gp != gp:
                raise IntegrityError(f"{p.path}: written {'with' if p.gp else 'without'} GP, "
                                     f"output.gp is {str(gp).lower()}; delete results/impute/ "
                                     "and re-run")
        contigs.append((contig, length))
        ordered += chrom_pieces
    if by_contig:
        raise InputError(f"pieces of contigs {sorted(by_contig)} given without their reference")
    assert samples is not None
    header = imputed_header(contigs, samples, command=command, format_fields=extra,
                            recalibrated=any(p.dr2_recalibrated for p in ordered), gp=gp)
    # the index from the pieces' record and member sizes (vcfbert.io.tabix): nothing read back
    places: dict[str, list[tuple[np.ndarray, ...]]] = {}
    with BgzipVcfWriter(out, threads=threads) as w:
        w.write_lines(header)
        for p in tqdm(ordered, unit="piece", desc="write VCF", mininterval=5):
            start = copy_piece(p, w)
            places.setdefault(p.contig, []).append(p.tabix_records(positions[p.contig], start))
        w.set_index([ContigRecords(c, *(np.concatenate(parts) for parts in zip(*places[c],
                                                                                strict=True)))
                     for c, _ in contigs])
    log.info("wrote %s: %d chromosomes, %d variants, %d samples, from %d pieces", out,
             len(contigs), sum(p.core_end - p.core_start for p in ordered), len(samples),
             len(ordered))
