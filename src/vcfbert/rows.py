"""Distinct rows of a 2-D array, in the order of their first occurrence."""

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
