"""Copying states chosen by match length around the window's core (training and imputation).

The copying states are the top ``k`` reference haplotypes by retrieval key. The key weighs the
whole window, so some of a query's rare alleles have no carrier among them (2.5 % of those
below 0.1 % on ``ooa_speed``, ``bench/candidate_recall.py``). This module finds, per query, the
reference haplotypes with the longest exact match around anchors spread over the core (as
IMPUTE5 and Beagle choose their states by match length) and merges them with the retrieved
states; with them every such allele had a carrier among the states.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numba
import numpy as np
import torch
from numba.cpython.unsafe.numbers import leading_zeros
from numba.extending import intrinsic

from .kernels import ready
from .rows import distinct_rows, pack_rows

# core slots per match anchor (docs/model.md, "Copying states by match length")
SLOTS_PER_ANCHOR = 16


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


def pack_slots(alleles: np.ndarray) -> np.ndarray:
    """uint64 [r, W] (W = ceil(m / 64)): bit ``i % 64`` of word ``i // 64`` is set where
    ``alleles`` int8/bool [r, m] is 1 at slot ``i`` (a window's panel at its slots, packed
    once per window for :func:`anchor_runs`, which reads it transposed;
    :func:`vcfbert.rows.pack_rows`)."""
    return pack_rows(alleles)


class PackedPanel(NamedTuple):
    """A window's panel at its slots for the match-length search, packed once per window
    (:func:`pack_panel`): each distinct sequence of slot alleles once (on a 6,000-haplotype
    panel ~4,600 of 6,000), so that the runs around the anchors are found, counted and ranked
    once per sequence."""

    bits: np.ndarray  # uint64 [U, W] the distinct sequences, packed (:func:`pack_slots`)
    words: np.ndarray  # uint64 [W, U] the same, word-major: what :func:`anchor_runs` reads
    hap_row: np.ndarray  # int64 [H] each haplotype's row of ``bits``
    row_start: np.ndarray  # int64 [U + 1] row u's haplotypes are row_haps[row_start[u]:...]
    row_haps: np.ndarray  # int64 [H] the haplotypes by row, increasing within a row


def pack_panel(ref_slots: np.ndarray) -> PackedPanel:
    """:class:`PackedPanel` of a window's panel at its slots, int8 [H, m]."""
    bits = pack_slots(ref_slots)
    first, hap_row = distinct_rows(bits)
    row_haps = np.argsort(hap_row, kind="stable").astype(np.int64)
    row_start = np.concatenate([[0], np.cumsum(np.bincount(hap_row, minlength=first.size))])
    distinct = np.ascontiguousarray(bits[first])
    return PackedPanel(distinct, np.ascontiguousarray(distinct.T), hap_row,
                       row_start.astype(np.int64), row_haps)


_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@intrinsic
def popcount(typingctx, x):
    """The number of set bits of an integer (LLVM's ``ctpop``, one instruction; numba has no
    such function, and the loops below vectorise with it)."""
    def codegen(context, builder, signature, args):
        return builder.ctpop(args[0])
    return x(x), codegen


@numba.njit(cache=True, nogil=True, error_model="numpy")
def anchor_runs(query: np.ndarray, observed: np.ndarray, panel_words: np.ndarray, m: int,
                anchors: np.ndarray, out: np.ndarray, mism: np.ndarray, last: np.ndarray,
                first: np.ndarray) -> None:
    """``out[a, h]``: :func:`centre_runs` of one query at each interval ``anchors[a]``, for
    every panel haplotype, from the panel's packed bits, word-major (``panel_words`` uint64
    [W, H]: :func:`pack_slots` transposed). The run is the number of compared slots between
    the nearest mismatch on each side of an anchor.

    Every step is a loop over the haplotypes that the compiler vectorises: each 64-slot word's
    mismatches (``mism`` uint64 [W, H]); per word, the compared slots up to the last mismatch
    at or before its end (``last`` int64 [W, H], 0: none) and before the first at or after its
    start (``first``, all compared slots: none), as prefix and suffix maxima over the words;
    then per anchor the anchor's own word, counted with ``popcount``, or the neighbouring
    word's ``last`` / ``first``. No scan per haplotype, no lookup of a slot's count.

    Args:
        query: int8 [m] alleles at the slots (-1 missing); observed: bool [m];
        anchors: int64 [A] intervals (0..m); out: int32 [A, H]; ``mism``, ``last``,
        ``first``: scratch of the shapes above (reused across queries).
    """
    n_words, n_h = panel_words.shape
    qbits = np.zeros(n_words, np.uint64)
    valid = np.zeros(n_words, np.uint64)  # the compared slots
    for i in range(m):
        if observed[i] and query[i] >= 0:
            bit = np.uint64(1) << np.uint64(i & 63)
            valid[i >> 6] |= bit
            if query[i] == 1:
                qbits[i >> 6] |= bit
    word_start = np.zeros(n_words + 1, np.int64)  # compared slots before each word
    for w in range(n_words):
        word_start[w + 1] = word_start[w] + np.int64(popcount(valid[w]))
    total = word_start[n_words]
    for w in range(n_words):
        q_word = qbits[w]
        v_word = valid[w]
        for h in range(n_h):
            mism[w, h] = (panel_words[w, h] ^ q_word) & v_word
    for w in range(n_words):
        v_word = valid[w]
        start = word_start[w]
        for h in range(n_h):
            word = mism[w, h]
            before = last[w - 1, h] if w > 0 else np.int64(0)
            # compared slots up to and including the word's highest mismatch
            last[w, h] = (start + np.int64(popcount(v_word & (_ALL >> np.uint64(
                leading_zeros(word)))))) if word != 0 else before
    for w in range(n_words - 1, -1, -1):
        v_word = valid[w]
        start = word_start[w]
        for h in range(n_h):
            word = mism[w, h]
            after = first[w + 1, h] if w < n_words - 1 else total
            lowest = word & (~word + np.uint64(1))
            # compared slots before the word's lowest mismatch
            first[w, h] = (start + np.int64(popcount(v_word & (lowest - np.uint64(1))))
                           if word != 0 else after)
    none_left = np.zeros(n_h, np.int64)
    none_right = np.full(n_h, total, np.int64)
    for x in range(anchors.shape[0]):
        a = anchors[x]
        # the slots left of the anchor: word lw below bit (a - 1) & 63 inclusive
        lw = (a - 1) >> 6 if a > 0 else 0
        l_mask = _ALL >> np.uint64(63 - ((a - 1) & 63)) if a > 0 else np.uint64(0)
        l_prev = last[lw - 1] if (a > 0 and lw > 0) else none_left
        # the slots from the anchor on: word rw from bit a & 63
        rw = a >> 6 if a < m else n_words - 1
        r_mask = _ALL << np.uint64(a & 63) if a < m else np.uint64(0)
        r_next = first[rw + 1] if (a < m and rw < n_words - 1) else none_right
        l_row, l_valid, l_start = mism[lw], valid[lw], word_start[lw]
        r_row, r_valid, r_start = mism[rw], valid[rw], word_start[rw]
        for h in range(n_h):
            word = l_row[h] & l_mask
            left = (l_start + np.int64(popcount(l_valid & (_ALL >> np.uint64(
                leading_zeros(word)))))) if word != 0 else l_prev[h]
            word = r_row[h] & r_mask
            lowest = word & (~word + np.uint64(1))
            right = (r_start + np.int64(popcount(r_valid & (lowest - np.uint64(1))))
                     if word != 0 else r_next[h])
            out[x, h] = right - left


def forbidden_haplotypes(n_queries: int, n_haplotypes: int, exclude: np.ndarray | None,
                         never: np.ndarray) -> np.ndarray:
    """bool [b, H]: the haplotypes each query may not copy — its ``exclude`` row int [b, e]
    (its own sample's; None: none) and every ``never`` one int [x] (a male's second copy)."""
    forbidden = np.zeros((n_queries, n_haplotypes), bool)
    if never.size:
        forbidden[:, never] = True
    if exclude is not None:
        np.put_along_axis(forbidden, np.asarray(exclude, np.int64), True, axis=1)
    return forbidden


def core_anchors(core_slots: np.ndarray, slots_per_anchor: int = SLOTS_PER_ANCHOR) -> list[int]:
    """The intervals around which match lengths are measured: one per ``slots_per_anchor``
    core slots (at least one), each at the middle of its share of the core. A single anchor
    is the core's centre, ``core_slots[size // 2]``.

    Args:
        core_slots: int [c] the window's core slots, increasing.
    """
    c = int(np.asarray(core_slots).size)
    if c == 0:
        return [0]
    n = max(1, round(c / slots_per_anchor))
    return [int(core_slots[min((2 * a + 1) * c // (2 * n), c - 1)]) for a in range(n)]


@numba.njit(cache=True, nogil=True)
def _longest_by_anchor(runs: np.ndarray, a: int, count: np.ndarray, top: int, allowed: int,
                       row_allowed: np.ndarray, row_start: np.ndarray,
                       row_haps: np.ndarray, forbidden: np.ndarray, sim: np.ndarray, q: int,
                       sim_span: float, want: int, out: np.ndarray, reaching: np.ndarray) -> int:
    """Fill ``out[a, :t]`` with the ``t = min(want, allowed)`` allowed haplotypes of the
    longest runs at anchor ``a`` (``runs`` int32 [A, U]: per distinct sequence; ties: higher
    ``sim[q]`` (float32 [b, H]), then lower id), longest first; returns ``t``.

    ``count[a]`` [top + 1] holds how many allowed haplotypes have each run length, so the cut
    is found by counting; the haplotypes at or above it are placed by run length (a counting
    sort) and sorted within a length by the key ``sim_span * run + similarity`` (``sim_span``
    exceeds the similarities' range), then id; of the cut's length only the places still
    free are filled. ``row_allowed`` [U]: each sequence's allowed haplotypes, which
    :class:`PackedPanel`'s ``row_start`` / ``row_haps`` list with the forbidden ones
    (``forbidden[q]``); ``reaching`` int64 [U + 1] scratch."""
    t = min(want, allowed)
    if t == 0:
        return 0
    cut = top  # the shortest run length that is (at least partly) taken
    above = 0
    while above + count[a, cut] < t:
        above += count[a, cut]
        cut -= 1
    # the haplotypes of runs >= cut, placed by run length (longest first: a counting sort),
    # each with its key
    place = np.empty(top - cut + 2, np.int64)  # place[top - r]: next free place of length r
    place[0] = 0
    for r in range(top, cut - 1, -1):
        place[top - r + 1] = place[top - r] + count[a, r]
    bounds = place.copy()  # bounds[top - r] .. bounds[top - r + 1]: the run length r
    size = above + count[a, cut]
    pool = np.empty(size, np.int64)
    key = np.empty(size, np.float64)
    # the sequences at or above the cut (few: ~2.5 % on ooa_speed). A branch per sequence,
    # mispredicted at each one that passes, took 12 % less of the search's time than listing
    # them without a branch (a store and two compares at every sequence)
    n_reaching = 0
    run_a = runs[a]
    for row in range(runs.shape[1]):
        if run_a[row] >= cut:
            if row_allowed[row] > 0:
                reaching[n_reaching] = row
                n_reaching += 1
    for y in range(n_reaching):
        row = reaching[y]
        r = run_a[row]
        for i in range(row_start[row], row_start[row + 1]):
            h = row_haps[i]
            if not forbidden[q, h]:
                x = place[top - r]
                place[top - r] += 1
                pool[x] = h
                key[x] = sim_span * r + sim[q, h]
    # within one run length: by key (the similarity) descending, then id; of the cut's run
    # length only the first t - above are needed
    for g in range(top - cut + 1):
        lo, hi = bounds[g], bounds[g + 1]
        if lo >= t:
            break
        keep = min(hi, t) - lo  # the places of this length that are taken
        n_sorted = 0  # pool[lo:lo + n_sorted] is the best so far, in order
        for x in range(lo, hi):
            h, k_x = pool[x], key[x]
            y = lo + n_sorted
            if n_sorted == keep:  # full: x goes in only if it beats the last one
                if not (k_x > key[y - 1] or (k_x == key[y - 1] and h < pool[y - 1])):
                    continue
                y -= 1
            else:
                n_sorted += 1
            while y > lo and (k_x > key[y - 1] or (k_x == key[y - 1] and h < pool[y - 1])):
                pool[y] = pool[y - 1]
                key[y] = key[y - 1]
                y -= 1
            pool[y] = h
            key[y] = k_x
    for i in range(t):
        out[a, i] = pool[i]
    return t


@numba.njit(cache=True, nogil=True)
def _weighted_histogram(runs: np.ndarray, weight: np.ndarray, quarters: np.ndarray,
                        count: np.ndarray) -> int:
    """``count[r]`` = the summed ``weight`` int64 [U] of the rows with ``runs`` int32 [U]
    equal to ``r`` (every entry written); returns the longest run of a row with a positive weight (0 if none). Rows in turn
    add to four partial histograms (``quarters`` int64 [4, len(count)], scratch): one
    histogram made each add wait for the previous one whenever two nearby rows had the same
    run (most runs are short), 0.070 ms a query on ooa_speed against 0.054 with four."""
    quarters[:] = 0
    n_u = runs.shape[0]
    n4 = n_u - n_u % 4
    for u in range(0, n4, 4):
        quarters[0, runs[u]] += weight[u]
        quarters[1, runs[u + 1]] += weight[u + 1]
        quarters[2, runs[u + 2]] += weight[u + 2]
        quarters[3, runs[u + 3]] += weight[u + 3]
    for u in range(n4, n_u):
        quarters[0, runs[u]] += weight[u]
    top = 0
    for r in range(count.shape[0]):
        c = quarters[0, r] + quarters[1, r] + quarters[2, r] + quarters[3, r]
        count[r] = c
        if c > 0:
            top = r
    return top


@numba.njit(cache=True, nogil=True)
def _select_states(query: np.ndarray, observed: np.ndarray, panel_words: np.ndarray,
                   hap_row: np.ndarray, row_start: np.ndarray, row_haps: np.ndarray,
                   anchors: np.ndarray, all_sim: np.ndarray, forbidden: np.ndarray,
                   cand: np.ndarray, n_match: int, out_ids: np.ndarray,
                   n_from_match: np.ndarray) -> None:
    """:func:`merge_match_states`' choice for each query, before its ordering by
    similarity (``out_ids`` int64 [b, k], -1 padded; its first ``n_from_match[q]`` entries
    are the match-length states). ``panel_words`` uint64 [W, U], ``hap_row`` int64 [H],
    ``row_start`` int64 [U + 1] and ``row_haps`` int64 [H] are a :class:`PackedPanel`'s: the
    runs are found, counted and ranked once per distinct sequence, each weighted by its
    allowed haplotypes."""
    b, k = cand.shape
    m = query.shape[1]
    n_h = hap_row.shape[0]
    n_u = panel_words.shape[1]
    n_a = anchors.shape[0]
    runs = np.empty((n_a, n_u), np.int32)
    n_words = panel_words.shape[0]
    mism = np.empty((n_words, n_u), np.uint64)  # anchor_runs' scratch
    last = np.empty((n_words, n_u), np.int64)
    first = np.empty((n_words, n_u), np.int64)
    ranked = np.empty((n_a, max(min(n_match, k), 1)), np.int64)
    n_ranked = np.empty(n_a, np.int64)
    taken = np.zeros(n_h, np.bool_)
    row_allowed = np.empty(n_u, np.int64)
    reaching = np.empty(n_u + 1, np.int64)  # _longest_by_anchor's scratch
    quarters = np.empty((4, m + 1), np.int64)  # _weighted_histogram's scratch
    count = np.empty((n_a, m + 1), np.int64)  # per query: allowed haplotypes by run length
    top = np.empty(n_a, np.int64)  # per query: each anchor's longest run
    limit = min(n_match, k)  # more match states than a query has places: k of them
    for q in range(b):
        anchor_runs(query[q], observed, panel_words, m, anchors, runs, mism, last, first)
        # each sequence's allowed haplotypes, and the allowed ones counted by run length
        for u in range(n_u):
            row_allowed[u] = row_start[u + 1] - row_start[u]
        allowed = n_h
        span = 0.0
        for h in range(n_h):
            if forbidden[q, h]:
                row_allowed[hap_row[h]] -= 1
                allowed -= 1
            else:
                span = max(span, abs(all_sim[q, h]))
        span = 2.0 * span + 1.0
        for a in range(n_a):
            top[a] = _weighted_histogram(runs[a], row_allowed, quarters, count[a])
        # the anchors' longest matches in turn: each anchor's first, then each one's second...
        # Each anchor's ranking is the first `depth` of its full one, and the turns rarely go
        # that deep (half of the places: ~1 % of queries on ooa_speed); when they do, each
        # anchor is ranked deeper and the turns start again, so the states are the same
        depth = min(max(16, limit // 2), limit)
        while True:
            for a in range(n_a):
                n_ranked[a] = _longest_by_anchor(runs, a, count, top[a], allowed, row_allowed,
                                                 row_start, row_haps, forbidden, all_sim, q,
                                                 span, depth, ranked, reaching)
            n_out = 0
            for t in range(depth):
                for a in range(n_a):
                    if n_out < limit and t < n_ranked[a] and not taken[ranked[a, t]]:
                        taken[ranked[a, t]] = True
                        out_ids[q, n_out] = ranked[a, t]
                        n_out += 1
            if n_out == limit or depth >= limit or depth >= allowed:
                break
            for c in range(n_out):  # an anchor's ranking was cut short: deeper, and again
                taken[out_ids[q, c]] = False
            depth = min(2 * depth, limit)
        n_from_match[q] = n_out
        for c in range(k):
            h = cand[q, c]
            if n_out < k and h >= 0 and not taken[h]:
                taken[h] = True
                out_ids[q, n_out] = h
                n_out += 1
        for c in range(n_out, k):
            out_ids[q, c] = -1
        for c in range(n_out):
            taken[out_ids[q, c]] = False


def key_similarities(query_keys: np.ndarray, ref_keys: np.ndarray) -> np.ndarray:
    """float32 [b, H]: every query key's inner product with every reference key (float32
    [b, d] and [H, d]), through torch, whose thread pool the jobs cap (numpy's BLAS may keep
    its own threads, which then compete with the batches' threads)."""
    return (torch.from_numpy(np.ascontiguousarray(query_keys, np.float32))
            @ torch.from_numpy(np.ascontiguousarray(ref_keys, np.float32)).T).numpy()


def merge_match_states(query_slots: np.ndarray, slot_observed: np.ndarray,
                       ref_slots: np.ndarray, ref_keys: np.ndarray, query_keys: np.ndarray,
                       cand: np.ndarray, sim: np.ndarray, anchors: Sequence[int], n_match: int,
                       forbidden: np.ndarray | None = None, panel: PackedPanel | None = None,
                       all_sim: np.ndarray | None = None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ``k`` states of each query: ``n_match`` of them by match length — the longest
    exact matches around each of the ``anchors`` in turn (ties by key similarity), without
    repeats —, then its retrieved states in their order, without repeats; ordered by
    similarity, as the search returns them.

    Args:
        query_slots: int8 [b, m]; slot_observed: bool [m]; ref_slots: int8 [H, m];
        ref_keys: float32 [H, d] and query_keys float32 [b, d]: the window's keys;
        cand, sim: int64 / float32 [b, k] the retrieved states (-1 / -inf: none);
        anchors: intervals (0..m) around which match lengths are measured
            (:func:`core_anchors`);
        forbidden: bool [b, H] haplotypes a query may not copy (its own sample, second copies);
        panel: :func:`pack_panel` of ``ref_slots``, when the caller packed it once for the
            window (else packed here).
        all_sim: float32 [b, H] ``query_keys @ ref_keys.T``, when the caller has it (else
            computed here).

    Returns:
        (ids int64 [b, k], similarities float32 [b, k], from_match bool [b, k]: the states
        chosen by match length).
    """
    b, k = cand.shape
    n_h = ref_slots.shape[0]
    anchor_arr = np.asarray(list(anchors), np.int64)
    m = query_slots.shape[1]
    if anchor_arr.size == 0 or anchor_arr.min() < 0 or anchor_arr.max() > m:
        raise ValueError(f"merge_match_states needs anchors in 0..{m} (the intervals between "
                         f"slots), got {anchor_arr.tolist()}")
    if all_sim is None:
        all_sim = key_similarities(query_keys, ref_keys)
    elif all_sim.shape != (b, n_h):
        raise ValueError(f"merge_match_states: all_sim of shape {all_sim.shape}, not {(b, n_h)}")
    if forbidden is None:
        forbidden = np.zeros((b, n_h), bool)
    out_ids = np.empty((b, k), np.int64)
    n_from_match = np.empty(b, np.int64)
    if panel is None:
        panel = pack_panel(ref_slots)
    if panel.hap_row.shape != (n_h,) or panel.bits.shape[1] != max(1, (m + 63) // 64):
        raise ValueError("merge_match_states: the packed panel was made from other slots")
    ready(_select_states)
    _select_states(np.ascontiguousarray(query_slots, np.int8), np.asarray(slot_observed, bool),
                   panel.words, panel.hap_row, panel.row_start, panel.row_haps, anchor_arr,
                   np.ascontiguousarray(all_sim, np.float32),
                   np.ascontiguousarray(forbidden, bool), np.asarray(cand, np.int64),
                   int(n_match), out_ids, n_from_match)
    out_sim = np.where(out_ids >= 0, np.take_along_axis(all_sim, np.maximum(out_ids, 0), 1),
                       -np.inf).astype(np.float32)
    from_match = np.arange(k)[None, :] < n_from_match[:, None]
    order = np.argsort(-out_sim, axis=1, kind="stable")
    return (np.take_along_axis(out_ids, order, 1), np.take_along_axis(out_sim, order, 1),
            np.take_along_axis(from_match, order, 1))
