"""The fast CPU inference path against the torch model it replaces (random inputs), and the
index search it relies on (ranks and inner products against brute force)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcfbert.data import WindowArrays, WindowGeometry, assemble_batch, query_tokens
from vcfbert.index import KeySearcher
from vcfbert.layout import make_layout
from vcfbert.model import ModelConfig, VcfBert
from vcfbert.predict import fast_logits


def active_model(k: int, seed: int, d_head: int = 0, context: int = 0,
                 n_layers: int = 1, block: int = 0) -> VcfBert:
    """A small model whose zero-initialised heads are randomised, so every input matters
    (``context``: its ``context_flank_slots``; ``block``: its ``attention_block``)."""
    torch.manual_seed(seed)
    cfg = ModelConfig(d_model=16, n_layers=n_layers, n_heads=2, d_ff=32, d_key=16, k_retrieve=k,
                      context_flank_slots=context, attention_block=block,
                      k_keep=k, max_slots=64, max_core_dist=16, d_head=d_head)
    model = VcfBert(cfg).eval()
    with torch.no_grad():
        for head in (model.rate_head, model.mismatch_head, model.emit_head, model.out_head):
            torch.nn.init.normal_(head[-1].weight, std=0.3)
            torch.nn.init.normal_(head[-1].bias, std=0.3)
        model.prior_scale.fill_(0.5)
    return model


def random_window(rng: np.random.Generator, n_var: int, n_typed: int, n_h: int):
    position = np.sort(rng.choice(np.arange(1, 200_000), n_var, replace=False))
    typed = np.sort(rng.choice(n_var, n_typed, replace=False))
    layout = make_layout(position, typed, 0, n_var, n_var // 4, 3 * n_var // 4)
    haps = (rng.random((n_h, n_var)) < rng.random(n_var) * 0.5).astype(np.int8)
    ref_slots = np.ascontiguousarray(haps[:, layout.slot_index])
    ref_core = np.ascontiguousarray(haps[:, layout.core_start:layout.core_end])
    arrays = WindowArrays.of(ref_slots, ref_core)
    return position, layout, arrays


@pytest.mark.parametrize(("seed", "d_head", "shared_af", "context", "block"),
                         [(0, 0, False, 0, 0), (1, 0, False, 0, 0), (2, 8, False, 0, 0),
                          (3, 0, True, 0, 0), (4, 8, False, 3, 0), (5, 21, True, 0, 0),
                          (7, 21, False, 3, 6), (8, 0, True, 0, 4)])
def test_fast_logits_match_the_model_forward(seed, d_head, shared_af, context, block):
    rng = np.random.default_rng(seed)
    k, b, n_h = 12, 5, 40
    model = active_model(k, seed, d_head, context, n_layers=1 if block == 0 else 2,
                         block=block)
    position, layout, arrays = random_window(rng, n_var=120, n_typed=30, n_h=n_h)
    m = layout.n_slots
    slot_observed = rng.random(m) < 0.8
    qs = (rng.random((b, m)) < 0.3).astype(np.int8)
    qs[rng.random((b, m)) < 0.1] = -1  # missing genotypes
    cand = np.stack([rng.permutation(n_h)[:k] for _ in range(b)]).astype(np.int64)
    cand[0, -3:] = -1  # fewer candidates than k for one query
    slot_af = rng.random((b, m)).astype(np.float32) * 0.5
    site_af = rng.random((b, layout.n_sites)).astype(np.float32) * 0.5
    if shared_af:  # the targets' case: one row of panel frequencies, broadcast (not copied)
        site_af = np.broadcast_to(site_af[0], site_af.shape)
    batch = assemble_batch(layout, arrays, slot_observed, position, qs, cand,
                           slot_af=slot_af, site_af=site_af)
    with torch.enable_grad():  # the training path: the transformer module itself
        slow = model(batch, with_loss=False)[0].detach()
    with torch.no_grad():
        sim, keep = model.rescore(batch)
    assert torch.equal(keep, torch.arange(k).expand(b, -1))  # K == k: every candidate kept
    fast, fast_loo = fast_logits(model, WindowGeometry.of(layout, position), arrays,
                                 tokens=query_tokens(qs, slot_observed), slot_af=slot_af,
                                 site_af=site_af, cand_ids=cand, cand_sim=sim.numpy())
    assert fast.shape == slow.shape == (b, layout.n_sites)
    # the leave-one-out ALT probabilities at the slots: the torch path's twin, same logits
    with torch.no_grad():
        slow_again, slow_loo = model.logits_and_slot_loo(batch)
    torch.testing.assert_close(slow_again, slow, atol=1e-4, rtol=1e-4)
    assert fast_loo.shape == slow_loo.shape == (b, m)
    assert slow_loo.std() > 0.05
    np.testing.assert_allclose(fast_loo, slow_loo.numpy(), atol=2e-5)
    # a slot range (the core's, at imputation): the same values there, 0 elsewhere, same logits
    lo, hi = m // 3, 2 * m // 3
    part, part_loo = fast_logits(model, WindowGeometry.of(layout, position), arrays,
                                 tokens=query_tokens(qs, slot_observed), slot_af=slot_af,
                                 site_af=site_af, cand_ids=cand, cand_sim=sim.numpy(),
                                 loo_slots=(lo, hi))
    # logits near the copy clamp are ill-conditioned in float32 (see below): compare the
    # probabilities, which is what the model returns
    np.testing.assert_allclose(torch.sigmoid(part).numpy(), torch.sigmoid(fast).numpy(), atol=2e-5)
    # the kernel's vectorised sums may round differently from call to call (memory alignment)
    np.testing.assert_allclose(part_loo[:, lo:hi], fast_loo[:, lo:hi], atol=1e-6)
    assert not part_loo[:, :lo].any() and not part_loo[:, hi:].any()
    assert slow.abs().max() > 1.0  # the heads are active: a meaningful comparison
    # logits near the copy clamp (p ~ 1 - 1e-5) are ill-conditioned in float32: the
    # probabilities are the tight check
    np.testing.assert_allclose(fast.numpy(), slow.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(torch.sigmoid(fast).numpy(), torch.sigmoid(slow).numpy(),
                               atol=2e-5)


def test_search_scored_matches_brute_force_and_excludes():
    import faiss

    rng = np.random.default_rng(0)
    keys = rng.normal(size=(50, 8)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    index = faiss.IndexFlatIP(8)
    index.add(keys)
    q = keys[[3, 10]] + 0.01
    ids, scores = KeySearcher(index).search_scored(q, 5)
    brute = q @ keys.T
    np.testing.assert_array_equal(ids, np.argsort(-brute, axis=1)[:, :5])
    np.testing.assert_allclose(scores, np.take_along_axis(brute, ids, 1), rtol=1e-5)
    ids_x = KeySearcher(index).search(q, 5, exclude=np.array([[2, 3], [10, 11]]))
    assert 3 not in ids_x[0] and 2 not in ids_x[0] and 10 not in ids_x[1]
    assert (ids_x >= 0).all()
    ids_all, sc_all = KeySearcher(index).search_scored(q, 60)
    assert (ids_all[:, 50:] == -1).all() and np.isneginf(sc_all[:, 50:]).all()


def test_search_from_given_similarities_equals_the_index_search():
    """KeySearcher.search_scored with the queries' inner products given (the imputation's
    states by match length compute them anyway) returns what the FAISS search returns: the
    same ids and scores, exclusions, never-ids and padding included."""
    import faiss

    rng = np.random.default_rng(3)
    keys = rng.normal(size=(60, 16)).astype(np.float32)
    index = faiss.IndexFlatIP(16)
    index.add(keys)
    q = rng.normal(size=(7, 16)).astype(np.float32)
    sims = q @ keys.T
    exclude = np.stack([rng.choice(60, 2, replace=False) for _ in range(7)])
    for never in (None, np.array([5, 17, 41])):
        searcher = KeySearcher(index, never=never)
        for k, ex in ((10, None), (10, exclude), (58, exclude), (70, None)):
            a_ids, a_sc = searcher.search_scored(q, k, ex)
            b_ids, b_sc = searcher.search_scored(q, k, ex, similarities=sims)
            np.testing.assert_array_equal(a_ids, b_ids)
            np.testing.assert_allclose(a_sc, b_sc, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="similarities of shape"):
        KeySearcher(index).search_scored(q, 5, similarities=sims[:, :10])


@pytest.mark.parametrize(("n_layers", "block"), [(1, 0), (0, 0), (3, 8), (2, 5)])
def test_inference_encoder_and_head_equal_the_training_path(n_layers, block):
    """(``n_layers`` 0, which the config schema allows: the context is the slot embeddings on
    both paths; the training path's module cannot run without a layer. ``block``: attention
    within blocks of slots, masked on the training path, computed block by block at
    inference.)"""
    rng = np.random.default_rng(5)
    model = active_model(12, 5, n_layers=n_layers, block=block)
    position, layout, arrays = random_window(rng, n_var=90, n_typed=40, n_h=30)
    b, m = 4, layout.n_slots
    qs = (rng.random((b, m)) < 0.3).astype(np.int8)
    cand = np.stack([rng.permutation(30)[:12] for _ in range(b)])
    batch = assemble_batch(layout, arrays, np.ones(m, bool), position, qs, cand,
                           slot_af=rng.random((b, m)) * 0.5,
                           site_af=rng.random((b, layout.n_sites)) * 0.5)
    with torch.enable_grad():
        ctx_module = model.encode_query(batch)
        logits_module = model(batch, with_loss=False)[0]
        logits_module.sum().backward()  # the training path runs backwards too
        ctx_module, logits_module = ctx_module.detach(), logits_module.detach()
    assert model.tok.weight.grad is not None and model.tok.weight.grad.abs().sum() > 0
    with torch.no_grad():
        ctx_fast = model.encode_query(batch)
        logits_fast = model(batch, with_loss=False)[0]
    torch.testing.assert_close(ctx_fast, ctx_module, atol=1e-5, rtol=1e-5)
    # the probabilities everywhere; the logits where they are not saturated: near p = 1 the
    # copied probability's logit, log(p) - log1p(-p) in float32, turns the contexts' rounding
    # (within 1e-5 above) into ~1e-3 (one logit of 11.0 in 180 differed by 0.002 on a Xeon
    # with AVX512-FP16, the same 3e-8 in probability)
    torch.testing.assert_close(torch.sigmoid(logits_fast), torch.sigmoid(logits_module),
                               atol=1e-6, rtol=0)
    clear = logits_module.abs() < 9.0
    assert clear.float().mean() > 0.5
    torch.testing.assert_close(logits_fast[clear], logits_module[clear], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("grad", [True, False])
def test_blocked_attention_reads_only_its_own_block(grad):
    """With ``attention_block`` and one layer, a slot's context depends on the slots of its
    own block only (on the training path's mask and the inference path's blocks alike); a
    second layer's shifted blocks carry information across the first layer's edges."""
    torch.manual_seed(3)
    block, m = 8, 37  # blocks 0-7, 8-15, 16-23, 24-31, 32-36
    x = torch.randn(2, m, 16)
    y = x.clone()
    y[:, 20] = torch.randn(2, 16)  # a change in block 16-23 only
    for n_layers, changed in ((1, range(16, 24)), (2, range(12, 28))):
        model = VcfBert(ModelConfig(d_model=16, n_layers=n_layers, n_heads=2, d_ff=32,
                                    attention_block=block)).eval()
        with torch.set_grad_enabled(grad):
            delta = (model.encode_context(y) - model.encode_context(x)).detach().abs()
        moved = set(torch.nonzero(delta.amax(dim=(0, 2)) > 1e-6).flatten().tolist())
        assert moved == set(changed), (n_layers, sorted(moved))


def test_the_fused_head_refuses_another_activation():
    """The kernel computes the exact (erf) GELU of the output head itself: a model whose head
    has another activation is refused with an error, not computed with the wrong one."""
    rng = np.random.default_rng(6)
    model = active_model(12, 6)
    position, layout, arrays = random_window(rng, n_var=90, n_typed=40, n_h=30)
    b, m = 2, layout.n_slots
    qs = (rng.random((b, m)) < 0.3).astype(np.int8)
    cand = np.stack([rng.permutation(30)[:12] for _ in range(b)]).astype(np.int64)
    kw = dict(tokens=query_tokens(qs, np.ones(m, bool)),
              slot_af=rng.random((b, m)).astype(np.float32) * 0.5,
              site_af=rng.random((b, layout.n_sites)).astype(np.float32) * 0.5,
              cand_ids=cand, cand_sim=rng.random((b, 12)).astype(np.float32))
    geo = WindowGeometry.of(layout, position)
    logits, _ = fast_logits(model, geo, arrays, **kw)
    assert logits.shape == (b, layout.n_sites) and torch.isfinite(logits).all()
    model.out_head[1] = torch.nn.GELU(approximate="tanh")
    with pytest.raises(ValueError, match="exact GELU"):
        fast_logits(model, geo, arrays, **kw)


@pytest.mark.parametrize(("core", "context", "outside"),
                         [((30, 90), 3, "both sides"), ((0, 50), 3, "right"),
                          ((70, 120), 2, "left"), ((30, 90), 0, "none"), ((40, 80), 40, "none")])
def test_outer_slot_tables_give_the_same_parameters_and_logits(core, context, outside):
    """The slots outside the transformer's context from tables per slot and token (the
    targets' case: every query has the panel's frequencies) against the model run per query:
    the same mismatch penalties, emission terms and switch probabilities at every slot (the
    context's edges included, with the core at either end of the window or the context
    covering every slot), and the same logits and leave-one-out probabilities."""
    from vcfbert.model.outer_slots import (
        covers_sites,
        outer_slot_tables,
        shared_copy_parameters,
    )

    rng = np.random.default_rng(7)
    k, b, n_h, n_var = 12, 6, 40, 120
    model = active_model(k, 5, 0, context)
    position = np.sort(rng.choice(np.arange(1, 200_000), n_var, replace=False))
    typed = np.sort(rng.choice(n_var, 40, replace=False))
    layout = make_layout(position, typed, 0, n_var, *core)
    haps = (rng.random((n_h, n_var)) < rng.random(n_var) * 0.5).astype(np.int8)
    arrays = WindowArrays.of(np.ascontiguousarray(haps[:, layout.slot_index]),
                             np.ascontiguousarray(haps[:, layout.core_start:layout.core_end]))
    geo = WindowGeometry.of(layout, position)
    m = layout.n_slots
    slot_observed = rng.random(m) < 0.8  # masked slots: the MASK token's table rows
    qs = (rng.random((b, m)) < 0.3).astype(np.int8)
    qs[rng.random((b, m)) < 0.1] = -1
    tokens = query_tokens(qs, slot_observed)
    assert set(np.unique(tokens)) == {0, 1, 2}
    af_row = rng.random(m).astype(np.float32) * 0.5
    slot_af = np.broadcast_to(af_row.astype(np.float64), (b, m))  # as frequencies() gives
    site_af = np.broadcast_to(rng.random(layout.n_sites).astype(np.float32) * 0.5,
                              (b, layout.n_sites))
    tables = outer_slot_tables(model, geo.slot_index, geo.slot_core_dist,
                               torch.from_numpy(af_row), geo.slot_gap_bp)
    assert covers_sites(tables, geo.site_left, geo.site_right)
    lo, hi = tables.lo, tables.hi
    assert (lo > 0, hi < m) == {"both sides": (True, True), "right": (False, True),
                                "left": (True, False), "none": (False, False)}[outside]
    # one query with another's tokens at the context's slots only, one a copy of another:
    # each distinct context is encoded once
    tokens[5, lo:hi] = tokens[0, lo:hi]
    tokens[4] = tokens[1]
    tok = torch.from_numpy(tokens.astype(np.int64))
    af_t = torch.from_numpy(np.ascontiguousarray(slot_af, np.float32))
    with torch.no_grad():
        want = model.copy_parameters(model.encode_tokens(tok, geo.slot_index,
                                                         geo.slot_core_dist, af_t),
                                     af_t, geo.slot_gap_bp)
        context_ctx = model.out_norm(model.encode_context(model.slot_embedding(
            tok[:, lo:hi], geo.slot_index[lo:hi], geo.slot_core_dist[lo:hi], af_t[:, lo:hi])))
        got = shared_copy_parameters(model, tables, tok, context_ctx, af_t[0], geo.slot_gap_bp)
    assert want[2].std() > 1e-3 and want[0].std() > 1e-3  # active heads: a real comparison
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-6, atol=1e-7)
    cand = np.stack([rng.permutation(n_h)[:k] for _ in range(b)]).astype(np.int64)
    sim = rng.random((b, k)).astype(np.float32)
    kw = dict(tokens=tokens, slot_af=slot_af, site_af=site_af, cand_ids=cand, cand_sim=sim)
    plain, plain_loo = fast_logits(model, geo, arrays, **kw)
    shared, shared_loo = fast_logits(model, geo, arrays, outer=tables, **kw)
    np.testing.assert_allclose(torch.sigmoid(shared).numpy(), torch.sigmoid(plain).numpy(),
                               atol=1e-6)
    np.testing.assert_allclose(shared_loo, plain_loo, atol=1e-6)
    with pytest.raises(ValueError, match="context covers"):
        shared_copy_parameters(model, tables, tok, context_ctx[:, 1:], af_t[0], geo.slot_gap_bp)
