"""Match runs between a query haplotype and candidate haplotypes at typed sites (numpy).

For interval ``i`` (between slot ``i-1`` and slot ``i``) the *left run* is the number of
consecutive observed slots, going left from slot ``i-1``, where the candidate carries the query's
allele; the *right run* goes right from slot ``i``. Unobserved slots (query allele -1) are
skipped: they neither extend nor break a run. This is the quantity behind the Li–Stephens
copying model and PBWT's longest matches. The torch twin used by the model lives in
:mod:`vcfbert.model.features`; tests check they agree.
"""

from __future__ import annotations

import numpy as np


def inclusive_left_runs(query: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs ending at each slot, inclusive.

    Args:
        query: int [..., m] query alleles at slots (0/1, -1 unobserved).
        cands: int [..., k, m] candidate alleles at slots (0/1).

    Returns:
        (run int32 [..., k, m], reached_edge bool [..., k, m]): matching observed slots since
        the last mismatch at or before each slot, and whether no mismatch precedes it.
    """
    q = query[..., None, :]
    obs = q >= 0
    agree = (cands == q) & obs
    mismatch = (cands != q) & obs
    m = query.shape[-1]
    idx = np.arange(m)
    last = np.maximum.accumulate(np.where(mismatch, idx, -1), axis=-1)
    ca = np.cumsum(agree, axis=-1, dtype=np.int32)
    at_last = np.where(last >= 0, np.take_along_axis(ca, np.maximum(last, 0), axis=-1), 0)
    return (ca - at_last).astype(np.int32), last < 0


def interval_runs(query: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Left and right runs for every interval.

    Returns:
        (left, right): int32 [..., k, m + 1] each.
    """
    left_incl, _ = inclusive_left_runs(query, cands)
    right_incl, _ = inclusive_left_runs(query[..., ::-1], cands[..., ::-1])
    right_incl = right_incl[..., ::-1]
    shape = (*cands.shape[:-1], 1)
    zero = np.zeros(shape, dtype=np.int32)
    left = np.concatenate([zero, left_incl], axis=-1)
    right = np.concatenate([right_incl, zero], axis=-1)
    return left, right


def interval_runs_reference(query: np.ndarray, cands: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obviously-correct twin of :func:`interval_runs` for one query (tests only).

    Args:
        query: int [m]; cands: int [k, m].
    """
    k, m = cands.shape
    left = np.zeros((k, m + 1), np.int32)
    right = np.zeros((k, m + 1), np.int32)
    for c in range(k):
        for i in range(m + 1):
            n = 0
            for s in range(i - 1, -1, -1):
                if query[s] < 0:
                    continue
                if cands[c, s] != query[s]:
                    break
                n += 1
            left[c, i] = n
            n = 0
            for s in range(i, m):
                if query[s] < 0:
                    continue
                if cands[c, s] != query[s]:
                    break
                n += 1
            right[c, i] = n
    return left, right
