"""INFO/ER2 at typed sites: the leave-one-out ALT probability of the copying HMM (fused kernel
and torch twin against a brute-force reference), and the ER2 the imputed VCF carries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcfbert.model.copy_kernel import copy_features
from vcfbert.model.hmm import forward_backward, forward_backward_reference, leave_one_out_alt
from vcfbert.tokens import MASK


def random_copying_inputs(rng: np.random.Generator, *, b: int, k: int, m: int, n_h: int,
                          mu_max: float = 12.0) -> dict[str, np.ndarray]:
    """Random HMM inputs for ``b`` queries: tokens [b, m] (some MASK), candidates [b, k]
    (some -1), mu [b, m], emission terms [b, m, 2], rho [b, m], prior [b, k], reference
    alleles at the slots [n_h, m]."""
    ref_slots = (rng.random((n_h, m)) < rng.uniform(0.05, 0.6, m)).astype(np.int8)
    tokens = (rng.random((b, m)) < 0.3).astype(np.int64)
    tokens[rng.random((b, m)) < 0.2] = MASK
    cand = np.stack([rng.permutation(n_h)[:k] for _ in range(b)]).astype(np.int64)
    cand[0, -3:] = -1  # fewer candidates than k for one query
    cand[1, 2] = -1  # a hole in the middle
    valid = cand >= 0
    logits = np.where(valid, rng.normal(size=(b, k)), -np.inf)
    prior = np.exp(logits - logits.max(1, keepdims=True))
    prior /= prior.sum(1, keepdims=True)
    return {"tokens": tokens, "cand": cand, "ref_slots": ref_slots,
            "mu": rng.uniform(0.5, mu_max, (b, m)).astype(np.float32),
            "s": rng.normal(scale=0.7, size=(b, m, 2)).astype(np.float32),
            "rho": rng.uniform(0.001, 0.3, (b, m)).astype(np.float32),
            "prior": prior.astype(np.float32)}


def log_emissions(x: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(log_emit float64 [b, k, m] as VcfBert.forward builds it, candidate alleles [b, k, m])."""
    alleles = x["ref_slots"][np.where(x["cand"] >= 0, x["cand"], 0)].astype(np.int64)
    tok = x["tokens"][:, None, :]
    mismatch = (alleles != tok) & (tok != MASK)
    s_c = np.take_along_axis(x["s"][:, None].repeat(alleles.shape[1], 1),
                             alleles[..., None], 3)[..., 0]
    return -x["mu"][:, None, :].astype(np.float64) * mismatch + s_c, alleles


def brute_force_loo(x: dict[str, np.ndarray]) -> np.ndarray:
    """float64 [b, m]: for each slot i, the HMM run again with slot i's emission set to 1
    (log 0) over the valid candidates only, and the ALT carriers' posterior mass at i — the
    definition of the leave-one-out probability, one unscaled forward-backward per slot."""
    log_emit, alleles = log_emissions(x)
    b, k, m = log_emit.shape
    out = np.zeros((b, m))
    for q in range(b):
        ok = x["cand"][q] >= 0
        for i in range(m):
            le = log_emit[q][ok].copy()
            le[:, i] = 0.0
            g = forward_backward_reference(le, x["rho"][q].astype(np.float64),
                                           x["prior"][q][ok].astype(np.float64))
            out[q, i] = (g[:, i] * alleles[q][ok, i]).sum()
    return out


def kernel_loo(x: dict[str, np.ndarray], n_core: int = 0) -> np.ndarray:
    m = x["tokens"].shape[1]
    n_h = x["ref_slots"].shape[0]
    ref_core = np.zeros((n_h, n_core), np.int8)
    interval = np.sort(np.random.default_rng(0).integers(0, m + 1, n_core))
    _, _, loo = copy_features(
        query_tokens=x["tokens"], cand_ids=x["cand"], ref_slots=x["ref_slots"],
        ref_core=ref_core, mu=x["mu"], emit_bonus=x["s"], rho=x["rho"], prior=x["prior"],
        site_interval=interval, site_frac=np.full(n_core, 0.5, np.float32))
    return loo


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_leave_one_out_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    x = random_copying_inputs(rng, b=4, k=9, m=14, n_h=30)
    ref = brute_force_loo(x)
    got = kernel_loo(x, n_core=5)
    assert got.shape == ref.shape == (4, 14) and got.dtype == np.float32
    assert ref.std() > 0.05  # not a degenerate comparison
    np.testing.assert_allclose(got, ref, atol=2e-5)


def test_kernel_leave_one_out_ignores_the_slots_own_allele():
    """The query's own token at slot i (REF, ALT or MASK) changes every other slot's
    emission but not the leave-one-out value at i; the plain posterior does change."""
    rng = np.random.default_rng(4)
    x = random_copying_inputs(rng, b=3, k=10, m=12, n_h=25, mu_max=20.0)
    base = kernel_loo(x)
    for tok in (0, 1, MASK):
        y = {**x, "tokens": x["tokens"].copy()}
        y["tokens"][:, 5] = tok
        np.testing.assert_allclose(kernel_loo(y)[:, 5], base[:, 5], atol=2e-6)


def test_kernel_leave_one_out_survives_large_mismatch_penalties():
    """mu up to 200: a mismatching candidate's emission underflows float32 (exp(-200)), so
    dividing the posterior by it would give 0/0; the kernel never divides by an emission."""
    rng = np.random.default_rng(6)
    x = random_copying_inputs(rng, b=3, k=8, m=10, n_h=20)
    x["mu"] = rng.uniform(100.0, 200.0, x["mu"].shape).astype(np.float32)
    got = kernel_loo(x)
    assert np.isfinite(got).all() and ((got >= 0) & (got <= 1)).all()
    np.testing.assert_allclose(got, brute_force_loo(x), atol=1e-4)


def test_no_valid_candidate_gives_zero():
    rng = np.random.default_rng(7)
    x = random_copying_inputs(rng, b=2, k=5, m=6, n_h=10)
    x["cand"][1] = -1
    x["prior"][1] = 0.0
    got = kernel_loo(x)
    assert (got[1] == 0).all() and np.isfinite(got).all()


@pytest.mark.parametrize("seed", [0, 3])
def test_torch_leave_one_out_matches_brute_force(seed):
    """The torch twin (used by VcfBert.logits_and_slot_loo) on forward_backward's posterior in
    float64: gamma / emit, renormalised."""
    rng = np.random.default_rng(seed)
    x = random_copying_inputs(rng, b=4, k=9, m=14, n_h=30)
    log_emit, alleles = log_emissions(x)
    valid = torch.from_numpy(x["cand"] >= 0)
    le = torch.from_numpy(log_emit)
    gamma = forward_backward(le, torch.from_numpy(x["rho"]).double(),
                             torch.from_numpy(x["prior"]).double(), valid)
    got = leave_one_out_alt(gamma, le, torch.from_numpy(alleles), valid)
    np.testing.assert_allclose(got.numpy(), brute_force_loo(x), atol=1e-9)


def direct_er2(loo: np.ndarray, calls: np.ndarray, male: np.ndarray,
               haploid_variant: np.ndarray) -> np.ndarray:
    """ER2 [v] one sample and one variant at a time (NaN where undefined)."""
    n_t, v = loo.shape[0] // 2, loo.shape[1]
    out = np.full(v, np.nan)
    for j in range(v):
        xs, ys = [], []
        for t in range(n_t):
            p1, p2 = float(loo[2 * t, j]), float(loo[2 * t + 1, j])
            a1, a2 = calls[2 * t, j], calls[2 * t + 1, j]
            if np.isnan(p1) or np.isnan(p2):
                continue
            if male[t] and haploid_variant[j]:  # one allele, counted once
                if a1 >= 0:
                    xs.append(p1)
                    ys.append(a1)
            elif a1 >= 0 and a2 >= 0:
                xs.append(p1 + p2)
                ys.append(a1 + a2)
        if len(xs) >= 2 and np.std(xs) > 0 and np.std(ys) > 0:
            out[j] = np.corrcoef(xs, ys)[0, 1] ** 2
    return out


def test_er2_sums_over_sample_blocks_match_a_direct_computation():
    """Diploid samples, haploid males on chrX (outside the PAR: one allele, dose in [0, 1]),
    missing calls, unknown LOO values, a monomorphic and an all-missing site; summed over two
    blocks of samples."""
    from vcfbert.imputed_vcf import empirical_r2, empirical_r2_sums

    rng = np.random.default_rng(9)
    n_t, v = 30, 12
    truth = (rng.random((2 * n_t, v)) < rng.uniform(0.1, 0.6, v)).astype(np.int8)
    loo = np.clip(truth + rng.normal(scale=0.4, size=truth.shape), 0, 1).astype(np.float32)
    male = rng.random(n_t) < 0.4
    haploid_variant = np.arange(v) >= 3  # variants 0-2: a pseudo-autosomal region
    for t in np.flatnonzero(male):  # stores hold a male's allele twice
        truth[2 * t + 1, haploid_variant] = truth[2 * t, haploid_variant]
        loo[2 * t + 1, haploid_variant] = loo[2 * t, haploid_variant]
    calls = truth.copy()
    calls[rng.random(calls.shape) < 0.1] = -1
    calls[:, 5] = 0  # monomorphic: undefined
    calls[:, 6] = -1  # nobody observed: undefined
    loo[4, 7] = np.nan  # a sample whose LOO is unknown does not count
    sums = (empirical_r2_sums(loo[:20], calls[:20], male[:10], haploid_variant)
            + empirical_r2_sums(loo[20:], calls[20:], male[10:], haploid_variant))
    got = empirical_r2(sums)
    expect = direct_er2(loo, calls, male, haploid_variant)
    assert np.isnan(got[[5, 6]]).all() and np.isfinite(got[[0, 3, 7, 11]]).all()
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-12)
    # the males' haploid cells matter: counted as diploid the result differs
    diploid = empirical_r2(empirical_r2_sums(loo, calls, None, None))
    assert not np.allclose(diploid[3:][np.isfinite(got[3:])],
                           got[3:][np.isfinite(got[3:])], atol=1e-3)
