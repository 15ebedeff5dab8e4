"""VcfBert: a retrieval-augmented transformer that imputes one haplotype window.

Dimensions: ``b`` queries (haplotype-windows), ``m`` slots (typed sites of the window), ``n``
core sites to predict, ``K`` retrieved candidates, ``k`` kept candidates, ``d`` model width.

Pipeline of :meth:`VcfBert.forward`:

1. **Query encoder** — token (REF/ALT/MASK) + slot position + distance-to-core + allele
   frequency embeddings, then a transformer along the slots (linkage disequilibrium):
   ``q_ctx [b, m, d]``.
2. **Re-scoring** — the ``K`` candidates fetched from the (possibly stale) FAISS index are
   re-keyed with the *current* :class:`KeyEncoder` (gradients on), and the best ``k`` are kept.
3. **Fusion: copying attention** — a Li–Stephens HMM over the ``k`` candidates whose switch
   rates, mismatch penalties, per-candidate emission terms (the candidates' tokens re-embedded
   with the shared token embedding) and switch prior (key similarity) are produced by the
   network; its posterior is the attention every slot pays to every retrieved haplotype.
4. **Output** — at each core site, the attention is interpolated between the flanking slots and
   used to copy the candidates' alleles; a head combines the copied probability with the query
   context and the allele frequency into a logit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import torch
import torch.nn.functional as F
from torch import nn

from ..tokens import ALT, MASK, REF  # noqa: F401 - re-exported
from .config import ModelConfig
from .features import carrier_features, run_totals
from .hmm import forward_backward, leave_one_out_alt

MORGAN_PER_BP = 1e-8  # scaled by ModelConfig.cm_per_mb


@dataclasses.dataclass
class WindowBatch:
    """Tensors for ``b`` queries of one window (see module docstring for dimensions)."""

    query_tokens: torch.Tensor  # long [b, m] 0 REF, 1 ALT, 2 MASK (unobserved or missing)
    slot_observed: torch.Tensor  # bool [m] slots observed under the mask (keys use these)
    slot_index: torch.Tensor  # long [m] slot number in the window (0..m-1)
    slot_core_dist: torch.Tensor  # long [m] slots away from the core (0 inside)
    slot_gap_bp: torch.Tensor  # float [m] bp from the previous slot (0 for the first)
    slot_af: torch.Tensor  # float [b, m] panel ALT frequency (leave-one-out in training)
    cand_tokens: torch.Tensor  # int8 (or any integer) [b, K, m] candidate alleles at the slots (0/1)
    cand_sites: torch.Tensor  # float [b, K, n] candidate alleles at the core sites
    cand_valid: torch.Tensor  # bool [b, K] candidate exists
    site_interval: torch.Tensor  # long [n] interval (0..m) of each core site
    site_left: torch.Tensor  # long [n] slot on the left of each core site (clipped)
    site_right: torch.Tensor  # long [n] slot on the right (clipped)
    site_frac: torch.Tensor  # float [n] position between left (0) and right (1) slot
    site_af: torch.Tensor  # float [b, n] ALT frequency of the core sites
    targets: torch.Tensor | None = None  # float [b, n] true alleles (0/1)
    loss_mask: torch.Tensor | None = None  # bool [b, n] sites that count in the loss
    site_weight: torch.Tensor | None = None  # float [b, n] loss weight (MAF weighting)
    cand_forced: torch.Tensor | None = None  # bool [b, K] kept by re-scoring whatever their
    #                                          similarity (the copying states by match length)

    def to(self, device: torch.device | str) -> WindowBatch:
        return WindowBatch(**{f.name: (v.to(device) if isinstance(v, torch.Tensor) else v)
                              for f in dataclasses.fields(self)
                              for v in [getattr(self, f.name)]})


def af_features(af: torch.Tensor) -> torch.Tensor:
    """float [..., ] -> [..., 3]: ALT frequency, MAF, log10 MAF (scaled)."""
    maf = torch.minimum(af, 1 - af).clamp_min(0)
    return torch.stack([af, maf, torch.log10(maf + 1e-4) / 4.0], dim=-1)


class KeyEncoder(nn.Module):
    """Learnable retrieval key of a haplotype window over its *observed* slots.

    ``key = normalize(sum_i w(dist_i) * phi(token_i) * R[slot_i])`` with ``phi`` a scalar per
    token from the shared token embedding, ``w`` a learned weight by distance to the core and
    ``R`` learned slot vectors. At initialisation ``phi(REF) = -1``, ``phi(ALT) = +1``,
    ``phi(MASK) = 0`` and ``w = decay ** dist``, so the inner product of two keys approximates
    a core-centred Hamming similarity.
    """

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.allele_sign = nn.Parameter(torch.tensor([-1.0, 1.0, 0.0]))
        self.u = nn.Parameter(torch.zeros(cfg.d_model))
        dist = torch.arange(cfg.max_core_dist + 1, dtype=torch.float32)
        self.log_weight = nn.Parameter(dist * math.log(cfg.key_decay) / 2)
        gen = torch.Generator().manual_seed(1234)
        self.slot_vectors = nn.Parameter(
            torch.randn(cfg.max_slots, cfg.d_key, generator=gen) / math.sqrt(cfg.d_key))
        self.max_slots = cfg.max_slots
        self.max_core_dist = cfg.max_core_dist

    def forward(self, tokens: torch.Tensor, slot_index: torch.Tensor,
                slot_core_dist: torch.Tensor, token_weight: torch.Tensor) -> torch.Tensor:
        """tokens [..., m] (any integer type; 0 REF, 1 ALT, 2 MASK) -> L2-normalised keys
        float [..., d_key]."""
        if tokens.dtype not in (torch.int32, torch.int64):
            tokens = tokens.to(torch.int32)  # an index type (int8, e.g. candidates', is not)
        table = self.allele_sign + token_weight @ self.u  # [3]: one value per token
        if torch.is_grad_enabled() and table.requires_grad:
            if tokens.device.type == "cpu":
                # a gather whose backward counts the gradient per token in one pass
                # (bincount): 7 ms against 53 ms for one-hot @ table at [16, 448, 382]
                phi = _TokenValue.apply(table, tokens)
            else:
                # one-hot @ table: its backward is a matmul (deterministic on a GPU, where
                # bincount and the gather's scatter-add use atomics)
                phi = (F.one_hot(tokens.long(), 3).to(table.dtype) @ table[:, None]).squeeze(-1)
        else:
            phi = table[tokens]  # [..., m]: a gather, no one-hot [..., m, 3] is built
        w = torch.exp(self.log_weight[slot_core_dist.clamp_max(self.max_core_dist)])  # [m]
        vec = self.slot_vectors[slot_index.clamp_max(self.max_slots - 1)]  # [m, d_key]
        return F.normalize((phi * w) @ vec, dim=-1)


class _TokenValue(torch.autograd.Function):
    """``table[tokens]`` for a 3-entry ``table``; the gradient of each entry is the sum of the
    output gradient over its tokens, counted in float64 by ``torch.bincount`` (CPU)."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(tokens)
        ctx.n = table.shape[0]
        return table[tokens]

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (tokens,) = ctx.saved_tensors
        counts = torch.bincount(tokens.reshape(-1), weights=grad.reshape(-1), minlength=ctx.n)
        return counts.to(grad.dtype), None


def attention_block_ids(m: int, block: int, shifted: bool) -> torch.Tensor:
    """Block number long [m] of each of ``m`` slots under blocked attention
    (``ModelConfig.attention_block``): runs of ``block`` consecutive slots from slot 0, or,
    ``shifted``, a first run of ``block // 2`` slots and then runs of ``block``; the last run
    holds what is left."""
    offset = block - block // 2 if shifted else 0
    return torch.div(torch.arange(m) + offset, block, rounding_mode="floor")


def attention_block_mask(m: int, block: int, shifted: bool) -> torch.Tensor:
    """bool [m, m]: True where slot i may *not* attend to slot j (another block), the
    convention of ``nn.TransformerEncoderLayer``'s ``src_mask``."""
    ids = attention_block_ids(m, block, shifted)
    return ids[:, None] != ids[None, :]


def _blocked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int,
                       shifted: bool) -> torch.Tensor:
    """Attention within blocks (:func:`attention_block_ids`) of q, k, v float [b, h, m, dh]:
    the same values as ``scaled_dot_product_attention`` under :func:`attention_block_mask`,
    at a cost linear in ``m``: each run of equal-sized consecutive blocks is one call with the
    blocks as extra heads. Returns float [b, h, m, dh]."""
    b, h, m, dh = q.shape
    sizes = torch.unique_consecutive(attention_block_ids(m, block, shifted),
                                     return_counts=True)[1].tolist()
    out = torch.empty_like(q)
    lo = 0
    for size, run in itertools.groupby(sizes):
        nb = len(list(run))
        hi = lo + nb * size
        part = [t[:, :, lo:hi].reshape(b, h * nb, size, dh) for t in (q, k, v)]
        out[:, :, lo:hi] = F.scaled_dot_product_attention(*part).view(b, h, nb * size, dh)
        lo = hi
    return out


def encoder_inference(encoder: nn.TransformerEncoder, x: torch.Tensor,
                      attention_block: int = 0) -> torch.Tensor:
    """``encoder(x)`` for x float [b, m, d] without dropout or gradients, its attention through
    ``scaled_dot_product_attention`` (PyTorch's fused kernels; faster on a CPU than the
    module's own inference path at m ~ 300, see docs/model.md). Pre-norm layers with GELU, as
    built in :class:`VcfBert`; tested against the module. ``attention_block`` > 0: each layer
    attends within blocks of slots (:func:`attention_block_ids`, shifted in odd layers), as
    the module does under :func:`attention_block_mask`."""
    b, m, d = x.shape
    for i, layer in enumerate(encoder.layers):
        attn = layer.self_attn
        h = attn.num_heads
        qkv = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)
        q, k, v = qkv.view(b, m, 3, h, d // h).permute(2, 0, 3, 1, 4)
        if attention_block > 0:
            a = _blocked_attention(q, k, v, attention_block, shifted=i % 2 == 1)
        else:
            a = F.scaled_dot_product_attention(q, k, v)
        x = x + attn.out_proj(a.transpose(1, 2).reshape(b, m, d))
        x = x + layer.linear2(F.gelu(layer.linear1(layer.norm2(x))))
    return x


def context_range(slot_core_dist: torch.Tensor, flank: int) -> tuple[int, int]:
    """``(lo, hi)``: the slots ``lo:hi`` within ``flank`` slots of the core, from the slots'
    distances to the core ``slot_core_dist`` long [m] (0 inside it); all when ``flank`` is 0
    or no slot is that close."""
    m = int(slot_core_dist.shape[0])
    if flank <= 0:
        return 0, m
    near = torch.nonzero(slot_core_dist <= flank).flatten()
    if near.numel() == 0:
        return 0, m
    return int(near[0]), int(near[-1]) + 1


def _first_layer_parts(layer: nn.Linear, *parts: torch.Tensor) -> list[torch.Tensor]:
    """``layer`` applied to each part of its concatenated input separately (its weight's
    columns split by the parts' widths, the bias added to the first part's), so that the
    parts' sum (broadcast) equals ``layer(torch.cat(parts, -1))`` without building the
    concatenation."""
    out, col = [], 0
    for i, x in enumerate(parts):
        width = x.shape[-1]
        out.append(F.linear(x, layer.weight[:, col:col + width], layer.bias if i == 0 else None))
        col += width
    return out


def _mlp(d_in: int, d_hidden: int, d_out: int) -> nn.Sequential:
    last = nn.Linear(d_hidden, d_out)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(nn.Linear(d_in, d_hidden), nn.GELU(), last)


class VcfBert(nn.Module):
    """The imputation model; see the module docstring."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.tok = nn.Embedding(3, d)
        self.slot_pos = nn.Embedding(cfg.max_slots, d)
        self.core_dist = nn.Embedding(cfg.max_core_dist + 1, d)
        self.af_proj = nn.Linear(3, d)
        self.in_norm = nn.LayerNorm(d)
        layer = nn.TransformerEncoderLayer(d, cfg.n_heads, cfg.d_ff, cfg.dropout,
                                           batch_first=True, norm_first=True,
                                           activation="gelu")
        self.encoder = nn.TransformerEncoder(layer, cfg.n_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.keys = KeyEncoder(cfg)
        self.prior_scale = nn.Parameter(torch.zeros(()))
        self.log_rate = nn.Parameter(torch.tensor(math.log(cfg.initial_switch_rate())))
        self.rate_head = _mlp(2 * d, d, 1)
        self.mismatch_bias = nn.Parameter(torch.tensor(math.log((1 - cfg.err_init)
                                                                / cfg.err_init)))
        self.mismatch_head = _mlp(d + 3, d, 1)
        self.emit_head = _mlp(2 * d, d, 1)
        self.copy_scale = nn.Parameter(torch.ones(()))
        self.out_head = _mlp(2 * d + 10, cfg.head_width(), 1)

    # -- parts ---------------------------------------------------------------------------
    def encode_query(self, batch: WindowBatch) -> torch.Tensor:
        """Query context ``q_ctx`` float [b, m, d]."""
        return self.encode_tokens(batch.query_tokens, batch.slot_index, batch.slot_core_dist,
                                  batch.slot_af)

    def encode_tokens(self, query_tokens: torch.Tensor, slot_index: torch.Tensor,
                      slot_core_dist: torch.Tensor, slot_af: torch.Tensor) -> torch.Tensor:
        """Query context float [b, m, d] of tokens long [b, m] (see :class:`WindowBatch`).

        The transformer covers the slots within ``cfg.context_flank_slots`` of the core (all
        when 0; they are contiguous: ``slot_core_dist`` [m] falls towards the core and rises
        after it); the slots outside keep their own normalised embedding."""
        x = self.slot_embedding(query_tokens, slot_index, slot_core_dist, slot_af)
        lo, hi = context_range(slot_core_dist, self.cfg.context_flank_slots)
        inner = self.encode_context(x[:, lo:hi])
        if lo > 0 or hi < x.shape[1]:
            inner = torch.cat([x[:, :lo], inner, x[:, hi:]], dim=1)
        return self.out_norm(inner)

    def slot_embedding(self, query_tokens: torch.Tensor, slot_index: torch.Tensor,
                       slot_core_dist: torch.Tensor, slot_af: torch.Tensor) -> torch.Tensor:
        """Each slot's own embedding float [b, m, d], normalised (``in_norm``): its token long
        [b, m], its number slot_index [m] and distance to the core slot_core_dist [m], its
        ALT frequency slot_af [b, m]. Outside the transformer's context, the query context is
        this embedding under ``out_norm``."""
        cfg = self.cfg
        return self.in_norm(self.tok(query_tokens)
                            + self.slot_pos(slot_index.clamp_max(cfg.max_slots - 1))[None]
                            + self.core_dist(slot_core_dist.clamp_max(cfg.max_core_dist))[None]
                            + self.af_proj(af_features(slot_af)))

    def encode_context(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer over slot embeddings x float [b, c, d] (the context's slots), before
        ``out_norm``; without gradients through ``encoder_inference``. With
        ``cfg.attention_block`` each layer attends within blocks of slots (the module under
        :func:`attention_block_mask` with gradients, block by block without). With
        ``n_layers`` 0 the embeddings themselves (``nn.TransformerEncoder`` cannot run
        without a layer)."""
        if len(self.encoder.layers) == 0:
            return x
        block = self.cfg.attention_block
        if not (self.training or torch.is_grad_enabled()):
            return encoder_inference(self.encoder, x, block)
        if block <= 0:
            return self.encoder(x)
        for i, layer in enumerate(self.encoder.layers):  # the encoder has no final norm
            mask = attention_block_mask(x.shape[1], block, shifted=i % 2 == 1).to(x.device)
            x = layer(x, src_mask=mask)
        return x

    def key(self, tokens: torch.Tensor, slot_index: torch.Tensor,
            slot_core_dist: torch.Tensor) -> torch.Tensor:
        """Retrieval keys float [..., d_key] of token rows long [..., m]."""
        return self.keys(tokens, slot_index, slot_core_dist, self.tok.weight)

    def rescore(self, batch: WindowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Current-weight similarity of the K candidates and the indices of the best k.

        Returns:
            (sim float [b, k], keep long [b, k]).
        """
        obs = batch.slot_observed
        q_key = self.key(batch.query_tokens, batch.slot_index, batch.slot_core_dist)
        c_tok = torch.where(obs, batch.cand_tokens, MASK)  # MASK where the query's is masked
        c_key = self.key(c_tok, batch.slot_index, batch.slot_core_dist)  # [b, K, d_key]
        sim = torch.einsum("bkd,bd->bk", c_key, q_key)
        k = min(self.cfg.k_keep, sim.shape[1])
        masked = sim.detach().masked_fill(~batch.cand_valid, -1e4)
        if batch.cand_forced is not None:  # above any similarity (keys are unit vectors)
            masked = masked + 1e3 * (batch.cand_forced & batch.cand_valid)
        keep = masked.topk(k, dim=1).indices.sort(dim=1).values
        return sim.gather(1, keep), keep

    # -- copying-layer parameters (shared by the training path and the fast inference path) --
    def switch_prior(self, sim: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Switch-target distribution float [b, k] from key similarities [b, k]."""
        return torch.softmax((self.prior_scale * 10.0 * sim).masked_fill(~valid, -1e4), dim=1)

    def copy_parameters(self, q_ctx: torch.Tensor, slot_af: torch.Tensor,
                        slot_gap_bp: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-slot HMM parameters from the query context.

        Returns:
            (mu float [b, m] mismatch penalty, s float [b, m, 2] emission term of a candidate
            carrying REF / ALT, rho float [b, m] switch probability into each slot).
        """
        mu = self.mismatch_penalty(q_ctx, slot_af)
        s = self.emission_terms(q_ctx)
        prev, cur = self.rate_parts(q_ctx)
        # the switch rate into slot i reads the contexts of slots i - 1 (i for the first) and i
        rho = self.switch_probability(torch.cat([prev[:, :1], prev[:, :-1]], 1) + cur,
                                      slot_gap_bp)
        return mu, s, rho

    # Each head's first layer is linear in its concatenated input, so it is applied to the
    # parts and summed (_first_layer_parts): the same function as head(cat(...)) without the
    # [b, m, 2, 2d] and [b, m, 2d] inputs (the emission head's query part is computed once for
    # both candidate alleles).
    def mismatch_penalty(self, q_ctx: torch.Tensor, slot_af: torch.Tensor) -> torch.Tensor:
        """mu float [..., m]: the mismatch penalty at each slot, from the context [..., m, d]
        and the ALT frequency [..., m]."""
        first, act, last = self.mismatch_head
        ctx, freq = _first_layer_parts(first, q_ctx, af_features(slot_af))
        return F.softplus(self.mismatch_bias + last(act(ctx + freq)).squeeze(-1))

    def emission_terms(self, q_ctx: torch.Tensor) -> torch.Tensor:
        """s float [..., m, 2]: the emission term of a candidate carrying REF / ALT at each
        slot, from the context [..., m, d]: the candidates' tokens re-embedded with the shared
        embedding, read against the query context (gradients reach ``self.tok`` here)."""
        first, act, last = self.emit_head
        ctx, tok01 = _first_layer_parts(first, q_ctx, self.tok.weight[:2])  # [.., m, d], [2, d]
        return last(act(ctx[..., None, :] + tok01)).squeeze(-1)

    def rate_parts(self, q_ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The switch-rate head's first layer on the contexts [..., m, d] read as the previous
        slot's and as the slot's own (each [..., m, h]; the bias in the first): the hidden
        layer of slot i is ``prev[i - 1] + cur[i]`` (``prev[0] + cur[0]`` for the first)."""
        prev, cur = _first_layer_parts(self.rate_head[0], q_ctx, q_ctx)
        return prev, cur

    def switch_probability(self, hidden: torch.Tensor, slot_gap_bp: torch.Tensor
                           ) -> torch.Tensor:
        """rho float [..., m]: the switch probability into each slot from the rate head's
        hidden pre-activations [..., m, h] and the slots' distances slot_gap_bp [m] (bp, or
        cM x 1e6 with a genetic map) from the previous slot."""
        _, act, last = self.rate_head
        log_rate = self.log_rate + last(act(hidden)).squeeze(-1)
        gap = slot_gap_bp * (MORGAN_PER_BP * self.cfg.cm_per_mb)
        return -torch.expm1(-torch.exp(log_rate) * gap)

    def output_logits(self, q_ctx: torch.Tensor, site_left: torch.Tensor,
                      site_right: torch.Tensor, site_af: torch.Tensor, site_frac: torch.Tensor,
                      p_copy: torch.Tensor, carriers: torch.Tensor) -> torch.Tensor:
        """ALT logits float [b, n] from the copied probability p_copy [b, n] (clamped to
        [1e-5, 1 - 1e-5]), the carrier features [b, n, 5] and the query context."""
        logit_copy = torch.log(p_copy) - torch.log1p(-p_copy)
        site_in = [af_features(site_af), site_frac[None, :, None].expand(q_ctx.shape[0], -1, 1),
                   (logit_copy / 10.0)[..., None], carriers]  # [b, n, 10] together
        if self.training or torch.is_grad_enabled():
            head_in = torch.cat([q_ctx.index_select(1, site_left),
                                 q_ctx.index_select(1, site_right), *site_in], -1)
            return self.copy_scale * logit_copy + self.out_head(head_in).squeeze(-1)
        # inference: the first layer is linear, so the two context parts are projected once
        # per slot ([b, m, hw]) and added at the sites (same function, ~1.5x faster)
        site_const, left, right, weight = self.head_first_layer(q_ctx, site_af, site_frac)
        hidden = site_const + F.linear(torch.cat(site_in[2:], -1), weight)
        hidden += left.index_select(1, site_left)
        hidden += right.index_select(1, site_right)
        return self.logits_from_hidden(hidden, logit_copy)

    def head_first_layer(self, q_ctx: torch.Tensor, site_af: torch.Tensor,
                         site_frac: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The output head's first layer split by input, for the fused inference kernel
        (:func:`vcfbert.model.copy_kernel.copy_head_logits`), which adds the parts at each
        site with the copied probability and carrier features.

        Args:
            q_ctx: float [b, m, d] query context.
            site_af: float [1 or b, n] ALT frequency of the sites (1 row: the same for all).
            site_frac: float [n] position between the flanking slots.

        Returns:
            (site_const float [1 or b, n, hw]: bias + frequency and position terms,
            left_proj / right_proj float [b, m, hw]: the slots' context under the left- and
            right-slot weights, weight float [hw, 6]: the weights of logit(p_copy) / 10 and
            the 5 carrier features).
        """
        first = self.out_head[0]
        d = q_ctx.shape[-1]
        w = first.weight  # [hw, 2d + 10]: ctx left, ctx right, af (3), frac, logit / 10, carriers
        frac = site_frac[None, :, None].expand(site_af.shape[0], -1, 1)
        site_const = F.linear(torch.cat([af_features(site_af), frac], -1), w[:, 2 * d:2 * d + 4],
                              first.bias)
        return (site_const, F.linear(q_ctx, w[:, :d]), F.linear(q_ctx, w[:, d:2 * d]),
                w[:, 2 * d + 4:])

    def head_last_layer(self) -> tuple[torch.Tensor, float, float]:
        """(the output head's last-layer weights float [hw], its bias, ``copy_scale``) for the
        fused inference kernel, which applies the head's exact (erf) GELU itself."""
        _, act, last = self.out_head
        if not (isinstance(act, nn.GELU) and act.approximate == "none"):
            raise ValueError(f"the fused inference head computes the exact GELU, not {act}")
        return last.weight.reshape(-1), float(last.bias), float(self.copy_scale)

    def logits_from_hidden(self, hidden: torch.Tensor, logit_copy: torch.Tensor) -> torch.Tensor:
        """ALT logits float [b, n] from the output head's hidden pre-activations [b, n, hw]
        and the logit of the copied probability [b, n] (the rest of :meth:`output_logits`)."""
        _, act, last = self.out_head
        return self.copy_scale * logit_copy + last(act(hidden)).squeeze(-1)

    # -- forward -------------------------------------------------------------------------
    def forward(self, batch: WindowBatch, *, with_loss: bool = True
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits of ALT at the core sites, float [b, n], and the mean weighted BCE when targets
        are given and ``with_loss`` (training computes its configured loss itself)."""
        logits, _ = self._run(batch, slot_loo=False)
        loss = None
        if with_loss and batch.targets is not None:
            loss = weighted_bce(logits, batch.targets, batch.loss_mask, batch.site_weight)
        return logits, loss

    def logits_and_slot_loo(self, batch: WindowBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(ALT logits float [b, n] as :meth:`forward`, leave-one-out ALT probability float
        [b, m] at the slots: the copying HMM's posterior with each slot's own emission divided
        out, :func:`vcfbert.model.hmm.leave_one_out_alt`; what
        :func:`vcfbert.model.copy_kernel.copy_features` computes on the fast path)."""
        logits, loo = self._run(batch, slot_loo=True)
        assert loo is not None
        return logits, loo

    def _run(self, batch: WindowBatch, *, slot_loo: bool
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The forward pass: (logits [b, n], leave-one-out ALT probability [b, m] or None)."""
        q_ctx = self.encode_query(batch)  # [b, m, d]
        sim, keep = self.rescore(batch)  # [b, k]
        valid = batch.cand_valid.gather(1, keep)
        m = batch.query_tokens.shape[1]
        c_tok = batch.cand_tokens.gather(1, keep[:, :, None].expand(-1, -1, m))  # [b, k, m]
        n = batch.cand_sites.shape[2]
        c_sites = batch.cand_sites.gather(1, keep[:, :, None].expand(-1, -1, n))  # [b, k, n]

        prior = self.switch_prior(sim, valid)
        mu, s, rho = self.copy_parameters(q_ctx, batch.slot_af, batch.slot_gap_bp)
        q_obs = batch.query_tokens != MASK  # [b, m]
        mismatch = (c_tok != batch.query_tokens[:, None, :]) & q_obs[:, None, :]
        # each candidate's emission term for the allele it carries: a select, not a gather
        # from s expanded to [b, k, m, 2] (whose backward zero-fills and scatters into that)
        s_c = torch.where(c_tok == 1, s[:, None, :, 1], s[:, None, :, 0])  # [b, k, m]
        log_emit = -mu[:, None, :] * mismatch.float() + s_c

        with torch.autocast(device_type=log_emit.device.type, enabled=False):
            gamma = forward_backward(log_emit.float(), rho.float(), prior.float(), valid)
            loo = (leave_one_out_alt(gamma, log_emit.float(), c_tok, valid) if slot_loo
                   else None)
        f = batch.site_frac[None, None, :]
        g_site = (gamma.index_select(2, batch.site_left) * (1 - f)
                  + gamma.index_select(2, batch.site_right) * f)
        p_copy = (g_site * c_sites).sum(1).clamp(1e-5, 1 - 1e-5)  # [b, n]

        run_total = run_totals(mismatch, q_obs, batch.site_interval)  # [b, k, n]
        carriers = carrier_features(run_total, c_sites, g_site, valid)  # [b, n, 5]
        logits = self.output_logits(q_ctx, batch.site_left, batch.site_right, batch.site_af,
                                    batch.site_frac, p_copy, carriers)
        return logits, loo


def weighted_loss_parts(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None,
                       weight: torch.Tensor | None, kind: str = "bce"
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """(weighted sum of per-site losses, sum of weights) over ``mask`` (all [b, n]).

    ``kind``: ``bce`` (cross-entropy), ``brier`` (squared error of the ALT probability, which
    is what dosage r² rewards), or ``bce+brier`` (their sum, Brier scaled by 10).
    """
    w = torch.ones_like(logits) if weight is None else weight.to(logits.dtype)
    if mask is not None:
        w = w * mask.to(logits.dtype)
    y = targets.to(logits.dtype)
    if kind == "bce":
        per = F.binary_cross_entropy_with_logits(logits, y, reduction="none")
    elif kind == "brier":
        per = (torch.sigmoid(logits) - y) ** 2
    elif kind == "bce+brier":
        per = (F.binary_cross_entropy_with_logits(logits, y, reduction="none")
               + 10.0 * (torch.sigmoid(logits) - y) ** 2)
    else:
        raise ValueError(f"unknown loss {kind!r} (use bce, brier or bce+brier)")
    return (per * w).sum(), w.sum()


def weighted_bce(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None,
                 weight: torch.Tensor | None) -> torch.Tensor:
    """Mean binary cross-entropy over ``mask`` with per-site ``weight`` (all [b, n])."""
    total, w = weighted_loss_parts(logits, targets, mask, weight)
    return total / w.clamp_min(1e-8)


def maf_weight(af: torch.Tensor, scheme: str) -> torch.Tensor:
    """Loss weight per site from its panel ALT frequency.

    ``v18``: ``log1p(1/(maf+1e-6)).clamp(max=3)`` (VCF-Bert V18; saturates below MAF ~5%);
    ``none``: 1; ``inv_sqrt``: ``(maf + 1e-3) ** -0.5`` normalised to 1 at MAF 0.5 and capped at 20.
    """
    maf = torch.minimum(af, 1 - af).clamp_min(0)
    if scheme == "v18":
        return torch.log1p(1 / (maf + 1e-6)).clamp(max=3.0)
    if scheme == "none":
        return torch.ones_like(maf)
    if scheme == "inv_sqrt":
        return ((maf + 1e-3) ** -0.5 / (0.501**-0.5)).clamp(max=20.0)
    raise ValueError(f"unknown MAF weighting {scheme!r} (use v18, none or inv_sqrt)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
