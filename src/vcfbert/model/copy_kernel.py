"""Fused inference kernel of the copying layer (numba): HMM, match runs and site features.

At inference the slow path (:meth:`vcfbert.model.network.VcfBert.forward`) materialises a dozen
``[b, k, n]`` tensors (candidates × core sites): the posterior interpolated to every site, the
candidates' alleles, their match runs. This kernel computes the same per-site quantities for
one query at a time, reading the candidates' alleles straight from the window's reference
arrays (int8), so nothing larger than ``[k, m]`` is ever held:

1. emissions ``log_emit[c, i] = -mu[i] * mismatch[c, i] + s[i, allele[c, i]]`` (invalid
   candidates get ``-1e4``), normalised per slot as in :func:`vcfbert.model.hmm.forward_backward`;
2. the scaled forward–backward posterior ``gamma [k, m]``;
3. left/right match runs per interval (:func:`vcfbert.model.features.interval_runs`);
4. per core site, over the candidates: the copied ALT probability (the posterior interpolated
   between the flanking slots) and the five carrier features of
   :func:`vcfbert.model.features.carrier_features`.

Dimensions: ``b`` queries, ``k`` candidates, ``m`` slots, ``n`` core sites, ``H`` reference
haplotypes. Tested against the torch path on random inputs (``tests/unit/test_fast_inference.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

MASK_TOKEN = 2


# reassociation lets LLVM vectorise the sums over candidates; no flag that assumes finite
# values (the emission maximum starts at -inf)
FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, fastmath=FAST)
def _one_query(qtok, cand, valid, ref_slots, ref_core, mu, s, rho, prior, site_frac,
               interval_start, p_out, feat_out):
    k = cand.shape[0]
    m = qtok.shape[0]
    n = site_frac.shape[0]
    f32 = np.float32
    # candidates' alleles at the slots, slot-major [m, k] (contiguous over candidates)
    allele = np.zeros((m, k), np.int8)
    for c in range(k):
        if valid[c]:
            row = ref_slots[cand[c]]
            for i in range(m):
                allele[i, c] = row[i]
    # emissions take two values per slot (candidate carries REF or ALT); normalised by the
    # largest among the valid candidates, as forward_backward does per slot
    emit = np.empty((m, k), f32)
    for i in range(m):
        le0 = s[i, 0]
        le1 = s[i, 1]
        if qtok[i] != MASK_TOKEN:
            if qtok[i] == 0:
                le1 -= mu[i]
            else:
                le0 -= mu[i]
        has0 = False
        has1 = False
        for c in range(k):
            if valid[c]:
                if allele[i, c] == 1:
                    has1 = True
                else:
                    has0 = True
        best = -np.inf
        if has0:
            best = le0
        if has1 and le1 > best:
            best = le1
        if not (has0 or has1):
            best = -1e4
        e0 = f32(math.exp(le0 - best))
        e1 = f32(math.exp(le1 - best))
        einv = f32(math.exp(-1e4 - best))
        for c in range(k):
            emit[i, c] = (e1 if allele[i, c] == 1 else e0) if valid[c] else einv
    # scaled forward pass
    gamma = np.empty((m, k), f32)
    tot = f32(0.0)
    for c in range(k):
        x = prior[c] * emit[0, c]
        gamma[0, c] = x
        tot += x
    inv = f32(1.0) / max(tot, f32(1e-30))
    for c in range(k):
        gamma[0, c] *= inv
    for i in range(1, m):
        r = rho[i]
        q = f32(1.0) - r
        tot = f32(0.0)
        for c in range(k):
            x = (gamma[i - 1, c] * q + r * prior[c]) * emit[i, c]
            gamma[i, c] = x
            tot += x
        inv = f32(1.0) / max(tot, f32(1e-30))
        for c in range(k):
            gamma[i, c] *= inv
    # scaled backward pass, multiplied into the forward probabilities: the posterior
    y = np.ones(k, f32)
    ey = np.empty(k, f32)
    for i in range(m - 1, -1, -1):
        if i < m - 1:
            r = rho[i + 1]
            q = f32(1.0) - r
            pe = f32(0.0)
            for c in range(k):
                ey[c] = emit[i + 1, c] * y[c]
                pe += prior[c] * ey[c]
            tot = f32(0.0)
            for c in range(k):
                y[c] = q * ey[c] + r * pe
                tot += y[c]
            inv = f32(1.0) / max(tot, f32(1e-30))
            for c in range(k):
                y[c] *= inv
        tot = f32(0.0)
        for c in range(k):
            gamma[i, c] *= y[c]
            tot += gamma[i, c]
        inv = f32(1.0) / max(tot, f32(1e-30))
        for c in range(k):
            gamma[i, c] *= inv
    # per candidate (rows of the transposed posterior and alleles): match runs per interval,
    # then its contribution to every core site; the sites of one interval are contiguous and
    # share the flanking slots and the run
    gamma_c = gamma.T.copy()  # [k, m]
    allele_c = allele.T.copy()  # [k, m]
    log_run = np.empty(2 * m + 2, f32)  # log1p(run) / 6 for every possible run length
    for r in range(2 * m + 2):
        log_run[r] = f32(math.log1p(r) / 6.0)
    p = np.zeros(n, f32)
    best_alt = np.zeros(n, f32)
    best_ref = np.zeros(n, f32)
    n_alt = np.zeros(n, f32)
    w_alt = np.zeros(n, f32)
    w_alt_lr = np.zeros(n, f32)
    run_left = np.empty(m + 1, np.int32)  # run_left[i + 1]: inclusive left run at slot i
    g_site = np.empty(n, f32)
    v_site = np.empty(n, f32)
    for c in range(k):
        if not valid[c]:
            continue
        ac = allele_c[c]
        gc = gamma_c[c]
        run = 0
        run_left[0] = 0
        for i in range(m):
            q = qtok[i]
            if q != MASK_TOKEN:
                run = 0 if ac[i] != q else run + 1
            run_left[i + 1] = run
        run = 0
        for interval in range(m, -1, -1):
            if interval < m:
                q = qtok[interval]
                if q != MASK_TOKEN:
                    run = 0 if ac[interval] != q else run + 1
            lo = interval_start[interval]
            hi = interval_start[interval + 1]
            if lo == hi:
                continue
            v = log_run[run_left[interval] + run]
            gl = gc[max(interval - 1, 0)]
            d = gc[min(interval, m - 1)] - gl
            for j in range(lo, hi):
                g_site[j] = gl + d * site_frac[j]
                v_site[j] = v
        row = ref_core[cand[c]]
        for j in range(n):
            a = f32(row[j])
            v = v_site[j]
            ag = a * g_site[j]
            p[j] += ag
            n_alt[j] += a
            w_alt[j] += ag
            w_alt_lr[j] += ag * v
            best_alt[j] = max(best_alt[j], a * v)
            best_ref[j] = max(best_ref[j], (f32(1.0) - a) * v)
    for j in range(n):
        p_out[j] = min(max(p[j], f32(1e-5)), f32(1.0 - 1e-5))
        feat_out[j, 0] = best_alt[j]
        feat_out[j, 1] = best_ref[j]
        feat_out[j, 2] = f32(math.log1p(n_alt[j]) / 5.0)
        feat_out[j, 3] = f32(1.0) if n_alt[j] > 0 else f32(0.0)
        feat_out[j, 4] = w_alt_lr[j] / max(w_alt[j], f32(1e-6))


@numba.njit(cache=True, nogil=True)
def _all_queries(qtok, cand, valid, ref_slots, ref_core, mu, s, rho, prior, site_frac,
                 interval_start, p_out, feat_out):
    for b in range(qtok.shape[0]):
        _one_query(qtok[b], cand[b], valid[b], ref_slots, ref_core, mu[b], s[b], rho[b],
                   prior[b], site_frac, interval_start, p_out[b], feat_out[b])


def copy_features(*, query_tokens: np.ndarray, cand_ids: np.ndarray, ref_slots: np.ndarray,
                  ref_core: np.ndarray, mu: np.ndarray, emit_bonus: np.ndarray, rho: np.ndarray,
                  prior: np.ndarray, site_left: np.ndarray, site_right: np.ndarray,
                  site_interval: np.ndarray, site_frac: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Copied ALT probability and carrier features at the core sites of ``b`` queries.

    Args:
        query_tokens: int [b, m] 0 REF, 1 ALT, 2 MASK.
        cand_ids: int [b, k] reference haplotypes used as copying states (-1: none).
        ref_slots / ref_core: int8 [H, m] / [H, n] reference alleles (0/1) of the window.
        mu: float [b, m] mismatch penalty per slot.
        emit_bonus: float [b, m, 2] emission term by candidate allele (REF, ALT).
        rho: float [b, m] switch probability into slot i (``rho[:, 0]`` unused).
        prior: float [b, k] switch-target distribution (0 for invalid candidates).
        site_left / site_right / site_interval: int [n] flanking slots and interval per site.
        site_frac: float [n] position between the left (0) and right (1) slot.

    Returns:
        (p_copy float32 [b, n] clamped to [1e-5, 1 - 1e-5], carriers float32 [b, n, 5]).
    """
    b, k = cand_ids.shape
    n = site_left.shape[0]
    m = query_tokens.shape[1]
    p_out = np.empty((b, n), np.float32)
    feat_out = np.empty((b, n, 5), np.float32)
    if n == 0:
        return p_out, feat_out
    interval = np.asarray(site_interval, np.int64)
    if m == 0 or (np.diff(interval) < 0).any():
        raise ValueError("copy_features needs m >= 1 slots and sites sorted by interval")
    if not (np.array_equal(site_left, np.clip(interval - 1, 0, m - 1))
            and np.array_equal(site_right, np.clip(interval, 0, m - 1))):
        raise ValueError("site_left / site_right must be the slots flanking site_interval")
    # sites of interval I are site_index[interval_start[I]:interval_start[I + 1]]
    interval_start = np.searchsorted(interval, np.arange(m + 2)).astype(np.int64)
    valid = cand_ids >= 0
    _all_queries(np.ascontiguousarray(query_tokens, np.int8),
                 np.ascontiguousarray(np.where(valid, cand_ids, 0), np.int64), valid,
                 np.ascontiguousarray(ref_slots, np.int8), np.ascontiguousarray(ref_core, np.int8),
                 np.ascontiguousarray(mu, np.float32), np.ascontiguousarray(emit_bonus, np.float32),
                 np.ascontiguousarray(rho, np.float32), np.ascontiguousarray(prior, np.float32),
                 np.ascontiguousarray(site_frac, np.float32), interval_start, p_out, feat_out)
    return p_out, feat_out
