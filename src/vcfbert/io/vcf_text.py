"""Fast reading of text VCF records (plain or bgzipped): genotypes and dosages of every
sample, parsed a block of records at a time by one compiled pass.

cyvcf2 (htslib) parses every FORMAT field of every sample into its own buffers, and the
arrays are then copied out one record at a time: ~70 µs per record for 1,000 samples with
``GT:DS:GP``, most of an evaluation's or a reference parse's time. Here the file is
decompressed in large blocks and :func:`_parse_lines` fills ``[records, samples]`` arrays of
the GT alleles and of FORMAT/DS, stepping over every other field.

The genotype layout is cyvcf2's ``genotype.array()`` for a record of ploidy at most 2, so
the readers built on cyvcf2 take either: int16 ``[samples, 3]``, alleles (``-1`` missing,
``-2`` no second allele: a haploid call) and the phase flag (1 for ``|``, and for a haploid
or absent call). A sample without a GT value reads as ``[-1, -2, 1]``, as in cyvcf2.
Tested against cyvcf2 on every genotype form (``tests/unit/test_vcf_text.py``).

BCF is not text: :func:`is_text_vcf` says whether a file can be read here.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
from collections.abc import Iterator

import numba
import numpy as np

from ..errors import InputError
from ..kernels import ready

BLOCK_BYTES = 1 << 24  # text decompressed and parsed at a time
PARSE_THREADS = 1  # text blocks parsed at once when reading ahead (by default)

# status of a parsed line
OK = 0
BAD_COLUMNS = 1  # fewer than 8 fixed columns, or fewer sample columns than samples
HIGH_PLOIDY = 2  # a genotype with more than two alleles
NO_GT = 3  # FORMAT has no GT key (the record's genotypes read as absent)


def is_text_vcf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a plain or gzip/bgzip-compressed text VCF (not BCF)."""
    with open(path, "rb") as fh:
        head = fh.read(2)
    if head == b"\x1f\x8b":
        with gzip.open(path, "rb") as fh:
            head = fh.read(5)
    else:
        with open(path, "rb") as fh:
            head = fh.read(5)
    return head.startswith(b"##fil")


_POW10 = np.array([10.0 ** i for i in range(23)])  # exact in float64


@numba.njit(cache=True, nogil=True, inline="always")
def _parse_float(buf, p, e):
    """(value, end) of the number at buf[p:e] up to ``,`` ``:`` or a tab; NaN for ``.`` or an
    empty value. Decimal digits with an optional sign, fraction and exponent."""
    if p >= e or buf[p] == 9 or buf[p] == 58 or buf[p] == 44:
        return np.nan, p
    if buf[p] == 46 and (p + 1 >= e or buf[p + 1] in (9, 58, 44)):  # "."
        return np.nan, p + 1
    sign = 1.0
    if buf[p] == 45:
        sign = -1.0
        p += 1
    elif buf[p] == 43:
        p += 1
    mant = 0
    digits = 0
    scale = 0
    while p < e and 48 <= buf[p] <= 57:
        if digits < 18:
            mant = mant * 10 + (buf[p] - 48)
            digits += 1
        else:
            scale += 1
        p += 1
    if p < e and buf[p] == 46:
        p += 1
        while p < e and 48 <= buf[p] <= 57:
            if digits < 18:
                mant = mant * 10 + (buf[p] - 48)
                digits += 1
                scale -= 1
            p += 1
    if p < e and (buf[p] == 101 or buf[p] == 69):
        p += 1
        esign = 1
        if p < e and buf[p] == 45:
            esign = -1
            p += 1
        elif p < e and buf[p] == 43:
            p += 1
        ex = 0
        while p < e and 48 <= buf[p] <= 57:
            ex = ex * 10 + (buf[p] - 48)
            p += 1
        scale += esign * ex
    value = float(mant)
    if scale < 0:
        # an exact integer over an exact power of ten: correctly rounded
        value = value / (_POW10[-scale] if -scale < 23 else 10.0 ** (-scale))
    elif scale > 0:
        value = value * (_POW10[scale] if scale < 23 else 10.0 ** scale)
    return sign * value, p


@numba.njit(cache=True, nogil=True)
def _fixed_width_gt(buf, q, e, col_map, gt_row):
    """The genotypes of a line whose FORMAT is ``GT`` alone and whose every sample column is
    one digit, ``|`` or ``/``, one digit (``\t0|1``: 4 bytes a sample; a reference panel's
    records), read at fixed offsets; ``buf[q:e]`` is the line after FORMAT. Returns False
    when the line is not of that form: the general loop then reads it, overwriting every
    sample's genotype written here.
    ~5x faster than the general loop on such lines (docs/model.md, "Inference speed")."""
    n = col_map.shape[0]
    if e - q != 4 * n:
        return False
    bad = 0
    for j in range(n):
        c = q + 4 * j
        a0 = np.int32(buf[c + 1]) - 48
        a1 = np.int32(buf[c + 3]) - 48
        sep = buf[c + 2]
        bad |= ((buf[c] != 9) | (np.uint32(a0) > 9) | (np.uint32(a1) > 9)
                | ((sep != 124) & (sep != 47)))
        out = col_map[j]
        if out >= 0:
            gt_row[out, 0] = a0
            gt_row[out, 1] = a1
            gt_row[out, 2] = sep == 124
    return not bad


@numba.njit(cache=True, nogil=True)
def _gt_ds_samples(buf, q, e, col_map, want_ds, gt_row, ds_row):
    """The genotypes and (with ``want_ds``) the dosages of a line whose FORMAT starts with
    ``GT:DS`` and whose every sample column starts with one digit, ``|`` or ``/``, one digit
    and ``:`` (``\t0|1:0.98:...``: an imputed VCF's records); ``buf[q:e]`` is the line after
    FORMAT. Returns False when the line is not of that form (or has columns beyond the
    samples): the general loop then reads it, writing again every sample written here.
    The parse of a ``GT:DS:GP`` file 26 % faster than through the general loop alone
    (docs/model.md, "Inference speed", the thirty-second session)."""
    for j in range(col_map.shape[0]):
        if q + 5 > e or buf[q] != 9 or buf[q + 4] != 58:
            return False
        a0 = np.int32(buf[q + 1]) - 48
        a1 = np.int32(buf[q + 3]) - 48
        sep = buf[q + 2]
        if np.uint32(a0) > 9 or np.uint32(a1) > 9 or (sep != 124 and sep != 47):
            return False
        q += 5
        out = col_map[j]
        if out >= 0:
            gt_row[out, 0] = a0
            gt_row[out, 1] = a1
            gt_row[out, 2] = sep == 124
            if want_ds:
                v, q = _parse_float(buf, q, e)
                ds_row[out] = v
        while q < e and buf[q] != 9:  # the rest of the column (GP, ...)
            q += 1
    return q == e


@numba.njit(cache=True, nogil=True)
def _parse_lines(buf, starts, ends, col_map, n_file_samples, want_ds, fields, gt, ds, status):
    """Parse lines ``buf[starts[r]:ends[r]]`` (no newline): the offsets of the eight fixed
    columns (``fields[r, f] = (start, end)`` for CHROM..INFO and FORMAT), the GT of every
    sample ``j`` with ``col_map[j] >= 0`` into ``gt[r, col_map[j]]`` and, with ``want_ds``,
    the first FORMAT/DS value into ``ds[r, col_map[j]]``; ``status[r]``: OK, BAD_COLUMNS,
    HIGH_PLOIDY or NO_GT."""
    for r in range(starts.shape[0]):
        p = starts[r]
        e = ends[r]
        status[r] = OK
        # the nine fixed columns (CHROM .. FORMAT)
        f = 0
        fields[r, 0, 0] = p
        q = p
        while q < e and f < 9:
            if buf[q] == 9:
                fields[r, f, 1] = q
                f += 1
                if f < 9:
                    fields[r, f, 0] = q + 1
            q += 1
        if f < 9:
            fields[r, f, 1] = e
            f += 1
        if f < 8 or (n_file_samples > 0 and f < 9):
            status[r] = BAD_COLUMNS
            continue
        # FORMAT keys: which ':'-separated position is GT, which DS
        gt_k = -1
        ds_k = -1
        if n_file_samples > 0:
            k = 0
            a = fields[r, 8, 0]
            b = fields[r, 8, 1]
            s = a
            for x in range(a, b + 1):
                if x == b or buf[x] == 58:
                    if x - s == 2 and buf[s] == 71 and buf[s + 1] == 84:
                        gt_k = k
                    elif x - s == 2 and buf[s] == 68 and buf[s + 1] == 83:
                        ds_k = k
                    k += 1
                    s = x + 1
        if n_file_samples > 0 and gt_k < 0:
            status[r] = NO_GT
        last_k = max(gt_k, ds_k if want_ds else -1)
        if (gt_k == 0 and fields[r, 8, 1] - fields[r, 8, 0] == 2 and n_file_samples > 0
                and _fixed_width_gt(buf, fields[r, 8, 1], e, col_map, gt[r])):
            continue
        if (gt_k == 0 and ds_k == 1 and n_file_samples > 0
                and _gt_ds_samples(buf, fields[r, 8, 1], e, col_map, want_ds, gt[r], ds[r])):
            continue
        j = 0
        q = fields[r, 8, 1] if n_file_samples > 0 else e
        while q < e and buf[q] == 9:  # q is at the tab before a sample column
            q += 1
            out = col_map[j] if j < n_file_samples else -1
            a0 = -1
            a1 = -2
            ph = 1
            k = 0
            while q < e and buf[q] != 9:
                if k == gt_k and out >= 0:
                    # alleles separated by | or /; '.' missing
                    n_al = 0
                    while q < e and buf[q] != 9 and buf[q] != 58:
                        sep = 0
                        if buf[q] == 124 or buf[q] == 47:
                            sep = buf[q]
                            q += 1
                        val = -1
                        if q < e and buf[q] == 46:
                            q += 1
                        elif q < e and 48 <= buf[q] <= 57:
                            val = 0
                            while q < e and 48 <= buf[q] <= 57:
                                val = val * 10 + (buf[q] - 48)
                                q += 1
                        elif sep == 0:
                            q += 1  # an unexpected character: skipped
                            continue
                        if n_al == 0:
                            a0 = val
                        elif n_al == 1:
                            a1 = val
                            ph = 1 if sep == 124 else 0
                        n_al += 1
                    if n_al > 2:
                        status[r] = HIGH_PLOIDY
                elif k == ds_k and want_ds and out >= 0:
                    v, q = _parse_float(buf, q, e)
                    ds[r, out] = v
                    while q < e and buf[q] != 9 and buf[q] != 58:
                        q += 1
                elif k > last_k:  # nothing more wanted from this sample: on to the tab
                    while q < e and buf[q] != 9:
                        q += 1
                    break
                else:
                    while q < e and buf[q] != 9 and buf[q] != 58:
                        q += 1
                if q < e and buf[q] == 58:
                    q += 1
                    k += 1
            if out >= 0:
                gt[r, out, 0] = a0
                gt[r, out, 1] = a1
                gt[r, out, 2] = ph
            j += 1
        if j < n_file_samples:  # columns beyond the header's samples are ignored, as htslib does
            status[r] = BAD_COLUMNS


@dataclasses.dataclass(slots=True)
class TextRecord:
    """One record, with the attribute names of a cyvcf2 record that the readers use."""

    CHROM: str
    POS: int
    ID: str | None  # None for "."
    REF: str
    ALT: list[str]
    INFO: str  # the raw INFO column
    gt: np.ndarray  # int16 [samples, 3] (see the module docstring)
    ds: np.ndarray | None  # float32 [samples] first FORMAT/DS value (NaN missing), if asked



def _text_blocks(path: str, block_bytes: int) -> Iterator[bytes]:
    """The file's text in pieces of about ``block_bytes`` that end at a line's end: a BGZF
    file's members inflated by libdeflate (:func:`vcfbert.io.bgzf.inflated_blocks`), any other
    file (plain text, gzip) read through htslib."""
    from .bgzf import inflated_blocks, is_bgzf_header

    with open(path, "rb") as fh:
        bgzf = is_bgzf_header(fh.read(18))
    if bgzf:
        yield from _whole_lines(inflated_blocks(path), block_bytes)
    else:
        yield from _whole_lines(_htslib_text(path, block_bytes), block_bytes)


def _whole_lines(parts: Iterator[bytes], block_bytes: int) -> Iterator[bytes]:
    """``parts`` of a text joined into pieces of about ``block_bytes`` (once that much is
    pending, up to the last line's end in it) that end at a line's end, each copied once; a
    last line without its newline gets one."""
    pending: list[bytes] = []
    size = 0
    for part in _at_most(parts, block_bytes):
        pending.append(part)
        size += len(part)
        if size < block_bytes:
            continue
        for k in range(len(pending) - 1, -1, -1):  # the last part holding a line's end
            cut = pending[k].rfind(b"\n") + 1
            if cut:
                head, tail = pending[k][:cut], pending[k][cut:]
                piece = b"".join([*pending[:k], head])
                pending = [tail, *pending[k + 1:]] if tail else pending[k + 1:]
                size = sum(len(x) for x in pending)
                yield piece
                break
    rest = b"".join(pending)
    cut = rest.rfind(b"\n") + 1
    if rest[cut:].strip():  # a last line without its newline (nothing but blanks: dropped)
        rest = rest + b"\n"
        cut = len(rest)
    if cut:
        yield rest[:cut]


def _at_most(parts: Iterator[bytes], size: int) -> Iterator[bytes]:
    """``parts`` cut into parts of at most ``size`` bytes (a BGZF member holds up to 64 KiB:
    more than the small blocks tests ask for)."""
    for part in parts:
        if len(part) <= size:
            yield part
        else:
            yield from (part[i:i + size] for i in range(0, len(part), size))


def _htslib_text(path: str, block_bytes: int) -> Iterator[bytes]:
    """The file's text (decompressed by htslib when bgzipped or gzipped) in parts of
    ``block_bytes``."""
    import pysam

    fh = pysam.BGZFile(path, "rb")
    try:
        while True:
            data = fh.read(block_bytes)
            if not data:
                break
            yield data
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot decompress ({exc}); the file is truncated or "
                         "corrupt: re-create it with bgzip or bcftools view -Oz") from exc
    finally:
        try:
            fh.close()
        except OSError:
            pass  # the read above has already said why


@dataclasses.dataclass
class TextBlock:
    """Consecutive records: their fixed columns as Python values, the samples' GT and DS as
    arrays (``b`` records, ``S`` samples)."""

    chrom: list[str]
    pos: np.ndarray  # int64 [b]
    vid: list[str | None]  # None for "."
    ref: list[str]
    alt: list[list[str]]  # [] for "."
    info: list[str]  # raw INFO columns
    format: list[str]  # raw FORMAT columns ("" when the file has no samples)
    gt: np.ndarray  # int16 [b, S, 3] (see the module docstring)
    ds: np.ndarray | None  # float32 [b, S] first FORMAT/DS value, NaN missing; if asked

    def __len__(self) -> int:
        return len(self.chrom)

    def record(self, r: int) -> TextRecord:
        """Record ``r`` of the block."""
        return TextRecord(self.chrom[r], int(self.pos[r]), self.vid[r], self.ref[r],
                          self.alt[r], self.info[r], self.gt[r],
                          None if self.ds is None else self.ds[r])


def info_float(info: str, *keys: str) -> float:
    """The first of ``keys`` present in an INFO column as a number (its first value); NaN if
    none is, or its value is not a number."""
    found: dict[str, str] = {}
    for item in info.split(";"):
        key, _, value = item.partition("=")
        found.setdefault(key, value)
    for key in keys:
        if key in found:
            try:
                return float(found[key].split(",")[0])
            except ValueError:
                return float("nan")
    return float("nan")


def iter_text_blocks(path: str | os.PathLike[str], file_samples: list[str], *,
                     samples: list[str] | None = None, want_ds: bool = False,
                     contig: str | None = None, require_gt: bool = True,
                     block_bytes: int = BLOCK_BYTES, ahead: bool = True,
                     parse_threads: int = PARSE_THREADS) -> Iterator[TextBlock]:
    """The records of a text VCF in file order (of ``contig`` only, if given), a block of
    about ``block_bytes`` of text at a time.

    With ``ahead`` (the default) the blocks are read on a thread of their own while the caller
    works on the current one (:func:`vcfbert.runtime.read_ahead`): that thread decompresses
    the text and hands each block to ``parse_threads`` parsing threads (the compiled parser
    releases the GIL), and the blocks come back in file order; a few blocks are alive at once.
    The blocks, and any error, are the same either way.

    Args:
        file_samples: the header's sample names (every line must have a column for each;
            columns beyond them are ignored, as htslib ignores them).
        samples: keep these samples, in this order (default: all, in file order).
        want_ds: also parse FORMAT/DS (``TextBlock.ds``).
        require_gt: a record whose FORMAT lacks GT is an error (else its genotypes read as
            absent).
        ahead: read and parse on other threads while the caller works on this block.
        parse_threads: blocks parsed at once with ``ahead``.

    Raises:
        InputError: a line with too few columns or fewer sample columns than the header's
            samples, a position that is not a number, a genotype of ploidy above 2 or (with
            ``require_gt``) a record without GT — naming the record.
    """
    parse = _BlockParser(str(path), file_samples, samples, want_ds, contig, require_gt)
    texts = _text_blocks(str(path), block_bytes)
    if not ahead:
        yield from _checked((parse(text) for text in texts), parse.path)
        return
    from ..runtime import ordered_map, read_ahead

    yield from _checked(read_ahead(ordered_map(parse, texts, threads=parse_threads)),
                        parse.path)


@dataclasses.dataclass
class _Problem:
    """The first bad record of a block (raised by :func:`_checked`, which knows the record
    before the block)."""

    status: int  # BAD_COLUMNS, HIGH_PLOIDY or NO_GT
    record: str  # "chrom:pos"
    before: str | None  # the record before it in the block; None: it is the block's first
    fmt: str  # its FORMAT column


@dataclasses.dataclass
class _Parsed:
    """One text block parsed: its records of the wanted contig (None: none), its last record
    and the first problem found."""

    block: TextBlock | None
    last: str | None  # "chrom:pos" of the block's last record (any contig)
    problem: _Problem | None = None


def _checked(parsed: Iterator[_Parsed], path: str) -> Iterator[TextBlock]:
    """The blocks of :func:`iter_text_blocks` from parsed ones in file order, raising the
    first block's problem with the record before it named."""
    last = None
    for p in parsed:
        if p.problem is not None:
            raise _problem_error(path, p.problem, last)
        if p.last is not None:
            last = p.last
        if p.block is not None:
            yield p.block


def _problem_error(path: str, problem: _Problem, last: str | None) -> InputError:
    """The error for ``problem``; ``last``: the record before its block (None: none)."""
    before = problem.before or last
    where_ = f"after record {before}" if before else "at its first record"
    rec, fmt = problem.record, problem.fmt
    if problem.status == BAD_COLUMNS:
        return InputError(
            f"{path}: cannot parse the file {where_}: a record with fewer sample "
            "columns than the header has samples (or fewer than 8 columns); check it "
            "with `bcftools view`")
    if problem.status == NO_GT:
        return InputError(f"{path}: record {rec} has no genotypes (FORMAT {fmt}; GT is "
                          "needed)")
    return InputError(f"{path}: record {rec}: a genotype is not diploid; vcfbert reads "
                      "diploid genotypes and haploid ones (chrX in males)")


class _BlockParser:
    """Parse one block of text lines into a :class:`_Parsed` (any thread: the compiled pass
    releases the GIL)."""

    def __init__(self, path: str, file_samples: list[str], samples: list[str] | None,
                 want_ds: bool, contig: str | None, require_gt: bool) -> None:
        self.path = path
        self.n_file = len(file_samples)
        if samples is None:
            self.col_map = np.arange(self.n_file, dtype=np.int64)
            self.n_out = self.n_file
        else:
            where = {s: i for i, s in enumerate(file_samples)}
            self.col_map = np.full(self.n_file, -1, np.int64)
            for i, s in enumerate(samples):
                self.col_map[where[s]] = i
            self.n_out = len(samples)
        self.want_ds = want_ds
        self.want = contig.encode() if contig is not None else None
        self.require_gt = require_gt

    def __call__(self, text: bytes) -> _Parsed:
        buf = np.frombuffer(text, np.uint8)
        ends = np.flatnonzero(buf == 10)
        starts = np.empty_like(ends)
        if ends.size:
            starts[0] = 0
            starts[1:] = ends[:-1] + 1
        keep = (ends > starts) & (buf[np.minimum(starts, buf.size - 1)] != 35)  # not '#'
        starts, ends = starts[keep], ends[keep]
        out = _Parsed(None, None)
        if starts.size == 0:
            return out
        ends = ends - (buf[ends - 1] == 13)  # a '\r' before the newline (Windows files)
        b = starts.size
        n_out = self.n_out
        fields = np.zeros((b, 9, 2), np.int64)
        gt = np.empty((b, n_out, 3), np.int16)
        ds = np.full((b, n_out if self.want_ds else 0), np.nan, np.float32)
        status = np.empty(b, np.int32)
        ready(_parse_lines)
        _parse_lines(buf, starts, ends, self.col_map, self.n_file, self.want_ds, fields, gt,
                     ds, status)
        cols = [[text[a:z] for a, z in fields[:, f].tolist()] for f in (0, 1, 2, 3, 4, 7, 8)]
        chrom = [c.decode() for c in cols[0]]
        mine = (np.ones(b, bool) if self.want is None
                else np.array([c == self.want for c in cols[0]]))
        if not self.require_gt:
            status[status == NO_GT] = OK
        bad = np.flatnonzero((status != OK) & mine)
        if bad.size:
            r = int(bad[0])
            fmt = text[fields[r, 8, 0]:fields[r, 8, 1]].decode()
            before = f"{chrom[r - 1]}:{cols[1][r - 1].decode()}" if r else None
            out.problem = _Problem(int(status[r]), f"{chrom[r]}:{cols[1][r].decode()}", before,
                                   fmt)
            return out
        try:
            pos = np.array([int(x) for x in cols[1]], np.int64)
        except ValueError:
            bad_pos = next(x for x in cols[1] if not x.strip().isdigit())
            raise InputError(f"{self.path}: a record has the position {bad_pos.decode()!r}, "
                             "not a number") from None
        out.last = f"{chrom[-1]}:{pos[-1]}"
        sel = np.flatnonzero(mine)
        if sel.size == 0:
            return out
        vid = [None if v == b"." else v.decode() for v in cols[2]]
        alt = [[] if a == b"." else a.decode().split(",") for a in cols[4]]
        out.block = TextBlock([chrom[r] for r in sel], pos[sel], [vid[r] for r in sel],
                              [cols[3][r].decode() for r in sel], [alt[r] for r in sel],
                              [cols[5][r].decode() for r in sel],
                              [cols[6][r].decode() if self.n_file else "" for r in sel],
                              gt if sel.size == b else gt[sel],
                              (ds if sel.size == b else ds[sel]) if self.want_ds else None)
        return out


def iter_text_records(path: str | os.PathLike[str], file_samples: list[str], **kwargs
                      ) -> Iterator[TextRecord]:
    """The records of :func:`iter_text_blocks` (same arguments) one at a time."""
    for block in iter_text_blocks(path, file_samples, **kwargs):
        for r in range(len(block)):
            yield block.record(r)
