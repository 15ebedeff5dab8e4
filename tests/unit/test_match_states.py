"""Copying states chosen by match length around the core (vcfbert.match_states)."""

from __future__ import annotations

import numpy as np
import torch

from vcfbert.match_states import (
    anchor_runs,
    centre_runs,
    core_anchors,
    merge_match_states,
    pack_slots,
)
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
    ids, s, from_match = merge_match_states(query, observed, panel, ref_keys, q_keys, cand, sim,
                                            anchors=[m // 2], n_match=4, forbidden=forbidden)
    assert ids.shape == (b, k) and (ids >= 0).all()
    assert 7 in ids[0] and 8 not in ids[0]
    for q in range(b):
        assert len(set(ids[q].tolist())) == k
        runs = np.empty((1, h), np.int32)
        centre_runs(query[q:q + 1], observed, panel, m // 2, runs)
        score = np.where(forbidden[q], -1, runs[0])
        top = np.lexsort((-sims[q], -score))[:4]
        assert set(top.tolist()) == set(ids[q][from_match[q]].tolist())
        rest = [c for c in cand[q].tolist() if c not in set(top.tolist())][:k - 4]
        assert set(rest) <= set(ids[q].tolist())
        np.testing.assert_allclose(s[q], sims[q, ids[q]], rtol=1e-6)
        assert (np.diff(s[q]) <= 0).all()


def _reference_merge(query, observed, panel, sims, cand, anchors, n_match, forbidden):
    """The rule written out plainly: per anchor, the haplotypes by (run desc, similarity
    desc, id asc); the anchors' first picks, then their second ones..., without repeats, up
    to n_match; then the retrieved states; ordered by similarity (stable)."""
    b, k = cand.shape
    out, from_match = [], []
    for q in range(b):
        ranked = []
        for a in anchors:
            runs = np.empty((1, panel.shape[0]), np.int32)
            centre_runs(query[q:q + 1], observed, panel, a, runs)
            order = [h for h in np.lexsort((np.arange(panel.shape[0]), -sims[q], -runs[0]))
                     if not forbidden[q, h]]
            ranked.append(order[:n_match])
        picks = []
        for t in range(n_match):
            for r in ranked:
                if t < len(r) and r[t] not in picks and len(picks) < n_match:
                    picks.append(int(r[t]))
        chosen = list(dict.fromkeys([*picks[:k], *[c for c in cand[q].tolist() if c >= 0]]))[:k]
        chosen.sort(key=lambda h: -sims[q, h])  # stable: equal similarities keep their order
        out.append(chosen + [-1] * (k - len(chosen)))
        from_match.append([h in picks[:k] for h in out[-1]])
    return np.asarray(out, np.int64), np.asarray(from_match, bool)


def test_states_from_several_anchors_follow_the_plain_rule():
    """With several anchors, ties of run length and of similarity, forbidden haplotypes, more
    match states than a query may get, and a short candidate list: the compiled selection
    equals the rule written out in Python."""
    rng = np.random.default_rng(2)
    b, h, m, d, k = 5, 60, 30, 4, 12
    query = rng.integers(-1, 2, (b, m)).astype(np.int8)
    panel = rng.integers(0, 2, (h, m)).astype(np.int8)
    panel[10:14] = np.where(query[1] >= 0, query[1], 0)  # equal runs (ties)
    observed = rng.random(m) > 0.1
    ref_keys = rng.integers(-2, 3, (h, d)).astype(np.float32)  # many equal similarities
    q_keys = rng.integers(-2, 3, (b, d)).astype(np.float32)
    sims = q_keys @ ref_keys.T
    cand = np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)
    cand[2, 8:] = -1  # a query with fewer retrieved states than k
    sim = np.where(cand >= 0, np.take_along_axis(sims, np.maximum(cand, 0), 1), -np.inf)
    forbidden = rng.random((b, h)) < 0.2
    forbidden[np.arange(b)[:, None], np.maximum(cand, 0)] = False
    for anchors, n_match in (([m // 2], 4), ([3, 12, 20, 27], 6), ([0, m], 9), ([5, 25], 40)):
        ids, s, from_match = merge_match_states(query, observed, panel, ref_keys, q_keys, cand,
                                                sim.astype(np.float32), anchors=anchors,
                                                n_match=n_match, forbidden=forbidden)
        want, want_match = _reference_merge(query, observed, panel, sims, cand, anchors, n_match,
                                            forbidden)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(from_match, want_match)
        assert not forbidden[np.arange(b)[:, None], np.maximum(ids, 0)][ids >= 0].any()
        np.testing.assert_allclose(s[ids >= 0], np.take_along_axis(sims, np.maximum(ids, 0),
                                                                    1)[ids >= 0], rtol=1e-6)
        assert np.isneginf(s[ids < 0]).all()


def test_states_are_the_same_when_the_turns_go_deeper_than_the_first_ranking():
    """Each anchor is first ranked to half the match states; anchors at (nearly) the same
    place share their longest matches, so the turns over them go deeper than that and the
    rankings are made again deeper: the states still equal the rule written out in Python."""
    rng = np.random.default_rng(5)
    b, h, m, d, k = 4, 300, 40, 4, 80
    query = rng.integers(0, 2, (b, m)).astype(np.int8)
    # haplotypes copying a query around its middle, with a mismatch at a random distance:
    # many long runs, of many lengths, at every anchor near the middle
    panel = rng.integers(0, 2, (h, m)).astype(np.int8)
    for i in range(h):
        lo, hi = sorted(rng.integers(0, m, 2))
        panel[i, lo:hi] = query[i % b, lo:hi]
    observed = np.ones(m, bool)
    ref_keys = rng.integers(-2, 3, (h, d)).astype(np.float32)
    q_keys = rng.integers(-2, 3, (b, d)).astype(np.float32)
    sims = q_keys @ ref_keys.T
    cand = np.argsort(-sims, axis=1, kind="stable")[:, :k].astype(np.int64)
    sim = np.take_along_axis(sims, cand, 1).astype(np.float32)
    forbidden = np.zeros((b, h), bool)
    for anchors, n_match in (([20, 20, 21], 60), ([19, 20, 20, 21], 80), ([20], 70)):
        ids, _, from_match = merge_match_states(query, observed, panel, ref_keys, q_keys, cand,
                                                sim, anchors=anchors, n_match=n_match,
                                                forbidden=forbidden)
        want, want_match = _reference_merge(query, observed, panel, sims, cand, anchors, n_match,
                                            forbidden)
        np.testing.assert_array_equal(ids, want)
        np.testing.assert_array_equal(from_match, want_match)
        assert from_match.sum(1).min() == n_match  # every query got all its match states


def test_core_anchors_spread_over_the_core():
    """One anchor per 16 core slots at the middle of its share; one (the centre) for a short
    core; the window's first slot for an empty core."""
    core = np.arange(100, 228)
    assert core_anchors(core) == [108, 124, 140, 156, 172, 188, 204, 220]
    assert core_anchors(np.arange(5, 15)) == [10]  # 10 slots: the centre, core[size // 2]
    assert core_anchors(np.arange(0, 0)) == [0]


def test_anchor_runs_from_packed_bits_equal_the_slot_by_slot_runs():
    """The word-at-a-time runs equal centre_runs at every anchor, across word boundaries
    (anchors at 0, 63, 64, 65, 128 and m), with missing alleles and unobserved slots, for
    haplotypes that match everywhere, nowhere, or up to the panel's edges."""
    rng = np.random.default_rng(3)
    b, h, m = 3, 50, 150
    query = rng.integers(-1, 2, (b, m)).astype(np.int8)
    panel = rng.integers(0, 2, (h, m)).astype(np.int8)
    panel[:4] = np.where(query[0] >= 0, query[0], 1)  # exact copies of query 0
    panel[4] = np.where(query[0] >= 0, 1 - query[0], 0)  # the opposite everywhere
    panel[5:10] = np.where(rng.random((5, m)) < 0.02, 1 - panel[:1], panel[:1])  # long runs
    observed = rng.random(m) > 0.15
    anchors = np.array([0, 1, 63, 64, 65, 100, 128, m - 1, m], np.int64)
    bits = pack_slots(panel)
    assert bits.shape == (h, 3) and bits.dtype == np.uint64
    words = np.ascontiguousarray(bits.T)
    scratch = (np.empty((3, h), np.uint64), np.empty((3, h), np.int64),
               np.empty((3, h), np.int64))
    for q in range(b):
        got = np.empty((anchors.size, h), np.int32)
        anchor_runs(query[q], observed, words, m, anchors, got, *scratch)
        for x, a in enumerate(anchors):
            want = np.empty((1, h), np.int32)
            centre_runs(query[q:q + 1], observed, panel, int(a), want)
            np.testing.assert_array_equal(got[x], want[0])
    assert got.max() > 0


def test_selection_stays_in_bounds_with_more_match_states_than_places(tmp_path):
    """The compiled selection, compiled with numba's bounds checks (a fresh process and
    cache), with more match states asked for than a query has copying states (a small
    model's k_retrieve under the default train.match_states): no index leaves its array."""
    import os
    import subprocess
    import sys

    code = """
import numpy as np
from vcfbert.match_states import merge_match_states
rng = np.random.default_rng(4)
b, h, m, k = 3, 40, 70, 8
query = rng.integers(-1, 2, (b, m)).astype(np.int8)
panel = rng.integers(0, 2, (h, m)).astype(np.int8)
keys = rng.normal(size=(h, 4)).astype(np.float32)
q_keys = rng.normal(size=(b, 4)).astype(np.float32)
cand = np.tile(np.arange(k), (b, 1)).astype(np.int64)
ids, _, from_match = merge_match_states(query, np.ones(m, bool), panel, keys, q_keys, cand,
                                        np.zeros((b, k), np.float32), [10, 35, 60], 96)
assert (ids >= 0).all() and from_match.all() and len(set(ids[0].tolist())) == k
print("ok")
"""
    env = {**os.environ, "NUMBA_BOUNDSCHECK": "1", "NUMBA_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]


def test_the_packed_panel_holds_each_slot_sequence_once():
    """pack_panel keeps each distinct sequence of slot alleles once, in the order of its
    first haplotype, and maps every haplotype to its own: unpacked through ``hap_row`` it is
    the panel packed row by row; ``row_start`` / ``row_haps`` list each sequence's
    haplotypes."""
    from vcfbert.match_states import pack_panel

    rng = np.random.default_rng(4)
    panel = rng.integers(0, 2, (30, 70)).astype(np.int8)
    panel[[5, 17, 29]] = panel[2]
    panel[11] = panel[3]
    packed = pack_panel(panel)
    assert packed.bits.shape == (26, 2)
    np.testing.assert_array_equal(packed.bits[packed.hap_row], pack_slots(panel))
    np.testing.assert_array_equal(packed.words, packed.bits.T)
    assert packed.hap_row[5] == packed.hap_row[17] == packed.hap_row[29] == packed.hap_row[2]
    assert (np.diff(np.unique(packed.hap_row, return_index=True)[1]) > 0).all()
    # row_start / row_haps list each sequence's haplotypes, increasing
    assert packed.row_start[0] == 0 and packed.row_start[-1] == 30
    for u in range(26):
        haps = packed.row_haps[packed.row_start[u]:packed.row_start[u + 1]]
        np.testing.assert_array_equal(haps, np.flatnonzero(packed.hap_row == u))
    np.testing.assert_array_equal(
        packed.row_haps[packed.row_start[packed.hap_row[2]]:][:4], [2, 5, 17, 29])


def test_pack_rows_sets_the_bits_of_ones_only():
    """pack_rows' kernel against np.packbits of ``== 1``: int8 with -1 (missing, not set) and
    bool input, widths around the 64-bit words (0 columns: one zero word), pad words zero,
    a non-contiguous input."""
    from vcfbert.rows import pack_rows

    rng = np.random.default_rng(5)
    for n in (0, 1, 63, 64, 65, 130):
        a = rng.integers(-1, 2, (7, n)).astype(np.int8)
        for values in (a, a == 1, a.T.copy().T, a[::2]):
            for pad in (0, 1, 2):
                r = values.shape[0]
                words = max(1, (n + 63) // 64) + pad
                expect = np.zeros((r, words * 8), np.uint8)
                expect[:, :(n + 7) // 8] = np.packbits(np.asarray(values) == 1, axis=1,
                                                       bitorder="little")
                got = pack_rows(values, pad_words=pad)
                assert got.dtype == np.uint64 and got.shape == (r, words)
                np.testing.assert_array_equal(got, expect.view("<u8"))
    wide = np.array([[0, 1, 2, 1]], np.int64)  # another integer type: only 1 is set
    assert pack_rows(wide)[0, 0] == 0b1010
