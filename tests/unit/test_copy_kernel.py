"""The fused copying kernel against the torch computation it replaces, on panels whose
haplotypes share long segments (so candidates pool into few allele patterns per interval, with
ties in their match runs), and the per-window tables it reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcfbert.model.copy_kernel import HeadInputs, copy_features, copy_head_logits, window_tables
from vcfbert.model.features import carrier_features, interval_runs
from vcfbert.model.hmm import forward_backward

MASK = 2


def mosaic_panel(rng: np.random.Generator, n_h: int, n_var: int, n_founders: int = 5
                 ) -> np.ndarray:
    """int8 [n_h, n_var]: mosaics of a few founders with rare private mutations."""
    founders = (rng.random((n_founders, n_var)) < rng.random(n_var) * 0.6).astype(np.int8)
    haps = np.empty((n_h, n_var), np.int8)
    for h in range(n_h):
        cuts = np.sort(rng.choice(np.arange(1, n_var), 3, replace=False))
        pieces = np.split(np.arange(n_var), cuts)
        for piece in pieces:
            haps[h, piece] = founders[rng.integers(n_founders), piece]
    flip = rng.random((n_h, n_var)) < 0.01
    return np.where(flip, 1 - haps, haps).astype(np.int8)


def reference_features(tokens, cand, ref_slots, ref_core, mu, s, rho, prior, interval, frac):
    """(p_copy [b, n], carriers [b, n, 5]) by the torch path of VcfBert._run."""
    valid = torch.from_numpy(cand >= 0)
    safe = np.where(cand >= 0, cand, 0)
    q = torch.from_numpy(tokens.astype(np.int64))
    c_tok = torch.from_numpy(ref_slots[safe].astype(np.int64))  # [b, k, m]
    c_sites = torch.from_numpy(ref_core[safe].astype(np.float32))  # [b, k, n]
    q_obs = q != MASK
    mismatch = (c_tok != q[:, None, :]) & q_obs[:, None, :]
    s_t = torch.from_numpy(s)
    s_c = torch.gather(s_t[:, None].expand(-1, c_tok.shape[1], -1, -1), 3,
                       c_tok[..., None]).squeeze(-1)
    log_emit = -torch.from_numpy(mu)[:, None, :] * mismatch.float() + s_c
    gamma = forward_backward(log_emit.double(), torch.from_numpy(rho).double(),
                             torch.from_numpy(prior).double(), valid).float()
    m = tokens.shape[1]
    left = torch.from_numpy(np.clip(interval - 1, 0, m - 1))
    right = torch.from_numpy(np.clip(interval, 0, m - 1))
    f = torch.from_numpy(frac)[None, None, :]
    g_site = gamma.index_select(2, left) * (1 - f) + gamma.index_select(2, right) * f
    p_copy = (g_site * c_sites).sum(1).clamp(1e-5, 1 - 1e-5)
    lr, rr = interval_runs(mismatch, q_obs)
    run_total = (lr + rr).index_select(2, torch.from_numpy(interval)).float()
    return p_copy.numpy(), carrier_features(run_total, c_sites, g_site, valid).numpy()


def random_window(rng: np.random.Generator, panel: np.ndarray, m: int, b: int, k: int,
                  invalid: np.ndarray | None = None) -> dict:
    """copy_features' keyword arguments for ``b`` queries on ``panel`` int8 [H, m + n]: ``m``
    random columns are the slots, the rest the core sites, which sit in the intervals of the
    middle slots (several per interval); the queries are panel haplotypes with some errors and
    masked slots; ``k`` random candidates each, -1 where ``invalid`` bool [b, k]."""
    n_h, n = panel.shape[0], panel.shape[1] - m
    slot_cols = np.sort(rng.choice(m + n, m, replace=False))
    core_cols = np.setdiff1d(np.arange(m + n), slot_cols)
    interval = np.sort(rng.integers(m // 3, 2 * m // 3 + 1, n)).astype(np.int64)
    frac = rng.random(n).astype(np.float32)
    queries = panel[rng.integers(n_h, size=b)][:, slot_cols].copy()
    queries[rng.random((b, m)) < 0.05] ^= 1
    tokens = np.where(rng.random((b, m)) < 0.2, MASK, queries).astype(np.int8)
    cand = np.stack([rng.permutation(n_h)[:k] for _ in range(b)]).astype(np.int64)
    if invalid is not None:
        cand[invalid] = -1
    valid = cand >= 0
    mu = rng.uniform(1, 6, (b, m)).astype(np.float32)
    s = rng.normal(0, 0.3, (b, m, 2)).astype(np.float32)
    rho = rng.uniform(0.001, 0.2, (b, m)).astype(np.float32)
    prior = np.where(valid, rng.random((b, k)), 0).astype(np.float32)
    prior /= np.maximum(prior.sum(1, keepdims=True), 1e-30)
    return dict(query_tokens=tokens, cand_ids=cand,
                ref_slots=np.ascontiguousarray(panel[:, slot_cols]),
                ref_core=np.ascontiguousarray(panel[:, core_cols]), mu=mu, emit_bonus=s,
                rho=rho, prior=prior, site_interval=interval, site_frac=frac)


def reference_of(kw: dict) -> tuple[np.ndarray, np.ndarray]:
    """reference_features on random_window's arguments."""
    return reference_features(kw["query_tokens"], kw["cand_ids"], kw["ref_slots"],
                              kw["ref_core"], kw["mu"], kw["emit_bonus"], kw["rho"], kw["prior"],
                              kw["site_interval"], kw["site_frac"])


@pytest.mark.parametrize(("seed", "m"), [(0, 24), (1, 24), (2, 24), (3, 150)])
def test_copy_features_match_the_torch_path_on_shared_segments(seed, m):
    """(m = 150: the panel's bits span three 64-bit words, the last one partly.)"""
    rng = np.random.default_rng(seed)
    n_h, n, b, k = 60, 90, 6, 20
    panel = mosaic_panel(rng, n_h, m + n)
    invalid = np.zeros((b, k), bool)
    invalid[0, -4:] = True  # fewer candidates than k
    kw = random_window(rng, panel, m, b, k, invalid)
    ref_slots, ref_core, interval = kw["ref_slots"], kw["ref_core"], kw["site_interval"]
    tables = window_tables(ref_slots, ref_core, interval)
    # few patterns per interval: the pooling is exercised, not bypassed
    assert tables.pattern_start[-1] < 0.5 * n_h * tables.pattern_id.shape[1]
    p, feat, _ = copy_features(tables=tables, **kw)
    p_ref, feat_ref = reference_of(kw)
    np.testing.assert_allclose(p, p_ref, atol=2e-5)
    np.testing.assert_allclose(feat[..., :4], feat_ref[..., :4], atol=1e-6)
    # the weighted mean run of ALT carriers, where they carry weight
    heavy = p_ref > 1e-3
    np.testing.assert_allclose(feat[..., 4][heavy], feat_ref[..., 4][heavy], rtol=1e-3,
                               atol=1e-5)
    assert feat[..., 1].std() > 0 and feat[..., 0].std() > 0  # runs differ: a real check
    # the tables are optional (built per call) and checked against the inputs; the same bits
    # either way (the kernel's scratch is aligned: test_the_kernel_gives_the_same_bits_...)
    p2, feat2, _ = copy_features(**kw)
    np.testing.assert_array_equal(p2, p)
    np.testing.assert_array_equal(feat2, feat)
    other = window_tables(ref_slots, ref_core, np.minimum(interval + 1, m))
    with pytest.raises(ValueError, match="window tables"):
        copy_features(tables=other, **kw)


def test_a_query_gives_the_same_bits_alone_or_anywhere_in_a_batch():
    """The queries of a batch share the kernel's per-site arrays (zeroed once per batch, each
    query leaving them at zero): every query's outputs, with and without the output head, are
    the bits of the same query computed alone, in a batch in either order."""
    rng = np.random.default_rng(5)
    n_h, m, n, b, k, hw = 60, 24, 90, 6, 20, 16
    kw = random_window(rng, mosaic_panel(rng, n_h, m + n), m, b, k)
    # sites where all but three haplotypes carry ALT: some queries' states have no REF carrier
    kw["ref_core"][3:, ::9] = 1
    tables = window_tables(kw["ref_slots"], kw["ref_core"], kw["site_interval"])
    interval = kw["site_interval"]

    def normal(*shape: int) -> np.ndarray:
        return rng.normal(size=shape).astype(np.float32)

    head = HeadInputs(site_const=normal(1, n, hw), left_proj=normal(b, m, hw),
                      right_proj=normal(b, m, hw), site_left=np.clip(interval - 1, 0, m - 1),
                      site_right=np.clip(interval, 0, m - 1), weight=normal(hw, 6),
                      last_weight=normal(hw), last_bias=0.3, copy_scale=0.9)
    per_query = ("query_tokens", "cand_ids", "mu", "emit_bonus", "rho", "prior")

    def rows(order):
        sub = {key: (v[order] if key in per_query else v) for key, v in kw.items()}
        sub_head = head._replace(left_proj=head.left_proj[order],
                                 right_proj=head.right_proj[order])
        return copy_features(tables=tables, **sub), copy_head_logits(sub_head, tables=tables,
                                                                     **sub)

    (p, feat, loo), (logits, loo_head) = rows(np.arange(b))
    (p_rev, feat_rev, loo_rev), (logits_rev, loo_head_rev) = rows(np.arange(b)[::-1])
    assert (p > 1e-4).any() and feat[..., 0].any()  # queries with ALT carriers: sums to reset
    for q in range(b):
        (p1, feat1, loo1), (logits1, loo_head1) = rows(np.array([q]))
        for batch, reverse, alone in ((p, p_rev, p1), (feat, feat_rev, feat1),
                                      (loo, loo_rev, loo1), (logits, logits_rev, logits1),
                                      (loo_head, loo_head_rev, loo_head1)):
            np.testing.assert_array_equal(batch[q], alone[0])
            np.testing.assert_array_equal(reverse[b - 1 - q], alone[0])


@pytest.mark.parametrize("lengths", [None, (1, 63, 64, 65, 0, 128, 200, 7)])
def test_window_tables_reproduce_every_haplotypes_alleles(lengths):
    """Each haplotype's pattern holds exactly its ALT sites in the interval, and haplotypes
    with the same alleles there share one pattern (the grouping is exact): for short intervals
    and for intervals of 0, 1, 63, 64, 65, 128 and 200 sites (patterns over several 64-bit
    words, starting anywhere in a word)."""
    rng = np.random.default_rng(5)
    if lengths is None:
        interval = np.sort(rng.integers(3, 8, 60)).astype(np.int64)
    else:
        interval = np.repeat(np.arange(2, 2 + len(lengths)), lengths).astype(np.int64)
    panel = mosaic_panel(rng, 50, 10 + interval.size)
    ref_slots, ref_core = panel[:, :10], panel[:, 10:]
    t = window_tables(ref_slots, ref_core, interval)
    assert t.n_slots == ref_slots.shape[1]
    unpacked = np.unpackbits(t.hap_bits.view(np.uint8), axis=1, bitorder="little")
    np.testing.assert_array_equal(unpacked[:, :ref_slots.shape[1]], ref_slots)
    assert not unpacked[:, ref_slots.shape[1]:].any()
    assert t.first_interval == interval[0]
    assert t.pattern_id.shape == (panel.shape[0], interval[-1] - interval[0] + 1)
    for row in range(t.pattern_id.shape[1]):
        sites = np.flatnonzero(interval == t.first_interval + row)
        alleles = ref_core[:, sites]
        carriers = alleles.any(1)
        distinct = np.unique(alleles[carriers], axis=0).shape[0] if carriers.any() else 0
        assert t.pattern_start[row + 1] - t.pattern_start[row] == distinct
        assert set(t.pattern_id[:, row][carriers]) == set(range(distinct))
        for h in range(panel.shape[0]):
            u = t.pattern_id[h, row]
            alt = sites[ref_core[h, sites] == 1]
            if u < 0:
                assert alt.size == 0
            else:
                g = t.pattern_start[row] + u
                np.testing.assert_array_equal(t.alt_site[t.alt_ptr[g]:t.alt_ptr[g + 1]], alt)
    if lengths is not None:
        assert t.pattern_start[-1] > 50  # the long intervals hold many patterns: a real check


def test_pattern_ids_widen_beyond_32767_haplotypes():
    """Pattern ids are int16 (an interval has at most as many patterns as haplotypes) up to
    32,767 haplotypes and int32 beyond, with the same grouping."""
    from vcfbert.model.copy_kernel import pattern_dtype

    assert pattern_dtype(32_767) is np.int16 and pattern_dtype(32_768) is np.int32
    rng = np.random.default_rng(9)
    n_h = 32_800
    ref_core = (rng.random((n_h, 12)) < 0.5).astype(np.int8)  # ~4,096 patterns per interval
    interval = np.repeat([3, 4], 6).astype(np.int64)
    t = window_tables(np.zeros((n_h, 6), np.int8), ref_core, interval)
    assert t.pattern_id.dtype == np.int32
    for row in range(2):
        sites = np.flatnonzero(interval == 3 + row)
        alleles = ref_core[:, sites]
        distinct, inverse = np.unique(alleles, axis=0, return_inverse=True)
        carriers = alleles.any(1)
        assert t.pattern_start[row + 1] - t.pattern_start[row] == (distinct.any(1)).sum()
        ids = t.pattern_id[:, row]
        assert (ids[~carriers] == -1).all()
        # the same pattern exactly where the alleles are the same
        pairs = {(int(a), int(b))
                 for a, b in zip(inverse.ravel()[carriers], ids[carriers], strict=True)}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


def test_identical_candidates_are_lumped_exactly():
    """A panel where most haplotypes have exact copies: the kernel lumps a query's candidates
    of one sequence into one state; the posterior-weighted sums, the carrier count, the runs
    and the leave-one-out probability equal those of the kernel without lumping and the
    torch path's."""
    rng = np.random.default_rng(11)
    n_h, m, n, b, k = 60, 24, 90, 6, 30
    panel = mosaic_panel(rng, 12, m + n)[rng.integers(12, size=n_h)]
    invalid = np.zeros((b, k), bool)
    invalid[1, :5] = True
    invalid[2, :] = True  # no candidate at all
    kw = random_window(rng, panel, m, b, k, invalid)
    ref_slots, ref_core, interval = kw["ref_slots"], kw["ref_core"], kw["site_interval"]
    cand = kw["cand_ids"]
    tables = window_tables(ref_slots, ref_core, interval)
    classes = tables.hap_class
    # the classes are the distinct sequences, and the candidates do share them
    assert classes.max() + 1 == len(np.unique(np.concatenate([ref_slots, ref_core], 1), axis=0))
    for h in range(n_h):
        same = (ref_slots == ref_slots[h]).all(1) & (ref_core == ref_core[h]).all(1)
        np.testing.assert_array_equal(classes == classes[h], same)
    assert len(np.unique(classes[cand[0]])) < k / 2
    unlumped = tables._replace(hap_class=np.arange(n_h, dtype=np.int32))
    p, feat, loo = copy_features(tables=tables, **kw)
    p1, feat1, loo1 = copy_features(tables=unlumped, **kw)
    np.testing.assert_allclose(p, p1, atol=2e-6)
    np.testing.assert_allclose(feat, feat1, atol=2e-5)
    np.testing.assert_allclose(loo, loo1, atol=2e-6)
    assert feat[..., 2].max() > np.log1p(2) / 5  # carrier counts above 2: multiplicities count
    assert (p[2] == np.float32(1e-5)).all() and not feat[2].any() and not loo[2].any()
    p_ref, feat_ref = reference_of(kw)
    ok = [0, 1, 3, 4, 5]  # the torch path has no output for a query without candidates
    np.testing.assert_allclose(p[ok], p_ref[ok], atol=2e-5)
    np.testing.assert_allclose(feat[ok][..., :4], feat_ref[ok][..., :4], atol=1e-6)


def test_runs_as_long_as_the_largest_window_and_a_window_beyond_it():
    """The kernel's match runs are int16: at the largest window it takes (MAX_SLOTS slots), a
    state that matches the query everywhere has a run of ~2 * MAX_SLOTS slots, and its run
    feature still equals the torch path's; one slot more is refused with a clear error."""
    from vcfbert.model.copy_kernel import MAX_SLOTS

    rng = np.random.default_rng(31)
    m, n, n_h = MAX_SLOTS, 6, 4
    panel = (rng.random((n_h, m + n)) < 0.3).astype(np.int8)
    panel[1, :m] = panel[0, :m]  # haplotype 1 matches haplotype 0 at every slot
    panel[1, m:] = 1 - panel[0, m:]  # and differs at every core site
    kw = random_window(rng, panel, m, 1, n_h)
    kw["query_tokens"] = panel[:1, :m].copy()  # the query is haplotype 0 at every slot
    kw["cand_ids"] = np.arange(n_h, dtype=np.int64)[None]
    kw["ref_slots"] = np.ascontiguousarray(panel[:, :m])
    kw["ref_core"] = np.ascontiguousarray(panel[:, m:])
    kw["prior"] = np.full((1, n_h), 1 / n_h, np.float32)
    kw["site_interval"] = np.full(n, m // 2, np.int64)
    p, feat, _ = copy_features(**kw)
    p_ref, feat_ref = reference_of(kw)
    np.testing.assert_allclose(p, p_ref, atol=2e-5)
    np.testing.assert_allclose(feat[..., :4], feat_ref[..., :4], atol=1e-6)
    # both haplotypes 0 and 1 match every slot: a run of m slots, the longest REF or ALT run
    assert np.isclose(max(feat[0, :, 0].max(), feat[0, :, 1].max()), np.log1p(m) / 6, rtol=1e-6)
    wide = dict(kw, query_tokens=np.zeros((1, m + 1), np.int8), mu=np.ones((1, m + 1), np.float32),
                emit_bonus=np.zeros((1, m + 1, 2), np.float32), rho=np.full((1, m + 1), 0.01, np.float32),
                ref_slots=np.zeros((n_h, m + 1), np.int8))
    with pytest.raises(ValueError, match="at most 16,000 slots"):
        copy_features(**wide)


@pytest.mark.parametrize("where", ["first", "last", "both_ends"])
def test_core_at_the_window_edges_and_leave_one_out_ranges(where):
    """The kernel keeps the posterior and match runs only at the rows the core reads (its
    intervals' flanking slots, the leave-one-out slots): sites in the first interval (left of
    every slot), the last (right of every slot) or both still match the torch path, and a
    leave-one-out range away from the sites gives what the all-slot computation gives there,
    0 elsewhere."""
    rng = np.random.default_rng({"first": 21, "last": 22, "both_ends": 23}[where])
    n_h, m, n, b, k = 50, 20, 40, 5, 16
    panel = mosaic_panel(rng, n_h, m + n)
    kw = random_window(rng, panel, m, b, k)
    choices = {"first": [0, 1], "last": [m - 1, m], "both_ends": [0, 1, m - 1, m]}[where]
    kw["site_interval"] = np.sort(rng.choice(choices, n)).astype(np.int64)
    p, feat, loo_all = copy_features(**kw)
    p_ref, feat_ref = reference_of(kw)
    np.testing.assert_allclose(p, p_ref, atol=2e-5)
    np.testing.assert_allclose(feat[..., :4], feat_ref[..., :4], atol=1e-6)
    for lo, hi in [(8, 12), (0, 3), (m - 2, m)]:
        p2, feat2, loo = copy_features(loo_slots=(lo, hi), **kw)
        np.testing.assert_allclose(loo[:, lo:hi], loo_all[:, lo:hi], atol=2e-6)
        assert not loo[:, :lo].any() and not loo[:, hi:].any()
        np.testing.assert_allclose(p2, p, atol=2e-6)
        np.testing.assert_allclose(feat2, feat, atol=2e-5)
    # no core sites at all: the leave-one-out slots alone
    none = dict(kw, site_interval=np.zeros(0, np.int64), site_frac=np.zeros(0, np.float32),
                ref_core=kw["ref_core"][:, :0])
    p0, _, loo0 = copy_features(loo_slots=(5, 9), **none)
    assert p0.shape == (b, 0)
    np.testing.assert_allclose(loo0[:, 5:9], loo_all[:, 5:9], atol=2e-6)
    _, _, nothing = copy_features(loo_slots=(0, 0), **none)  # no rows at all to keep
    assert not nothing.any()


FRESH_OR_CACHED = """
import hashlib
import numpy as np
from vcfbert.model.copy_kernel import HeadInputs, copy_features, copy_head_logits


def inputs(rng, n_h, m, n, b, k, hw=16):
    panel = (rng.random((n_h, m + n)) < rng.random(m + n) * 0.3).astype(np.int8)
    panel[n_h // 2:] = panel[:n_h - n_h // 2]  # copies: states lumped
    interval = np.sort(rng.integers(m // 4, 3 * m // 4 + 1, n)).astype(np.int64)
    head = HeadInputs(site_const=rng.normal(size=(1, n, hw)).astype(np.float32),
                      left_proj=rng.normal(size=(b, m, hw)).astype(np.float32),
                      right_proj=rng.normal(size=(b, m, hw)).astype(np.float32),
                      site_left=np.clip(interval - 1, 0, m - 1),
                      site_right=np.clip(interval, 0, m - 1),
                      weight=rng.normal(size=(hw, 6)).astype(np.float32),
                      last_weight=rng.normal(size=hw).astype(np.float32), last_bias=0.3,
                      copy_scale=0.9)
    prior = rng.random((b, k)).astype(np.float32)
    kw = dict(query_tokens=panel[:b, :m].copy(),
              cand_ids=np.stack([rng.permutation(n_h)[:k] for _ in range(b)]),
              ref_slots=np.ascontiguousarray(panel[:, :m]),
              ref_core=np.ascontiguousarray(panel[:, m:]),
              mu=rng.uniform(1, 6, (b, m)).astype(np.float32),
              emit_bonus=rng.normal(0, 0.3, (b, m, 2)).astype(np.float32),
              rho=rng.uniform(0.001, 0.2, (b, m)).astype(np.float32),
              prior=prior / prior.sum(1)[:, None], site_interval=interval,
              site_frac=rng.random(n).astype(np.float32))
    return head, kw


rng = np.random.default_rng(7)
cases = [inputs(rng, 500, 80, 300, 4, 384), inputs(rng, 60, 24, 90, 6, 20)]
digests = set()
held = []  # allocations kept between the calls: the heap, and so the kernel's scratch, moves
for call in range(60):
    out = [a for head, kw in cases for a in copy_head_logits(head, **kw) + copy_features(**kw)]
    digests.add(hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes()
                                        for a in out)).hexdigest())
    held.append(np.empty(int(rng.integers(1, 50_000)), np.uint8))
print(len(digests), min(digests))
"""


def test_the_kernel_gives_the_same_bits_call_after_call_compiled_here_or_cached(tmp_path):
    """The same inputs give the same bits, from one call to the next and whether the kernel was
    just compiled or loaded from numba's cache (a workflow's jobs do either). A kernel whose
    fastmath callee was linked in rather than inlined got other vectorised sums when loaded
    from the cache; and loaded from the cache on an AVX-512 CPU (AMD EPYC, Zen 4), the kernel
    with scratch arrays wherever the heap put them rounded its sums over states differently
    from call to call (two outputs alternating in 5 of 6 processes: docs/model.md), which
    64-byte aligned scratch arrays stopped."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    results = []
    for _ in range(4):  # the first compiles and fills the empty cache, the others load it
        res = subprocess.run([sys.executable, "-c", FRESH_OR_CACHED], env=env,
                             capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        results.append(res.stdout.split())
        assert any(tmp_path.rglob("*copy_kernel._all_queries_head*.nbi"))
    assert [n_distinct for n_distinct, _ in results] == ["1"] * 4, results
    assert len({digest for _, digest in results}) == 1, results


def test_the_kernels_gelu_is_torchs_exact_gelu():
    """The fused head's GELU (erf from a fitted rational function, bench/fit_erf.py) against
    torch's exact GELU in float64, over the range a hidden unit takes and far beyond it."""
    import numba
    import torch

    from vcfbert.model.copy_kernel import _gelu

    @numba.njit
    def gelu_all(x):
        out = np.empty_like(x)
        for i in range(x.shape[0]):
            out[i] = _gelu(x[i])
        return out

    x = np.concatenate([np.linspace(-12, 12, 400_001), [-1e4, -50.0, 0.0, 50.0, 1e4]])
    x = x.astype(np.float32).astype(np.float64)  # the kernel's inputs are float32
    got = gelu_all(x.astype(np.float32)).astype(np.float64)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    err = np.abs(got - exact)
    assert np.all(err <= 2e-7 * np.abs(x) + 1e-7), float((err / (np.abs(x) + 0.5)).max())
    assert got[-5] == 0.0 and got[-3] == 0.0 and got[-1] == np.float32(1e4)
    # a wrong coefficient is caught: the test fails for an erf that is off by 1e-5
    assert np.abs(0.5 * x * 1e-5).max() > (2e-7 * np.abs(x) + 1e-7).max()
