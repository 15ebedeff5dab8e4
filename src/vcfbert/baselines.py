"""Two non-learned imputation floors that the learned model must beat (DESIGN §4, §5).

* ``window_nearest``: per window, the ``k`` reference haplotypes nearest in Hamming distance
  over the window's typed sites; the ALT probability at a core site is their mean allele.
* ``longest_match``: per site, the ``k`` reference haplotypes with the longest run of matching
  typed sites around it (left run + right run), weighted by ``exp(run / scale)`` — a
  position-centred copying rule in the spirit of Li–Stephens/PBWT.

Both return ALT probabilities per target haplotype for every reference variant; typed sites are
left to the caller (they are output as observed).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .runs import interval_runs


def _exclusion(n_queries: int, exclude: list[np.ndarray] | None) -> list[np.ndarray]:
    return exclude if exclude is not None else [np.zeros(0, np.int64)] * n_queries


def longest_match(query_slots: np.ndarray, ref_slots: np.ndarray, ref_sites: np.ndarray,
                  site_interval: np.ndarray, *, k: int = 32, scale: float = 16.0,
                  exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """Position-centred longest-match copying.

    Args:
        query_slots: int8 [q, m] query alleles at the typed sites (-1 missing).
        ref_slots: int8 [h, m] reference alleles at the typed sites.
        ref_sites: int8 [h, n] reference alleles at the sites to predict.
        site_interval: int [n] interval (0..m) of each site to predict.
        k: candidates kept per interval; scale: run length giving weight e.
        exclude: per query, reference haplotype indices never to copy from (own sample).

    Returns:
        float32 [q, n] ALT probabilities.
    """
    q, _ = query_slots.shape
    h = ref_slots.shape[0]
    k = min(k, h)
    out = np.empty((q, ref_sites.shape[1]), np.float32)
    cols = np.arange(ref_sites.shape[1])
    for i, excl in enumerate(_exclusion(q, exclude)):
        left, right = interval_runs(query_slots[i].astype(np.int16), ref_slots.astype(np.int16))
        total = (left + right).astype(np.float64)  # [h, m + 1]
        if excl.size:
            total[excl] = -1.0
        top = np.argpartition(-total, k - 1, axis=0)[:k]  # [k, m + 1]
        run = np.take_along_axis(total, top, axis=0)
        w = np.exp((run - run.max(0, keepdims=True)) / scale)
        w[run < 0] = 0.0
        w /= w.sum(0, keepdims=True)
        hap = top[:, site_interval]  # [k, n]
        alleles = ref_sites[hap, cols[None, :]]  # [k, n]
        out[i] = (w[:, site_interval] * alleles).sum(0)
    return out


def window_nearest(query_slots: np.ndarray, ref_slots: np.ndarray, ref_sites: np.ndarray,
                   *, k: int = 32, exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """Mean allele of the ``k`` Hamming-nearest haplotypes over the window's typed sites.

    Args: as :func:`longest_match`, for one window (``ref_sites`` = its core sites).

    Returns:
        float32 [q, n] ALT probabilities.
    """
    q = query_slots.shape[0]
    h = ref_slots.shape[0]
    k = min(k, h)
    out = np.empty((q, ref_sites.shape[1]), np.float32)
    for i, excl in enumerate(_exclusion(q, exclude)):
        qs = query_slots[i]
        obs = qs >= 0
        dist = (ref_slots[:, obs] != qs[obs]).sum(1).astype(np.float64)
        if excl.size:
            dist[excl] = np.inf
        order = np.lexsort((np.arange(h), dist))[:k]
        out[i] = ref_sites[order].mean(0)
    return out


def floor_chromosome(method: str, ref_haps: np.ndarray, target_slots: np.ndarray,
                     typed_index: np.ndarray, windows: pd.DataFrame, *, k: int = 32,
                     scale: float = 16.0, exclude: list[np.ndarray] | None = None) -> np.ndarray:
    """ALT probabilities [q, V] for every reference variant of one chromosome.

    Args:
        method: ``"longest_match"`` or ``"window_nearest"``.
        ref_haps: int8 [h, V] reference panel.
        target_slots: int8 [q, M] target alleles at the typed sites ``typed_index`` (int [M]).
        windows: the windows table (used by ``window_nearest``).
    """
    n_var = ref_haps.shape[1]
    ref_slots = ref_haps[:, typed_index]
    if method == "longest_match":
        interval = np.searchsorted(typed_index, np.arange(n_var), side="left")
        return longest_match(target_slots, ref_slots, ref_haps, interval, k=k, scale=scale,
                             exclude=exclude)
    if method == "window_nearest":
        out = np.empty((target_slots.shape[0], n_var), np.float32)
        for w in windows.itertuples():
            sel = (typed_index >= w.start_idx) & (typed_index < w.end_idx)
            out[:, w.core_start:w.core_end] = window_nearest(
                target_slots[:, sel], ref_slots[:, sel], ref_haps[:, w.core_start:w.core_end],
                k=k, exclude=exclude)
        return out
    raise ValueError(f"unknown floor method {method!r}")
