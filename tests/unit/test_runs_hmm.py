"""Match runs and the copying HMM: fast implementations against slow obvious ones."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcfbert.model import hmm
from vcfbert.model.features import interval_runs as torch_runs
from vcfbert.model.features import run_totals
from vcfbert.model.hmm import (
    forward_backward,
    forward_backward_autograd,
    forward_backward_reference,
)
from vcfbert.runs import interval_runs, interval_runs_reference


def test_numpy_runs_match_reference():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m = int(rng.integers(1, 15))
        q = rng.integers(-1, 2, m)
        c = rng.integers(0, 2, (5, m))
        left, right = interval_runs(q, c)
        rl, rr = interval_runs_reference(q, c)
        assert np.array_equal(left, rl) and np.array_equal(right, rr)


def test_torch_runs_match_numpy():
    rng = np.random.default_rng(1)
    q = rng.integers(-1, 2, (3, 12))
    c = rng.integers(0, 2, (3, 6, 12))
    obs = q >= 0
    mismatch = (c != q[:, None, :]) & obs[:, None, :]
    tl, tr = torch_runs(torch.from_numpy(mismatch), torch.from_numpy(obs))
    for b in range(3):
        nl, nr = interval_runs(q[b], c[b])
        assert np.array_equal(tl[b].numpy(), nl) and np.array_equal(tr[b].numpy(), nr)


def test_compiled_run_totals_equal_the_torch_runs():
    """The training forward's run totals per site (compiled on a CPU) against the torch runs
    indexed by each site's interval, on random queries with unobserved slots."""
    rng = np.random.default_rng(3)
    for b, k, m, n in [(3, 7, 12, 20), (1, 1, 1, 3), (2, 5, 30, 0), (4, 9, 17, 40)]:
        q = rng.integers(-1, 2, (b, m))
        c = rng.integers(0, 2, (b, k, m))
        obs = q >= 0
        mismatch = torch.from_numpy((c != q[:, None, :]) & obs[:, None, :])
        site_interval = torch.from_numpy(np.sort(rng.integers(0, m + 1, n)))
        left, right = torch_runs(mismatch, torch.from_numpy(obs))
        want = (left + right).index_select(2, site_interval).float()
        got = run_totals(mismatch, torch.from_numpy(obs), site_interval)
        assert got.dtype == torch.float32 and got.shape == (b, k, n)
        assert torch.equal(got, want)


@pytest.fixture(params=["compiled", "torch"])
def hmm_path(request, monkeypatch):
    """Each HMM test runs through the compiled CPU passes and through the torch steps (what a
    GPU runs)."""
    monkeypatch.setattr(hmm, "COMPILED_ON_CPU", request.param == "compiled")
    return request.param


def test_forward_backward_matches_reference(hmm_path):
    rng = np.random.default_rng(2)
    b, k, m = 3, 5, 9
    log_emit = rng.normal(size=(b, k, m))
    rho = rng.uniform(0.01, 0.5, size=(b, m))
    prior = rng.dirichlet(np.ones(k), size=b)
    got = forward_backward(torch.tensor(log_emit), torch.tensor(rho), torch.tensor(prior))
    for i in range(b):
        ref = forward_backward_reference(log_emit[i], rho[i], prior[i])
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-6, atol=1e-9)


def test_forward_backward_ignores_invalid_candidates(hmm_path):
    log_emit = torch.zeros(1, 3, 4)
    rho = torch.full((1, 4), 0.1)
    prior = torch.full((1, 3), 1 / 3)
    valid = torch.tensor([[True, True, False]])
    g = forward_backward(log_emit, rho, prior, valid)
    assert torch.allclose(g.sum(1), torch.ones(1, 4))
    assert float(g[0, 2].max()) < 1e-3


def _hmm_inputs(seed: int, b: int, k: int, m: int, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    log_emit = (torch.randn(b, k, m, generator=g, dtype=dtype) * 3).requires_grad_()
    rho = (torch.rand(b, m, generator=g, dtype=dtype) * 0.4 + 1e-3).requires_grad_()
    prior = torch.softmax(torch.randn(b, k, generator=g, dtype=dtype), 1).requires_grad_()
    valid = torch.rand(b, k, generator=g) > 0.2
    valid[:, 0] = True
    return log_emit, rho, prior, valid


def _posterior_and_grads(fn, log_emit, rho, prior, valid, weight):
    """[posterior, then the gradients of (posterior * weight).sum() with respect to the
    log-emissions, switch rates and prior] through ``fn`` (a forward_backward)."""
    for t in (log_emit, rho, prior):
        t.grad = None
    gamma = fn(log_emit, rho, prior, valid)
    (gamma * weight).sum().backward()
    return [gamma.detach().clone(), log_emit.grad.clone(), rho.grad.clone(), prior.grad.clone()]


def test_hand_written_backward_passes_gradcheck(hmm_path):
    """The hand-written reverse pass of forward_backward against finite differences."""
    log_emit, rho, prior, valid = _hmm_inputs(3, 2, 4, 6)
    assert torch.autograd.gradcheck(lambda le, r, p: forward_backward(le, r, p, valid),
                                    (log_emit, rho, prior), eps=1e-6, atol=1e-6)


def test_hand_written_backward_equals_autograd(hmm_path):
    """Same posterior and gradients (log-emissions, switch rates, prior) as autograd through
    every step, on random inputs with invalid candidates, in float64 and float32."""
    for seed, (b, k, m), dtype, tol in [(4, (3, 7, 11), torch.float64, 1e-10),
                                        (5, (4, 64, 40), torch.float32, 2e-4)]:
        log_emit, rho, prior, valid = _hmm_inputs(seed, b, k, m, dtype)
        weight = torch.randn(b, k, m, dtype=dtype, generator=torch.Generator().manual_seed(9))
        got = [_posterior_and_grads(fn, log_emit, rho, prior, valid, weight)
               for fn in (forward_backward, forward_backward_autograd)]
        for fast, slow in zip(*got, strict=True):
            scale = float(slow.abs().max()) + 1.0
            assert float((fast - slow).abs().max()) <= tol * scale
        assert float(got[0][1][~valid].abs().max()) == 0.0  # no gradient to absent candidates


def test_compiled_passes_equal_the_torch_steps_at_training_size(monkeypatch):
    """Posterior and gradients of the compiled CPU passes against the torch steps, in float32
    at a training batch's shape (k 384): equal up to rounding."""
    log_emit, rho, prior, valid = _hmm_inputs(6, 3, 384, 120, torch.float32)
    weight = torch.randn(3, 384, 120, generator=torch.Generator().manual_seed(10))
    got = []
    for compiled in (True, False):
        monkeypatch.setattr(hmm, "COMPILED_ON_CPU", compiled)
        got.append(_posterior_and_grads(forward_backward, log_emit, rho, prior, valid, weight))
    for fast, slow in zip(*got, strict=True):
        scale = float(slow.abs().max()) + 1e-12
        assert float((fast - slow).abs().max()) <= 1e-4 * scale


def test_compiled_passes_do_not_depend_on_the_threads(monkeypatch):
    """The queries split over threads give the same posterior and gradients, bit for bit, as
    one thread (each query's arithmetic is its own)."""
    log_emit, rho, prior, valid = _hmm_inputs(7, 5, 33, 25, torch.float32)
    weight = torch.randn(5, 33, 25, generator=torch.Generator().manual_seed(11))
    got = []
    for threads in (1, 3):
        monkeypatch.setattr(torch, "get_num_threads", lambda n=threads: n)
        got.append(_posterior_and_grads(forward_backward, log_emit, rho, prior, valid, weight))
    for one, several in zip(*got, strict=True):
        assert torch.equal(one, several)
