"""Match runs and the copying HMM: fast implementations against slow obvious ones."""

from __future__ import annotations

import numpy as np
import torch

from vcfbert.model.features import interval_runs as torch_runs
from vcfbert.model.hmm import forward_backward, forward_backward_reference
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


def test_forward_backward_matches_reference():
    rng = np.random.default_rng(2)
    b, k, m = 3, 5, 9
    log_emit = rng.normal(size=(b, k, m))
    rho = rng.uniform(0.01, 0.5, size=(b, m))
    prior = rng.dirichlet(np.ones(k), size=b)
    got = forward_backward(torch.tensor(log_emit), torch.tensor(rho), torch.tensor(prior))
    for i in range(b):
        ref = forward_backward_reference(log_emit[i], rho[i], prior[i])
        np.testing.assert_allclose(got[i].numpy(), ref, rtol=1e-6, atol=1e-9)


def test_forward_backward_ignores_invalid_candidates():
    log_emit = torch.zeros(1, 3, 4)
    rho = torch.full((1, 4), 0.1)
    prior = torch.full((1, 3), 1 / 3)
    valid = torch.tensor([[True, True, False]])
    g = forward_backward(log_emit, rho, prior, valid)
    assert torch.allclose(g.sum(1), torch.ones(1, 4))
    assert float(g[0, 2].max()) < 1e-3
