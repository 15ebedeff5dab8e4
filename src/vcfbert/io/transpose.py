"""A cache-friendly int8 matrix transpose (its own module: numba is imported only by the
jobs that write stores, not by every job that reads one)."""

from __future__ import annotations

import numba
import numpy as np

from ..kernels import ready


@numba.njit(cache=True, nogil=True)
def _transpose_into(src: np.ndarray, out: np.ndarray) -> None:
    tile = 128
    n, m = src.shape
    for i0 in range(0, n, tile):
        i1 = min(i0 + tile, n)
        for j0 in range(0, m, tile):
            # within a tile, each output row is written left to right (contiguous stores that
            # the compiler vectorises), not the source's rows in turn
            for j in range(j0, min(j0 + tile, m)):
                for i in range(i0, i1):
                    out[j, i] = src[i, j]


@numba.njit(cache=True, nogil=True)
def _allele_counts(rows: np.ndarray, n_alt: np.ndarray, n_called: np.ndarray) -> None:
    for i in range(rows.shape[0]):
        alt = 0
        called = 0
        for x in rows[i]:
            if x >= 0:
                alt += x
                called += 1
        n_alt[i] = alt
        n_called[i] = called


def allele_counts(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ALT alleles int64 [n], called entries int64 [n]) of each row of int8 ALT counts
    [n, m] — haplotypes (1 ALT, 0 REF) or genotypes (0, 1, 2) — with -1 missing: the sum of
    the called entries and how many there are, counted along the rows in one pass."""
    n_alt = np.empty(rows.shape[0], np.int64)
    n_called = np.empty(rows.shape[0], np.int64)
    ready(_allele_counts)
    _allele_counts(np.ascontiguousarray(rows, np.int8), n_alt, n_called)
    return n_alt, n_called


def transpose_into(src: np.ndarray, out: np.ndarray) -> None:
    """:func:`transpose_int8` of int8 ``src`` [n, m] into ``out`` [m, n] (a reused buffer,
    or a view of one)."""
    if out.shape != src.shape[::-1]:
        raise ValueError(f"transpose_into: out must be {src.shape[::-1]}, not {out.shape}")
    ready(_transpose_into)
    _transpose_into(np.ascontiguousarray(src, np.int8), out)


def transpose_int8(a: np.ndarray) -> np.ndarray:
    """C-contiguous transpose of an int8 matrix [n, m] -> [m, n], in 128 x 128 tiles. numpy's
    ``np.stack(..., axis=1)`` of the variants' haplotype vectors writes one byte per cache
    line: parsing ``ooa_speed``'s reference (6,000 haplotypes x 99,451 variants) took 20.3 s
    with it and 15.6 s with 64 x 64 tiles read row by row (same store, byte for byte); writing
    each output row left to right took ``parse_reference`` from 9.8 / 9.2 to 8.2 / 8.0 s
    (docs/model.md, "Inference speed")."""
    out = np.empty(a.shape[::-1], np.int8)
    transpose_into(a, out)
    return out
