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
   :func:`vcfbert.model.features.carrier_features`;
5. per slot, the leave-one-out ALT probability: the posterior with the slot's own emission
   divided out (:func:`vcfbert.model.hmm.leave_one_out_alt` is the torch twin), from which
   INFO/ER2 is computed at typed sites.

Dimensions: ``b`` queries, ``k`` candidates, ``m`` slots, ``n`` core sites, ``H`` reference
haplotypes. Tested against the torch path on random inputs (``tests/unit/test_fast_inference.py``).
"""

from __future__ import annotations

import math

import numba
import numpy as np

MASK_TOKEN = 2
LEVELS = 4  # distinct run lengths tracked per interval for the best REF carrier


def alt_sites(ref_core: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ALT alleles of a window's core as compressed rows: haplotype ``h`` carries ALT at
    core sites ``site[ptr[h]:ptr[h + 1]]`` (sorted). (ptr int64 [H + 1], site int32 [nnz])."""
    hap, site = np.nonzero(ref_core == 1)
    ptr = np.zeros(ref_core.shape[0] + 1, np.int64)
    np.cumsum(np.bincount(hap, minlength=ref_core.shape[0]), out=ptr[1:])
    return ptr, site.astype(np.int32)


# reassociation lets LLVM vectorise the sums over candidates; no flag that assumes finite
# values (the emission maximum starts at -inf)
FAST = {"reassoc", "contract", "nsz", "arcp"}


@numba.njit(cache=True, nogil=True, fastmath=FAST)
def _one_query(qtok, cand, valid, ref_slots, ref_core, alt_ptr, alt_site, mu, s, rho, prior,
               site_frac, site_interval, interval_start, p_out, feat_out, loo_out, loo_lo,
               loo_hi):
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
    valid_f = np.empty(k, f32)
    for c in range(k):
        valid_f[c] = f32(1.0) if valid[c] else f32(0.0)
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
        # leave-one-out at slot i: the posterior without slot i's emission is proportional to
        # the forward prediction into slot i (before its emission) times the backward term;
        # gamma[i - 1] still holds forward probabilities here (the pass runs from the end).
        # Equal to gamma / emit renormalised, without dividing by an emission that may
        # underflow.
        if loo_lo <= i < loo_hi:  # only the slots the caller asked for (the core's)
            if i == 0:
                r = f32(1.0)  # no previous slot: the prediction is the prior
                q = f32(0.0)
            else:
                r = rho[i]
                q = f32(1.0) - r
            prev = gamma[max(i - 1, 0)]
            a_all = f32(0.0)
            a_alt = f32(0.0)
            for c in range(k):  # allele is 0 for invalid candidates
                w = (prev[c] * q + r * prior[c]) * y[c] * valid_f[c]
                a_all += w
                a_alt += w * f32(allele[i, c])
            loo_out[i] = a_alt / a_all if a_all > f32(0.0) else f32(0.0)
        tot = f32(0.0)
        for c in range(k):
            gamma[i, c] *= y[c]
            tot += gamma[i, c]
        inv = f32(1.0) / max(tot, f32(1e-30))
        for c in range(k):
            gamma[i, c] *= inv
    # match runs: run[c, I] = left run ending at slot I-1 + right run starting at slot I
    allele_c = allele.T.copy()  # [k, m]
    run = np.zeros((k, m + 1), np.int32)
    for c in range(k):
        if not valid[c]:
            continue
        ac = allele_c[c]
        r = 0
        for i in range(m):
            q = qtok[i]
            if q != MASK_TOKEN:
                r = 0 if ac[i] != q else r + 1
            run[c, i + 1] = r
        r = 0
        for i in range(m - 1, -1, -1):
            q = qtok[i]
            if q != MASK_TOKEN:
                r = 0 if ac[i] != q else r + 1
            run[c, i] += r
    log_run = np.empty(2 * m + 2, f32)  # log1p(run) / 6 for every possible run length
    for r in range(2 * m + 2):
        log_run[r] = f32(math.log1p(r) / 6.0)
    # per interval with sites: the LEVELS largest distinct runs and how many candidates have
    # each (the best REF carrier at a site is found among them, see below)
    level = np.full((m + 1, LEVELS), -1, np.int32)
    level_n = np.zeros((m + 1, LEVELS), np.int32)
    n_valid = 0
    for c in range(k):
        if not valid[c]:
            continue
        n_valid += 1
        for interval in range(m + 1):
            if interval_start[interval] == interval_start[interval + 1]:
                continue
            r = run[c, interval]
            for t in range(LEVELS):
                if level[interval, t] == r:
                    level_n[interval, t] += 1
                    break
                if r > level[interval, t]:  # insert, shifting the lower levels down
                    for u in range(LEVELS - 1, t, -1):
                        level[interval, u] = level[interval, u - 1]
                        level_n[interval, u] = level_n[interval, u - 1]
                    level[interval, t] = r
                    level_n[interval, t] = 1
                    break
    # ALT carriers only (a few % of candidate x site pairs): copied probability, ALT features,
    # and how many ALT carriers sit on each top level
    gamma_c = gamma.T.copy()  # [k, m]
    p = np.zeros(n, f32)
    best_alt = np.zeros(n, f32)
    n_alt = np.zeros(n, np.int32)
    w_alt = np.zeros(n, f32)
    w_alt_lr = np.zeros(n, f32)
    alt_on_level = np.zeros((n, LEVELS), np.int32)
    for c in range(k):
        if not valid[c]:
            continue
        h = cand[c]
        gc = gamma_c[c]
        for e in range(alt_ptr[h], alt_ptr[h + 1]):
            j = alt_site[e]
            interval = site_interval[j]
            r = run[c, interval]
            v = log_run[r]
            gl = gc[max(interval - 1, 0)]
            g = gl + (gc[min(interval, m - 1)] - gl) * site_frac[j]
            p[j] += g
            n_alt[j] += 1
            w_alt[j] += g
            w_alt_lr[j] += g * v
            best_alt[j] = max(best_alt[j], v)
            for t in range(LEVELS):
                if level[interval, t] == r:
                    alt_on_level[j, t] += 1
                    break
    # best REF carrier: the top level that not only ALT carriers occupy; when ALT carriers fill
    # every tracked level (rare), a scan of the candidates
    best_ref = np.zeros(n, f32)
    for j in range(n):
        if n_alt[j] == n_valid:
            continue  # no REF carrier: 0
        interval = site_interval[j]
        found = False
        for t in range(LEVELS):
            if level[interval, t] < 0:
                break
            if level_n[interval, t] > alt_on_level[j, t]:
                best_ref[j] = log_run[level[interval, t]]
                found = True
                break
        if not found:
            for c in range(k):
                if valid[c] and ref_core[cand[c], j] == 0:
                    best_ref[j] = max(best_ref[j], log_run[run[c, interval]])
    for j in range(n):
        p_out[j] = min(max(p[j], f32(1e-5)), f32(1.0 - 1e-5))
        feat_out[j, 0] = best_alt[j]
        feat_out[j, 1] = best_ref[j]
        feat_out[j, 2] = f32(math.log1p(f32(n_alt[j])) / 5.0)
        feat_out[j, 3] = f32(1.0) if n_alt[j] > 0 else f32(0.0)
        feat_out[j, 4] = w_alt_lr[j] / max(w_alt[j], f32(1e-6))


@numba.njit(cache=True, nogil=True)
def _all_queries(qtok, cand, valid, ref_slots, ref_core, alt_ptr, alt_site, mu, s, rho, prior,
                 site_frac, site_interval, interval_start, p_out, feat_out, loo_out, loo_lo,
                 loo_hi):
    for b in range(qtok.shape[0]):
        _one_query(qtok[b], cand[b], valid[b], ref_slots, ref_core, alt_ptr, alt_site, mu[b],
                   s[b], rho[b], prior[b], site_frac, site_interval, interval_start, p_out[b],
                   feat_out[b], loo_out[b], loo_lo, loo_hi)


def copy_features(*, query_tokens: np.ndarray, cand_ids: np.ndarray, ref_slots: np.ndarray,
                  ref_core: np.ndarray, mu: np.ndarray, emit_bonus: np.ndarray, rho: np.ndarray,
                  prior: np.ndarray, site_interval: np.ndarray, site_frac: np.ndarray,
                  core_alt: tuple[np.ndarray, np.ndarray] | None = None,
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
        core_alt: :func:`alt_sites` of ``ref_core`` (computed when not given; pass it to reuse
            it across the batches of a window).
        loo_slots: (lo, hi): compute the leave-one-out probability at slots lo..hi-1 only
            (0 elsewhere), e.g. the core's typed sites; None: every slot; (0, 0): none
            (an O(k) pass per slot saved).

    Returns:
        (p_copy float32 [b, n] clamped to [1e-5, 1 - 1e-5], carriers float32 [b, n, 5],
        p_slot_loo float32 [b, m] leave-one-out ALT probability at each slot, unclamped).
    """
    b, k = cand_ids.shape
    n = site_interval.shape[0]
    m = query_tokens.shape[1]
    p_out = np.empty((b, n), np.float32)
    feat_out = np.empty((b, n, 5), np.float32)
    loo_out = np.zeros((b, m), np.float32)
    interval = np.asarray(site_interval, np.int64)
    if m == 0:
        if n == 0:
            return p_out, feat_out, loo_out
        raise ValueError("copy_features needs m >= 1 slots when there are core sites")
    if (np.diff(interval) < 0).any():
        raise ValueError("copy_features needs the sites sorted by interval")
    # sites of interval I are site_index[interval_start[I]:interval_start[I + 1]]
    interval_start = np.searchsorted(interval, np.arange(m + 2)).astype(np.int64)
    valid = cand_ids >= 0
    ptr, site = core_alt if core_alt is not None else alt_sites(ref_core)
    _all_queries(np.ascontiguousarray(query_tokens, np.int8),
                 np.ascontiguousarray(np.where(valid, cand_ids, 0), np.int64), valid,
                 np.ascontiguousarray(ref_slots, np.int8), np.ascontiguousarray(ref_core, np.int8),
                 ptr, site,
                 np.ascontiguousarray(mu, np.float32), np.ascontiguousarray(emit_bonus, np.float32),
                 np.ascontiguousarray(rho, np.float32), np.ascontiguousarray(prior, np.float32),
                 np.ascontiguousarray(site_frac, np.float32), interval, interval_start, p_out,
                 feat_out, loo_out, *(loo_slots if loo_slots is not None else (0, m)))
    return p_out, feat_out, loo_out
