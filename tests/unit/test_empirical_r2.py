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

