"""Copying states chosen by match length around the core (an option of the imputation).

The imputation's copying states are the top ``k`` reference haplotypes by retrieval key. Some
of a query's rare alleles then have no carrier among them (3.0 % of those below 0.1 % on
``ooa_speed``, ``bench/candidate_recall.py``); taking part of the states by the length of the
exact match around the core's centre, as IMPUTE5 chooses its states, halves that. This module
finds, per query, the reference haplotypes with the longest such match and merges them with
the retrieved states.
"""

from __future__ import annotations

import numba
import numpy as np
import torch


@numba.njit(cache=True, nogil=True)
def centre_runs(query: np.ndarray, observed: np.ndarray, panel: np.ndarray, centre: int,
                out: np.ndarray) -> None:
    """``out[q, h]``: observed slots left of interval ``centre`` where haplotype ``h``
    carries query ``q``'s allele, up to the first mismatch, plus the same going right (the
    model's left + right match run at that interval).

    Args:
        query: int8 [b, m] query alleles at the slots (-1 missing); observed: bool [m];
        panel: int8 [H, m]; centre: the interval (0..m); out: int32 [b, H].
    """
    b, m = query.shape
    n_h = panel.shape[0]
    for q in range(b):
        for h in range(n_h):
            n = 0
            j = centre - 1
            while j >= 0:
                a = query[q, j]
                if observed[j] and a >= 0:
                    if panel[h, j] != a:
                        break
                    n += 1
                j -= 1
            j = centre
            while j < m:
                a = query[q, j]
                if observed[j] and a >= 0:
                    if panel[h, j] != a:
                        break
                    n += 1
                j += 1
            out[q, h] = n


def merge_match_states(query_slots: np.ndarray, slot_observed: np.ndarray,
                       ref_slots: np.ndarray, ref_keys: np.ndarray, query_keys: np.ndarray,
                       cand: np.ndarray, sim: np.ndarray, centre: int, n_match: int,
                       forbidden: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` states of each query: its ``n_match`` longest matches around interval
    ``centre`` (ties by key similarity), then its retrieved states in their order, without
    repeats; ordered by similarity, as the search returns them.

    Args:
        query_slots: int8 [b, m]; slot_observed: bool [m]; ref_slots: int8 [H, m];
        ref_keys: float32 [H, d] and query_keys float32 [b, d]: the window's keys;
        cand, sim: int64 / float32 [b, k] the retrieved states (-1 / -inf: none);
        forbidden: bool [b, H] haplotypes a query may not copy (its own sample, second copies).

    Returns:
        (ids int64 [b, k], similarities float32 [b, k]).
    """
    b, k = cand.shape
    n_h = ref_slots.shape[0]
    runs = np.empty((b, n_h), np.int32)
    centre_runs(np.ascontiguousarray(query_slots, np.int8), np.asarray(slot_observed, bool),
                np.ascontiguousarray(ref_slots, np.int8), int(centre), runs)
    # through torch, whose thread pool the jobs cap (numpy's BLAS may keep its own threads,
    # which then compete with the batches' threads)
    all_sim = (torch.from_numpy(np.ascontiguousarray(query_keys, np.float32))
               @ torch.from_numpy(np.ascontiguousarray(ref_keys, np.float32)).T).numpy()
    score_run = runs.astype(np.float64)
    if forbidden is not None:
        score_run[forbidden] = -np.inf
    out_ids = np.full((b, k), -1, np.int64)
    out_sim = np.full((b, k), -np.inf, np.float32)
    for q in range(b):
        longest = np.lexsort((-all_sim[q], -score_run[q]))[:min(n_match, k)]
        longest = longest[np.isfinite(score_run[q, longest])]
        chosen = list(dict.fromkeys([*longest.tolist(), *cand[q][cand[q] >= 0].tolist()]))[:k]
        ids = np.asarray(chosen, np.int64)
        s = all_sim[q, ids]
        order = np.argsort(-s, kind="stable")
        out_ids[q, :ids.size] = ids[order]
        out_sim[q, :ids.size] = s[order]
    return out_ids, out_sim
