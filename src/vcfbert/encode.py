"""Pre-encoding: retrieval keys of every reference haplotype of one window under a mask.

Keys are computed with the model's :class:`~vcfbert.model.network.KeyEncoder` from the
reference alleles at the window's *observed* slots, so that reference keys and query keys see
the same sites. One key per haplotype-window: ``d_key`` float32 values.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

import numpy as np

from .atomic import atomic_path
from .keyencoder import KeyEncoderParams, encode_keys
from .layout import WindowLayout
from .masks import read_mask
from .windowdata import Chromosome, WindowArrays, query_tokens, read_slot_alleles

if TYPE_CHECKING:
    from .model import VcfBert

log = logging.getLogger(__name__)


def reference_keys(model: VcfBert, layout: WindowLayout, arrays: WindowArrays,
                   slot_observed: np.ndarray, *, batch: int = 4096,
                   device: str = "cpu") -> np.ndarray:
    """float32 [H, d_key] keys of all reference haplotypes of a window (torch, any device)."""
    import torch

    model.eval()
    slot_index = torch.arange(layout.n_slots, device=device)
    dist = torch.from_numpy(layout.slot_core_dist).to(device)
    out = []
    with torch.no_grad():
        for lo in range(0, arrays.ref_slots.shape[0], batch):
            tok = torch.from_numpy(query_tokens(arrays.ref_slots[lo:lo + batch], slot_observed))
            out.append(model.key(tok.to(device), slot_index, dist).float().cpu().numpy())
    return np.concatenate(out, axis=0).astype(np.float32)


def query_keys(model: VcfBert, layout: WindowLayout, query_slots: np.ndarray,
               slot_observed: np.ndarray, device: str = "cpu") -> np.ndarray:
    """float32 [b, d_key] keys of query haplotypes (missing alleles are MASK)."""
    import torch

    tok = torch.from_numpy(query_tokens(query_slots, slot_observed)).to(device)
    slot_index = torch.arange(layout.n_slots, device=device)
    dist = torch.from_numpy(layout.slot_core_dist).to(device)
    with torch.no_grad():
        return model.key(tok, slot_index, dist).float().cpu().numpy()


def encode_window(params: KeyEncoderParams, chrom: Chromosome, window_id: str, mask_h5: str,
                  out_npy: str | os.PathLike[str]) -> np.ndarray:
    """Compute and save (atomically, ``.npy``) the keys of one window with numpy only."""
    observed, version = read_mask(mask_h5)
    layout = chrom.layout(window_id)
    tokens = query_tokens(read_slot_alleles(chrom, layout), chrom.slot_mask(observed, layout))
    keys = encode_keys(params, tokens, layout.slot_core_dist)
    with atomic_path(out_npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, keys, allow_pickle=False)
    log.info("%s %s: %d keys of dimension %d (mask %s)", chrom.contig, window_id,
             keys.shape[0], keys.shape[1], version)
    return keys
