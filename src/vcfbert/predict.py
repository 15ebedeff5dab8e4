"""Batched prediction for one window: retrieve, assemble, run the model (no gradients)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal, overload

import numpy as np
import torch
from tqdm import tqdm

from .data import (
    WindowArrays,
    WindowGeometry,
    assemble_batch,
    leave_one_out_af,
    own_sample,
    query_tokens,
)
from .encode import query_keys
from .index import KeySearcher
from .layout import WindowLayout
from .model import VcfBert
from .model.copy_kernel import HeadInputs, WindowTables, copy_head_logits, window_tables
from .model.outer_slots import (
    OuterSlotTables,
    covers_sites,
    outer_slot_tables,
    shared_copy_parameters,
)
from .rows import distinct_rows

if TYPE_CHECKING:
    from .match_states import PackedPanel

REPEAT_ROWS_AT_ONCE = 256  # repeated queries' rows copied per step (a bounded temporary)


def frequencies(arrays: WindowArrays, n_haplotypes: int, panel_haps: np.ndarray | None,
                b: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot_af [b, m], site_af [b, n]): leave-one-out for panel queries, else panel AF."""
    if panel_haps is not None:
        return (leave_one_out_af(arrays.ac_slots, arrays.ref_slots, panel_haps, n_haplotypes),
                leave_one_out_af(arrays.ac_core, arrays.ref_core, panel_haps, n_haplotypes))
    return (np.broadcast_to(arrays.ac_slots / n_haplotypes, (b, arrays.ac_slots.size)),
            np.broadcast_to(arrays.ac_core / n_haplotypes, (b, arrays.ac_core.size)))


@torch.no_grad()
def fast_logits(model: VcfBert, geo: WindowGeometry, arrays: WindowArrays, *,
                tokens: np.ndarray, slot_af: np.ndarray, site_af: np.ndarray,
                cand_ids: np.ndarray, cand_sim: np.ndarray,
                tables: WindowTables | None = None,
                loo_slots: tuple[int, int] | None = None,
                outer: OuterSlotTables | None = None
                ) -> tuple[torch.Tensor, np.ndarray]:
    """ALT logits float [b, n] of ``b`` queries on the CPU, without ``[b, k, n]`` tensors,
    and the leave-one-out ALT probability float32 [b, m] at the slots (the copying HMM's
    posterior with each slot's own emission divided out, see
    :func:`vcfbert.model.copy_kernel.copy_features`).

    The same function as :meth:`VcfBert.forward` when the candidates are already the kept
    ones (no re-scoring): the query encoder and the per-slot heads run in torch; the copying
    HMM, the match runs, the per-site sums over candidates and the whole output head in the
    fused kernel of :mod:`vcfbert.model.copy_kernel` (its GELU with a fitted erf, within
    2e-7 * |x| + 1e-7 of torch's).

    Args:
        tokens: int [b, m] query tokens (0 REF, 1 ALT, 2 MASK).
        slot_af / site_af: float [b, m] / [b, n] allele frequencies.
        cand_ids: int [b, k] copying states (-1: none), e.g. the index's top k.
        cand_sim: float [b, k] their key similarity to the query (the index's inner products).
        tables: :func:`vcfbert.model.copy_kernel.window_tables` of ``arrays``, computed once
            per window by the caller (else per call).
        loo_slots: the slots whose leave-one-out probability is computed (lo, hi); None:
            all, (0, 0): none (0 is returned there).
        outer: the window's :func:`vcfbert.model.outer_slots.outer_slot_tables`, when every
            query has the slot frequencies they were made with (the panel's, at imputation;
            :func:`vcfbert.model.outer_slots.covers_sites` true): the slots outside the
            transformer's context take their parameters from them, and only the context's
            slots are embedded and run through the heads per query. The same function.
    """
    tok = torch.from_numpy(np.asarray(tokens, np.int64))
    slot_af_t = torch.from_numpy(np.asarray(slot_af, np.float32))
    site_left, site_right = geo.site_left, geo.site_right
    if outer is None:
        q_ctx = model.encode_tokens(tok, geo.slot_index, geo.slot_core_dist, slot_af_t)
        mu, s, rho = model.copy_parameters(q_ctx, slot_af_t, geo.slot_gap_bp)
    else:  # the context's slots only; the head reads q_ctx at the core's (context) slots
        lo, hi = outer.lo, outer.hi
        # queries with the same tokens there (and the same frequencies: the tables') have the
        # same context: each distinct one is encoded once
        context, inverse = torch.unique(tok[:, lo:hi], dim=0, return_inverse=True)
        if context.shape[0] == tok.shape[0]:
            context, inverse = tok[:, lo:hi], None
        q_ctx = model.out_norm(model.encode_context(model.slot_embedding(
            context, geo.slot_index[lo:hi], geo.slot_core_dist[lo:hi],
            slot_af_t[:context.shape[0], lo:hi])))
        if inverse is not None:
            q_ctx = q_ctx[inverse]
        mu, s, rho = shared_copy_parameters(model, outer, tok, q_ctx, slot_af_t[0],
                                            geo.slot_gap_bp)
        site_left, site_right = site_left - lo, site_right - lo
    valid = torch.from_numpy(cand_ids >= 0)
    sim = torch.from_numpy(np.where(cand_ids >= 0, cand_sim, 0.0).astype(np.float32))
    prior = model.switch_prior(sim, valid)
    site_af = np.asarray(site_af)
    if site_af.shape[0] > 1 and site_af.strides[0] == 0:
        site_af = site_af[:1]  # one row for all queries (the panel's frequencies, broadcast)
    site_af = np.array(site_af, np.float32)  # a writable copy (torch.from_numpy below)
    site_const, left, right, weight = model.head_first_layer(
        q_ctx, torch.from_numpy(site_af), geo.site_frac)
    last_weight, last_bias, copy_scale = model.head_last_layer()
    head = HeadInputs(site_const=site_const.numpy(), left_proj=left.numpy(),
                      right_proj=right.numpy(), site_left=site_left.numpy(),
                      site_right=site_right.numpy(), weight=weight.numpy(),
                      last_weight=last_weight.numpy(), last_bias=last_bias,
                      copy_scale=copy_scale)
    logits, p_slot_loo = copy_head_logits(
        head, query_tokens=tokens, cand_ids=cand_ids, ref_slots=arrays.ref_slots,
        ref_core=arrays.ref_core, mu=mu.float().numpy(), emit_bonus=s.float().numpy(),
        rho=rho.float().numpy(), prior=prior.float().numpy(),
        site_interval=geo.site_interval.numpy(), site_frac=geo.site_frac.numpy(),
        tables=tables, loo_slots=loo_slots)
    return torch.from_numpy(logits), p_slot_loo


def _with_match_states(qs: np.ndarray, slot_observed: np.ndarray, ref_slots: np.ndarray,
                       ref_keys: np.ndarray, keys: np.ndarray, searcher: KeySearcher, k: int,
                       anchors: list[int], n_match: int, exclude: np.ndarray | None,
                       panel: PackedPanel) -> tuple[np.ndarray, np.ndarray]:
    """The index's top ``k`` states with ``n_match`` of them by match length
    (:func:`vcfbert.match_states.merge_match_states`); ``exclude`` [b, e] and the searcher's
    ``never`` are never chosen. The queries' inner products with every reference key are
    computed once, for both choices (the search takes its top ``k`` from them)."""
    from .match_states import forbidden_haplotypes, key_similarities, merge_match_states

    all_sim = key_similarities(keys, ref_keys)
    cand, sim = searcher.search_scored(keys, k, exclude, similarities=all_sim)
    forbidden = forbidden_haplotypes(qs.shape[0], ref_slots.shape[0], exclude, searcher.never)
    ids, sims, _ = merge_match_states(qs, slot_observed, ref_slots, ref_keys, keys, cand, sim,
                                      anchors, n_match, forbidden, panel, all_sim=all_sim)
    return ids, sims


@overload
def predict_window(model: VcfBert, layout: WindowLayout, arrays: WindowArrays,
                   slot_observed: np.ndarray, position: np.ndarray, query_slots: np.ndarray,
                   searcher: KeySearcher, *, panel_haps: np.ndarray | None = ...,
                   batch_size: int = ..., device: str = ..., index_is_current: bool = ...,
                   fast: bool | None = ..., progress: str | None = ...,
                   slot_loo: Literal[False] = ..., threads: int = ...,
                   tables: WindowTables | None = ..., distinct: bool = ...,
                   match_states: int = ...) -> np.ndarray: ...


@overload
def predict_window(model: VcfBert, layout: WindowLayout, arrays: WindowArrays,
                   slot_observed: np.ndarray, position: np.ndarray, query_slots: np.ndarray,
                   searcher: KeySearcher, *, panel_haps: np.ndarray | None = ...,
                   batch_size: int = ..., device: str = ..., index_is_current: bool = ...,
                   fast: bool | None = ..., progress: str | None = ...,
                   slot_loo: Literal[True], threads: int = ...,
                   tables: WindowTables | None = ..., distinct: bool = ...,
                   match_states: int = ...) -> tuple[np.ndarray, np.ndarray]: ...


@torch.no_grad()
def predict_window(model: VcfBert, layout: WindowLayout, arrays: WindowArrays,
                   slot_observed: np.ndarray, position: np.ndarray, query_slots: np.ndarray,
                   searcher: KeySearcher, *, panel_haps: np.ndarray | None = None,
                   batch_size: int = 32, device: str = "cpu", index_is_current: bool = False,
                   fast: bool | None = None, progress: str | None = None,
                   slot_loo: bool = False, threads: int = 1,
                   tables: WindowTables | None = None, distinct: bool = True,
                   match_states: int = 0) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """ALT probabilities float32 [q, n] at the window's core sites; with ``slot_loo`` also
    the leave-one-out ALT probabilities float32 [q, m] at the slots of the window's core (the
    copying HMM's prediction of each slot with the slot's own emission divided out; 0 at the
    flank slots, which other windows' cores own; on both the fast and the torch path).

    Args:
        query_slots: int8 [q, m] query alleles at the slots (-1 missing).
        panel_haps: int [q] when the queries are reference haplotypes (validation): their own
            sample is excluded from retrieval and frequencies are leave-one-out.
        index_is_current: the index holds keys made with this model's weights under
            ``slot_observed`` (the final index at imputation, the validation index): its top
            ``k_keep`` and their inner products are then the kept candidates and their
            similarities, which re-scoring would compute again. Otherwise the ``k_retrieve``
            hits are re-scored with the current weights (:meth:`VcfBert.rescore`).

        fast: run :func:`fast_logits` (no ``[b, k, n]`` tensors) rather than
            :meth:`VcfBert.forward`; default: on a CPU yes, on a GPU (which handles the large
            tensors well) no.
        progress: label of a progress bar over the queries (on stderr, i.e. the rule's log);
            None for no bar.
        threads: batches computed at once, each on its own Python thread (torch, FAISS and
            the numba kernel release the GIL); the results do not depend on it. Cap torch's
            and FAISS's own thread pools (:func:`vcfbert.runtime.cap_threads`) to 1 when
            using more than one, or the threads compete for the cores.
        tables: the window's :func:`vcfbert.model.copy_kernel.window_tables` for the fast
            path, when the caller built them already (built here when None).
        distinct: compute each distinct query once (targets, not ``panel_haps``: a panel
            haplotype's own sample is excluded, so its result is its own). A query's result
            depends only on its alleles at the slots; ~20 % of a window's target haplotypes
            repeat another's on ``ooa_speed``. The rows of the result are the same, and no
            output array beyond the result is allocated.
        match_states: with an index of current keys, this many of each query's copying
            states are the reference haplotypes with the longest exact match around anchors
            spread over the core (one per 16 core slots, taken in turn), the rest its
            retrieved states (:mod:`vcfbert.match_states`); 0: retrieval alone. On both
            paths: the torch path re-scores these ``k_keep`` states and keeps them all.
    """
    n_queries = query_slots.shape[0]
    first = inverse = None  # the distinct queries' rows, and each row's distinct query
    if distinct and panel_haps is None and n_queries > 1:
        first, inverse = distinct_rows(query_slots)
        if first.size == n_queries:
            first = inverse = None
    if first is not None:
        query_slots = query_slots[first]  # computed; the outputs are filled at their rows
    model.eval()
    n_h = arrays.ref_slots.shape[0]
    if fast is None:
        fast = not device.startswith("cuda")
    geo = WindowGeometry.of(layout, position) if fast else None
    if geo is not None and tables is None:
        tables = window_tables(arrays.ref_slots, arrays.ref_core, geo.site_interval.numpy())
    outer = None  # targets share the panel's frequencies: the outer slots' tables, once
    if geo is not None and panel_haps is None:
        slot_af_row = frequencies(arrays, n_h, None, 1)[0][0]
        outer = outer_slot_tables(model, geo.slot_index, geo.slot_core_dist,
                                  torch.from_numpy(np.array(slot_af_row, np.float32)),
                                  geo.slot_gap_bp)
        if not covers_sites(outer, geo.site_left, geo.site_right):
            outer = None
    dest = first  # each computed query's output row (None: its own)
    if outer is not None and query_slots.shape[0] > 1:
        # queries with the same tokens at the transformer's slots share its output, and
        # fast_logits encodes each distinct context of a batch once: in the order of their
        # contexts, nearly all of a window's repeated contexts share a batch
        context = query_tokens(query_slots, slot_observed)[:, outer.lo:outer.hi]
        order = np.lexsort(context.T[::-1])
        query_slots = query_slots[order]
        dest = order if first is None else first[order]
    out = np.empty((n_queries, layout.n_sites), np.float32)
    loo_out = np.empty((n_queries, layout.n_slots), np.float32) if slot_loo else None
    core_slots = layout.core_slots
    loo_slots = ((int(core_slots[0]), int(core_slots[-1]) + 1) if slot_loo and core_slots.size
                 else (0, 0))
    ref_keys = None
    if match_states and index_is_current:
        from .index import index_vectors
        from .match_states import core_anchors, pack_panel

        ref_keys = index_vectors(searcher.index)
        anchors = core_anchors(core_slots)
        panel = pack_panel(arrays.ref_slots)
    bar = tqdm(total=query_slots.shape[0], desc=progress, unit="hap", file=sys.stderr,
               disable=progress is None, mininterval=5)

    def run_batch(lo: int) -> int:
        """Fill the outputs of computed queries lo..lo + batch_size; returns their number."""
        with torch.no_grad():  # grad mode is per thread: the decorator covers the caller only
            qs = query_slots[lo:lo + batch_size]
            ph = panel_haps[lo:lo + batch_size] if panel_haps is not None else None
            keys = query_keys(model, layout, qs, slot_observed, device=device)
            exclude = own_sample(ph) if ph is not None else None
            slot_af, site_af = frequencies(arrays, n_h, ph, qs.shape[0])
            if ref_keys is not None:  # an index of current keys, states by match length
                cand, sim = _with_match_states(qs, slot_observed, arrays.ref_slots, ref_keys,
                                               keys, searcher, model.cfg.k_keep, anchors,
                                               match_states, exclude, panel)
            elif geo is not None and index_is_current:
                cand, sim = searcher.search_scored(keys, model.cfg.k_keep, exclude)
            else:
                cand = searcher.search(keys, model.cfg.k_retrieve, exclude)
            if geo is not None:
                if not index_is_current:  # re-score with the current weights, as forward does
                    light = assemble_batch(layout, arrays, slot_observed, position, qs, cand,
                                           slot_af=slot_af, site_af=site_af,
                                           sites=np.empty(0, np.int64))
                    sim_t, keep = model.rescore(light)
                    cand, sim = np.take_along_axis(cand, keep.numpy(), 1), sim_t.numpy()
                logits, loo = fast_logits(model, geo, arrays,
                                          tokens=query_tokens(qs, slot_observed),
                                          slot_af=slot_af, site_af=site_af, cand_ids=cand,
                                          cand_sim=sim, tables=tables, loo_slots=loo_slots,
                                          outer=outer)
            else:
                batch = assemble_batch(layout, arrays, slot_observed, position, qs, cand,
                                       slot_af=slot_af, site_af=site_af).to(device)
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                                    enabled=device.startswith("cuda")):
                    if slot_loo:
                        logits, loo_t = model.logits_and_slot_loo(batch)
                        loo = loo_t.float().cpu().numpy()
                        loo[:, :loo_slots[0]] = 0.0
                        loo[:, loo_slots[1]:] = 0.0
                    else:
                        logits, _ = model(batch)
            rows = slice(lo, lo + qs.shape[0]) if dest is None else dest[lo:lo + qs.shape[0]]
            out[rows] = torch.sigmoid(logits.float()).cpu().numpy()
            if loo_out is not None:
                loo_out[rows] = loo
            return qs.shape[0]

    starts = range(0, query_slots.shape[0], batch_size)
    if threads > 1 and len(starts) > 1:
        with ThreadPoolExecutor(min(threads, len(starts))) as pool:
            for rows in pool.map(run_batch, starts):
                bar.update(rows)
    else:
        for lo in starts:
            bar.update(run_batch(lo))
    bar.close()
    if first is not None:  # each repeated query takes its distinct query's rows
        repeat = np.ones(n_queries, bool)
        repeat[first] = False
        rows = np.flatnonzero(repeat)
        source = first[inverse[rows]]
        # a few rows at a time: the copy's temporary stays small (all repeated rows at once
        # were ~0.5 GB beside the window's outputs at 10,000 targets)
        for lo in range(0, rows.size, REPEAT_ROWS_AT_ONCE):
            part = slice(lo, lo + REPEAT_ROWS_AT_ONCE)
            out[rows[part]] = out[source[part]]
            if loo_out is not None:
                loo_out[rows[part]] = loo_out[source[part]]
    return out if loo_out is None else (out, loo_out)
