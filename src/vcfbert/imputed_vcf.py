"""The imputed VCF: FORMAT GT:DS:GP, INFO AF/DR2/IMP/TYPED (DESIGN §1 contract), and ER2 at
typed sites. Without GP (``output.gp: false``) the FORMAT is GT:DS, Beagle's default.

Optional FORMAT fields (``output.format_fields``), for phase-aware downstream tools: ``HDS``
(haploid ALT dosages, Minimac4's convention: ``p1,p2``), ``AP1`` and ``AP2`` (Beagle's ALT
probabilities of the first and second haplotype).

Input per chromosome: ALT probabilities per target haplotype for every reference variant
(float [2T, V]) and which variants are typed. Genotype probabilities assume the two haplotypes
are independent: P(0) = (1-p1)(1-p2), P(1) = p1(1-p2) + (1-p1)p2, P(2) = p1 p2.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from .io.vcf_writer import BgzipVcfWriter, base_header, column_header, command_line

DR2_HEADER = ('##INFO=<ID=DR2,Number=A,Type=Float,Description="Dosage R-squared: estimated '
              'squared correlation between estimated ALT dose and true ALT dose">')
DR2_RECALIBRATED_HEADER = (
    '##INFO=<ID=DR2,Number=A,Type=Float,Description="Dosage R-squared: estimated squared '
    'correlation between estimated ALT dose and true ALT dose; recalibrated at IMP markers '
    '(conditional on both alleles being present, mapped to the true r2 of validation samples '
    'per MAF bin: vcfbert docs/model.md, DR2 recalibration)">')
INFO_HEADER = [
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Estimated ALT allele frequency">',
    DR2_HEADER,
    '##INFO=<ID=ER2,Number=1,Type=Float,Description="Empirical (leave-one-out) R-squared, typed '
    'markers only: squared correlation between the observed genotype and the ALT dose the '
    'copying HMM imputes with the marker left out">',
    '##INFO=<ID=IMP,Number=0,Type=Flag,Description="Imputed marker (untyped in the targets)">',
    '##INFO=<ID=TYPED,Number=0,Type=Flag,Description="Typed marker (genotyped in the targets; '
    'their calls are kept)">',
]
FORMAT_HEADER = [
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Estimated ALT dose [P(RA) + 2*P(AA)]">',
    '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Estimated genotype probabilities">',
]
OPTIONAL_FORMAT_HEADER = {
    "HDS": '##FORMAT=<ID=HDS,Number=.,Type=Float,Description="Estimated haploid ALT dosages '
           '(one per haplotype)">',
    "AP1": '##FORMAT=<ID=AP1,Number=A,Type=Float,Description="Estimated ALT allele probability '
           'of the first haplotype">',
    "AP2": '##FORMAT=<ID=AP2,Number=A,Type=Float,Description="Estimated ALT allele probability '
           'of the second haplotype">',
}


def format_keys(extra: tuple[str, ...] = (), gp: bool = True) -> str:
    """The FORMAT column: ``GT:DS:GP`` (``GT:DS`` without ``gp``) and the ``extra`` fields."""
    return ":".join(["GT", "DS", *(["GP"] if gp else []), *extra])


def check_format_fields(fields: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The optional FORMAT fields in a fixed order (HDS, AP1, AP2); ValueError for others."""
    unknown = [f for f in fields if f not in OPTIONAL_FORMAT_HEADER]
    if unknown:
        raise ValueError(f"output.format_fields: unknown {unknown}; choose among "
                         f"{list(OPTIONAL_FORMAT_HEADER)}")
    return tuple(f for f in OPTIONAL_FORMAT_HEADER if f in fields)


@dataclasses.dataclass
class ChromosomeDosages:
    """What the writer needs for one chromosome."""

    contig: str
    position: np.ndarray  # int64 [V]
    alleles: np.ndarray  # str [V, 2]
    ids: np.ndarray  # str [V]
    hap_prob: np.ndarray  # float32 [2T, V] ALT probability per haplotype (or an h5py dataset)
    typed: np.ndarray  # bool [V] site typed in the targets
    haploid_samples: np.ndarray | None = None  # bool [T]: males (chrX), None: none
    haploid_variants: np.ndarray | None = None  # bool [V]: outside the pseudo-autosomal regions
    er2: np.ndarray | None = None  # float [V]: INFO/ER2 of typed variants (NaN: not written)
    dr2: np.ndarray | None = None  # float [V]: INFO/DR2 to write (recalibrated at untyped
    # variants, results/impute/{chrom}.h5 "dr2"); NaN or None: computed from hap_prob

    def dr2_of(self, lo: int, hi: int, computed: np.ndarray) -> np.ndarray:
        """float64 [hi - lo]: the DR2 to write for variants ``lo:hi``: :attr:`dr2` where it is
        given (finite), else ``computed`` (from ``hap_prob``, :func:`vcf_cells.site_stats`)."""
        if self.dr2 is None:
            return np.asarray(computed, np.float64)
        given = np.asarray(self.dr2[lo:hi], np.float64)
        return np.where(np.isfinite(given), np.clip(given, 0.0, 1.0), computed)

    def haploid_cells(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """(bool [T] haploid samples, bool [hi - lo] haploid variants) of a block: a cell is
        written haploid where both hold."""
        n_t = self.hap_prob.shape[0] // 2
        samples = (np.zeros(n_t, bool) if self.haploid_samples is None
                   else np.asarray(self.haploid_samples, bool))
        variants = (np.zeros(hi - lo, bool) if self.haploid_variants is None
                    else np.asarray(self.haploid_variants[lo:hi], bool))
        if not samples.any():
            variants = np.zeros_like(variants)
        return samples, variants


def dosage_r2(hap_prob: np.ndarray) -> np.ndarray:
    """Estimated dosage r² (DR2) per variant from haplotype probabilities [2T, V] -> [V].

    DR2 = var(DS) / (mean E[g²] - mean(DS)²), with E[g²] = p1 + p2 + 2 p1 p2; 0 where the
    estimated genotype variance is 0.
    """
    p1, p2 = hap_prob[0::2].astype(np.float64), hap_prob[1::2].astype(np.float64)
    ds = p1 + p2
    eg2 = p1 + p2 + 2 * p1 * p2
    mean = ds.mean(0)
    num = (ds**2).mean(0) - mean**2
    den = eg2.mean(0) - mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(den > 1e-12, num / den, 0.0)
    return np.clip(r2, 0.0, 1.0)


def empirical_r2_sums(loo_prob: np.ndarray, calls: np.ndarray,
                      haploid_samples: np.ndarray | None = None,
                      haploid_variants: np.ndarray | None = None) -> np.ndarray:
    """Sums behind ER2 over a block of target samples, to be added up over blocks.

    A sample counts at a variant where its genotype is observed (both alleles called, or a
    haploid male's one allele) and its leave-one-out probabilities are known (not NaN). Its
    LOO dose is ``x = p1 + p2`` and its observed genotype ``y = a1 + a2`` (0/1/2); a male
    (``haploid_samples``) at a haploid variant (chrX outside the pseudo-autosomal regions)
    counts his one allele, ``x = p1`` and ``y = a1`` (0/1), as DR2 counts his dose.

    Args:
        loo_prob: float [2t, v] leave-one-out ALT probability per target haplotype
            (haplotypes ``2s`` and ``2s + 1`` of sample ``s``; NaN: unknown).
        calls: int [2t, v] observed alleles (0/1; -1 missing).
        haploid_samples: bool [t] males (None: none).
        haploid_variants: bool [v] variants outside the pseudo-autosomal regions (None: none).

    Returns:
        float64 [6, v]: count, sum x, sum y, sum x², sum y², sum xy.
    """
    p = np.asarray(loo_prob, np.float64)
    a = np.asarray(calls)
    n_t, v = p.shape[0] // 2, p.shape[1]
    male = (np.zeros(n_t, bool) if haploid_samples is None
            else np.asarray(haploid_samples, bool))
    hap_var = (np.zeros(v, bool) if haploid_variants is None
               else np.asarray(haploid_variants, bool))
    haploid = male[:, None] & hap_var[None, :]  # [t, v]
    p1, p2, a1, a2 = p[0::2], p[1::2], a[0::2], a[1::2]
    x = np.where(haploid, p1, p1 + p2)
    y = np.where(haploid, a1, a1.astype(np.int64) + a2).astype(np.float64)
    ok = (a1 >= 0) & (haploid | (a2 >= 0)) & np.isfinite(x)
    x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    return np.stack([ok.sum(0), x.sum(0), y.sum(0), (x * x).sum(0), (y * y).sum(0),
                     (x * y).sum(0)]).astype(np.float64)


def empirical_r2(sums: np.ndarray) -> np.ndarray:
    """ER2 float64 [v] from :func:`empirical_r2_sums` [6, v]: the squared Pearson correlation
    of the leave-one-out dose and the observed genotype over the observed samples; NaN where
    it is undefined (fewer than 2 samples, or no variance in either)."""
    n, sx, sy, sxx, syy, sxy = np.asarray(sums, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vx, vy = sxx / n - mx * mx, syy / n - my * my
        cov = sxy / n - mx * my
        ok = (n >= 2) & (vx > 1e-12) & (vy > 1e-12)
        r2 = np.where(ok, cov * cov / (vx * vy), np.nan)
    return np.clip(r2, 0.0, 1.0)


def records_reference(chrom: ChromosomeDosages, lo: int, hi: int,
                      extra: tuple[str, ...] = (), gp: bool = True) -> list[str]:
    """Record lines of variants ``lo:hi``, formatted one string at a time (slow,
    obviously-correct twin of :func:`format_records`; tests only).

    A male's cell at a haploid variant is haploid: ``GT`` one allele, ``DS`` = his ALT
    probability, ``GP`` two values, ``HDS`` and ``AP1`` that probability, ``AP2`` missing;
    AF counts his allele once, and DR2 takes his dose and E[g²] as that probability. Where
    ``chrom.dr2`` holds a value (the recalibrated DR2), that is written instead. Without
    ``gp`` the cells have no GP part.
    """
    hp = np.clip(np.asarray(chrom.hap_prob[:, lo:hi]).astype(np.float64), 0.0, 1.0)
    male, haploid_variant = chrom.haploid_cells(lo, hi)

    def fmt(x: float) -> str:
        return decimal_text(np.round(x, 3) + 0.0)

    lines = []
    for j in range(hi - lo):
        v = lo + j
        cells, doses, eg2, alleles = [], [], [], []
        for t in range(hp.shape[0] // 2):
            p1, p2 = hp[2 * t, j], hp[2 * t + 1, j]
            q1, q2 = 1 - p1, 1 - p2
            if male[t] and haploid_variant[j]:
                cell = f"{int(p1 > 0.5)}:{fmt(p1)}" + (f":{fmt(q1)},{fmt(p1)}" if gp else "")
                optional = {"HDS": fmt(p1), "AP1": fmt(p1), "AP2": "."}
                doses.append(p1)
                eg2.append(p1)
                alleles.append(p1)
            else:
                cell = f"{int(p1 > 0.5)}|{int(p2 > 0.5)}:{fmt(p1 + p2)}"
                if gp:
                    cell += f":{fmt(q1 * q2)},{fmt(p1 * q2 + q1 * p2)},{fmt(p1 * p2)}"
                optional = {"HDS": f"{fmt(p1)},{fmt(p2)}", "AP1": fmt(p1), "AP2": fmt(p2)}
                doses.append(p1 + p2)
                eg2.append(p1 + p2 + 2 * p1 * p2)
                alleles += [p1, p2]
            cells.append(cell + "".join(f":{optional[f]}" for f in extra))
        d = np.array(doses)
        mean = d.mean()
        den = np.mean(eg2) - mean**2
        dr2 = float(np.clip((np.mean(d**2) - mean**2) / den, 0, 1)) if den > 1e-12 else 0.0
        if chrom.dr2 is not None and np.isfinite(chrom.dr2[v]):  # recalibrated (vcf_pieces)
            dr2 = float(np.clip(chrom.dr2[v], 0, 1))
        lines.append("\t".join([chrom.contig, str(chrom.position[v]), str(chrom.ids[v]),
                                str(chrom.alleles[v, 0]), str(chrom.alleles[v, 1]), ".", "PASS",
                                _info(float(np.mean(alleles)), dr2, bool(chrom.typed[v]),
                                      _er2(chrom, v)),
                                format_keys(extra, gp), *cells]))
    return lines


def _er2(chrom: ChromosomeDosages, v: int) -> float:
    return float(chrom.er2[v]) if chrom.er2 is not None else float("nan")


def _info(af: float, dr2: float, typed: bool, er2: float = float("nan")) -> str:
    """The INFO column; ER2 on typed records where it is defined (omitted elsewhere)."""
    if not typed:
        return f"AF={af:.4f};DR2={dr2:.3f};IMP"
    er2_text = f";ER2={er2:.3f}" if np.isfinite(er2) else ""
    return f"AF={af:.4f};DR2={dr2:.3f}{er2_text};TYPED"


def decimal_text(x: float) -> str:
    """A value rounded to 3 decimals, as Beagle and Minimac4 write them: trailing zeros and
    a trailing point dropped (``0``, ``1``, ``0.5``, ``0.125``)."""
    return f"{x:.3f}".rstrip("0").rstrip(".")


def format_records(chrom: ChromosomeDosages, lo: int, hi: int,
                   extra: tuple[str, ...] = (), ends: np.ndarray | None = None,
                   gp: bool = True) -> memoryview:
    """Record lines of variants ``lo:hi`` as ASCII bytes.

    Only the 9 fixed columns are formatted per variant in Python; the sample columns are
    written by one numba pass over the block (:func:`vcf_cells.records`, numbers as
    :func:`decimal_text` writes them). The ``extra`` fields (HDS, AP1, AP2;
    :func:`check_format_fields` order) add parts to every cell; without ``gp`` no cell has GP.
    Byte-identical to :func:`records_reference`. ``ends``: int64 [hi - lo] filled with where
    each record ends in the text (None: not kept).
    """
    # numba's import (~0.2 s) only where records are formatted: not in the write_vcf job,
    # which copies the pieces' compressed bytes
    from .vcf_cells import by_variant, records, site_stats

    rows = by_variant(chrom.hap_prob[:, lo:hi])  # [v, 2T]
    male, haploid_variant = chrom.haploid_cells(lo, hi)
    af, computed = site_stats(rows, male, haploid_variant)
    dr2 = chrom.dr2_of(lo, hi, computed)
    form = format_keys(extra, gp)
    fixed = [
        (f"{chrom.contig}\t{chrom.position[x]}\t{chrom.ids[x]}\t{chrom.alleles[x, 0]}\t"
         f"{chrom.alleles[x, 1]}\t.\tPASS\t"
         f"{_info(af[j], dr2[j], bool(chrom.typed[x]), _er2(chrom, x))}"
         f"\t{form}\t").encode("ascii")
        for j, x in enumerate(range(lo, hi))]
    return records(rows, fixed, extra, male, haploid_variant, ends, gp)


def imputed_header(contigs: list[tuple[str, int | None]], samples: list[str], *,
                   command: str | None = None, format_fields: tuple[str, ...] | list[str] = (),
                   recalibrated: bool = False, gp: bool = True) -> list[str]:
    """The imputed VCF's header lines, ``#CHROM`` line included: ``contigs`` (name, length or
    None), the INFO fields (DR2 described as recalibrated when ``recalibrated``), GT:DS:GP
    (GT:DS without ``gp``) and the optional ``format_fields``."""
    extra = check_format_fields(list(format_fields))
    info = INFO_HEADER
    if recalibrated:
        info = [DR2_RECALIBRATED_HEADER if h == DR2_HEADER else h for h in info]
    standard = FORMAT_HEADER if gp else [h for h in FORMAT_HEADER if "ID=GP," not in h]
    return (base_header(contigs, command=command or command_line()) + info + standard
            + [OPTIONAL_FORMAT_HEADER[f] for f in extra] + [column_header(samples)])


def write_imputed_vcf(path: str | os.PathLike[str], chromosomes: list[ChromosomeDosages],
                      samples: list[str], *, contig_lengths: dict[str, int] | None = None,
                      command: str | None = None, threads: int = 1,
                      cells_per_block: int = 4_000_000, progress: bool = False,
                      format_fields: tuple[str, ...] | list[str] = (), gp: bool = True) -> None:
    """Write the bgzipped, tabix-indexed imputed VCF (atomically).

    Memory is bounded by the block: ``cells_per_block`` sample x variant cells are read from
    ``hap_prob`` (an array or an HDF5 dataset) and formatted at a time, whatever the number of
    targets or variants. ``threads`` compress BGZF blocks in parallel. ``gp``: write GP.
    """
    from tqdm import tqdm

    lengths = contig_lengths or {}
    extra = check_format_fields(list(format_fields))
    header = imputed_header([(c.contig, lengths.get(c.contig)) for c in chromosomes], samples,
                            command=command, format_fields=extra,
                            recalibrated=any(c.dr2 is not None for c in chromosomes), gp=gp)
    total = sum(int(c.position.shape[0]) for c in chromosomes)
    with BgzipVcfWriter(path, threads=threads) as w, \
            tqdm(total=total, unit="variant", desc="write VCF", disable=not progress,
                 mininterval=5, file=sys.stderr) as bar:
        w.write_lines(header)
        for chrom in chromosomes:
            write_records(w.write_bytes, chrom, extra, cells_per_block, on_block=bar.update,
                          gp=gp)


# cells formatted per block by write_records: a block's text buffer (up to ~28 MB at 28 bytes a
# cell) stays under glibc's largest mmap threshold (32 MiB), so that once one is freed the next
# reuses its memory instead of faulting in fresh pages (4 M cells: 1.27 GB of first touches in
# ooa_speed's imputation job, 0.29 GB at 1 M; `python bench/job_cpu.py`)
RECORD_BLOCK_CELLS = 1_000_000


def write_records(write: Callable[[memoryview], None], chrom: ChromosomeDosages,
                  extra: tuple[str, ...] = (), cells_per_block: int = RECORD_BLOCK_CELLS,
                  on_block: Callable[[int], Any] | None = None,
                  lengths: np.ndarray | None = None, threads: int = 1, gp: bool = True) -> int:
    """Format every record of ``chrom`` and hand them to ``write`` in order,
    ``cells_per_block`` sample x variant cells at a time (``on_block(records)`` after each
    block); returns the number of records. ``lengths``: int64 [records] filled with each
    record's bytes (None: not kept). ``threads`` blocks are formatted at once (the record
    kernel releases the GIL), so at most that many blocks' text is held. ``gp``: write GP."""
    from collections import deque
    from concurrent.futures import Future, ThreadPoolExecutor

    n = int(chrom.position.shape[0])
    if lengths is not None and lengths.shape != (n,):
        raise ValueError(f"write_records: lengths must be [{n}]")
    block = max(1, cells_per_block // max(1, chrom.hap_prob.shape[0] // 2))

    def formatted(lo: int) -> tuple[int, int, memoryview]:
        hi = min(n, lo + block)
        ends = np.empty(hi - lo, np.int64)
        text = format_records(chrom, lo, hi, extra, ends, gp)
        if lengths is not None:
            lengths[lo:hi] = np.diff(ends, prepend=0)
        return lo, hi, text

    def put(lo: int, hi: int, text: memoryview) -> None:
        write(text)
        if on_block is not None:
            on_block(hi - lo)

    starts = range(0, n, block)
    if threads <= 1 or len(starts) <= 1:
        for lo in starts:
            put(*formatted(lo))
        return n
    with ThreadPoolExecutor(threads, thread_name_prefix="records") as pool:
        pending: deque[Future] = deque()
        for lo in starts:
            pending.append(pool.submit(formatted, lo))
            if len(pending) >= threads:
                put(*pending.popleft().result())
        while pending:
            put(*pending.popleft().result())
    return n
