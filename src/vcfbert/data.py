"""From stores to model batches: window arrays, queries, retrieval and batch assembly.

Division of labour (V18's "CUDA fork" lesson): DataLoader workers only read HDF5 and slice
numpy arrays (:class:`EpochBatches`); retrieval, tensor assembly and everything touching a GPU
run in the main process on whole batches (:func:`assemble_batch`).
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any

import numpy as np
import torch

from .layout import WindowLayout
from .model.network import WindowBatch, maf_weight
from .windowdata import (  # noqa: F401 - re-exported for callers of the batch code
    Chromosome,
    ConsecutiveWindowReader,
    WindowArrayCache,
    WindowArrays,
    leave_one_out_af,
    own_sample,
    query_tokens,
    read_window_arrays,
)


@dataclasses.dataclass(frozen=True)
class WindowGeometry:
    """The per-window tensors of a :class:`WindowBatch` that do not depend on the queries
    (``m`` slots, ``n`` selected core sites)."""

    slot_index: torch.Tensor  # long [m] 0..m-1
    slot_core_dist: torch.Tensor  # long [m]
    slot_gap_bp: torch.Tensor  # float [m] bp from the previous slot (0 for the first)
    site_interval: torch.Tensor  # long [n]
    site_left: torch.Tensor  # long [n] slot left of each site (clipped to 0..m-1)
    site_right: torch.Tensor  # long [n] slot right of each site (clipped)
    site_frac: torch.Tensor  # float [n]

    @classmethod
    def of(cls, layout: WindowLayout, position: np.ndarray,
           sites: np.ndarray | None = None) -> WindowGeometry:
        """Geometry of ``layout`` for the core sites ``sites`` (positions 0..n-1; all: None)."""
        m = layout.n_slots
        sel = np.arange(layout.n_sites) if sites is None else np.asarray(sites, np.int64)
        slot_pos = position[layout.slot_index].astype(np.float64)
        gap = np.diff(slot_pos, prepend=slot_pos[:1]).astype(np.float32)
        interval = layout.site_interval[sel].astype(np.int64)
        return cls(slot_index=torch.arange(m),
                   slot_core_dist=torch.from_numpy(layout.slot_core_dist),
                   slot_gap_bp=torch.from_numpy(gap),
                   site_interval=torch.from_numpy(interval),
                   site_left=torch.from_numpy(np.clip(interval - 1, 0, max(m - 1, 0))),
                   site_right=torch.from_numpy(np.clip(interval, 0, max(m - 1, 0))),
                   site_frac=torch.from_numpy(layout.site_frac[sel].astype(np.float32)))


def assemble_batch(layout: WindowLayout, arrays: WindowArrays, slot_observed: np.ndarray,
                   position: np.ndarray, query_slots: np.ndarray, cand_ids: np.ndarray, *,
                   slot_af: np.ndarray, site_af: np.ndarray,
                   query_core: np.ndarray | None = None, maf_scheme: str = "none",
                   panel_af_core: np.ndarray | None = None,
                   sites: np.ndarray | None = None,
                   cand_forced: np.ndarray | None = None) -> WindowBatch:
    """Tensors for ``b`` queries of one window.

    Args:
        query_slots: int8 [b, m] query alleles at the slots (-1 missing).
        cand_ids: int64 [b, K] retrieved reference haplotypes (-1: none).
        slot_af / site_af: float [b, m] / [b, n] allele frequencies the model sees.
        query_core: int8 [b, n] true alleles at the core sites (training and validation).
        maf_scheme: loss weighting (see :func:`vcfbert.model.network.maf_weight`).
        panel_af_core: float [n] panel frequencies that set the loss weights.
        sites: int [n'] subset of core sites (positions 0..n-1) to predict; ``site_af``,
            ``query_core`` and ``panel_af_core`` are given for all n sites and sliced here.
        cand_forced: bool [b, K] candidates that re-scoring keeps whatever their similarity
            (:attr:`WindowBatch.cand_forced`).
    """
    valid = cand_ids >= 0
    safe = np.where(valid, cand_ids, 0)
    cand_tokens = arrays.ref_slots[safe]  # int8 [b, K, m]: 8x smaller than int64, and the
    # [b, K, m] tensors built from it (masking, gathering the kept ones) are too
    sel = np.arange(layout.n_sites) if sites is None else np.asarray(sites, np.int64)
    core = arrays.ref_core if sites is None else arrays.ref_core[:, sel]
    cand_sites = core[safe].astype(np.float32)  # [b, K, n]
    geo = WindowGeometry.of(layout, position, sel)
    site_af = np.asarray(site_af)[:, sel]
    batch = WindowBatch(
        query_tokens=torch.from_numpy(query_tokens(query_slots, slot_observed)),
        slot_observed=torch.from_numpy(slot_observed.astype(bool)),
        slot_index=geo.slot_index,
        slot_core_dist=geo.slot_core_dist,
        slot_gap_bp=geo.slot_gap_bp,
        slot_af=torch.from_numpy(np.asarray(slot_af, np.float32)),
        cand_tokens=torch.from_numpy(cand_tokens),
        cand_sites=torch.from_numpy(cand_sites),
        cand_valid=torch.from_numpy(valid),
        site_interval=geo.site_interval,
        site_left=geo.site_left,
        site_right=geo.site_right,
        site_frac=geo.site_frac,
        site_af=torch.from_numpy(np.asarray(site_af, np.float32)),
        cand_forced=(None if cand_forced is None
                     else torch.from_numpy(np.asarray(cand_forced, bool))),
    )
    if query_core is not None:
        query_core = query_core[:, sel]
        observed_site = np.zeros(sel.size, bool)
        site_slot = layout.site_slot[sel]
        is_slot = site_slot >= 0
        observed_site[is_slot] = slot_observed[site_slot[is_slot]]
        hidden = ~observed_site[None, :] & (query_core >= 0)
        batch.targets = torch.from_numpy(np.clip(query_core, 0, 1).astype(np.float32))
        batch.loss_mask = torch.from_numpy(hidden)
        paf = panel_af_core[sel] if panel_af_core is not None else site_af.mean(0)
        w = maf_weight(torch.from_numpy(np.asarray(paf, np.float32)), maf_scheme)
        batch.site_weight = w[None, :].expand(query_core.shape[0], -1).contiguous()
    return batch


@dataclasses.dataclass
class BatchSpec:
    """One training batch: a window and the reference haplotypes used as queries."""

    chrom: int
    window_id: str
    haps: np.ndarray  # int64 [b]


def epoch_batches(chroms: list[Chromosome], train_haps: list[np.ndarray], *, batch_size: int,
                  seed: int, epoch: int, max_batches: int = 0) -> list[BatchSpec]:
    """The epoch's batches in their order, a pure function of (seed, epoch).

    Every (window, training haplotype) pair appears once per full epoch; windows are mixed.
    With ``max_batches`` > 0 only the first ``max_batches`` batches are kept.
    """
    rng = np.random.default_rng([seed, epoch])
    specs: list[BatchSpec] = []
    for ci, chrom in enumerate(chroms):
        for wid in chrom.windows["window_id"]:
            haps = rng.permutation(train_haps[ci])
            for lo in range(0, haps.size, batch_size):
                chunk = haps[lo:lo + batch_size]
                if chunk.size:
                    specs.append(BatchSpec(ci, str(wid), np.sort(chunk)))
    order = rng.permutation(len(specs))
    specs = [specs[i] for i in order]
    return specs[:max_batches] if max_batches > 0 else specs


class EpochBatches(torch.utils.data.Dataset):
    """Dataset of batch specs; items are numpy dicts (CPU-only work for DataLoader workers)."""

    def __init__(self, chroms: list[Chromosome], specs: list[BatchSpec],
                 masks: list[np.ndarray], cache_windows: int = 64, cache_bytes: int = 0) -> None:
        """``cache_windows`` / ``cache_bytes`` bound the window arrays this process keeps
        (:class:`WindowArrayCache`; ``cache_bytes`` 0: by number only)."""
        self.chroms = chroms
        self.specs = specs
        self.masks = masks
        self.cache_windows = cache_windows
        self.cache_bytes = cache_bytes
        self._cache: WindowArrayCache | None = None
        self._layouts: dict[tuple[int, str], WindowLayout] = {}
        # the batches that read each window, in order: a full cache evicts the window read
        # again last (or never), so that a bound on its bytes costs the fewest re-reads
        self._uses: dict[tuple[str, str], list[int]] = {}
        for i, spec in enumerate(specs):
            self._uses.setdefault((chroms[spec.chrom].contig, spec.window_id), []).append(i)

    def __len__(self) -> int:
        return len(self.specs)

    def layout(self, ci: int, wid: str) -> WindowLayout:
        key = (ci, wid)
        if key not in self._layouts:
            self._layouts[key] = self.chroms[ci].layout(wid)
        return self._layouts[key]

    def window_cache(self) -> WindowArrayCache:
        """This process's cache of window arrays (created on first use, i.e. inside each
        DataLoader worker after fork; the main process's is the one validation reuses)."""
        if self._cache is None:
            self._cache = WindowArrayCache(self.cache_windows, self.cache_bytes)
        return self._cache

    def next_use(self, key: tuple[str, str], after: int) -> float:
        """The first batch after batch ``after`` that reads window ``key`` (inf: none)."""
        uses = self._uses.get(key, [])
        j = bisect.bisect_right(uses, after)
        return float(uses[j]) if j < len(uses) else math.inf

    def warm_cache(self, first: int = 0) -> bool:
        """Read the windows of batches ``first``.. into this process's cache before the
        batches ask for them in random order (:meth:`WindowArrayCache.warm`: each reference
        variant decompressed once, when all the windows fit); DataLoader workers forked
        afterwards inherit the cache. Returns whether it did."""
        windows = sorted({(s.chrom, s.window_id) for s in self.specs[first:]})
        return self.window_cache().warm([(self.chroms[ci], wid, self.layout(ci, wid))
                                         for ci, wid in windows])

    def __getitem__(self, i: int) -> dict[str, Any]:
        spec = self.specs[i]
        chrom = self.chroms[spec.chrom]
        layout = self.layout(spec.chrom, spec.window_id)
        arrays = self.window_cache().get(chrom, spec.window_id, layout,
                                         next_use=lambda key: self.next_use(key, i))
        return {"index": i, "chrom": spec.chrom, "window_id": spec.window_id, "haps": spec.haps,
                "arrays": arrays, "slot_observed": chrom.slot_mask(self.masks[spec.chrom], layout)}


def identity_collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """DataLoader collate for batch_size=1 over batch specs: the item itself."""
    return items[0]
