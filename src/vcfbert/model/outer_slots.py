"""The copying HMM's per-slot parameters at the slots outside the transformer's context, from
tables per slot and token, for imputation.

Outside :func:`~vcfbert.model.network.context_range` a slot's query context is its own
normalised embedding (:meth:`VcfBert.encode_tokens`): a function of the slot, the query's token
there (REF, ALT or MASK) and the slot's ALT frequency. At imputation every query of a window
shares the frequencies (the panel's), so an outer slot has three possible contexts, and its
mismatch penalty and emission terms three possible values each; its switch probability reads
the contexts of the slot before and its own, so it has nine. :func:`outer_slot_tables`
computes them once per window; :func:`shared_copy_parameters` gathers them for a batch of
queries and runs the heads per query only on the context's slots and the two slots beside it
(whose switch probability reads a context slot). Together the same function as
``copy_parameters(encode_tokens(...))`` (tested), for about half the slots' head work and
without the outer slots' embeddings per query (docs/model.md, "Inference speed").
"""

from __future__ import annotations

import dataclasses

import torch

from ..tokens import MASK
from .network import VcfBert, context_range

N_TOKENS = MASK + 1  # REF, ALT, MASK


@dataclasses.dataclass(frozen=True)
class OuterSlotTables:
    """Per-slot parameters of one window for every token, ``m`` slots, ``d`` the model width.

    ``lo:hi`` are the transformer's context slots (their entries here are never read)."""

    lo: int
    hi: int
    ctx: torch.Tensor  # float [3, m, d] each slot's context outside the transformer, by token
    mu: torch.Tensor  # float [3, m] mismatch penalty by token
    s: torch.Tensor  # float [3, m, 2] emission terms (candidate REF / ALT) by token
    rho: torch.Tensor  # float [3, 3, m] switch probability by (previous slot's token, token)
    prev: torch.Tensor  # long [m] the slot whose context is read as the previous one (0 for 0)


@torch.no_grad()
def outer_slot_tables(model: VcfBert, slot_index: torch.Tensor, slot_core_dist: torch.Tensor,
                      slot_af: torch.Tensor, slot_gap_bp: torch.Tensor) -> OuterSlotTables:
    """The tables of a window whose queries share the slots' ALT frequencies slot_af float [m];
    slot_index, slot_core_dist long [m] and slot_gap_bp float [m] as in
    :class:`~vcfbert.data.WindowGeometry`."""
    m = int(slot_index.shape[0])
    lo, hi = context_range(slot_core_dist, model.cfg.context_flank_slots)
    tokens = torch.arange(N_TOKENS)[:, None].expand(N_TOKENS, m)
    af = slot_af.float()[None].expand(N_TOKENS, m)
    ctx = model.out_norm(model.slot_embedding(tokens, slot_index, slot_core_dist, af))
    prev = (torch.arange(m) - 1).clamp_min(0)
    prev_part, cur_part = model.rate_parts(ctx)  # [3, m, h] each
    hidden = prev_part[:, None, prev] + cur_part[None]  # [3 previous, 3 own, m, h]
    return OuterSlotTables(lo=lo, hi=hi, ctx=ctx, mu=model.mismatch_penalty(ctx, af),
                           s=model.emission_terms(ctx),
                           rho=model.switch_probability(hidden, slot_gap_bp), prev=prev)


@torch.no_grad()
def shared_copy_parameters(model: VcfBert, tables: OuterSlotTables, tokens: torch.Tensor,
                           context: torch.Tensor, slot_af: torch.Tensor,
                           slot_gap_bp: torch.Tensor
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``model.copy_parameters`` of ``b`` queries from their context slots alone.

    Args:
        tokens: long [b, m] the queries' tokens.
        context: float [b, hi - lo, d] the query context at the transformer's slots
            (``out_norm`` of the encoder's output there).
        slot_af: float [m] the slots' ALT frequency (the tables').
        slot_gap_bp: float [m] as for :func:`outer_slot_tables`.

    Returns:
        (mu float [b, m], s float [b, m, 2], rho float [b, m]) as ``copy_parameters``.
    """
    b, m = tokens.shape
    lo, hi = tables.lo, tables.hi
    if context.shape[1] != hi - lo:
        raise ValueError(f"shared_copy_parameters: context covers {context.shape[1]} slots, "
                         f"the tables' context {hi - lo}")
    slots = torch.arange(m)
    mu = tables.mu[tokens, slots]
    s = tables.s[tokens, slots]
    rho = tables.rho[tokens[:, tables.prev], tokens, slots]
    if hi <= lo:
        return mu, s, rho
    # the heads per query over the context's slots and the slot on either side (read from the
    # tables by the query's token), whose switch probability reads a context slot
    e0, e1 = max(lo - 1, 0), min(hi + 1, m)
    parts = []
    if e0 < lo:
        parts.append(tables.ctx[tokens[:, e0], e0][:, None])
    parts.append(context)
    if e1 > hi:
        parts.append(tables.ctx[tokens[:, hi], hi][:, None])
    ctx = torch.cat(parts, 1) if len(parts) > 1 else context
    mu_e, s_e, rho_e = model.copy_parameters(ctx, slot_af[e0:e1].float()[None].expand(b, -1),
                                             slot_gap_bp[e0:e1])
    mu[:, lo:hi] = mu_e[:, lo - e0:hi - e0]
    s[:, lo:hi] = s_e[:, lo - e0:hi - e0]
    # the row of slot e0 < lo read itself as the previous slot: not its switch probability
    rho[:, lo:e1] = rho_e[:, lo - e0:]
    return mu, s, rho


def covers_sites(tables: OuterSlotTables, site_left: torch.Tensor,
                 site_right: torch.Tensor) -> bool:
    """Whether the slots on either side of every core site (long [n] each) are context slots,
    as the output head needs the query context there: true by construction of the windows
    (the core's slots and their neighbours are the context's)."""
    if site_left.numel() == 0:
        return True
    lo, hi = tables.lo, tables.hi
    return bool(min(int(site_left.min()), int(site_right.min())) >= lo
                and max(int(site_left.max()), int(site_right.max())) < hi)
