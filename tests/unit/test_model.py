"""The network: shapes, gradients through the retrieved path, checkpoints without pickle code."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vcfbert.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from vcfbert.errors import InputError, IntegrityError
from vcfbert.model import MASK, ModelConfig, VcfBert, WindowBatch


def make_batch(b=3, K=10, m=12, n=20, seed=0, all_masked=False) -> WindowBatch:
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(0, 2, (b, m), generator=g)
    if all_masked:
        q = torch.full((b, m), MASK)
    interval = torch.sort(torch.randint(0, m + 1, (n,), generator=g)).values
    return WindowBatch(
        query_tokens=q, slot_observed=torch.ones(m, dtype=torch.bool),
        slot_index=torch.arange(m), slot_core_dist=torch.clamp(torch.arange(m) - 4, min=0),
        slot_gap_bp=torch.full((m,), 3000.0), slot_af=torch.rand(b, m, generator=g),
        cand_tokens=torch.randint(0, 2, (b, K, m), generator=g),
        cand_sites=torch.randint(0, 2, (b, K, n), generator=g).float(),
        cand_valid=torch.ones(b, K, dtype=torch.bool), site_interval=interval,
        site_left=(interval - 1).clamp(0, m - 1), site_right=interval.clamp(0, m - 1),
        site_frac=torch.rand(n, generator=g), site_af=torch.rand(b, n, generator=g) * 0.1,
        targets=torch.randint(0, 2, (b, n), generator=g).float(),
        loss_mask=torch.ones(b, n, dtype=torch.bool), site_weight=torch.ones(b, n))


def tiny_config(**kw) -> ModelConfig:
    base = dict(d_model=16, n_layers=1, n_heads=2, d_ff=32, d_key=16, k_retrieve=10, k_keep=6,
                max_slots=64, max_core_dist=16)
    return ModelConfig(**{**base, **kw})


def test_forward_backward_shapes():
    torch.manual_seed(0)
    model = VcfBert(tiny_config())
    batch = make_batch()
    logits, loss = model(batch)
    assert logits.shape == (3, 20)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_gradient_reaches_token_embedding_through_retrieved_haplotypes():
    """With every query token MASKed, REF/ALT embedding rows are used only to re-embed the
    retrieved candidates: a non-zero gradient there proves the retrieval path is learnable."""
    torch.manual_seed(0)
    model = VcfBert(tiny_config())
    # make the zero-initialised heads active so the paths carry signal
    for head in (model.emit_head, model.out_head):
        torch.nn.init.normal_(head[-1].weight, std=0.1)
    batch = make_batch(all_masked=True)
    _, loss = model(batch)
    loss.backward()
    grad = model.tok.weight.grad
    assert grad is not None
    assert float(grad[:2].abs().sum()) > 0  # REF and ALT rows: candidates only
    # and the key encoder (retrieval scores with gradients) learns too
    assert float(model.keys.slot_vectors.grad.abs().sum()) >= 0


def test_key_similarity_gets_gradient():
    torch.manual_seed(0)
    model = VcfBert(tiny_config())
    with torch.no_grad():
        model.prior_scale.fill_(1.0)
    _, loss = model(make_batch())
    loss.backward()
    assert float(model.keys.slot_vectors.grad.abs().sum()) > 0
    assert float(model.prior_scale.grad.abs()) > 0


def test_invalid_candidates_are_not_copied():
    torch.manual_seed(0)
    model = VcfBert(tiny_config(k_keep=10))
    batch = make_batch()
    batch.cand_valid[:, 5:] = False
    batch.cand_sites[:, 5:] = 1.0
    batch.cand_sites[:, :5] = 0.0
    logits, _ = model(batch)
    assert float(torch.sigmoid(logits.detach()).max()) < 0.05


def test_initial_model_copies_a_perfect_match():
    """At initialisation the fusion is a Li-Stephens copier: one candidate identical to the
    query everywhere dominates and its alleles are copied."""
    torch.manual_seed(0)
    model = VcfBert(tiny_config(k_keep=10))
    batch = make_batch(n=8)
    batch.cand_tokens[:, 0] = batch.query_tokens
    batch.cand_tokens[:, 1:] = 1 - batch.query_tokens[:, None, :]
    batch.cand_sites[:, 0] = 1.0
    batch.cand_sites[:, 1:] = 0.0
    with torch.no_grad():
        probs = torch.sigmoid(model(batch)[0])
    assert float(probs.min()) > 0.95


def test_checkpoint_round_trip_weights_only(tmp_path):
    torch.manual_seed(0)
    model = VcfBert(tiny_config())
    opt = torch.optim.AdamW(model.parameters())
    save_checkpoint(tmp_path / "m.pt", model, epoch=3, step=42, optimizer=opt,
                    rng={"torch": torch.get_rng_state()}, metrics={"x": 1.0})
    state = load_checkpoint(tmp_path / "m.pt")
    again = model_from_checkpoint(state)
    assert state["epoch"] == 3 and state["step"] == 42
    for a, b in zip(model.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    batch = make_batch()
    model.eval()
    again.eval()
    assert torch.equal(model(batch)[0], again(batch)[0])


def test_copying_states_at_inference_replace_the_trained_number(tmp_path):
    """impute.copying_states: more (or fewer) states than trained, same weights; the retrieval
    margin (k_retrieve - k_keep) is kept; 0 keeps the checkpoint's; negative is refused."""
    model = VcfBert(tiny_config())
    save_checkpoint(tmp_path / "m.pt", model, epoch=0, step=0)
    state = load_checkpoint(tmp_path / "m.pt")
    k, margin = model.cfg.k_keep, model.cfg.k_retrieve - model.cfg.k_keep
    same = model_from_checkpoint(state)
    assert (same.cfg.k_keep, same.cfg.k_retrieve) == (k, k + margin)
    more = model_from_checkpoint(state, copying_states=k + 5)
    assert (more.cfg.k_keep, more.cfg.k_retrieve) == (k + 5, k + 5 + margin)
    for a, b in zip(same.state_dict().values(), more.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert load_checkpoint(tmp_path / "m.pt")["model_config"]["k_keep"] == k  # file untouched
    with pytest.raises(InputError, match="copying_states"):
        model_from_checkpoint(state, copying_states=-1)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    p = tmp_path / "m.pt"
    p.write_bytes(b"not a checkpoint")
    with pytest.raises(IntegrityError, match="unreadable checkpoint.*delete it"):
        load_checkpoint(p)


def test_config_errors():
    with pytest.raises(ValueError, match="multiple of"):
        ModelConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="k_keep"):
        ModelConfig(k_keep=200, k_retrieve=100)


def test_maf_weights():
    from vcfbert.model.network import maf_weight

    af = torch.tensor([0.0005, 0.01, 0.05, 0.5])
    v18 = maf_weight(af, "v18")
    assert torch.allclose(v18[:3], torch.full((3,), 3.0))  # saturates below MAF ~5%
    inv = maf_weight(af, "inv_sqrt")
    assert inv[0] > inv[1] > inv[2] > inv[3]
    assert torch.equal(maf_weight(af, "none"), torch.ones(4))
    assert np.isclose(float(inv[3]), 1.0, atol=0.01)


def test_initial_switch_rate_follows_the_panel_size():
    """Beagle's scaling: 4 * ne / (reference haplotypes) switches per Morgan; checkpoints
    without a panel size keep dividing by k_keep."""
    import math

    big = VcfBert(tiny_config(ne_init=200_000, n_reference_haplotypes=6_000))
    assert math.isclose(big.log_rate.exp().item(), 4 * 200_000 / 6_000, rel_tol=1e-6)
    small = VcfBert(tiny_config(ne_init=200_000, n_reference_haplotypes=1_200))
    assert small.log_rate.item() > big.log_rate.item()
    legacy = tiny_config(ne_init=40_000)
    assert legacy.initial_switch_rate() == 4 * 40_000 / legacy.k_keep


def test_output_head_width():
    """d_head sets the per-site head's hidden width; 0 (and configs without the key, i.e.
    older checkpoints) keep 2 * d_model."""
    assert VcfBert(tiny_config(d_head=8)).out_head[0].out_features == 8
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k != "d_head"}
    cfg = ModelConfig.from_dict(legacy)
    assert VcfBert(cfg).out_head[0].out_features == 2 * cfg.d_model
    with pytest.raises(ValueError, match="d_head"):
        ModelConfig(d_head=-1)


def test_attention_block_config():
    """``attention_block``: 0 (and configs without the key, i.e. checkpoints made before it)
    is full attention; 1 (a block of one slot: no context) and negative values are refused
    with the key's name."""
    legacy = {k: v for k, v in tiny_config().to_dict().items() if k != "attention_block"}
    assert ModelConfig.from_dict(legacy).attention_block == 0
    assert ModelConfig(attention_block=2).attention_block == 2
    for bad in (1, -4):
        with pytest.raises(InputError, match="model.attention_block"):
            ModelConfig(attention_block=bad)


def test_keys_same_with_and_without_gradients():
    """The key encoder gathers one value per token without gradients, and with them (on a
    CPU) gathers through ``_TokenValue``, whose backward counts each token's gradient with
    bincount: the keys are bit-identical, and the token embedding's gradient equals autograd
    through the plain gather."""
    torch.manual_seed(3)
    model = VcfBert(ModelConfig(d_model=16, n_heads=2, n_layers=1, d_ff=32, k_retrieve=8,
                                k_keep=4))
    with torch.no_grad():
        model.keys.u.normal_()  # a token table that depends on the embedding
    tok = torch.randint(0, 3, (5, 7, 20))
    slots, dist = torch.arange(20), (torch.arange(20) - 10).abs()
    with torch.no_grad():
        fast = model.key(tok, slots, dist)
    slow = model.key(tok, slots, dist)
    assert slow.requires_grad and torch.equal(fast, slow)
    slow.sum().backward()
    via_onehot = model.tok.weight.grad.clone()
    model.zero_grad()
    table = model.keys.allele_sign + model.tok.weight @ model.keys.u
    w = torch.exp(model.keys.log_weight[dist])
    vec = model.keys.slot_vectors[slots]
    torch.nn.functional.normalize((table[tok] * w) @ vec, dim=-1).sum().backward()
    torch.testing.assert_close(model.tok.weight.grad, via_onehot)


def test_rescoring_keeps_the_forced_candidates():
    """Candidates marked ``cand_forced`` (states by match length) are kept whatever their
    similarity, the rest of the k_keep places go to the most similar others, and an invalid
    candidate is never kept even when marked."""
    torch.manual_seed(0)
    model = VcfBert(tiny_config())  # k_retrieve 10, k_keep 6
    batch = make_batch()
    base_sim, base_keep = model.rescore(batch)
    assert base_sim.shape == (3, 6)
    forced = torch.zeros(3, 10, dtype=torch.bool)
    for q in range(3):  # force three candidates that plain re-scoring drops
        dropped = sorted(set(range(10)) - set(base_keep[q].tolist()))
        forced[q, dropped[:3]] = True
    forced[0, 9] = True
    batch.cand_valid[0, 9] = False  # marked but invalid: never kept
    batch.cand_forced = forced
    _, keep = model.rescore(batch)
    for q in range(3):
        kept = set(keep[q].tolist())
        want_forced = {c for c in range(10) if forced[q, c] and batch.cand_valid[q, c]}
        assert want_forced <= kept
        assert 9 not in kept or q != 0
    batch.cand_forced = None
    _, keep_plain = model.rescore(batch)
    assert not torch.equal(keep_plain, keep)


def test_context_range_covers_the_slots_near_the_core():
    from vcfbert.model.network import context_range

    dist = torch.tensor([4, 3, 2, 1, 0, 0, 0, 1, 2, 3])
    assert context_range(dist, 0) == (0, 10)
    assert context_range(dist, 1) == (3, 8)
    assert context_range(dist, 3) == (1, 10)
    assert context_range(dist, 9) == (0, 10)


@pytest.mark.parametrize("grad", [False, True])
def test_slots_outside_the_context_keep_their_own_embedding(grad):
    """With context_flank_slots, a token outside the transformer's range changes its own
    slot's context only, and one inside does not reach the slots outside; the training
    (module) and inference (fused) encoders agree."""
    torch.manual_seed(0)
    model = VcfBert(tiny_config(context_flank_slots=2)).eval()
    m = 12
    dist = torch.clamp(torch.abs(torch.arange(m) - 5.5) - 1.5, min=0).long()  # core: slots 4-7
    idx = torch.arange(m)
    af = torch.rand(1, m)
    tok = torch.randint(0, 2, (1, m))
    with torch.set_grad_enabled(grad):
        base = model.encode_tokens(tok, idx, dist, af).detach()
        outer = tok.clone()
        outer[0, 0] = 1 - outer[0, 0]  # distance 4: outside the context
        moved = model.encode_tokens(outer, idx, dist, af).detach()
        inner = tok.clone()
        inner[0, 5] = 1 - inner[0, 5]  # a core slot
        moved_in = model.encode_tokens(inner, idx, dist, af).detach()
    changed = (moved - base).abs().amax(-1)[0] > 1e-6
    assert changed.tolist() == [True] + [False] * (m - 1)
    changed_in = (moved_in - base).abs().amax(-1)[0] > 1e-6
    lo, hi = 2, 10  # within 2 slots of the core
    assert changed_in[lo:hi].all() and not changed_in[:lo].any() and not changed_in[hi:].any()
    with torch.no_grad():
        fused = model.encode_tokens(tok, idx, dist, af)
    with torch.enable_grad():
        module = model.encode_tokens(tok, idx, dist, af).detach()
    torch.testing.assert_close(fused, module, atol=1e-5, rtol=1e-5)


def test_copy_parameters_equal_the_heads_on_concatenated_inputs():
    """copy_parameters applies each head's first layer to the parts of its input and sums
    them; values and gradients equal the heads run on the concatenated inputs (the modules'
    own forward), with every head's weights random."""
    torch.manual_seed(3)
    model = VcfBert(tiny_config())
    for head in (model.rate_head, model.mismatch_head, model.emit_head):
        for p in head.parameters():
            torch.nn.init.normal_(p, std=0.3)
    b, m, d = 3, 12, model.cfg.d_model
    q_ctx = torch.randn(b, m, d, requires_grad=True)
    slot_af = torch.rand(b, m)
    gap = torch.rand(m) * 5e4

    def reference() -> tuple[torch.Tensor, ...]:
        from vcfbert.model.network import MORGAN_PER_BP, af_features

        mu = torch.nn.functional.softplus(model.mismatch_bias + model.mismatch_head(
            torch.cat([q_ctx, af_features(slot_af)], -1)).squeeze(-1))
        tok01 = model.tok.weight[:2]
        pair = torch.cat([q_ctx[:, :, None, :].expand(-1, -1, 2, -1),
                          tok01[None, None].expand(b, m, -1, -1)], -1)
        s = model.emit_head(pair).squeeze(-1)
        prev = torch.cat([q_ctx[:, :1], q_ctx[:, :-1]], 1)
        log_rate = model.log_rate + model.rate_head(torch.cat([prev, q_ctx], -1)).squeeze(-1)
        rho = -torch.expm1(-torch.exp(log_rate) * gap[None] * (MORGAN_PER_BP
                                                               * model.cfg.cm_per_mb))
        return mu, s, rho

    got, want = model.copy_parameters(q_ctx, slot_af, gap), reference()
    assert got[1].shape == (b, m, 2)
    for x, y in zip(got, want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6)
    weights = [torch.randn_like(x) for x in got]
    params = [q_ctx, model.tok.weight, *model.rate_head.parameters(),
              *model.mismatch_head.parameters(), *model.emit_head.parameters()]
    g_got = torch.autograd.grad(sum((x * w).sum() for x, w in zip(got, weights, strict=True)), params)
    g_want = torch.autograd.grad(sum((x * w).sum() for x, w in zip(want, weights, strict=True)), params)
    for x, y in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)
