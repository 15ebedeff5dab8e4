"""Copying states chosen by match length around the core (vcfbert.match_states)."""

from __future__ import annotations

import numpy as np
import torch

from vcfbert.match_states import centre_runs, merge_match_states
from vcfbert.model.features import run_totals


def test_centre_runs_equal_the_model_runs_at_that_interval():
    """The match length around one interval equals the model's left + right run there
    (features.run_totals), for every panel haplotype, with missing and unobserved slots."""
    rng = np.random.default_rng(0)
    b, h, m = 4, 30, 25
    query = rng.integers(-1, 2, (b, m)).astype(np.int8)
    panel = rng.integers(0, 2, (h, m)).astype(np.int8)
    panel[:5] = np.where(query[0] >= 0, query[0], 0)  # long matches for query 0
    observed = rng.random(m) > 0.2
    for centre in (0, 7, m):
        got = np.empty((b, h), np.int32)
        centre_runs(query, observed, panel, centre, got)
        obs = observed[None, :] & (query >= 0)
        mismatch = (panel[None] != query[:, None, :]) & obs[:, None, :]
        want = run_totals(torch.from_numpy(mismatch), torch.from_numpy(obs),
                          torch.tensor([centre]))[..., 0].numpy()
        np.testing.assert_array_equal(got, want.astype(np.int32))
    assert got[0, :5].min() == obs[0].sum()  # the exact copies match everywhere


def test_merged_states_hold_the_longest_matches_and_the_retrieved_ones():
    """n_match states by match length (never a forbidden one), the rest retrieval's in its
    order, no repeats, ordered by similarity with the similarities of the keys."""
    rng = np.random.default_rng(1)
    b, h, m, d, k = 3, 40, 20, 8, 10
    query = rng.integers(0, 2, (b, m)).astype(np.int8)
    panel = rng.integers(0, 2, (h, m)).astype(np.int8)
    panel[7] = query[0]  # the longest match of query 0
    panel[8] = query[0]  # as long, but forbidden for query 0
    observed = np.ones(m, bool)
    ref_keys = rng.normal(size=(h, d)).astype(np.float32)
    q_keys = rng.normal(size=(b, d)).astype(np.float32)
    sims = q_keys @ ref_keys.T
    cand = np.argsort(-sims, axis=1)[:, :k].astype(np.int64)
    sim = np.take_along_axis(sims, cand, 1).astype(np.float32)
    forbidden = np.zeros((b, h), bool)
    forbidden[0, 8] = True
    forbidden[:, cand[:, 0]] = False
    ids, s = merge_match_states(query, observed, panel, ref_keys, q_keys, cand, sim,
                                centre=m // 2, n_match=4, forbidden=forbidden)
    assert ids.shape == (b, k) and (ids >= 0).all()
    assert 7 in ids[0] and 8 not in ids[0]
    for q in range(b):
        assert len(set(ids[q].tolist())) == k
        runs = np.empty((1, h), np.int32)
        centre_runs(query[q:q + 1], observed, panel, m // 2, runs)
        score = np.where(forbidden[q], -1, runs[0])
        top = np.lexsort((-sims[q], -score))[:4]
        assert set(top.tolist()) <= set(ids[q].tolist())
        rest = [c for c in cand[q].tolist() if c not in set(top.tolist())][:k - 4]
        assert set(rest) <= set(ids[q].tolist())
        np.testing.assert_allclose(s[q], sims[q, ids[q]], rtol=1e-6)
        assert (np.diff(s[q]) <= 0).all()
