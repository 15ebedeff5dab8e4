"""Accuracy of an imputed VCF in bounded memory: both files are read in blocks of variants.

Gives the same tables as :func:`vcfbert.evaluate.evaluate_dense` (which holds the truth and
the imputed doses as full ``[V, S]`` matrices: 5-8 GB for 100,000 variants x 1,000 samples)
with memory that does not grow with the number of variants:

1. the truth VCF is read once, its ALT counts stored as ``int8`` (-1 missing) in a temporary
   HDF5 file, one row per reference-panel site it holds, in file order;
2. the imputed VCF is read in blocks of ``block_variants`` records; each block's truth rows are
   read back, and the sufficient statistics of every metric are added up per (sample group,
   MAF bin) — r² from the sums of d, t, d², t², d·t — and per variant.

Peak memory is about ``block_variants x samples x 12`` bytes (float32 doses and best guesses,
float64 while scoring) plus the site table.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Iterator

import h5py
import numba
import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import InputError
from .evaluate import (
    BIN_LABELS,
    maf_bin,
    record_calls,
    true_dose,
)
from .io.transpose import allele_counts
from .io.vcf import (
    _SYMBOLIC,
    iter_variants,
    list_contigs,
    normalize_contig,
    parsed_records,
    sample_ids,
)
from .kernels import ready

log = logging.getLogger(__name__)

BLOCK_VARIANTS = 2048
_SUMS = ("n", "sd", "st", "sdd", "stt", "sdt", "equal", "nonref", "nonref_equal", "tp", "fp",
         "fn", "carriers")


@dataclasses.dataclass
class _TruthStore:
    """Where each site's truth row lies in the temporary store, and its ALT counts."""

    h5: h5py.Dataset  # int8 [rows, S]: true ALT count, -1 missing
    row: np.ndarray  # int64 [n_sites]: row in ``h5``, -1 when the truth lacks the site
    flip: np.ndarray  # bool [n_sites]: the truth has REF and ALT swapped
    alt_count: np.ndarray  # float64 [n_sites]: true ALT count summed over the samples

    def doses(self, sites: np.ndarray) -> np.ndarray:
        """float32 [len(sites), S] true ALT counts of ``sites`` (all held), NaN missing."""
        rows = self.row[sites]
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        lo, hi = int(sorted_rows[0]), int(sorted_rows[-1]) + 1
        if hi - lo <= 4 * len(rows) + 64:
            block = self.h5[lo:hi][sorted_rows - lo]
        else:  # the files are in different orders: read the rows one by one (still bounded)
            uniq, inv = np.unique(sorted_rows, return_inverse=True)
            block = self.h5[uniq.tolist()][inv]
        out = np.empty((len(rows), block.shape[1]), np.float32)
        out[order] = block
        out[out < 0] = np.nan
        flip = self.flip[sites]
        out[flip] = 2 - out[flip]
        return out


@numba.njit(cache=True, nogil=True, inline="always")
def _add_stats(acc: np.ndarray, c: int, stats: tuple) -> None:
    """``acc[c] += stats``: the 13 statistics of :data:`_SUMS` (a tuple of floats) of class
    ``c``."""
    for k in range(len(stats)):
        acc[c, k] += stats[k]


@numba.njit(cache=True, nogil=True)
def _block_sums(dose: np.ndarray, hard: np.ndarray, truth: np.ndarray, bins: np.ndarray,
                scored: np.ndarray, sample_class: np.ndarray, class_groups: np.ndarray,
                sums: np.ndarray, r2: np.ndarray) -> None:
    """One pass over a block of variants: ``r2[v]``, the squared correlation of dose and
    truth over the samples where both are known (NaN when either does not vary or fewer than
    2 samples), and, for the ``scored`` variants, each statistic of :data:`_SUMS` added to
    ``sums[g, bins[v]]`` for every group ``g`` holding the sample.

    The statistics are first added up per class of samples (the samples that belong to the
    same groups: ``class_groups[sample_class[i]]`` are sample ``i``'s groups), then each
    class's sums to its groups: one addition per statistic and sample, whatever the number of
    groups.

    Args:
        dose, hard, truth: float32 [b, S] ALT doses, best guesses (NaN: the rounded dose) and
            true ALT counts (NaN: missing); bins: int64 [b] MAF bins; scored: bool [b];
        sample_class: int64 [S] each sample's class; class_groups: bool [C, G] the groups of
            each class; sums: float64 [G, bins, 13], added to; r2: float64 [b], written.
    """
    n_s = dose.shape[1]
    n_c, n_g = class_groups.shape
    n_stat = sums.shape[2]
    acc = np.zeros((n_c, n_stat))
    for v in range(dose.shape[0]):
        acc[:, :] = 0.0
        # the current class's statistics (s_*), added to ``acc`` when the class changes; a
        # variant not scored needs only its r², from the first six
        cur = sample_class[0] if n_s else 0
        s_n = s_d = s_t = s_dd = s_tt = s_dt = s_eq = s_nr = s_nreq = s_tp = s_fp = s_fn = \
            s_car = 0.0
        for i in range(n_s):
            t = np.float64(truth[v, i])
            d = np.float64(dose[v, i])
            if np.isnan(t) or np.isnan(d):
                continue
            c = sample_class[i]
            if c != cur:
                _add_stats(acc, cur, (s_n, s_d, s_t, s_dd, s_tt, s_dt, s_eq, s_nr, s_nreq, s_tp,
                                      s_fp, s_fn, s_car))
                cur = c
                s_n = s_d = s_t = s_dd = s_tt = s_dt = s_eq = s_nr = s_nreq = s_tp = s_fp = \
                    s_fn = s_car = 0.0
            h = np.float64(hard[v, i])
            if np.isnan(h):
                h = np.rint(d)
            h_alt = 1.0 if h >= 1.0 else 0.0
            t_alt = 1.0 if t >= 1.0 else 0.0
            nonref = 1.0 if (h > 0.0 or t > 0.0) else 0.0
            equal = 1.0 if h == t else 0.0
            s_n += 1.0
            s_d += d
            s_t += t
            s_dd += d * d
            s_tt += t * t
            s_dt += d * t
            s_eq += equal
            s_nr += nonref
            s_nreq += nonref * equal
            s_tp += h_alt * t_alt
            s_fp += h_alt * (1.0 - t_alt)
            s_fn += t_alt * (1.0 - h_alt)
            s_car += t_alt
        _add_stats(acc, cur, (s_n, s_d, s_t, s_dd, s_tt, s_dt, s_eq, s_nr, s_nreq, s_tp, s_fp,
                              s_fn, s_car))
        n = sd = st = sdd = stt = sdt = 0.0  # over every sample: the classes' sums
        for c in range(n_c):
            n += acc[c, 0]
            sd += acc[c, 1]
            st += acc[c, 2]
            sdd += acc[c, 3]
            stt += acc[c, 4]
            sdt += acc[c, 5]
        r2[v] = np.nan
        if n >= 2.0:
            md = sd / n
            mt = st / n
            vd = sdd / n - md * md
            vt = stt / n - mt * mt
            if vd > 1e-12 and vt > 1e-12:
                cov = sdt / n - md * mt
                r2[v] = min(1.0, max(0.0, cov * cov / (vd * vt)))
        if scored[v]:
            b = bins[v]
            for c in range(n_c):
                for g in range(n_g):
                    if class_groups[c, g]:
                        for k in range(n_stat):
                            sums[g, b, k] += acc[c, k]


@numba.njit(cache=True, nogil=True)
def _doses_of_rows(gt: np.ndarray, ds: np.ndarray, rows: np.ndarray, from_gt: np.ndarray,
                   flip: np.ndarray, has_gt: bool, dose: np.ndarray, hard: np.ndarray) -> None:
    """The dose and best guess of the imputed records ``rows`` of a parser block, in one pass.

    The best guess is the ALT count of the GT (as :func:`vcfbert.evaluate.best_guess_block`;
    NaN where either allele is missing), or the dose rounded (half to even) without GT; the
    dose is FORMAT/DS, or the best guess for the records ``from_gt`` (no DS); both are
    ``2 - x`` where ``flip`` (REF and ALT swapped against the panel).

    Args:
        gt: int16 [b, S, 3] the block's genotypes (-2 pads a haploid call, -1 missing);
        ds: float32 [b, S] its DS values (any shape when every row is ``from_gt``);
        rows: int64 [m]; from_gt, flip: bool [m]; dose, hard: float32 [m, S], written.
    """
    nan = np.float32(np.nan)
    two = np.float32(2.0)
    for m in range(rows.size):
        r = rows[m]
        for s in range(dose.shape[1]):
            h = nan
            if has_gt:
                a0 = gt[r, s, 0]
                a1 = gt[r, s, 1]
                if a0 != -1 and a1 != -1:
                    h = np.float32((1 if a0 > 0 else 0) + (1 if a1 > 0 else 0))
            d = h if from_gt[m] else ds[r, s]
            if not has_gt:
                h = np.float32(np.rint(d))
            if flip[m]:
                d = two - d
                h = two - h
            dose[m, s] = d
            hard[m, s] = h


@numba.njit(cache=True, nogil=True)
def _alt_counts(gt: np.ndarray, take: np.ndarray, allele_of: np.ndarray,
                counts: np.ndarray) -> None:
    """True ALT counts of the truth records ``take`` of a parser block, in one pass.

    Args:
        gt: int16 [b, S, 3] genotypes (-2 pads a haploid call, which counts its allele once;
            -1 missing); take: int64 [m] rows; allele_of: int16 [m] the allele counted;
        counts: int8 [m, S] written, -1 where missing.
    """
    for m in range(take.size):
        r = take[m]
        a = allele_of[m]
        for s in range(counts.shape[1]):
            a0 = gt[r, s, 0]
            a1 = gt[r, s, 1]
            if a0 < 0 or (a1 != -2 and a1 < 0):
                counts[m, s] = -1
            else:
                counts[m, s] = (1 if a0 == a else 0) + (1 if a1 == a else 0)


def pooled_r2(sums: np.ndarray) -> np.ndarray:
    """Aggregate r² from pooled sums float [..., 6] = (n, Σd, Σt, Σd², Σt², Σdt) over
    (variant, sample) pairs: the squared correlation of dose and truth, capped at 1; NaN
    where fewer than 2 pairs or either has no variance (below 1e-12)."""
    n, sd, st, sdd, stt, sdt = np.moveaxis(np.asarray(sums, np.float64), -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        md, mt = sd / n, st / n
        vd, vt = sdd / n - md * md, stt / n - mt * mt
        r2 = np.minimum(1.0, (sdt / n - md * mt) ** 2 / (vd * vt))
    return np.where((n > 1) & (vd > 1e-12) & (vt > 1e-12), r2, np.nan)


class _Accumulator:
    """Sufficient statistics of :func:`vcfbert.evaluate.score` per (group, MAF bin), and the
    per-variant r² (:func:`vcfbert.evaluate.per_variant_r2`), one compiled pass per block."""

    def __init__(self, groups: list[tuple[str, np.ndarray]]) -> None:
        self.groups = groups
        self._sums = np.zeros((len(groups), len(BIN_LABELS), len(_SUMS)))
        self.sums = {name: self._sums[g] for g, (name, _) in enumerate(groups)}
        member = np.stack([smask.astype(bool) for _, smask in groups], 1)  # bool [S, groups]
        # the distinct rows of ``member`` (bool [C, groups]) and each sample's
        self.class_groups, sample_class = np.unique(member, axis=0, return_inverse=True)
        self.sample_class = np.ascontiguousarray(sample_class.reshape(-1), np.int64)

    def add(self, dose: np.ndarray, hard: np.ndarray, truth: np.ndarray, bins: np.ndarray,
            scored: np.ndarray | None = None) -> np.ndarray:
        """Add the ``scored`` variants (rows; default all) of a block, with MAF bin index
        ``bins`` [b], to the sums; returns float64 [b] the r² of every row."""
        b = dose.shape[0]
        r2 = np.empty(b)
        ready(_block_sums)
        _block_sums(np.ascontiguousarray(dose, np.float32),
                    np.ascontiguousarray(hard, np.float32),
                    np.ascontiguousarray(truth, np.float32),
                    np.ascontiguousarray(bins, np.int64),
                    np.ones(b, bool) if scored is None else np.ascontiguousarray(scored, bool),
                    self.sample_class, np.ascontiguousarray(self.class_groups), self._sums, r2)
        return r2

    @staticmethod
    def metrics(s: np.ndarray) -> dict[str, float]:
        """The metrics of :func:`vcfbert.evaluate.score` from one row of sums."""
        v = dict(zip(_SUMS, s, strict=True))
        n = v["n"]
        out: dict[str, float] = {"n_genotypes": int(n)}
        out["r2"] = float(pooled_r2(np.asarray(s[:6])))
        out["concordance"] = float(v["equal"] / n) if n else float("nan")
        out["nrd"] = float(1 - v["nonref_equal"] / v["nonref"]) if v["nonref"] else float("nan")
        denom = 2 * v["tp"] + v["fp"] + v["fn"]
        out["f1"] = float(2 * v["tp"] / denom) if denom else float("nan")
        out["true_alt_carriers"] = int(v["carriers"])
        return out


def _site_index(sites: pd.DataFrame) -> dict[tuple[str, int, str, str], int]:
    return {(c, int(p), r, a): j for j, (c, p, r, a) in enumerate(
        zip(sites.contig, sites.position, sites.ref, sites.alt, strict=True))}


def _lookup(index: dict, contig: str, pos: int, ref: str, alt: str) -> tuple[int, bool]:
    """Site row of a record (-1 if not a site) and whether its alleles are swapped."""
    j = index.get((contig, pos, ref, alt))
    if j is not None:
        return j, False
    j = index.get((contig, pos, alt, ref))
    return (j, True) if j is not None else (-1, False)


def _store_truth(paths: list[str], index: dict, n_sites: int, samples: list[str],
                 h5: h5py.File, block: int,
                 progress: Callable[[int], object] | None = None) -> _TruthStore:
    """Read the truth VCFs (one, or one per chromosome) once into ``h5`` (int8 ALT counts of
    the samples, in this order); ``progress`` is given the variants of each block read."""
    data = h5.create_dataset("truth", shape=(0, len(samples)), maxshape=(None, len(samples)),
                             dtype=np.int8, chunks=(min(block, 256), len(samples)))
    row = np.full(n_sites, -1, np.int64)
    flip = np.zeros(n_sites, bool)
    alt_count = np.zeros(n_sites)
    buf: list[np.ndarray] = []
    buffered = 0  # rows in ``buf``
    stored = 0  # rows in ``data`` (h5py's shape is slow to ask per block)

    def flush() -> None:
        nonlocal stored, buffered
        if buf:
            data.resize(stored + buffered, axis=0)
            data[stored:] = np.concatenate(buf)
            stored += buffered
            buf.clear()
            buffered = 0

    for path, contig, cols in _truth_contigs(paths, samples):
        name = normalize_contig(contig)
        for position, refs, alts, counts in truth_count_blocks(path, contig, cols):
            if progress is not None:
                progress(len(refs))
            keep: list[int] = []
            sites: list[int] = []
            swaps: list[bool] = []
            first = stored + buffered
            for i, pos in enumerate(position.tolist()):
                j, swapped = _lookup(index, name, pos, refs[i], alts[i])
                if j < 0:
                    continue
                # a site met twice keeps its last row, as the records come
                row[j], flip[j] = first + len(keep), swapped
                keep.append(i)
                sites.append(j)
                swaps.append(swapped)
            if not keep:
                continue
            dose = counts if len(keep) == len(counts) else counts[keep]  # int8 [m, S]
            alt, n_called = allele_counts(dose)
            alt_count[sites] = np.where(swaps, 2 * n_called - alt, alt)
            buf.append(dose)
            buffered += len(keep)
            if buffered >= block:
                flush()
    flush()
    if not (row >= 0).any():
        raise InputError(f"{', '.join(paths)}: the truth VCF holds none of the reference "
                         "panel's variants")
    return _TruthStore(data, row, flip, alt_count)


def truth_doses(path: str, contig: str, cols: np.ndarray
                ) -> Iterator[tuple[int, str, str, np.ndarray]]:
    """(position, REF, ALT, true ALT count float64 [len(cols)], NaN missing) of every
    bi-allelic variant of ``contig`` in a truth VCF, for the file's samples ``cols``: what
    :func:`vcfbert.io.vcf.iter_variants` (role ``target``, haploid calls duplicated) and
    :func:`vcfbert.evaluate.true_dose` give (a haploid call counts its allele once); the
    records of :func:`truth_count_blocks` one at a time."""
    for position, refs, alts, counts in truth_count_blocks(path, contig, cols):
        for i in range(len(refs)):
            yield (int(position[i]), refs[i], alts[i],
                   np.where(counts[i] < 0, np.nan, counts[i].astype(np.float64)))


def truth_count_blocks(path: str, contig: str, cols: np.ndarray, *, records: int = 1024
                       ) -> Iterator[tuple[np.ndarray, list[str], list[str], np.ndarray]]:
    """Blocks ``(positions int64 [m], REFs, ALTs, true ALT counts int8 [m, len(cols)], -1
    missing)`` of the bi-allelic variants of ``contig`` in a truth VCF, for the file's samples
    ``cols`` (a multi-allelic record gives one variant per ALT; symbolic ALTs and a variant met
    again at its position are skipped). A text VCF is read a parser block at a time, with the
    counts of a block computed at once; a BCF through :func:`vcfbert.io.vcf.iter_variants`,
    ``records`` variants at a time."""
    from .io.vcf import check_header, uses_text_reader
    from .io.vcf_text import iter_text_blocks

    if not uses_text_reader(path, contig, "auto"):
        pos: list[int] = []
        refs: list[str] = []
        alts: list[str] = []
        rows: list[np.ndarray] = []
        for v in iter_variants(path, contig, role="target", haploid="duplicate"):
            dose = true_dose(v)[cols]
            pos.append(v.position)
            refs.append(v.ref)
            alts.append(v.alt)
            rows.append(np.where(np.isnan(dose), -1, dose).astype(np.int8))
            if len(rows) >= records:
                yield np.array(pos, np.int64), refs, alts, np.stack(rows)
                pos, refs, alts, rows = [], [], [], []
        if rows:
            yield np.array(pos, np.int64), refs, alts, np.stack(rows)
        return
    file_samples = check_header(path)
    chosen = [file_samples[c] for c in cols]
    last_pos = -1
    seen_at_pos: set[tuple[str, str]] = set()
    # two blocks parsed at once: the evaluation's scoring keeps only one core busy (the
    # reference's parsing, whose own threads fill the cores, keeps one; docs/model.md,
    # "Inference speed")
    for tb in iter_text_blocks(path, file_samples, samples=chosen, contig=contig,
                               parse_threads=2):
        rows_: list[int] = []
        alleles: list[int] = []
        refs_: list[str] = []
        alts_: list[str] = []
        for r, pos_r in enumerate(tb.pos.tolist()):
            if pos_r < last_pos:
                raise InputError(f"{path}: record {contig}:{pos_r} comes after position "
                                 f"{last_pos}: records are not sorted; sort the file with "
                                 "`bcftools sort`")
            if pos_r != last_pos:
                seen_at_pos.clear()
                last_pos = pos_r
            ref = tb.ref[r].upper()
            if not ref.isalpha():
                continue
            for allele, alt in enumerate(tb.alt[r], start=1):
                alt = alt.upper()
                if alt.startswith(_SYMBOLIC) or not alt.isalpha() or (ref, alt) in seen_at_pos:
                    continue
                seen_at_pos.add((ref, alt))
                rows_.append(r)
                alleles.append(allele)
                refs_.append(ref)
                alts_.append(alt)
        if not rows_:
            continue
        take = np.asarray(rows_, np.int64)
        counts = np.empty((take.size, tb.gt.shape[1]), np.int8)
        ready(_alt_counts)
        _alt_counts(tb.gt, take, np.asarray(alleles, np.int16), counts)
        yield tb.pos[take], refs_, alts_, counts


def _truth_contigs(paths: list[str], samples: list[str]):
    """Yield (file, contig, columns of ``samples`` in the file) over the truth files."""
    for path in paths:
        have = {s: i for i, s in enumerate(sample_ids(path))}
        missing = [s for s in samples if s not in have]
        if missing:
            raise InputError(f"sample {missing[0]} (and {len(missing) - 1} more) is missing "
                             f"from the truth VCF {path}; the truth and imputed VCFs must hold "
                             "the same target samples")
        cols = np.array([have[s] for s in samples])
        for contig in list_contigs(path):
            yield path, contig, cols


def _imputed_blocks(paths: list[str], index: dict, block: int, samples: list[str]):
    """Yield ``(sites [b], dose [b, S], hard [b, S], dr2 [b])`` blocks of the imputed VCFs'
    bi-allelic records that are reference sites (doses flipped where the alleles are swapped;
    a site met again is skipped). Every file must hold ``samples`` in this order."""
    seen = np.zeros(len(index), bool)
    for path in paths:
        if sample_ids(path) != samples:
            raise InputError(f"{path}: its samples differ from {paths[0]}'s; the imputed VCFs "
                             "of one run hold the same samples")
        yield from _file_blocks(path, index, block, seen)
    if not seen.any():
        raise InputError(f"{', '.join(paths)}: the imputed VCF holds none of the reference "
                         "panel's bi-allelic variants")


def _file_blocks(path: str, index: dict, block: int, seen: np.ndarray):
    """Blocks of one imputed VCF (see :func:`_imputed_blocks`): a text VCF through the
    compiled parser of :mod:`vcfbert.io.vcf_text`, a BCF through cyvcf2."""
    from .io.vcf_text import is_text_vcf

    if is_text_vcf(path):
        yield from _text_file_blocks(path, index, seen)
    else:
        yield from _htslib_file_blocks(path, index, block, seen)


def _text_file_blocks(path: str, index: dict, seen: np.ndarray):
    from .io.vcf import check_header, header_lines
    from .io.vcf_text import info_float, iter_text_blocks

    declared = {x[len("##FORMAT=<ID="):].split(",")[0] for x in header_lines(path)
                if x.startswith("##FORMAT=<ID=")}
    has_ds, has_gt = "DS" in declared, "GT" in declared
    if not (has_ds or has_gt):
        raise InputError(f"{path}: the imputed VCF has neither FORMAT/DS nor FORMAT/GT")
    contig_names: dict[str, str] = {}  # the file's contig -> normalised
    lacks_ds: dict[str, bool] = {}  # FORMAT column -> without DS
    no_ds_values = np.empty((0, 0), np.float32)
    for tb in iter_text_blocks(path, check_header(path), want_ds=has_ds, require_gt=False,
                               parse_threads=2):  # as in truth_count_blocks
        rows: list[int] = []
        js: list[int] = []
        swapped: list[bool] = []
        dr2: list[float] = []
        positions = tb.pos.tolist()
        for r, alts in enumerate(tb.alt):
            if len(alts) != 1:
                continue  # multi-allelic output records are not scored
            chrom = tb.chrom[r]
            name = contig_names.get(chrom)
            if name is None:
                name = contig_names[chrom] = normalize_contig(chrom)
            j, swap = _lookup(index, name, positions[r], tb.ref[r].upper(), alts[0].upper())
            if j < 0 or seen[j]:
                continue
            seen[j] = True
            rows.append(r)
            js.append(j)
            swapped.append(swap)
            dr2.append(info_float(tb.info[r], "DR2", "R2"))
        if not rows:
            continue
        if not has_ds:
            from_gt = np.ones(len(rows), bool)
        elif not has_gt:
            from_gt = np.zeros(len(rows), bool)
        else:  # a record without DS: its GT count is the dose
            for r in rows:
                if tb.format[r] not in lacks_ds:
                    lacks_ds[tb.format[r]] = "DS" not in tb.format[r].split(":")
            from_gt = np.array([lacks_ds[tb.format[r]] for r in rows], bool)
        dose = np.empty((len(rows), tb.gt.shape[1]), np.float32)
        hard = np.empty_like(dose)
        ready(_doses_of_rows)
        _doses_of_rows(tb.gt, tb.ds if has_ds else no_ds_values, np.asarray(rows, np.int64),
                       from_gt, np.asarray(swapped, bool), has_gt, dose, hard)
        yield np.array(js), dose, hard, np.array(dr2)


def _htslib_file_blocks(path: str, index: dict, block: int, seen: np.ndarray):
    import cyvcf2

    vcf = cyvcf2.VCF(str(path), gts012=False, lazy=True, threads=1)
    has_ds, has_gt = vcf.contains("DS"), vcf.contains("GT")
    if not (has_ds or has_gt):
        raise InputError(f"{path}: the imputed VCF has neither FORMAT/DS nor FORMAT/GT")
    js: list[int] = []
    doses: list[np.ndarray] = []
    hards: list[np.ndarray] = []
    dr2: list[float] = []
    try:
        for rec in parsed_records(vcf, path):
            if len(rec.ALT) != 1:
                continue  # multi-allelic output records are not scored
            j, swapped = _lookup(index, normalize_contig(rec.CHROM), int(rec.POS),
                                 rec.REF.upper(), rec.ALT[0].upper())
            if j < 0 or seen[j]:
                continue
            seen[j] = True
            dose, hard, site_dr2 = record_calls(rec, has_ds, has_gt)
            if swapped:
                dose, hard = 2 - dose, 2 - hard
            js.append(j)
            doses.append(dose)
            hards.append(hard)
            dr2.append(site_dr2)
            if len(js) >= block:
                yield np.array(js), np.stack(doses), np.stack(hards), np.array(dr2)
                js, doses, hards, dr2 = [], [], [], []
        if js:
            yield np.array(js), np.stack(doses), np.stack(hards), np.array(dr2)
    finally:
        vcf.close()


def evaluate(imputed_vcf: str | os.PathLike[str] | list[str],
             truth_vcf: str | os.PathLike[str] | list[str],
             sites: pd.DataFrame, *, populations: dict[str, str] | None = None,
             method: str = "vcfbert", block_variants: int = BLOCK_VARIANTS,
             tmp_dir: str | os.PathLike[str] | None = None
             ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score an imputed VCF against the truth, reading both in blocks of variants.

    Args:
        imputed_vcf, truth_vcf: one file each, or one file per chromosome.
        sites: reference-panel variants with columns contig, position, ref, alt, ref_af,
            typed (bool). Contig names may use any naming.
        populations: sample -> population (per-population rows when given).
        block_variants: imputed records scored at a time (memory ~ block x samples x 12 B).
        tmp_dir: where the temporary truth store (1 byte per genotype) goes.

    Returns:
        (accuracy table, per-variant table), as :func:`vcfbert.evaluate.evaluate_dense`.
    """
    sites = sites.reset_index(drop=True).copy()
    sites["contig"] = sites["contig"].map(normalize_contig)
    index = _site_index(sites)
    n_sites = len(sites)
    imputed_files = [str(imputed_vcf)] if isinstance(imputed_vcf, str | os.PathLike) \
        else [str(f) for f in imputed_vcf]
    truth_files = [str(truth_vcf)] if isinstance(truth_vcf, str | os.PathLike) \
        else [str(f) for f in truth_vcf]
    samples = sample_ids(imputed_files[0])
    groups: list[tuple[str, np.ndarray]] = [("all", np.ones(len(samples), bool))]
    if populations:
        pops = np.array([populations.get(s, "") for s in samples])
        groups += [(p, pops == p) for p in sorted(set(pops)) if p]
    sites["maf_bin"] = maf_bin(sites["ref_af"].to_numpy())
    bin_index = pd.Categorical(sites["maf_bin"], categories=BIN_LABELS).codes.astype(np.int64)
    typed = sites["typed"].to_numpy(bool)
    acc = _Accumulator(groups)
    if tmp_dir is not None:
        os.makedirs(tmp_dir, exist_ok=True)
    found = np.zeros(n_sites, bool)
    dr2 = np.full(n_sites, np.nan)
    true_r2 = np.full(n_sites, np.nan)
    with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="vcfbert-eval-") as tmp, \
            h5py.File(os.path.join(tmp, "truth.h5"), "w") as h5:
        # progress in the rule's log: a whole chromosome's evaluation takes a minute or more
        with tqdm(desc="evaluate: truth read", unit=" variant", file=sys.stderr,
                  mininterval=5, unit_scale=True) as bar:
            truth = _store_truth(truth_files, index, n_sites, samples, h5, block_variants,
                                 progress=bar.update)
        tfound = truth.row >= 0
        with tqdm(desc="evaluate: imputed variants scored", total=n_sites, unit=" variant",
                  file=sys.stderr, mininterval=5, unit_scale=True) as bar:
            for js, dose, hard, d2 in _imputed_blocks(imputed_files, index, block_variants,
                                                      samples):
                bar.update(len(js))
                found[js], dr2[js] = True, d2
                held = tfound[js]
                if not held.any():
                    continue
                js, dose, hard = js[held], dose[held], hard[held]
                true_r2[js] = acc.add(dose, hard, truth.doses(js), bin_index[js], ~typed[js])
        # untyped sites the truth has but the imputed VCF lacks count as dose 0 (as before)
        absent = np.flatnonzero(tfound & ~found & ~typed)
        for start in range(0, absent.size, block_variants):
            js = absent[start:start + block_variants]
            tdose = truth.doses(js)
            zero = np.zeros_like(tdose)
            acc.add(zero, zero, tdose, bin_index[js])
        alt_count = truth.alt_count
    sites["in_imputed"], sites["in_truth"] = found, tfound
    n_absent = int((~found & ~typed).sum())
    if n_absent:
        log.warning("%s: %d untyped reference variants are absent from %s", method, n_absent,
                    imputed_vcf)
    untyped = ~typed & tfound
    rows = []
    for gname, _ in groups:
        sums = acc.sums[gname]
        for b, label in enumerate([*BIN_LABELS, "overall"]):
            vmask = untyped & ((bin_index == b) | (label == "overall"))
            s = sums.sum(0) if label == "overall" else sums[b]
            rows.append({"method": method, "group": gname, "maf_bin": label,
                         "n_variants": int(vmask.sum()),
                         "n_absent": int((vmask & ~found).sum()), **_Accumulator.metrics(s)})
    table = pd.DataFrame(rows)
    pv = sites[["contig", "position", "ref", "alt", "ref_af", "maf_bin", "typed"]].copy()
    pv["dr2"] = dr2
    pv["true_r2"] = true_r2
    pv["true_alt_count"] = alt_count
    return table, pv[tfound]
