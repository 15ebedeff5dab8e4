"""Reading VCF/BCF files (bgzipped or not) with cyvcf2 into haplotype arrays.

Conventions (sgkit-style): haplotype ``h = 2 * sample + p`` for ``p`` in {0, 1}; alleles are
0 (REF) / 1 (ALT) / -1 (missing). Multi-allelic records are split into bi-allelic ones (as
``bcftools norm -m-`` does: carriers of another ALT count as REF) or dropped, and every record
that is dropped or repaired is counted in :class:`ReadStats`.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import logging
import os
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from .vcf_calls import Calls

log = logging.getLogger(__name__)

_SYMBOLIC = ("<", "*", "[", "]", ".")


def normalize_contig(name: str) -> str:
    """Contig name without a ``chr`` prefix, so ``chr20`` and ``20`` match (``chrM`` -> ``MT``)."""
    base = name[3:] if name.lower().startswith("chr") else name
    return "MT" if base.upper() in {"M", "MT"} else base


@dataclasses.dataclass
class ReadStats:
    """Counts of what happened to the records of one contig while reading."""

    records: int = 0
    kept: int = 0
    split_multiallelic: int = 0
    dropped: Counter[str] = dataclasses.field(default_factory=Counter)

    def as_dict(self) -> dict[str, int]:
        out = {"records": self.records, "kept": self.kept,
               "split_multiallelic": self.split_multiallelic}
        out.update({f"dropped_{k}": v for k, v in sorted(self.dropped.items())})
        return out


@dataclasses.dataclass
class Variant:
    """One bi-allelic variant as read (after splitting)."""

    position: int
    ref: str
    alt: str
    vid: str
    haplotypes: np.ndarray  # int8 [2 * n_samples]: 0/1, -1 missing
    phased: np.ndarray  # bool [n_samples]: genotype is phased or homozygous
    haploid: np.ndarray | None = None  # bool [n_samples]: a haploid call (its allele twice)


def check_readable_vcf(path: str | os.PathLike[str]) -> None:
    """Raise :class:`InputError` unless ``path`` exists and looks like a VCF or BCF file."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: file not found; check the path in the config")
    if p.stat().st_size == 0:
        raise InputError(f"{p}: file is empty; expected a VCF or BCF file")
    with open(p, "rb") as fh:
        head = fh.read(5)
    try:
        if head[:2] == b"\x1f\x8b":
            with gzip.open(p, "rb") as fh:
                head = fh.read(5)
    except (OSError, EOFError) as exc:
        raise InputError(f"{p}: cannot decompress ({exc}); the file is truncated or not "
                         "bgzip-compressed: re-create it with bgzip or bcftools view -Oz") from exc
    if not (head.startswith(b"##fil") or head.startswith(b"BCF")):
        raise InputError(f"{p}: not a VCF/BCF file (it must start with '##fileformat'); "
                         "give a VCF, a bgzipped VCF or a BCF file")


def header_lines(path: str | os.PathLike[str]) -> list[str]:
    """The header's lines (``##...`` and ``#CHROM...``) read as text, without htslib, so that a
    header htslib refuses can still be explained. Plain, bgzipped VCF and BCF. Read once per
    file version (every open checks the header)."""
    st = os.stat(path)
    return list(_header_lines(str(path), st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=64)
def _header_lines(path: str, mtime_ns: int, size: int) -> tuple[str, ...]:
    return tuple(_read_header_lines(path))


def _read_header_lines(path: str) -> list[str]:
    with open(path, "rb") as fh:
        magic = fh.read(2)
    opener = gzip.open if magic == b"\x1f\x8b" else open
    lines: list[str] = []
    with opener(path, "rb") as fh:
        head = fh.read(5)
        if head.startswith(b"BCF"):
            size = int.from_bytes(fh.read(4), "little")
            return fh.read(size).rstrip(b"\0").decode("utf-8", "replace").splitlines()
        buf = head
        for raw in fh:
            line = (buf + raw).decode("utf-8", "replace").rstrip("\r\n")
            buf = b""
            if not line.startswith("#"):
                break
            lines.append(line)
            if line.startswith("#CHROM"):
                break
    return lines


def check_header(path: str | os.PathLike[str]) -> list[str]:
    """Raise :class:`InputError` for header problems htslib reports unhelpfully (no ``#CHROM``
    line, duplicated sample names); return the sample names."""
    lines = header_lines(path)
    chrom = [x for x in lines if x.startswith("#CHROM")]
    if not chrom:
        raise InputError(f"{path}: the header has no '#CHROM POS ID REF ALT ...' line; it is "
                         "not a complete VCF header")
    samples = chrom[0].split("\t")[9:]
    counts = Counter(samples)  # one pass (samples.count per name was quadratic in the samples)
    dup = sorted(s for s, n in counts.items() if n > 1)
    if dup:
        raise InputError(f"{path}: sample name {dup[0]} appears {counts[dup[0]]} times in "
                         f"the header ({len(dup)} duplicated name(s)); give every sample a unique "
                         "name (bcftools reheader -s)")
    return samples


def require_gt(path: str | os.PathLike[str], role: str) -> None:
    """Raise :class:`InputError` when a file with samples declares no ``FORMAT/GT``."""
    lines = header_lines(path)
    chrom = [x for x in lines if x.startswith("#CHROM")]
    if not chrom or len(chrom[0].split("\t")) <= 9:
        return
    formats = [x[len("##FORMAT=<ID="):].split(",")[0] for x in lines
               if x.startswith("##FORMAT=<ID=")]
    if "GT" not in formats:
        what = ", ".join(formats) or "none"
        raise InputError(f"{path}: the {role} VCF has no genotypes (FORMAT GT; it has: {what}); "
                         f"{role}s need GT calls - a dosage-only file, e.g. the output of another "
                         "imputation, cannot be used: give the genotyped (array) VCF")


def genotypes(rec, path: str | os.PathLike[str]) -> np.ndarray:
    """int16 [n_samples, ploidy + 1] genotypes of a record (last column: phased), or one
    :class:`InputError` line when the record carries no GT."""
    try:
        return rec.genotype.array()
    except Exception as exc:  # noqa: BLE001 - cyvcf2 raises a bare Exception
        raise InputError(f"{path}: record {rec.CHROM}:{rec.POS} has no genotypes (FORMAT "
                         f"{':'.join(rec.FORMAT)}; GT is needed)") from exc


def _open(path: str | os.PathLike[str], samples: list[str] | None = None):
    import cyvcf2

    check_readable_vcf(path)
    check_header(path)
    try:
        vcf = cyvcf2.VCF(str(path), gts012=False, strict_gt=False, lazy=True, threads=1)
    except (OSError, Exception) as exc:  # cyvcf2 raises plain Exception on parse failures
        raise InputError(f"{path}: cannot open as VCF/BCF ({exc})") from exc
    if samples is not None:
        vcf.set_samples(samples)
    return vcf


def sample_ids(path: str | os.PathLike[str]) -> list[str]:
    """Sample names in the order of the file's header."""
    vcf = _open(path)
    try:
        return list(vcf.samples)
    finally:
        vcf.close()


def contig_lengths(path: str | os.PathLike[str]) -> dict[str, int]:
    """Contig -> length from the header's ``##contig=<ID=...,length=...>`` lines (contigs
    declared without a length are left out)."""
    vcf = _open(path)
    try:
        lines = vcf.raw_header.splitlines()
    finally:
        vcf.close()
    out: dict[str, int] = {}
    for line in lines:
        if not line.startswith("##contig=<"):
            continue
        fields = dict(kv.split("=", 1) for kv in line[len("##contig=<"):].rstrip(">").split(",")
                      if "=" in kv)
        if "ID" in fields and fields.get("length", "").isdigit():
            out[fields["ID"]] = int(fields["length"])
    return out


def _has_index(path: str | os.PathLike[str]) -> bool:
    p = str(path)
    return any(os.path.exists(p + ext) for ext in (".tbi", ".csi"))


def list_contigs(path: str | os.PathLike[str]) -> list[str]:
    """Contigs that hold at least one record, in file order.

    Uses the index when there is one (cheap), otherwise streams through the records; read
    once per file version (the chromosome table and the trained-panel checks ask again)."""
    st = os.stat(path)
    index = _index_stamp(path)
    return list(_list_contigs(str(path), st.st_mtime_ns, st.st_size, index))


def _index_stamp(path: str | os.PathLike[str]) -> tuple[int, int]:
    for ext in (".tbi", ".csi"):
        if os.path.exists(f"{path}{ext}"):
            st = os.stat(f"{path}{ext}")
            return st.st_mtime_ns, st.st_size
    return 0, 0


@functools.lru_cache(maxsize=256)
def _list_contigs(path: str, mtime_ns: int, size: int, index: tuple[int, int]
                  ) -> tuple[str, ...]:
    return tuple(_scan_contigs(path))


def _scan_contigs(path: str) -> list[str]:
    vcf = _open(path)
    try:
        if _has_index(path):
            found = []
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # cyvcf2 warns for contigs without records
                for name in vcf.seqnames:
                    if next(iter(vcf(name)), None) is not None:
                        found.append(name)
            return found
        seen: list[str] = []
        current = None
        for rec in parsed_records(vcf, path):
            if rec.CHROM != current:
                current = rec.CHROM
                if current in seen:
                    raise InputError(
                        f"{path}: records of contig {current} are not contiguous (seen again at "
                        f"{current}:{rec.POS}); sort the file with bcftools sort"
                    )
                seen.append(current)
        return seen
    finally:
        vcf.close()


def parsed_records(records: Iterable, path: str | os.PathLike[str]) -> Iterator:
    """The records of a cyvcf2 iterator; a record htslib cannot parse (wrong number of sample
    columns or FORMAT values, a broken header line) ends in one :class:`InputError` line
    naming the last good record, not in cyvcf2's bare exception."""
    it = iter(records)
    last = None
    while True:
        try:
            rec = next(it)
        except StopIteration:
            return
        except Exception as exc:  # noqa: BLE001 - cyvcf2 raises a bare Exception
            where = f"after record {last}" if last else "at its first record"
            raise InputError(
                f"{path}: htslib cannot parse the file {where} ({exc}): a record with more or "
                "fewer sample columns or FORMAT values than the header says, or a malformed "
                "header line; check it with `bcftools view`") from exc
        last = f"{rec.CHROM}:{rec.POS}"
        yield rec


def _records(vcf, path: str, contig: str) -> Iterator:
    """Records of ``contig`` (region query when indexed, else a filtering stream)."""
    if _has_index(path):
        region = iter(vcf(contig))
        try:
            first = next(region, None)
        except Exception:  # noqa: BLE001 - the region query failed: stream the file instead
            first, region = None, None
        if region is not None:
            if first is not None:
                yield first
                yield from parsed_records(region, path)
            return
    for rec in parsed_records(vcf, path):
        if rec.CHROM == contig:
            yield rec


class _Columns(NamedTuple):
    """The fixed columns of a block of records that :func:`iter_variant_blocks` reads."""

    pos: Sequence[int]
    ref: Sequence[str]
    alt: Sequence[list[str]]  # [] for "."
    vid: Sequence[str | None]  # None for "."


def _text_call_blocks(path: str | os.PathLike[str], file_samples: list[str],
                      names: list[str], contig: str, haploid: str
                      ) -> Iterator[tuple[_Columns, Calls]]:
    """(fixed columns, :class:`~vcfbert.io.vcf_calls.Calls`) of each parser block of a text
    VCF's records on ``contig``."""
    from .vcf_calls import Calls
    from .vcf_text import iter_text_blocks

    for block in iter_text_blocks(path, file_samples, samples=names, contig=contig):
        yield (_Columns(block.pos.tolist(), block.ref, block.alt, block.vid),
               Calls.of(block.gt, haploid))


def _htslib_call_blocks(vcf, path: str, contig: str, haploid: str, names: list[str],
                        multiallelic: str) -> Iterator[tuple[_Columns, Calls | None]]:
    """(fixed columns, :class:`~vcfbert.io.vcf_calls.Calls`) of each record of ``contig``
    through cyvcf2, a block of one; None for the calls of a record dropped before its
    genotypes are looked at (no ALT, or a dropped multi-allelic one)."""
    from .vcf_calls import Calls
    for rec in _records(vcf, path, contig):
        columns = _Columns([int(rec.POS)], [rec.REF], [list(rec.ALT)], [rec.ID])
        if not rec.ALT or (len(rec.ALT) > 1 and multiallelic == "drop"):
            yield columns, None
            continue
        gt = genotypes(rec, path)  # int16 [S, ploidy + 1]
        if gt.shape[1] == 2:  # every sample haploid
            gt = np.stack([gt[:, 0], np.full(len(gt), -2, gt.dtype), gt[:, 1]], 1)
        if gt.shape[1] != 3:
            raise InputError(f"{path}: record {contig}:{int(rec.POS)}, sample {names[0]}: "
                             "genotype is not diploid; vcfbert reads diploid genotypes and "
                             "haploid ones (chrX in males)")
        yield columns, Calls.of(gt[None], haploid)


def iter_variants(path: str | os.PathLike[str], contig: str, **options: Any
                  ) -> Iterator[Variant]:
    """Yield the bi-allelic variants of ``contig`` in ``path``, one at a time: the variants
    of :func:`iter_variant_blocks` (``options`` are its keyword arguments: ``role``,
    ``multiallelic``, ``samples``, ``stats``, ``haploid``, ``reader``; the same checks and
    counts), each with its own copy of its arrays."""
    for block in iter_variant_blocks(path, contig, **options):
        for i in range(len(block)):
            yield Variant(int(block.position[i]), block.ref[i], block.alt[i], block.vid[i],
                          block.haplotypes[i].copy(), block.phased[i].copy(),
                          None if block.haploid is None else block.haploid[i].copy())


@dataclasses.dataclass
class VariantBlock:
    """Consecutive bi-allelic variants as read (after splitting), ``m`` variants of ``S``
    samples: what :class:`Variant` holds for one, as arrays over the block."""

    position: np.ndarray  # int64 [m]
    ref: list[str]
    alt: list[str]
    vid: list[str]
    haplotypes: np.ndarray  # int8 [m, 2S]: 0/1, -1 missing
    phased: np.ndarray  # bool [m, S]: genotype is phased or homozygous
    haploid: np.ndarray | None  # bool [m, S] with haploid="duplicate", else None

    def __len__(self) -> int:
        return len(self.ref)


def iter_variant_blocks(
    path: str | os.PathLike[str],
    contig: str,
    *,
    role: str,
    multiallelic: str = "split",
    samples: list[str] | None = None,
    stats: ReadStats | None = None,
    haploid: str = "error",
    reader: str = "auto",
) -> Iterator[VariantBlock]:
    """Yield the bi-allelic variants of ``contig`` in ``path`` in blocks: a text VCF's
    parser block at a time (thousands of variants, their arrays made once per block), a
    record at a time through cyvcf2.

    Args:
        role: ``"reference"`` (every genotype must be phased and called) or ``"target"``
            (missing and unphased genotypes allowed).
        haploid: ``"error"``: every genotype must be diploid; ``"duplicate"``: a haploid call
            (males on chrX outside the pseudo-autosomal regions) becomes its allele twice
            and is flagged in :attr:`VariantBlock.haploid` (ploidies above 2 are always
            errors).
        multiallelic: ``"split"`` into bi-allelic records or ``"drop"`` them (counted).
        samples: restrict to these samples (kept in the file's order).
        stats: filled in with the counts of kept, split and dropped records.
        reader: ``"text"``: the compiled text parser (:mod:`vcfbert.io.vcf_text`), for a text
            VCF; ``"htslib"``: cyvcf2; ``"auto"``: the text parser for a text VCF that is not
            indexed or holds ``contig`` alone (an indexed file of several contigs is read
            by region with cyvcf2). Both give the same variants (tested).

    Raises:
        InputError: unsorted records, non-diploid genotypes, or (reference) unphased/missing
            genotypes, naming the file, the record and the sample (the first such record
            in file order, as the variants before it are yielded first).
    """
    if role not in ("reference", "target"):
        raise ValueError(f"role must be 'reference' or 'target', not {role!r}")
    if multiallelic not in ("split", "drop"):
        raise InputError(f"multiallelic must be 'split' or 'drop', not {multiallelic!r}")
    stats = stats if stats is not None else ReadStats()
    require_gt(path, role)
    vcf = None
    if uses_text_reader(path, contig, reader):

        file_samples = check_header(path)
        names = file_samples
        if samples is not None:  # in the file's order, as htslib subsets them
            missing = sorted(set(samples) - set(file_samples))
            if missing:
                raise InputError(f"{path}: sample {missing[0]} (and {len(missing) - 1} more) "
                                 "is not in the VCF")
            wanted = set(samples)
            names = [s for s in file_samples if s in wanted]
        blocks: Iterator = _text_call_blocks(path, file_samples, names, contig, haploid)
    else:
        vcf = _open(path, samples)
        names = list(vcf.samples)
        blocks = _htslib_call_blocks(vcf, str(path), contig, haploid, names, multiallelic)
    if not names:
        raise InputError(f"{path}: the VCF has no samples")
    order = _RecordOrder()
    try:
        for columns, calls in blocks:
            block, error = _accepted(columns, calls, path, contig, role, multiallelic,
                                     haploid, names, stats, order)
            if block is not None:
                yield block
            if error is not None:
                raise error
    finally:
        if vcf is not None:
            vcf.close()


class _RecordOrder:
    """The last position read and the (REF, ALT) pairs kept at it, across blocks."""

    def __init__(self) -> None:
        self.last_pos = -1
        self.seen_at_pos: set[tuple[str, str]] = set()


def _accepted(columns: _Columns, calls: Calls | None, path: str | os.PathLike[str], contig: str,
              role: str, multiallelic: str, haploid: str, names: list[str],
              stats: ReadStats, order: _RecordOrder
              ) -> tuple[VariantBlock | None, InputError | None]:
    """The variants of one block of records (``columns``: their fixed columns; the records'
    cheap checks and counts one by one, their arrays taken at once) and the error that stops the reading at a record of
    the block (the variants before it are returned with it), or None."""
    rows: list[int] = []
    alleles: list[int] = []
    positions: list[int] = []
    refs: list[str] = []
    alts: list[str] = []
    vids: list[str] = []
    error: InputError | None = None
    for r, pos in enumerate(columns.pos):
        stats.records += 1
        where = f"{path}: record {contig}:{pos}"
        if pos < order.last_pos:
            error = InputError(f"{where} comes after position {order.last_pos}: records are "
                               "not sorted; sort the file with `bcftools sort`")
            break
        if pos != order.last_pos:
            order.seen_at_pos.clear()
            order.last_pos = pos
        ref = columns.ref[r].upper()
        rec_alts = [a.upper() for a in columns.alt[r]]
        if not rec_alts:
            stats.dropped["monomorphic_no_alt"] += 1
            continue
        if len(rec_alts) > 1:
            if multiallelic == "drop":
                stats.dropped["multiallelic"] += 1
                continue
            stats.split_multiallelic += 1
        assert calls is not None  # only dropped records come without genotypes
        error = _call_error(calls, r, where, role, haploid, names)
        if error is not None:
            break
        for j, alt in enumerate(rec_alts, start=1):
            if alt.startswith(_SYMBOLIC) or not alt.isalpha() or not ref.isalpha():
                stats.dropped["symbolic_or_non_acgt_allele"] += 1
                continue
            if (ref, alt) in order.seen_at_pos:
                stats.dropped["duplicate_record"] += 1
                continue
            order.seen_at_pos.add((ref, alt))
            stats.kept += 1
            rows.append(r)
            alleles.append(j)
            positions.append(pos)
            refs.append(ref)
            alts.append(alt)
            vids.append(columns.vid[r] or ".")
    if not rows:
        return None, error
    assert calls is not None
    take: np.ndarray | slice = np.asarray(rows, np.int64)
    allele = np.asarray(alleles, np.int16)
    second = np.flatnonzero(allele != 1)  # another ALT of a split record
    if second.size == 0 and len(rows) == len(calls.first_alt):
        take = slice(None)  # every record of the block, one variant each: views, no copies
    haps = calls.first_alt[take]
    if second.size:
        flat = calls.alleles(take[second])
        haps[second] = np.where(flat < 0, -1, flat == allele[second, None]).astype(np.int8)
    block = VariantBlock(np.asarray(positions, np.int64), refs, alts, vids, haps,
                         calls.phased[take],
                         None if haploid != "duplicate" else calls.haploid[take])
    return block, error


def _call_error(calls: Calls, r: int, where: str, role: str, haploid: str,
                names: list[str]) -> InputError | None:
    """The error for record ``r``'s genotypes (a haploid call where none is allowed; in the
    reference, a missing or unphased one), or None."""
    if calls.haploid_any[r] and haploid != "duplicate":
        bad = int(np.flatnonzero(calls.haploid[r])[0])
        return InputError(
            f"{where}, sample {names[bad]}: genotype is not diploid (e.g. chrX in "
            "males); vcfbert reads haploid males on chrX (give the whole chromosome), "
            "other ploidies are not supported")
    if role != "reference":
        return None
    if calls.missing_any[r]:
        bad = int(np.flatnonzero(calls.missing[r])[0])
        return InputError(
            f"{where}, sample {names[bad]}: missing genotype in the reference panel; "
            "the reference must be fully called and phased (phase and impute it "
            "first, e.g. with Beagle)"
        )
    if not calls.phased_all[r]:
        bad = int(np.flatnonzero(~calls.phased[r])[0])
        return InputError(
            f"{where}, sample {names[bad]}: unphased heterozygous genotype in the "
            "reference panel; the reference must be phased (e.g. with Beagle or "
            "SHAPEIT) before it is used"
        )
    return None


def uses_text_reader(path: str | os.PathLike[str], contig: str, reader: str) -> bool:
    """Whether :func:`iter_variants` reads ``path`` with the text parser (see there)."""
    from .vcf_text import is_text_vcf

    if reader not in ("auto", "text", "htslib"):
        raise ValueError(f"reader must be 'auto', 'text' or 'htslib', not {reader!r}")
    if reader == "htslib":
        return False
    check_readable_vcf(path)
    text = is_text_vcf(path)
    if reader == "text":
        if not text:
            raise InputError(f"{path}: not a text VCF (BCF?); read it with reader='htslib'")
        return True
    return text and (not _has_index(path) or list_contigs(path) == [contig])
