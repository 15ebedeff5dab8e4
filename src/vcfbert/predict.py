"""Batched prediction for one window: retrieve, assemble, run the model (no gradients)."""

from __future__ import annotations

import sys

import numpy as np
import torch
from tqdm import tqdm

from .data import WindowArrays, assemble_batch, leave_one_out_af, own_sample
from .encode import query_keys
from .index import KeySearcher
from .layout import WindowLayout
from .model import VcfBert


def frequencies(arrays: WindowArrays, n_haplotypes: int, panel_haps: np.ndarray | None,
                b: int) -> tuple[np.ndarray, np.ndarray]:
    """(slot_af [b, m], site_af [b, n]): leave-one-out for panel queries, else panel AF."""
    if panel_haps is not None:
        return (leave_one_out_af(arrays.ac_slots, arrays.ref_slots, panel_haps, n_haplotypes),
                leave_one_out_af(arrays.ac_core, arrays.ref_core, panel_haps, n_haplotypes))
    return (np.broadcast_to(arrays.ac_slots / n_haplotypes, (b, arrays.ac_slots.size)),
            np.broadcast_to(arrays.ac_core / n_haplotypes, (b, arrays.ac_core.size)))


@torch.no_grad()
def predict_window(model: VcfBert, layout: WindowLayout, arrays: WindowArrays,
                   slot_observed: np.ndarray, position: np.ndarray, query_slots: np.ndarray,
                   searcher: KeySearcher, *, panel_haps: np.ndarray | None = None,
                   batch_size: int = 32, device: str = "cpu",
                   progress: str | None = None) -> np.ndarray:
    """ALT probabilities float32 [q, n] at the window's core sites.

    Args:
        query_slots: int8 [q, m] query alleles at the slots (-1 missing).
        panel_haps: int [q] when the queries are reference haplotypes (validation): their own
            sample is excluded from retrieval and frequencies are leave-one-out.
        progress: label of a progress bar over the queries (on stderr, i.e. the rule's log);
            None for no bar.
    """
    model.eval()
    n_h = arrays.ref_slots.shape[0]
    out = np.empty((query_slots.shape[0], layout.n_sites), np.float32)
    bar = tqdm(total=query_slots.shape[0], desc=progress, unit="hap", file=sys.stderr,
               disable=progress is None, mininterval=5)
    for lo in range(0, query_slots.shape[0], batch_size):
        qs = query_slots[lo:lo + batch_size]
        ph = panel_haps[lo:lo + batch_size] if panel_haps is not None else None
        keys = query_keys(model, layout, qs, slot_observed, device=device)
        exclude = own_sample(ph) if ph is not None else None
        cand = searcher.search(keys, model.cfg.k_retrieve, exclude)
        slot_af, site_af = frequencies(arrays, n_h, ph, qs.shape[0])
        batch = assemble_batch(layout, arrays, slot_observed, position, qs, cand,
                               slot_af=slot_af, site_af=site_af).to(device)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16,
                            enabled=device.startswith("cuda")):
            logits, _ = model(batch)
        out[lo:lo + qs.shape[0]] = torch.sigmoid(logits.float()).cpu().numpy()
        bar.update(qs.shape[0])
    bar.close()
    return out
