"""Rows of 2-D arrays: their distinct values, and their 0/1 values packed into 64-bit words."""

from __future__ import annotations

import numba
import numpy as np

from .kernels import ready


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(first int64 [u]: the row where each distinct row first occurs, in increasing order;
    inverse int64 [q]: for every row, its distinct row's place in ``first``) of a 2-D array,
    so that ``rows[first][inverse]`` equals ``rows``."""
    flat = np.ascontiguousarray(rows)
    as_bytes = flat.view(np.dtype((np.void, flat.dtype.itemsize * flat.shape[1]))).ravel()
    _, first, inverse = np.unique(as_bytes, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # distinct rows in order of first occurrence
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return first[order].astype(np.int64), rank[inverse.ravel()].astype(np.int64)


def pack_rows(alleles: np.ndarray, pad_words: int = 0) -> np.ndarray:
    """uint64 [r, W + pad_words] (W = max(1, ceil(n / 64))): bit ``i % 64`` of word
    ``i // 64`` is set where ``alleles`` int8/bool [r, n] is 1 at column ``i``; the
    ``pad_words`` last words are zero (so that a bit range starting in any word can read the
    word after it). One pass of :func:`_pack_rows_into` (``np.packbits`` of ``alleles == 1``
    wrote and read a byte array as large as the input first: 4x the time on a window's
    6,000 x 16,500 core)."""
    a = np.asarray(alleles)
    r, n = a.shape
    if a.dtype not in (np.int8, np.uint8, np.bool_):
        a = a == 1
    out = np.empty((r, max(1, (n + 63) // 64) + pad_words), np.uint64)
    ready(_pack_rows_into)
    _pack_rows_into(np.ascontiguousarray(a).view(np.uint8), out)
    return out


@numba.njit(cache=True, nogil=True)
def _pack_rows_into(a: np.ndarray, out: np.ndarray) -> None:
    """:func:`pack_rows` of ``a`` uint8 [r, n] (int8 or bool viewed as bytes: 1 is set) into
    ``out`` uint64 [r, W], its words past the columns zeroed."""
    r, n = a.shape
    full = n // 64
    rest = n - full * 64
    for i in range(r):
        row = a[i]
        for w in range(full):
            base = w * 64
            word = np.uint64(0)
            for b in range(64):
                word |= np.uint64(row[base + b] == 1) << np.uint64(b)
            out[i, w] = word
        used = full
        if rest:
            word = np.uint64(0)
            for b in range(rest):
                word |= np.uint64(row[full * 64 + b] == 1) << np.uint64(b)
            out[i, full] = word
            used += 1
        for w in range(used, out.shape[1]):
            out[i, w] = np.uint64(0)
