"""Imputed VCF records, written byte by byte (numba).

For a block of variants, each record's fixed columns (formatted by the caller) and every
sample's ``GT:DS:GP`` cell (``GT:DS`` without GP, as Beagle writes by default; and the
optional ``HDS``, ``AP1``, ``AP2`` parts) are written
straight into one uint8 buffer: numbers rounded to 3 decimals
(round half to even, as ``np.round``), trailing zeros and a trailing point dropped (``0``,
``1``, ``0.5``, ``0.125``, as Beagle writes them). The result is byte-identical to
:func:`vcfbert.imputed_vcf.records_reference`, the per-string formatter the tests compare it
with. The kernel releases the GIL, so blocks can be formatted on several threads.
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import ready

EXTRA_CODES = {"HDS": 1, "AP1": 2, "AP2": 3}
CELL_BYTES = 28  # widest "0|1:1.234:0.123,0.456,0.789" and its tab or newline
EXTRA_BYTES = {"HDS": 12, "AP1": 6, "AP2": 6}  # widest ":0.123,0.456", ":0.123", ":0.123"
_HOM_REF = np.frombuffer(b"0|0:0:1,0,0\t", np.uint8).copy()  # a certain 0|0 cell and its tab
_HOM_REF_NO_GP = np.frombuffer(b"0|0:0\t", np.uint8).copy()  # the same without GP


def _decimal_table() -> tuple[np.ndarray, np.ndarray]:
    """(text uint8 [2001, 5], length int64 [2001]): ``q / 1000`` for q = 0 .. 2000 as
    :func:`vcfbert.imputed_vcf.decimal_text` writes it (``0``, ``1``, ``0.5``, ``1.234``),
    zero-padded to 5 bytes."""
    from .imputed_vcf import decimal_text  # imputed_vcf imports this module where it formats

    text = np.zeros((2001, 5), np.uint8)
    length = np.zeros(2001, np.int64)
    for q in range(2001):
        word = decimal_text(q / 1000)
        text[q, :len(word)] = np.frombuffer(word.encode("ascii"), np.uint8)
        length[q] = len(word)
    return text, length


_DECIMAL_TEXT, _DECIMAL_LENGTH = _decimal_table()
PAD_BYTES = 4  # a decimal writes 5 bytes whatever its length: the buffer's slack after a cell


@numba.njit(cache=True, nogil=True)
def _put_decimal(buf: np.ndarray, at: int, x: float) -> int:
    """Write ``x`` (in [0, 2]) rounded to 3 decimals at ``buf[at]``; return the next index.
    The text is looked up (``_DECIMAL_TEXT``: dividing out the digits took most of the
    formatting time of a common variant's cells); all 5 bytes of its row are copied, so
    ``buf`` needs ``PAD_BYTES`` beyond the last cell."""
    q = min(max(int(np.rint(x * 1000.0)), 0), 2000)
    for i in range(5):
        buf[at + i] = _DECIMAL_TEXT[q, i]
    return at + _DECIMAL_LENGTH[q]


@numba.njit(cache=True, nogil=True)
def _records(by_variant: np.ndarray, fixed: np.ndarray, fixed_ends: np.ndarray,
             extra: np.ndarray, male: np.ndarray, haploid_variant: np.ndarray,
             gp: bool, buf: np.ndarray, ends: np.ndarray) -> int:
    n_var, n_hap = by_variant.shape
    n_extra = extra.shape[0]
    hom_ref = _HOM_REF if gp else _HOM_REF_NO_GP
    n_t = n_hap // 2
    width = hom_ref.shape[0]
    tiled = np.empty(n_t * width, np.uint8)  # the certain 0|0 cell, once per sample
    for i in range(tiled.shape[0]):
        tiled[i] = hom_ref[i % width]
    at = 0
    start = 0
    for j in range(n_var):
        for i in range(start, fixed_ends[j]):
            buf[at] = fixed[i]
            at += 1
        start = fixed_ends[j]
        hv = haploid_variant[j]
        t = 0
        while t < n_t:
            if n_extra == 0:
                # a run of certain 0|0 cells, "0|0:0:1,0,0" ("0|0:0" without GP), most cells
                # of a rare variant: every number rounds to 0 or 1 (p1 p2 and p1 q2 + q1 p2
                # are at most p1 + p2, q1 q2 at least 1 - p1 - p2; the bound stays clear of
                # the rounding edge at 0.0005). Their text is copied at once (a byte at a
                # time per cell took most of the records' time)
                e = t
                while e < n_t and not (hv and male[e]):
                    p1 = min(max(np.float64(by_variant[j, 2 * e]), 0.0), 1.0)
                    p2 = min(max(np.float64(by_variant[j, 2 * e + 1]), 0.0), 1.0)
                    if not p1 + p2 < 0.00049:
                        break
                    e += 1
                if e > t:
                    n = (e - t) * width
                    buf[at:at + n] = tiled[:n]
                    at += n
                    t = e
                    continue
            p1 = min(max(np.float64(by_variant[j, 2 * t]), 0.0), 1.0)
            p2 = min(max(np.float64(by_variant[j, 2 * t + 1]), 0.0), 1.0)
            q1, q2 = 1.0 - p1, 1.0 - p2
            if male[t] and haploid_variant[j]:  # GT a:DS p:GP q,p
                buf[at] = 49 if p1 > 0.5 else 48
                buf[at + 1] = 58
                at = _put_decimal(buf, at + 2, p1)
                if gp:
                    buf[at] = 58
                    at = _put_decimal(buf, at + 1, q1)
                    buf[at] = 44
                    at = _put_decimal(buf, at + 1, p1)
                for code in extra:
                    buf[at] = 58
                    if code == 3:  # AP2: no second haplotype
                        buf[at + 1] = 46
                        at += 2
                    else:
                        at = _put_decimal(buf, at + 1, p1)
                buf[at] = 9
                at += 1
                t += 1
                continue
            buf[at] = 49 if p1 > 0.5 else 48
            buf[at + 1] = 124  # "|"
            buf[at + 2] = 49 if p2 > 0.5 else 48
            buf[at + 3] = 58  # ":"
            at = _put_decimal(buf, at + 4, p1 + p2)
            if gp:
                buf[at] = 58
                at = _put_decimal(buf, at + 1, q1 * q2)
                buf[at] = 44  # ","
                at = _put_decimal(buf, at + 1, p1 * q2 + q1 * p2)
                buf[at] = 44
                at = _put_decimal(buf, at + 1, p1 * p2)
            for code in extra:
                buf[at] = 58
                if code == 1:
                    at = _put_decimal(buf, at + 1, p1)
                    buf[at] = 44
                    at = _put_decimal(buf, at + 1, p2)
                else:
                    at = _put_decimal(buf, at + 1, p1 if code == 2 else p2)
            buf[at] = 9  # tab
            at += 1
            t += 1
        buf[at - 1] = 10  # the record's last cell ends the line
        ends[j] = at
    return at


@numba.njit(cache=True, nogil=True)
def _site_stats(by_variant: np.ndarray, male: np.ndarray, haploid_variant: np.ndarray,
                af: np.ndarray, dr2: np.ndarray) -> None:
    n_var, n_hap = by_variant.shape
    n = n_hap // 2
    for j in range(n_var):
        s_alt = s_ds = s_ds2 = s_eg2 = 0.0
        copies = 0
        for t in range(n):
            p1 = min(max(np.float64(by_variant[j, 2 * t]), 0.0), 1.0)
            p2 = min(max(np.float64(by_variant[j, 2 * t + 1]), 0.0), 1.0)
            if male[t] and haploid_variant[j]:
                s_alt += p1
                copies += 1
                s_ds += p1
                s_ds2 += p1 * p1
                s_eg2 += p1
            else:
                ds = p1 + p2
                s_alt += ds
                copies += 2
                s_ds += ds
                s_ds2 += ds * ds
                s_eg2 += ds + 2.0 * p1 * p2
        mean = s_ds / n
        af[j] = s_alt / copies
        num = s_ds2 / n - mean * mean
        den = s_eg2 / n - mean * mean
        dr2[j] = min(max(num / den, 0.0), 1.0) if den > 1e-12 else 0.0


def by_variant(hap_prob: np.ndarray) -> np.ndarray:
    """float [2T, v] -> float32 [v, 2T], one record a row (what the kernels read), transposed
    in tiles by :func:`_transpose_into` (numpy's copy of the transpose took 2.6x as long)."""
    src = np.asarray(hap_prob, np.float32)
    out = np.empty((src.shape[1], src.shape[0]), np.float32)
    ready(_transpose_into)
    _transpose_into(src, out)
    return out


@numba.njit(cache=True, nogil=True)
def _transpose_into(src: np.ndarray, out: np.ndarray) -> None:
    """``out[j, i] = src[i, j]`` for float32 [r, c] ``src`` (any strides) and [c, r] ``out``,
    in 16 x 16 tiles, each written a row of ``out`` at a time."""
    r, c = src.shape
    for i0 in range(0, r, 16):
        i1 = min(i0 + 16, r)
        for j0 in range(0, c, 16):
            for j in range(j0, min(j0 + 16, c)):
                for i in range(i0, i1):
                    out[j, i] = src[i, j]


def _flags(rows: np.ndarray, male: np.ndarray | None,
           haploid_variant: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    n_var, n_hap = rows.shape
    m = np.zeros(n_hap // 2, np.bool_) if male is None else np.asarray(male, np.bool_)
    h = (np.zeros(n_var, np.bool_) if haploid_variant is None
         else np.asarray(haploid_variant, np.bool_))
    return m, h


def site_stats(rows: np.ndarray, male: np.ndarray | None = None,
               haploid_variant: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ALT frequency and DR2 of each record from ``rows`` = :func:`by_variant` [v, 2T] ->
    (float64 [v], float64 [v]). DR2 = var(DS) / (mean E[g²] − mean(DS)²) over samples
    (:func:`vcfbert.imputed_vcf.dosage_r2`); a male (bool [T]) at a haploid variant (bool [v])
    counts one allele, with DS = E[g²] = his ALT probability."""
    af = np.empty(rows.shape[0])
    dr2 = np.empty(rows.shape[0])
    ready(_site_stats)
    _site_stats(rows, *_flags(rows, male, haploid_variant), af, dr2)
    return af, dr2


def records(rows: np.ndarray, fixed: list[bytes], extra: tuple[str, ...] = (),
            male: np.ndarray | None = None, haploid_variant: np.ndarray | None = None,
            ends: np.ndarray | None = None, gp: bool = True) -> memoryview:
    """The text of a block of records.

    Args:
        rows: float32 [v, 2T] ALT probability per target haplotype, one record a row
            (:func:`by_variant`; haplotype pairs = samples).
        fixed: each record's 9 fixed columns, each followed by a tab (ASCII) [v].
        extra: optional FORMAT parts after GP, in order (``HDS``, ``AP1``, ``AP2``).
        male, haploid_variant: bool [T] and bool [v]: where both hold, the cell is haploid
            (``GT`` one allele, ``DS`` and ``HDS``/``AP1`` the ALT probability, ``GP`` two
            values, ``AP2`` missing), as Beagle writes males on chrX.
        ends: int64 [v] filled with where each record ends in the text (None: not kept).
        gp: write GP after DS (``output.gp``; False: ``GT:DS`` and the extra parts).

    Returns:
        The v records, each ending in a newline (a view of a fresh buffer).
    """
    n_var, n_hap = rows.shape
    if n_var != len(fixed):
        raise ValueError(f"{len(fixed)} fixed parts for {n_var} records")
    joined = np.frombuffer(b"".join(fixed), np.uint8)
    fixed_ends = np.cumsum([len(f) for f in fixed], dtype=np.int64)
    width = CELL_BYTES + sum(EXTRA_BYTES[f] for f in extra)
    buf = np.empty(joined.size + n_var * (n_hap // 2) * width + PAD_BYTES, np.uint8)
    codes = np.array([EXTRA_CODES[f] for f in extra], np.int64)
    if ends is None:
        ends = np.empty(n_var, np.int64)
    elif ends.shape != (n_var,) or ends.dtype != np.int64:
        raise ValueError(f"records: ends must be int64 [{n_var}]")
    ready(_records)
    used = _records(rows, joined, fixed_ends, codes, *_flags(rows, male, haploid_variant),
                    bool(gp), buf, ends)
    return memoryview(buf)[:used]
