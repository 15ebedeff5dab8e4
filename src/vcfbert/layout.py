"""Geometry of one window: its slots (typed sites) and its core sites (the sites it predicts).

Slots are the targets' typed sites inside the window, in order; ``m`` of them. The gaps between
slots are *intervals*: interval ``i`` (0..m) holds the sites after slot ``i-1`` and up to and
including slot ``i``. A core site is predicted from the candidates' match runs that end at the
slot left of its interval and start at the slot right of it.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class WindowLayout:
    """Index arrays of one window (all indices absolute, into the reference store)."""

    start: int
    end: int
    core_start: int
    core_end: int
    slot_index: np.ndarray  # int64 [m] absolute indices of the window's typed sites
    slot_core_dist: np.ndarray  # int64 [m] distance in slots to the core (0 inside)
    site_interval: np.ndarray  # int64 [n] interval (0..m) of each core site
    site_frac: np.ndarray  # float32 [n] bp fraction of the way from the left to the right slot
    site_slot: np.ndarray  # int64 [n] slot number of a core site that is a slot, else -1

    @property
    def n_slots(self) -> int:
        return int(self.slot_index.size)

    @property
    def n_sites(self) -> int:
        return self.core_end - self.core_start

    @property
    def core_slots(self) -> np.ndarray:
        """int64 [c] the slots that are core sites (the core's typed sites; consecutive)."""
        return self.site_slot[self.site_slot >= 0]

    @property
    def slot_rel(self) -> np.ndarray:
        """int64 [m] slot indices relative to ``start``."""
        return self.slot_index - self.start

    @property
    def site_index(self) -> np.ndarray:
        return np.arange(self.core_start, self.core_end, dtype=np.int64)


def make_layout(position: np.ndarray, typed_index: np.ndarray, start: int, end: int,
                core_start: int, core_end: int) -> WindowLayout:
    """Build the layout of window ``[start, end)`` with core ``[core_start, core_end)``.

    Args:
        position: int [V] positions of all reference variants (bp).
        typed_index: int [M] sorted indices of all typed sites on the chromosome.
    """
    typed = np.asarray(typed_index, dtype=np.int64)
    slots = typed[(typed >= start) & (typed < end)]
    m = slots.size
    in_core = (slots >= core_start) & (slots < core_end)
    if in_core.any():
        first, last = np.flatnonzero(in_core)[[0, -1]]
    else:  # a core without typed sites: distance to the nearest slot around it
        first = int(np.searchsorted(slots, core_start))
        last = first - 1
    k = np.arange(m)
    dist = np.where(k < first, first - k, np.where(k > last, k - last, 0)).astype(np.int64)
    sites = np.arange(core_start, core_end, dtype=np.int64)
    interval = np.searchsorted(slots, sites, side="left").astype(np.int64)
    pos = position.astype(np.float64)
    left_bp = np.where(interval > 0, pos[slots[np.maximum(interval - 1, 0)]] if m else 0.0,
                       pos[start])
    right_bp = np.where(interval < m, pos[slots[np.minimum(interval, m - 1)]] if m else 0.0,
                        pos[end - 1])
    span = np.maximum(right_bp - left_bp, 1.0)
    frac = np.clip((pos[sites] - left_bp) / span, 0.0, 1.0).astype(np.float32)
    site_slot = np.full(sites.size, -1, dtype=np.int64)
    is_slot = np.isin(sites, slots)
    site_slot[is_slot] = np.searchsorted(slots, sites[is_slot])
    return WindowLayout(start=int(start), end=int(end), core_start=int(core_start),
                        core_end=int(core_end), slot_index=slots, slot_core_dist=dist,
                        site_interval=interval, site_frac=frac, site_slot=site_slot)
