"""Rows of 2-D arrays: their distinct values, and their 0/1 values packed into 64-bit words."""

from __future__ import annotations

import numpy as np


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
    word after it)."""
    a = np.asarray(alleles)
    r, n = a.shape
    n_words = max(1, (n + 63) // 64) + pad_words
    packed = np.zeros((r, n_words * 8), np.uint8)
    packed[:, :(n + 7) // 8] = np.packbits(a == 1, axis=1, bitorder="little")
    return packed.view("<u8").astype(np.uint64, copy=False)
