"""A cache-friendly int8 matrix transpose (its own module: numba is imported only by the
jobs that write stores, not by every job that reads one)."""

from __future__ import annotations

import numba
import numpy as np


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


def transpose_int8(a: np.ndarray) -> np.ndarray:
    """C-contiguous transpose of an int8 matrix [n, m] -> [m, n], in 128 x 128 tiles. numpy's
    ``np.stack(..., axis=1)`` of the variants' haplotype vectors writes one byte per cache
    line: parsing ``ooa_speed``'s reference (6,000 haplotypes x 99,451 variants) took 20.3 s
    with it and 15.6 s with 64 x 64 tiles read row by row (same store, byte for byte); writing
    each output row left to right took ``parse_reference`` from 9.8 / 9.2 to 8.2 / 8.0 s
    (docs/model.md, "Inference speed")."""
    src = np.ascontiguousarray(a, np.int8)
    out = np.empty((src.shape[1], src.shape[0]), np.int8)
    _transpose_into(src, out)
    return out
