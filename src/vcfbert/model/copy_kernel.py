"""Fused inference kernel of the copying layer (numba): HMM, match runs and site features.

At inference the slow path (:meth:`vcfbert.model.network.VcfBert.forward`) materialises a dozen
``[b, k, n]`` tensors (candidates × core sites): the posterior interpolated to every site, the
candidates' alleles, their match runs. This kernel computes the same per-site quantities for
one query at a time, reading the candidates' alleles straight from the window's reference
arrays (int8), so nothing larger than ``[k, m]`` is ever held:

1. emissions ``log_emit[c, i] = -mu[i] * mismatch[c, i] + s[i, allele[c, i]]`` (invalid
   candidates, whose prior is 0, are left out), normalised per slot as in
   :func:`vcfbert.model.hmm.forward_backward`;
2. the scaled forward–backward posterior ``gamma``, kept only at the slots the core reads
   (its intervals' flanking slots and the leave-one-out slots): the flanks carry the forward
   and backward messages into the core and none of their rows is stored, so the per-query
   arrays are [core rows, k] and stay in cache (−30 % kernel time at 256-site flanks);
3. left/right match runs per core interval (:func:`vcfbert.model.features.interval_runs`);
4. per core site, over the candidates: the copied ALT probability (the posterior interpolated
   between the flanking slots) and the five carrier features of
   :func:`vcfbert.model.features.carrier_features`. The candidates are pooled per interval by
   their allele pattern over its sites (:class:`WindowTables`, built once per window): each
   distinct pattern's ALT sites are visited once with its carriers' summed weights;
5. per slot, the leave-one-out ALT probability: the posterior with the slot's own emission
   divided out (:func:`vcfbert.model.hmm.leave_one_out_alt` is the torch twin), from which
   INFO/ER2 is computed at typed sites;
6. at imputation (:func:`copy_head_logits`), the whole output head per site: its first layer
   from per-slot and per-site parts computed in torch, its exact GELU (erf from a fitted
   rational function) and its last layer, so that the kernel writes the ALT logits.

Candidates that are the same reference sequence over the whole window (its slots and core
sites) are first lumped into one copying state carrying their summed prior: the HMM's
switches go to a candidate in proportion to its prior and its emissions depend on its alleles
alone, so the forward, backward and posterior of the lumped state are the sums of its
members' (exact up to float rounding), and so are every per-site sum. The retrieved
candidates are close relatives: on a 6,000-haplotype panel a query's 384 candidates hold
~290 distinct sequences.

Dimensions: ``b`` queries, ``k`` candidates, ``m`` slots, ``n`` core sites, ``H`` reference
haplotypes. Tested against the torch path on random inputs (``tests/unit/test_fast_inference.py``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np
from numba.cpython.unsafe.numbers import trailing_zeros

from ..errors import InputError
from ..kernels import ready
from ..rows import distinct_rows, pack_rows
from ..windows import MAX_WINDOW_SLOTS as MAX_SLOTS  # its match runs are int16

MASK_TOKEN = 2


class WindowTables(NamedTuple):
    """A window's reference panel laid out for the kernel; built once per window
    (:func:`window_tables`) and shared by every batch of queries.

    ``hap_bits`` is the panel at the slots, haplotype-major and packed into bits: gathering a
    query's copying states reads one contiguous row of ``ceil(m / 64)`` words per state (a
    slot-major panel, one row of ``H`` alleles per slot read at the states' places, missed the
    cache at almost every read; a byte per allele took ~7x as long to turn slot-major in the
    kernel: docs/model.md, "Inference speed"). The rest are the distinct allele
    patterns of the reference haplotypes over each interval's core sites: the retrieved
    candidates of a query are close relatives and share few patterns in an interval, so the
    kernel visits each pattern's ALT sites once, with the summed weights of the candidates
    that carry it, instead of every candidate's ALT sites.

    Dimensions: ``m`` slots, ``H`` reference haplotypes, ``R`` intervals from
    ``first_interval`` on (the core's), ``P`` patterns with at least one ALT allele over all of
    them.
    """

    hap_bits: np.ndarray  # uint64 [H, max(1, ceil(m / 64))] alleles at the slots: bit i % 64 of word i // 64 is slot i's (1 = ALT)
    n_slots: int  # m
    first_interval: int  # interval of pattern_id's column 0
    pattern_id: np.ndarray  # int16 [H, R] local pattern of each haplotype per interval (-1: all REF; int32 above 32,767 haplotypes)
    pattern_start: np.ndarray  # int64 [R + 1] global number of each row's local pattern 0
    alt_ptr: np.ndarray  # int64 [P + 1] pattern g has ALT at core sites alt_site[ptr[g]:ptr[g+1]]
    alt_site: np.ndarray  # int32 [nnz] sorted within each pattern
    hap_class: np.ndarray  # int32 [H] the same number for haplotypes equal at every slot and site


def window_tables(ref_slots: np.ndarray, ref_core: np.ndarray,
                  site_interval: np.ndarray) -> WindowTables:
    """:class:`WindowTables` of a window's reference alleles ``ref_slots`` int8 [H, m] and
    ``ref_core`` int8 [H, n] (0/1), whose core sites lie in intervals ``site_interval`` int [n]
    (non-decreasing)."""
    ref_core = np.asarray(ref_core, np.int8)
    interval = np.asarray(site_interval, np.int64)
    n_h, n = ref_core.shape
    m = ref_slots.shape[1]
    hap_bits = pack_rows(ref_slots)
    core_bits = pack_rows(ref_core, pad_words=1)  # for _interval_patterns' bit ranges
    hap_class = haplotype_classes(hap_bits, core_bits)
    if n == 0:
        return WindowTables(hap_bits, m, 0, np.full((n_h, 0), -1, pattern_dtype(n_h)),
                            np.zeros(1, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int32),
                            hap_class)
    if (np.diff(interval) < 0).any():
        raise ValueError("window_tables needs the sites sorted by interval")
    first, last = int(interval[0]), int(interval[-1])
    bounds = np.searchsorted(interval, np.arange(first, last + 2)).astype(np.int64)
    by_interval = np.full((bounds.size - 1, n_h), -1, pattern_dtype(n_h))
    ready(_interval_patterns)
    pattern_start, alt_ptr, alt_site = _interval_patterns(core_bits, bounds, by_interval)
    # haplotype-major for the kernel: a query reads its states' rows (a few hundred bytes
    # each) where a gather per interval read nearly every cache line of the [R, H] table
    pattern_id = np.ascontiguousarray(by_interval.T)
    return WindowTables(hap_bits, m, first, pattern_id, pattern_start, alt_ptr, alt_site,
                        hap_class)


def pattern_dtype(n_haplotypes: int) -> type:
    """The integer type of :class:`WindowTables`' ``pattern_id``: int16 up to 32,767
    haplotypes (an interval has at most as many patterns; half the bytes the kernel's
    per-interval lookups read: docs/model.md, "Inference speed"), else int32
    (compiled when first used)."""
    return np.int16 if n_haplotypes <= np.iinfo(np.int16).max else np.int32


_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@numba.njit(cache=True, nogil=True, error_model="numpy")
def _interval_patterns(bits, bounds, pattern_id):
    """The pattern part of :func:`window_tables` from the haplotypes' packed core alleles
    ``bits`` uint64 [H, W + 1] (:func:`vcfbert.rows.pack_rows` with a pad word) and the
    intervals' site ranges ``bounds``
    int64 [R + 1] (interval row r holds sites bounds[r]..bounds[r + 1] - 1): fills
    ``pattern_id`` int16/int32 [R, H] (-1 on entry) and returns (pattern_start int64 [R + 1],
    alt_ptr int64 [P + 1], alt_site int32 [nnz]).

    Per interval each haplotype's alleles are cut from its packed row (a few words), and the
    distinct non-zero words are numbered in the order of their first haplotype through an
    open-addressing hash table (keys compared word by word, so the grouping is exact).
    """
    n_h = bits.shape[0]
    n_rows = bounds.shape[0] - 1
    pattern_start = np.zeros(n_rows + 1, np.int64)
    max_len = 1
    for row in range(n_rows):
        max_len = max(max_len, bounds[row + 1] - bounds[row])
    max_words = (max_len + 63) // 64
    words = np.zeros((n_h, max_words), np.uint64)
    size = 1
    while size < 2 * n_h:
        size *= 2
    table = np.empty(size, np.int64)  # a pattern's first haplotype, -1: empty
    reps = np.empty(n_h, np.int64)
    alt_ptr = np.zeros(1024, np.int64)
    alt_site = np.empty(4096, np.int32)
    n_patterns = 0
    n_alt = 0
    one = np.uint64(1)
    for row in range(n_rows):
        j0 = bounds[row]
        j1 = bounds[row + 1]
        n_local = 0
        if j1 > j0:
            n_words = (j1 - j0 + 63) // 64
            for x in range(size):
                table[x] = -1
            for h in range(n_h):
                key = np.uint64(0)
                nonzero = False
                for w in range(n_words):
                    start = j0 + 64 * w
                    src = start >> 6
                    shift = np.uint64(start & 63)
                    word = bits[h, src] >> shift
                    if shift != 0:
                        word |= bits[h, src + 1] << (np.uint64(64) - shift)
                    left = j1 - start
                    if left < 64:
                        word &= (one << np.uint64(left)) - one
                    words[h, w] = word
                    nonzero = nonzero or word != 0
                    key = (key ^ word) * _GOLDEN
                if not nonzero:
                    continue  # all REF: -1
                slot = np.int64((key ^ (key >> np.uint64(29))) & np.uint64(size - 1))
                while True:
                    rep = table[slot]
                    if rep < 0:
                        table[slot] = h
                        pattern_id[row, h] = n_local
                        reps[n_local] = h
                        n_local += 1
                        break
                    same = True
                    for w in range(n_words):
                        if words[rep, w] != words[h, w]:
                            same = False
                            break
                    if same:
                        pattern_id[row, h] = pattern_id[row, rep]
                        break
                    slot = (slot + 1) & (size - 1)
            # each new pattern's ALT sites, in order, from its first haplotype's words
            for p in range(n_local):
                h = reps[p]
                for w in range(n_words):
                    word = words[h, w]
                    while word != 0:
                        if n_alt == alt_site.shape[0]:
                            grown = np.empty(2 * n_alt, np.int32)
                            grown[:n_alt] = alt_site
                            alt_site = grown
                        alt_site[n_alt] = np.int32(j0 + 64 * w + trailing_zeros(word))
                        n_alt += 1
                        word &= word - one
                if n_patterns + 1 == alt_ptr.shape[0]:
                    grown_ptr = np.zeros(2 * alt_ptr.shape[0], np.int64)
                    grown_ptr[:n_patterns + 1] = alt_ptr[:n_patterns + 1]
                    alt_ptr = grown_ptr
                n_patterns += 1
                alt_ptr[n_patterns] = n_alt
        pattern_start[row + 1] = pattern_start[row] + n_local
    return pattern_start, alt_ptr[:n_patterns + 1].copy(), alt_site[:n_alt].copy()


def haplotype_classes(slot_bits: np.ndarray, core_bits: np.ndarray) -> np.ndarray:
    """int32 [H]: one number per distinct sequence of alleles over a window's slots and core
    sites, from their packed alleles (:func:`vcfbert.rows.pack_rows`, uint64 [H, *]),
    numbered 0.. in the order of their first haplotype."""
    rows = np.concatenate([slot_bits, core_bits], axis=1)
    return distinct_rows(rows)[1].astype(np.int32)


# reassociation lets LLVM vectorise the sums over candidates; no flag that assumes finite
# values (the emission maximum starts at -inf). The per-query functions are inlined into the
# kernels that call them (numba ``inline="always"``): called as separate functions, the
# kernel loaded from numba's cache rounded its vectorised sums differently from the same
# kernel just compiled, so a job's results depended on whether it found the cache filled
# (tests/unit/test_copy_kernel.py).
FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _aligned(rows, cols, dtype):
    """An uninitialised C-contiguous [rows, cols] array of ``dtype`` whose first element is
    64-byte aligned. The kernel's scratch arrays are made this way: compiled for AVX-512, the
    vectorised sums over states may start with a scalar part that depends on where an array
    lies, so that the same inputs rounded differently from one call to the next (a few ulp:
    docs/model.md, "Call-to-call rounding on AVX-512")."""
    size = rows * cols
    buf = np.empty(size + 64, dtype)
    offset = ((-buf.ctypes.data) % 64) // buf.itemsize
    return buf[offset:offset + size].reshape((rows, cols))


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _aligned_vector(n, dtype):
    """:func:`_aligned` of one row: a 64-byte aligned [n] array of ``dtype``."""
    return _aligned(1, n, dtype)[0]


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _aligned_zeros(rows, cols, dtype):
    """:func:`_aligned` filled with zeros."""
    out = _aligned(rows, cols, dtype)
    out[:] = 0
    return out


@numba.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _aligned_zeros_vector(n, dtype):
    """:func:`_aligned_vector` filled with zeros."""
    return _aligned_zeros(1, n, dtype)[0]


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _feature_tables(m, k_all):
    """(log_run float32 [2m + 2]: log1p(run) / 6 for every possible match run over ``m``
    slots; log_carriers float32 [k_all + 1]: log1p(carriers) / 5 for every carrier count, a
    sum of ones and so an exact integer), built once per batch for :func:`_one_query`."""
    f32 = np.float32
    log_run = np.empty(2 * m + 2, f32)
    for r in range(2 * m + 2):
        log_run[r] = f32(math.log1p(r) / 6.0)
    log_carriers = np.empty(k_all + 1, f32)
    for count in range(k_all + 1):
        log_carriers[count] = f32(math.log1p(count) / 5.0)
    return log_run, log_carriers


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _one_query(qtok, cand_all, valid_all, hap_bits, first_interval, pattern_id,
               pattern_start, pat_ptr, pat_site, hap_class, state_of_class, mu, s, rho,
               prior_all, site_frac, interval_start, loo_lo, loo_hi, log_run, log_carriers,
               p_out, feat_out, loo_out, site_sums, query_no):
    m = qtok.shape[0]
    n = site_frac.shape[0]
    f32 = np.float32
    # lump the valid candidates of one class (the same sequence over the window) into one
    # state with their summed prior and their number (the carrier count); invalid ones have
    # prior 0 and never carry weight, so they are left out. state_of_class is -1 on entry
    # and on exit (a scratch array shared by the queries of a batch).
    k_all = cand_all.shape[0]
    cand = _aligned_vector(k_all, np.int64)
    prior = _aligned_zeros_vector(k_all, f32)
    mult = _aligned_zeros_vector(k_all, f32)
    k = 0
    for c in range(k_all):
        if valid_all[c]:
            g = hap_class[cand_all[c]]
            x = state_of_class[g]
            if x < 0:
                x = k
                state_of_class[g] = x
                cand[x] = cand_all[c]
                k += 1
            prior[x] += prior_all[c]
            mult[x] += f32(1.0)
    for x in range(k):
        state_of_class[hap_class[cand[x]]] = -1
    # Only the core needs the posterior and the match runs: the sites of intervals
    # I_lo..I_hi read the posterior at slots max(I - 1, 0) and min(I, m - 1), the
    # leave-one-out slots loo_lo..loo_hi-1 theirs and the forward row before them. The flanks
    # only carry the forward and backward messages into the core, so their rows are never
    # kept: the arrays are [core rows, k] instead of [m, k], small enough for the cache.
    i_lo = first_interval
    n_pat_rows = pattern_id.shape[1]  # intervals first_interval.. (the core's)
    i_hi = first_interval + n_pat_rows - 1  # I_hi < I_lo: no core sites
    post_lo = m
    post_hi = 0
    if i_hi >= i_lo:
        post_lo = max(i_lo - 1, 0)
        post_hi = min(i_hi, m - 1) + 1
    if loo_hi > loo_lo:
        post_lo = min(post_lo, loo_lo)
        post_hi = max(post_hi, loo_hi)
    if post_hi <= post_lo:  # nothing to keep: no pass beyond the first forward row
        post_lo = m
        post_hi = 0
    f_lo = max(post_lo - 1, 0)  # forward rows f_lo..post_hi-1 are kept (gamma[i - f_lo])
    # the states' alleles at the slots, slot-major [m, k] (contiguous over states), unpacked
    # from their haplotype-major bits: per 64-slot word, the states' words are gathered once,
    # then each slot's row of k alleles is a shift and a mask of them, a loop the compiler
    # vectorises (copying a byte per allele, transposed in blocks, took ~7x as long)
    allele = _aligned(m, k, np.int8)
    word = _aligned_vector(k, np.uint64)
    for w in range(hap_bits.shape[1]):
        for c in range(k):
            word[c] = hap_bits[cand[c], w]
        i0 = w * 64
        for i in range(i0, min(i0 + 64, m)):
            shift = np.uint64(i - i0)
            row = allele[i]
            for c in range(k):
                row[c] = np.int8((word[c] >> shift) & np.uint64(1))
    # emissions take two values per slot (candidate carries REF or ALT); normalised by the
    # largest among the candidates, as forward_backward does per slot among the valid ones
    e0 = _aligned_vector(m, f32)
    e1 = _aligned_vector(m, f32)
    for i in range(m):
        row = allele[i]
        n1 = 0
        for c in range(k):
            n1 += row[c]
        has1 = n1 > 0
        has0 = n1 < k
        le0 = s[i, 0]
        le1 = s[i, 1]
        if qtok[i] != MASK_TOKEN:
            if qtok[i] == 0:
                le1 -= mu[i]
            else:
                le0 -= mu[i]
        best = -np.inf
        if has0:
            best = le0
        if has1 and le1 > best:
            best = le1
        if not (has0 or has1):
            best = -1e4
        e0[i] = f32(math.exp(le0 - best))
        e1[i] = f32(math.exp(le1 - best))
    # scaled forward pass; rows from f_lo on are kept in gamma
    gamma = _aligned(max(post_hi - f_lo, 1), k, f32)
    fw = _aligned_vector(k, f32)
    tot = f32(0.0)
    for c in range(k):
        x = prior[c] * (e1[0] if allele[0, c] == 1 else e0[0])
        fw[c] = x
        tot += x
    inv = f32(1.0) / max(tot, f32(1e-30))
    for c in range(k):
        fw[c] *= inv
    if f_lo == 0 and post_hi > 0:
        for c in range(k):
            gamma[0, c] = fw[c]
    for i in range(1, post_hi):
        r = rho[i]
        q = f32(1.0) - r
        a0 = e0[i]
        a1 = e1[i]
        tot = f32(0.0)
        for c in range(k):
            x = (fw[c] * q + r * prior[c]) * (a1 if allele[i, c] == 1 else a0)
            fw[c] = x
            tot += x
        inv = f32(1.0) / max(tot, f32(1e-30))
        for c in range(k):
            fw[c] *= inv
        if i >= f_lo:
            g = gamma[i - f_lo]
            for c in range(k):
                g[c] = fw[c]
    # scaled backward pass from the last slot, multiplied into the kept forward rows: the
    # posterior at slots post_lo..post_hi-1
    y = _aligned_vector(k, f32)
    y[:] = f32(1.0)
    ey = _aligned_vector(k, f32)
    for i in range(m - 1, post_lo - 1, -1):
        if i < m - 1:
            r = rho[i + 1]
            q = f32(1.0) - r
            a0 = e0[i + 1]
            a1 = e1[i + 1]
            pe = f32(0.0)
            for c in range(k):
                ey[c] = (a1 if allele[i + 1, c] == 1 else a0) * y[c]
                pe += prior[c] * ey[c]
            tot = f32(0.0)
            for c in range(k):
                y[c] = q * ey[c] + r * pe
                tot += y[c]
            inv = f32(1.0) / max(tot, f32(1e-30))
            for c in range(k):
                y[c] *= inv
        if i >= post_hi:
            continue
        # leave-one-out at slot i: the posterior without slot i's emission is proportional to
        # the forward prediction into slot i (before its emission) times the backward term;
        # the row of slot i - 1 still holds forward probabilities here (the pass runs from
        # the end). Equal to gamma / emit renormalised, without dividing by an emission that
        # may underflow.
        if loo_lo <= i < loo_hi:  # only the slots the caller asked for (the core's)
            if i == 0:
                r = f32(1.0)  # no previous slot: the prediction is the prior
                q = f32(0.0)
            else:
                r = rho[i]
                q = f32(1.0) - r
            prev = gamma[max(i - 1, 0) - f_lo]
            a_all = f32(0.0)
            a_alt = f32(0.0)
            for c in range(k):
                w = (prev[c] * q + r * prior[c]) * y[c]
                a_all += w
                a_alt += w * f32(allele[i, c])
            loo_out[i] = a_alt / a_all if a_all > f32(0.0) else f32(0.0)
        g = gamma[i - f_lo]
        tot = f32(0.0)
        for c in range(k):
            g[c] *= y[c]
            tot += g[c]
        inv = f32(1.0) / max(tot, f32(1e-30))
        for c in range(k):
            g[c] *= inv
    # match runs at the core's intervals I_lo..I_hi, slot-major so that each step runs over
    # the candidates in SIMD: run[I - I_lo, c] = left run ending at slot I-1 + right run
    # starting at slot I (interval I)
    n_rows = max(i_hi - i_lo + 1, 0)
    # int16: a run spans at most 2m + 1 slots (m <= MAX_SLOTS, checked by _kernel_args); half
    # the bytes of the [rows, k] table the per-interval sums read
    run = _aligned_zeros(max(n_rows, 1), k, np.int16)
    lrun = _aligned_zeros_vector(k, np.int16)
    for i in range(min(i_hi, m)):
        q = qtok[i]
        if q != MASK_TOKEN:
            for c in range(k):
                lrun[c] = lrun[c] + 1 if allele[i, c] == q else 0
        if i + 1 >= i_lo:
            row_run = run[i + 1 - i_lo]
            for c in range(k):
                row_run[c] = lrun[c]
    right = _aligned_zeros_vector(k, np.int16)
    for i in range(m - 1, i_lo - 1, -1):
        q = qtok[i]
        if q != MASK_TOKEN:
            for c in range(k):
                right[c] = right[c] + 1 if allele[i, c] == q else 0
        if i <= i_hi:
            row_run = run[i - i_lo]
            for c in range(k):
                row_run[c] += right[c]
    # Per interval with sites, the candidates are pooled by their allele pattern over the
    # interval's sites (WindowTables): group 0 holds the candidates with REF at every site,
    # group u + 1 those with pattern u. A group's sums are taken over its carriers, then added
    # once at each of its pattern's ALT sites. The copied probability at site j is
    # sum_c gl_c + frac_j * sum_c dg_c (the posterior interpolated between the flanking slots),
    # so the sums keep the two parts apart. acc[j] = (sum gl, sum dg, sum gl * run feature,
    # sum dg * run feature, ALT carriers) over the ALT carriers of site j.
    # the per-site arrays are the batch's (_site_sums): zero on entry, left at zero on exit
    acc, best_alt, best_ref, alt_mark, pending = site_sums
    max_groups = 1
    for row in range(n_pat_rows):
        max_groups = max(max_groups, pattern_start[row + 1] - pattern_start[row] + 1)
    gacc = _aligned_zeros(max_groups, 5, f32)
    gbest = _aligned_zeros_vector(max_groups, f32)  # the group's longest run feature
    # the sums are taken into 4 partial rows per group, candidate c into part c % 4,
    # then added up: consecutive candidates of one group (about half of them) no longer wait
    # for each other's store. Columns: the five sums, then the longest run feature. Zero on
    # entry to each interval: the rows of the groups a query touched are zeroed after use.
    part = _aligned_zeros(4 * max_groups, 8, f32)
    touched = np.empty(max_groups, np.int64)
    touched_best = _aligned_vector(max_groups, f32)
    # the states' pattern ids, interval-major [R, k]: each state's row of the haplotype-major
    # table is read once (contiguous), then each interval's k ids are one contiguous row
    state_pattern = _aligned(max(n_pat_rows, 1), k, pattern_id.dtype)
    for c in range(k):
        ids = pattern_id[cand[c]]
        for row in range(n_pat_rows):
            state_pattern[row, c] = ids[row]
    for row in range(n_pat_rows):
        interval = first_interval + row
        j0 = interval_start[interval]
        j1 = interval_start[interval + 1]
        if j0 == j1:
            continue
        ids = state_pattern[row]
        left = max(interval - 1, 0)
        right = min(interval, m - 1)
        n_groups = pattern_start[row + 1] - pattern_start[row] + 1
        g_left = gamma[left - f_lo]
        g_right = gamma[right - f_lo]
        run_row = run[row]
        for c in range(k):
            r = 4 * (ids[c] + 1) + (c & 3)
            v = log_run[run_row[c]]
            gl = g_left[c]
            dg = g_right[c] - gl
            part[r, 0] += gl
            part[r, 1] += dg
            part[r, 2] += gl * v
            part[r, 3] += dg * v
            part[r, 4] += mult[c]
            part[r, 5] = max(part[r, 5], v)
        # the groups the query touched (carriers > 0; ~13 of the interval's ~60 patterns on
        # ooa_speed), in order of their longest run, longest first, ties by group number
        # (insertion sort: a handful of groups); their partial rows are zeroed again
        n_touched = 0
        for u in range(n_groups):
            r0 = 4 * u
            if (part[r0, 4] + part[r0 + 1, 4]) + (part[r0 + 2, 4] + part[r0 + 3, 4]) > f32(0.0):
                for col in range(5):
                    gacc[u, col] = (part[r0, col] + part[r0 + 1, col]) + (
                        part[r0 + 2, col] + part[r0 + 3, col])
                best = max(max(part[r0, 5], part[r0 + 1, 5]), max(part[r0 + 2, 5],
                                                                  part[r0 + 3, 5]))
                gbest[u] = best
                for p in range(4):
                    for col in range(8):
                        part[r0 + p, col] = f32(0.0)
                y = n_touched - 1
                while y >= 0 and touched_best[y] < best:
                    touched[y + 1] = touched[y]
                    touched_best[y + 1] = touched_best[y]
                    y -= 1
                touched[y + 1] = u
                touched_best[y + 1] = best
                n_touched += 1
        # visiting the groups longest run first: a site's best ALT carrier is in the first
        # group with ALT there, its best REF carrier in the first group without (0 if none)
        n_pending = 0
        for j in range(j0, j1):
            pending[n_pending] = j
            n_pending += 1
        base = pattern_start[row] - 1  # global number of group u is base + u (u >= 1)
        # alt_mark[j]: the last group (in visiting order) with ALT at site j, as a number
        # unique to this query, interval and place in the order (never reset between queries)
        mark0 = (query_no * (n_pat_rows + 1) + row) * (k_all + 1)
        for x in range(n_touched):
            u = touched[x]
            if u > 0:
                for e in range(pat_ptr[base + u], pat_ptr[base + u + 1]):
                    j = pat_site[e]
                    for col in range(5):
                        acc[j, col] += gacc[u, col]
                    if acc[j, 4] == gacc[u, 4]:  # the first group with ALT at j
                        best_alt[j] = gbest[u]
                    alt_mark[j] = mark0 + x
            if n_pending:
                kept = 0
                for y in range(n_pending):
                    j = pending[y]
                    if alt_mark[j] == mark0 + x:
                        pending[kept] = j
                        kept += 1
                    else:
                        best_ref[j] = gbest[u]
                n_pending = kept
    for j in range(n):
        f = site_frac[j]
        w = acc[j, 0] + f * acc[j, 1]
        n_alt = acc[j, 4]
        p_out[j] = min(max(w, f32(1e-5)), f32(1.0 - 1e-5))
        feat_out[j, 0] = best_alt[j]
        feat_out[j, 1] = best_ref[j]
        feat_out[j, 2] = log_carriers[int(n_alt)]
        feat_out[j, 3] = f32(1.0) if n_alt > 0 else f32(0.0)
        feat_out[j, 4] = (acc[j, 2] + f * acc[j, 3]) / max(w, f32(1e-6))
        for col in range(5):
            acc[j, col] = f32(0.0)
        best_alt[j] = f32(0.0)
        best_ref[j] = f32(0.0)


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _site_sums(n):
    """The per-site arrays of :func:`_one_query`, allocated once per batch (zeroing them per
    query took 1–3 % of the kernel): acc float32 [n, 5], best_alt and best_ref float32 [n],
    alt_mark int64 [n] and pending int64 [n]. Only the arrays the query's own loops write stay
    per query: passed in, the group sums' arrays would be assumed to alias these, which cost
    more than their allocation (docs/model.md, "Inference speed")."""
    f32 = np.float32
    n = max(n, 1)
    return (_aligned_zeros(n, 5, f32), _aligned_zeros_vector(n, f32),
            _aligned_zeros_vector(n, f32), np.full(n, -1, np.int64), np.empty(n, np.int64))


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _all_queries(qtok, cand, valid, hap_bits, first_interval, pattern_id, pattern_start,
                 pat_ptr, pat_site, hap_class, mu, s, rho, prior, site_frac, interval_start,
                 loo_lo, loo_hi, p_out, feat_out, loo_out):
    state_of_class = np.full(hap_class.shape[0], -1, np.int64)
    log_run, log_carriers = _feature_tables(qtok.shape[1], cand.shape[1])
    site_sums = _site_sums(site_frac.shape[0])
    for b in range(qtok.shape[0]):
        _one_query(qtok[b], cand[b], valid[b], hap_bits, first_interval, pattern_id,
                   pattern_start, pat_ptr, pat_site, hap_class, state_of_class, mu[b], s[b],
                   rho[b], prior[b], site_frac, interval_start, loo_lo, loo_hi, log_run,
                   log_carriers, p_out[b], feat_out[b], loo_out[b], site_sums, b)


# erf(z) ~ z * P(z^2) / Q(z^2) for |z| <= 4, fitted by bench/fit_erf.py (largest error
# 3.5e-7 in float32, against math.erf); beyond 4, erf is 1 in float32. Unlike math.erf (a
# libm call per value), the rational form vectorises over the head's hidden units.
_ERF_Z_MAX = 4.0
_ERF_P = (1.1283789766e+00, 1.9624821692e-01, 5.3467362612e-02, 4.0036026423e-03,
          2.8803852650e-04, 1.9748143799e-06)
_ERF_Q = (1.0, 5.0725161464e-01, 1.1647609513e-01, 1.5444346072e-02, 1.2163453074e-03,
          3.7480540347e-05)


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _horner(coefficients, t):
    """The polynomial with float ``coefficients`` (lowest power first) at float32 ``t``."""
    value = np.float32(coefficients[-1])
    for i in range(len(coefficients) - 2, -1, -1):
        value = value * t + np.float32(coefficients[i])
    return value


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _gelu(x):
    """The exact (erf) GELU ``x * (1 + erf(x / sqrt(2))) / 2`` of a float32 ``x``, with erf
    from the fitted rational function above (absolute error <= 2e-7 * |x| + 1e-7, tested)."""
    f32 = np.float32
    z = min(max(x * f32(0.7071067811865476), f32(-_ERF_Z_MAX)), f32(_ERF_Z_MAX))
    t = z * z
    erf = min(max(z * _horner(_ERF_P, t) / _horner(_ERF_Q, t), f32(-1.0)), f32(1.0))
    return f32(0.5) * x * (f32(1.0) + erf)


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _head_unit(t, sc, lp, rp, head_wt, last_w, x0, f0, f1, f2, f3, f4):
    """Hidden unit ``t`` of the output head at one site, through the GELU and its weight in
    the last layer (:func:`_head_logits`)."""
    h = (sc[t] + lp[t] + rp[t] + head_wt[0, t] * x0 + head_wt[1, t] * f0
         + head_wt[2, t] * f1 + head_wt[3, t] * f2 + head_wt[4, t] * f3 + head_wt[5, t] * f4)
    return last_w[t] * _gelu(h)


# most sites of a query have no ALT carrier among its states: their probability is the
# clamp's lower bound, whose logit is computed once (in float32 as the kernel computed it)
_P_LOW = np.float32(1e-5)
_LOGIT_LOW = np.float32(math.log(_P_LOW)) - np.float32(math.log1p(-_P_LOW))


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _site_head_inputs(j, p, feat, site_const, left_proj, right_proj, site_left, site_right):
    """What the head reads at site ``j``: the copied probability's logit, it / 10, the five
    carrier features, the two flanking slots' projections and the site's constant row."""
    f32 = np.float32
    if p[j] == _P_LOW:
        lc = _LOGIT_LOW
    else:
        lc = f32(math.log(p[j])) - f32(math.log1p(-p[j]))
    return (lc, lc / f32(10.0), feat[j, 0], feat[j, 1], feat[j, 2], feat[j, 3], feat[j, 4],
            left_proj[site_left[j]], right_proj[site_right[j]], site_const[j])


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _head_logits(p, feat, site_const, left_proj, right_proj, site_left, site_right, head_wt,
                 last_w, last_b, copy_scale, logit_out):
    """The whole output head for one query's sites (see :func:`copy_head_logits`): the first
    layer, the GELU and the last layer, with the copied probability's logit added.
    ``head_wt`` float32 [6, hw] is :class:`HeadInputs`' ``weight`` transposed, so that the
    loop over the hidden units reads each feature's weights contiguously and vectorises
    (docs/model.md, "Inference speed"). Any hw; :func:`_head_logits_8` for hw 8."""
    f32 = np.float32
    hw = head_wt.shape[1]
    hw_blocks = hw - hw % 16
    for j in range(p.shape[0]):
        lc, x0, f0, f1, f2, f3, f4, lp, rp, sc = _site_head_inputs(
            j, p, feat, site_const, left_proj, right_proj, site_left, site_right)
        # the hidden units in blocks of 16, a trip count the compiler sees: one loop over all
        # hw units was vectorised 32 units an iteration, so that 16 units ran in its narrow
        # remainder loop (~20 % of the kernel's time)
        total = f32(0.0)
        for t0 in range(0, hw_blocks, 16):
            for t in range(t0, t0 + 16):
                total += _head_unit(t, sc, lp, rp, head_wt, last_w, x0, f0, f1, f2, f3, f4)
        for t in range(hw_blocks, hw):
            total += _head_unit(t, sc, lp, rp, head_wt, last_w, x0, f0, f1, f2, f3, f4)
        logit_out[j] = copy_scale * lc + (total + last_b)


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy", inline="always")
def _head_logits_8(p, feat, site_const, left_proj, right_proj, site_left, site_right, head_wt,
                   last_w, last_b, copy_scale, logit_out):
    """:func:`_head_logits` for a head of 8 hidden units (``model.d_head: 8``; the default is
    16), their loop's trip count a constant: in :func:`_head_logits`' remainder loop they ran one
    unit at a time, 3x slower, and a branch on hw inside its loop over the sites stopped the
    16 units' loop from vectorising (3.6x slower; docs/model.md, "Inference speed"), so the
    choice is made once per query, in :func:`_all_queries_head`."""
    f32 = np.float32
    for j in range(p.shape[0]):
        lc, x0, f0, f1, f2, f3, f4, lp, rp, sc = _site_head_inputs(
            j, p, feat, site_const, left_proj, right_proj, site_left, site_right)
        total = f32(0.0)
        for t in range(8):
            total += _head_unit(t, sc, lp, rp, head_wt, last_w, x0, f0, f1, f2, f3, f4)
        logit_out[j] = copy_scale * lc + (total + last_b)


@numba.njit(cache=True, nogil=True, fastmath=FAST, error_model="numpy")
def _all_queries_head(qtok, cand, valid, hap_bits, first_interval, pattern_id,
                      pattern_start, pat_ptr, pat_site, hap_class, mu, s, rho, prior,
                      site_frac, interval_start, loo_lo, loo_hi, loo_out,
                      site_const, left_proj, right_proj, site_left, site_right, head_wt,
                      last_w, last_b, copy_scale, logit_out):
    shared = site_const.shape[0] == 1
    state_of_class = np.full(hap_class.shape[0], -1, np.int64)
    log_run, log_carriers = _feature_tables(qtok.shape[1], cand.shape[1])
    site_sums = _site_sums(site_frac.shape[0])
    # one query's copied probabilities and carrier features, written by _one_query and read
    # by the head at once: one scratch row reused by every query stays in the cache, where
    # [b, n] and [b, n, 5] outputs were written and read back through memory
    p_one = _aligned_vector(site_frac.shape[0], np.float32)
    feat_one = _aligned(site_frac.shape[0], 5, np.float32)
    for b in range(qtok.shape[0]):
        _one_query(qtok[b], cand[b], valid[b], hap_bits, first_interval, pattern_id,
                   pattern_start, pat_ptr, pat_site, hap_class, state_of_class, mu[b], s[b],
                   rho[b], prior[b], site_frac, interval_start, loo_lo, loo_hi, log_run,
                   log_carriers, p_one, feat_one, loo_out[b], site_sums, b)
        if head_wt.shape[1] == 8:
            _head_logits_8(p_one, feat_one, site_const[0 if shared else b], left_proj[b],
                           right_proj[b], site_left, site_right, head_wt, last_w, last_b,
                           copy_scale, logit_out[b])
        else:
            _head_logits(p_one, feat_one, site_const[0 if shared else b], left_proj[b],
                         right_proj[b], site_left, site_right, head_wt, last_w, last_b,
                         copy_scale, logit_out[b])


class HeadInputs(NamedTuple):
    """The output head's weights and the parts of its first (linear) layer that do not depend
    on the kernel's features, for :func:`copy_head_logits`. ``hw`` hidden width, ``b``
    queries, ``m`` slots, ``n`` sites."""

    site_const: np.ndarray  # float32 [1 or b, n, hw] bias + the allele-frequency and position terms
    left_proj: np.ndarray  # float32 [b, m, hw] query context of each slot, left-slot weights
    right_proj: np.ndarray  # float32 [b, m, hw] the same with the right-slot weights
    site_left: np.ndarray  # int [n] slot on the left of each site (clipped)
    site_right: np.ndarray  # int [n] slot on the right (clipped)
    weight: np.ndarray  # float32 [hw, 6] weights of logit(p_copy) / 10 and the 5 carrier features
    last_weight: np.ndarray  # float32 [hw] the last layer's weights (after the GELU)
    last_bias: float  # the last layer's bias
    copy_scale: float  # the weight of logit(p_copy) added to the head's output


def copy_head_logits(head: HeadInputs, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """:func:`copy_features` fused with the whole output head: instead of the copied
    probability and carrier features, the ALT logits at every site, so that no ``[b, n, 10]``
    input and no ``[b, n, hw]`` hidden layer is ever held: each site's hidden units stay in
    registers (docs/model.md, "Inference speed"). ``kwargs`` are :func:`copy_features`'
    arguments.

    ``hidden[b, j] = site_const[b, j] + left_proj[b, site_left[j]] + right_proj[b,
    site_right[j]] + weight @ (logit(p_copy[b, j]) / 10, carriers[b, j])`` and
    ``logits[b, j] = copy_scale * logit(p_copy[b, j]) + last_weight @ gelu(hidden[b, j]) +
    last_bias``, the GELU's erf from a fitted rational function (:func:`_gelu`).

    Returns:
        (logits float32 [b, n], p_slot_loo float32 [b, m] as :func:`copy_features`).
    """
    inputs, (_, _, loo_out) = _kernel_args(**kwargs, site_outputs=False)
    b, n = kwargs["cand_ids"].shape[0], kwargs["site_interval"].shape[0]
    hw = head.weight.shape[0]
    logits = np.empty((b, n), np.float32)
    if head.site_const.shape[0] not in (1, b) or head.site_const.shape[1:] != (n, hw):
        raise ValueError("copy_head_logits: site_const must be [1 or b, n, hw]")
    if np.shape(head.last_weight) != (hw,):
        raise ValueError("copy_head_logits: last_weight must be [hw]")
    if inputs is None:
        return logits, loo_out
    ready(_all_queries_head)
    _all_queries_head(*inputs, loo_out,
                      np.ascontiguousarray(head.site_const, np.float32),
                      np.ascontiguousarray(head.left_proj, np.float32),
                      np.ascontiguousarray(head.right_proj, np.float32),
                      np.asarray(head.site_left, np.int64), np.asarray(head.site_right, np.int64),
                      np.ascontiguousarray(np.asarray(head.weight, np.float32).T),
                      np.ascontiguousarray(head.last_weight, np.float32),
                      np.float32(head.last_bias), np.float32(head.copy_scale), logits)
    return logits, loo_out


def copy_features(*, query_tokens: np.ndarray, cand_ids: np.ndarray, ref_slots: np.ndarray,
                  ref_core: np.ndarray, mu: np.ndarray, emit_bonus: np.ndarray, rho: np.ndarray,
                  prior: np.ndarray, site_interval: np.ndarray, site_frac: np.ndarray,
                  tables: WindowTables | None = None,
                  loo_slots: tuple[int, int] | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Copied ALT probability and carrier features at the core sites of ``b`` queries, and
    the leave-one-out ALT probability at their slots.

    The leave-one-out probability at slot ``i`` is the copied ALT probability of the slot
    under the posterior with slot ``i``'s own emission removed — the mismatch penalty *and*
    the candidate-allele term ``emit_bonus`` — i.e. ``gamma[c, i] / emit[c, i]``
    renormalised over the valid candidates: the HMM's prediction of slot ``i`` from every
    other slot. It is defined the same way where the query is MASK at slot ``i`` (there the
    emission does not depend on the query's allele, but its candidate-allele term is still
    divided out), and is 0 where no candidate is valid.

    Args:
        query_tokens: int [b, m] 0 REF, 1 ALT, 2 MASK.
        cand_ids: int [b, k] reference haplotypes used as copying states (-1: none).
        ref_slots / ref_core: int8 [H, m] / [H, n] reference alleles (0/1) of the window.
        mu: float [b, m] mismatch penalty per slot.
        emit_bonus: float [b, m, 2] emission term by candidate allele (REF, ALT).
        rho: float [b, m] switch probability into slot i (``rho[:, 0]`` unused).
        prior: float [b, k] switch-target distribution (0 for invalid candidates).
        site_interval: int [n] interval (0..m) of each site, non-decreasing; the flanking
            slots are interval - 1 and interval, clipped to 0..m-1.
        site_frac: float [n] position between the left (0) and right (1) slot.
        tables: :func:`window_tables` of ``ref_slots``, ``ref_core`` and ``site_interval``
            (computed when not given; pass it to reuse it across the batches of a window).
        loo_slots: (lo, hi): compute the leave-one-out probability at slots lo..hi-1 only
            (0 elsewhere), e.g. the core's typed sites; None: every slot; (0, 0): none
            (an O(k) pass per slot saved).

    Returns:
        (p_copy float32 [b, n] clamped to [1e-5, 1 - 1e-5], carriers float32 [b, n, 5],
        p_slot_loo float32 [b, m] leave-one-out ALT probability at each slot, unclamped).
    """
    inputs, outputs = _kernel_args(query_tokens=query_tokens, cand_ids=cand_ids,
                                   ref_slots=ref_slots, ref_core=ref_core, mu=mu,
                                   emit_bonus=emit_bonus, rho=rho, prior=prior,
                                   site_interval=site_interval, site_frac=site_frac,
                                   tables=tables, loo_slots=loo_slots)
    if inputs is not None:
        _all_queries(*inputs, *outputs)
    return outputs


def _kernel_args(*, query_tokens: np.ndarray, cand_ids: np.ndarray, ref_slots: np.ndarray,
                 ref_core: np.ndarray, mu: np.ndarray, emit_bonus: np.ndarray, rho: np.ndarray,
                 prior: np.ndarray, site_interval: np.ndarray, site_frac: np.ndarray,
                 tables: WindowTables | None = None, loo_slots: tuple[int, int] | None = None,
                 site_outputs: bool = True
                 ) -> tuple[tuple | None, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(the kernel's input arguments, checked — None when there is nothing to compute: no
    slots and no sites —, its outputs p_out float32 [b, n], feat_out [b, n, 5] and loo_out
    [b, m] (zeros)); without ``site_outputs`` (the fused head keeps them per query) p_out and
    feat_out are [0, n] and [0, n, 5]."""
    b, k = cand_ids.shape
    n = site_interval.shape[0]
    m = query_tokens.shape[1]
    interval = np.asarray(site_interval, np.int64)
    rows = b if site_outputs else 0
    outputs = (np.empty((rows, n), np.float32), np.empty((rows, n, 5), np.float32),
               np.zeros((b, m), np.float32))
    if m == 0:
        if n == 0:
            return None, outputs
        raise ValueError("copy_features needs m >= 1 slots when there are core sites")
    if m > MAX_SLOTS:
        raise InputError(f"copy_features takes windows of at most {MAX_SLOTS:,} slots (typed "
                         f"sites), not {m:,}: use smaller windows.core_sites / flank_sites")
    if (np.diff(interval) < 0).any():
        raise ValueError("copy_features needs the sites sorted by interval")
    # sites of interval I are site_index[interval_start[I]:interval_start[I + 1]]
    interval_start = np.searchsorted(interval, np.arange(m + 2)).astype(np.int64)
    valid = cand_ids >= 0
    tab = tables if tables is not None else window_tables(ref_slots, ref_core, interval)
    if tab.n_slots != m or tab.hap_bits.shape[0] != ref_slots.shape[0] or n and (
            tab.first_interval != interval[0]
            or tab.pattern_id.shape != (ref_core.shape[0], interval[-1] - interval[0] + 1)):
        raise ValueError("copy_features: the window tables were built for other slots, sites "
                         "or haplotypes")
    inputs = (np.ascontiguousarray(query_tokens, np.int8),
            np.ascontiguousarray(np.where(valid, cand_ids, 0), np.int64), valid,
            tab.hap_bits, tab.first_interval, tab.pattern_id, tab.pattern_start,
            tab.alt_ptr, tab.alt_site, tab.hap_class, np.ascontiguousarray(mu, np.float32),
            np.ascontiguousarray(emit_bonus, np.float32), np.ascontiguousarray(rho, np.float32),
            np.ascontiguousarray(prior, np.float32), np.ascontiguousarray(site_frac, np.float32),
            interval_start, *(loo_slots if loo_slots is not None else (0, m)))
    return inputs, outputs
