"""Window data without torch: chromosome metadata, reference arrays per window, queries.

Used by the encode and index jobs (which must start fast and need no torch) and by training
and imputation.
"""

from __future__ import annotations

import collections
import collections.abc
import dataclasses
import os

import numpy as np

from .errors import IntegrityError
from .io.h5chunks import read_columns
from .io.h5store import open_store, read_target_sites, read_variant_table
from .layout import WindowLayout, make_layout
from .tokens import MASK
from .windows import WindowTable, read_window_table


@dataclasses.dataclass
class Chromosome:
    """Everything known about one chromosome before training or imputation."""

    contig: str
    reference_h5: str
    targets_h5: str
    windows: WindowTable
    position: np.ndarray  # [V] the model's coordinate: bp, or cM x 1e6 with a genetic map
    af: np.ndarray  # float32 [V]
    typed_index: np.ndarray  # int64 [M] reference indices of the targets' typed sites
    n_haplotypes: int
    sample_id: list[str]
    male: np.ndarray | None = None  # bool [S]: haploid samples (chrX), stored twice
    haploid_variant: np.ndarray | None = None  # bool [V]: outside the pseudo-autosomal regions
    # a store of the reference at the typed sites for a target store without that copy (a
    # trained panel's reference_at_array.h5); "": the target store's own copy, if any
    reference_at_sites_h5: str = ""

    @classmethod
    def load(cls, contig: str, reference_h5: str, targets_h5: str,
             windows_tsv: str, reference_at_sites_h5: str = "") -> Chromosome:
        """``reference_at_sites_h5``: see the field; it must hold the targets' typed sites."""
        typed = read_target_sites(targets_h5)
        if reference_at_sites_h5 and not np.array_equal(read_target_sites(reference_at_sites_h5),
                                                         typed):
            raise IntegrityError(f"{reference_at_sites_h5}: holds the reference at other sites "
                                 f"than the targets of {targets_h5}; copy the trained panel "
                                 "again, or rebuild it with `snakemake trained_panel`")
        table = read_variant_table(reference_h5, fields=("position", "af", "haploid"))
        with open_store(reference_h5) as h5:
            n_h = int(h5["call_haplotype"].shape[0])
            samples = list(h5["sample_id"].asstr()[()])
            # with a genetic map, the model's distances are genetic: cM x 1e6 is the position
            # a constant 1 cM/Mb would give, so switch rates follow the map
            position = (h5["variant_cm"][()] * 1e6 if "variant_cm" in h5
                        else table["position"])
            male = h5["sample_haploid"][()] if "sample_haploid" in h5 else None
        return cls(contig=contig, reference_h5=reference_h5, targets_h5=targets_h5,
                   windows=read_window_table(windows_tsv), position=position,
                   af=table["af"], typed_index=typed,
                   n_haplotypes=n_h, sample_id=samples, male=male,
                   haploid_variant=table["haploid"],
                   reference_at_sites_h5=reference_at_sites_h5)

    def layout(self, window_id: str) -> WindowLayout:
        w = self.windows.row(window_id)
        return make_layout(self.position, self.typed_index, w["start_idx"], w["end_idx"],
                           w["core_start"], w["core_end"])

    def second_copies(self, layout: WindowLayout) -> np.ndarray:
        """int64 ids of the reference haplotypes never to retrieve in this window: the
        second copy of each male's haploid allele (chrX outside the PARs: the same haplotype
        twice would take two copying states) when most of the window's core is haploid."""
        if self.male is None or not self.male.any() or self.haploid_variant is None:
            return np.zeros(0, np.int64)
        core = self.haploid_variant[layout.core_start:layout.core_end]
        if core.size == 0 or core.mean() <= 0.5:
            return np.zeros(0, np.int64)
        return 2 * np.flatnonzero(self.male).astype(np.int64) + 1

    def slot_mask(self, observed_typed: np.ndarray, layout: WindowLayout) -> np.ndarray:
        """bool [m]: the window's slots observed under a chromosome-wide mask [M]."""
        pos_in_typed = np.searchsorted(self.typed_index, layout.slot_index)
        return observed_typed[pos_in_typed]


@dataclasses.dataclass
class WindowArrays:
    """Reference alleles a window needs: at its slots and at its core sites."""

    ref_slots: np.ndarray  # int8 [H, m]
    ref_core: np.ndarray  # int8 [H, n]
    ac_slots: np.ndarray  # int32 [m] ALT count in the panel
    ac_core: np.ndarray  # int32 [n]

    @classmethod
    def of(cls, ref_slots: np.ndarray, ref_core: np.ndarray) -> WindowArrays:
        """The arrays of the alleles ``ref_slots`` int8 [H, m] and ``ref_core`` int8 [H, n]
        (C-contiguous), with their ALT counts."""
        return cls(ref_slots, ref_core, ref_slots.sum(0, dtype=np.int32),
                   ref_core.sum(0, dtype=np.int32))


def window_span(layout: WindowLayout) -> tuple[int, int]:
    """(lo, hi): the reference variants a window reads, its slots' span and its core."""
    return min(layout.start, layout.core_start), max(layout.end, layout.core_end)


def arrays_from_block(block: np.ndarray, lo: int, layout: WindowLayout) -> WindowArrays:
    """The window's arrays sliced out of ``block`` int8 [H, x], the reference alleles at
    variants lo..lo + x - 1 (covering :func:`window_span`)."""
    ref_slots = np.ascontiguousarray(block[:, layout.slot_index - lo])
    ref_core = np.ascontiguousarray(block[:, layout.core_start - lo:layout.core_end - lo])
    return WindowArrays.of(ref_slots, ref_core)


def read_window_arrays(reference_h5: str | os.PathLike[str], layout: WindowLayout
                       ) -> WindowArrays:
    """Read one contiguous block of the reference store and slice out slots and core."""
    lo, hi = window_span(layout)
    with open_store(reference_h5) as h5:
        block = read_columns(h5["call_haplotype"], lo, hi)
    return arrays_from_block(block, lo, layout)


def read_slot_alleles(chrom: Chromosome, layout: WindowLayout) -> np.ndarray:
    """int8 [H, m]: the reference haplotypes at the window's slots, what
    ``read_window_arrays(...).ref_slots`` holds, without reading the window's span: from the
    target store's copy of the reference at the typed sites (a window's slots are a run of
    consecutive typed sites), or from the reference store when the target store predates it."""
    found = _slots_from_target_store(chrom, layout)
    if found is None:
        found = read_window_arrays(chrom.reference_h5, layout).ref_slots
    return found


def _slots_from_target_store(chrom: Chromosome, layout: WindowLayout) -> np.ndarray | None:
    """int8 [H, m] the reference at the window's slots from the target store's copy of the
    reference at the typed sites (or ``chrom.reference_at_sites_h5``'s); None when there is
    no copy (or the slots are not a run of consecutive typed sites)."""
    from .io.h5store import read_reference_at_sites

    cols = np.searchsorted(chrom.typed_index, layout.slot_index)
    if cols.size and np.array_equal(cols, np.arange(cols[0], cols[0] + cols.size)):
        return read_reference_at_sites(chrom.reference_at_sites_h5 or chrom.targets_h5,
                                       int(cols[0]), int(cols[-1]) + 1)
    return None


class ConsecutiveWindowReader:
    """Reads the arrays of windows visited left to right (an imputation job's run of
    windows, the DR2 calibration), decompressing each reference variant once.

    :meth:`get` reads the slots from the target store's copy of the reference at the typed
    sites and only the core from the reference store; what follows is :meth:`read`, the
    path for a target store without that copy (or a store path alone).

    A window's span (its flanks' slots and its core) overlaps the next window's by about
    two thirds with the default geometry (flanks of one core's width), and the store's
    chunks hold every haplotype over ~170 variants, so :func:`read_window_arrays` decompresses
    each variant about three times. This reader keeps the last span's block and reads only
    the variants beyond it; a window that does not start within the kept span is read whole.
    The block lives in one buffer, reused: the kept variants are moved to its front row by
    row, so that no call writes into freshly mapped memory (first-touch page faults cost as
    much as the decompression on some machines). Returns the same arrays as
    :func:`read_window_arrays` (tested), copies out of the buffer.
    """

    def __init__(self) -> None:
        self._path = ""  # the store of the kept block
        self._buffer = np.empty((0, 0), np.int8)  # int8 [H, capacity]
        self._lo = 0  # the kept block: variants _lo.._hi - 1 in _buffer[:, :_hi - _lo]
        self._hi = 0

    def get(self, chrom: Chromosome, window_id: str, layout: WindowLayout) -> WindowArrays:
        """The arrays of ``layout`` (a window of ``chrom``), as :meth:`WindowArrayCache.get`:
        the slots from the target store's copy of the reference at the typed sites and the
        core from the reference store (cores do not overlap, so each variant is decompressed
        once and nothing is kept); through :meth:`read` when the target store has no copy.
        With long flanks a window's span is five cores wide: keeping and shifting it cost
        0.57 s a window on ``ooa_speed`` (6,000 haplotypes, flanks of 256), this 0.15 s."""
        slots = _slots_from_target_store(chrom, layout)
        if slots is None:
            return self.read(chrom.reference_h5, layout)
        with open_store(chrom.reference_h5) as h5:
            core = read_columns(h5["call_haplotype"], layout.core_start, layout.core_end)
        return WindowArrays.of(slots, core)  # a fresh C-contiguous array

    def read(self, reference_h5: str | os.PathLike[str], layout: WindowLayout) -> WindowArrays:
        """The arrays of the window ``layout`` of the store ``reference_h5``."""
        lo, hi = window_span(layout)
        if os.fspath(reference_h5) != self._path:  # another chromosome: nothing is kept
            self._path, self._lo, self._hi = os.fspath(reference_h5), 0, 0
        shared = min(hi, self._hi) - lo if self._lo <= lo < self._hi else 0
        with open_store(reference_h5) as h5:
            data = h5["call_haplotype"]
            buf = self._buffer
            if buf.shape[0] != data.shape[0] or buf.shape[1] < hi - lo:
                grown = np.empty((int(data.shape[0]), hi - lo), np.int8)
                if shared:
                    grown[:, :shared] = buf[:, lo - self._lo:lo - self._lo + shared]
                self._buffer = buf = grown
            elif shared and lo > self._lo:
                start = lo - self._lo
                for row in buf:  # the rows do not overlap: each move is a small memmove
                    row[:shared] = row[start:start + shared]
            if hi - lo > shared:
                read_columns(data, lo + shared, hi, out=buf[:, shared:hi - lo])
        self._lo, self._hi = lo, hi
        return arrays_from_block(buf[:, :hi - lo], lo, layout)


class WindowArrayCache:
    """Cache of :class:`WindowArrays` keyed by (contig, window_id), bounded by a number of
    windows (``capacity``) and, when ``max_bytes`` > 0, by their bytes.

    A window's arrays take ``H x (slots + core sites)`` bytes (~106 MB on a 6,000-haplotype
    panel): a training epoch that kept every window of a 20 Mb chromosome held ~2.4 GB of
    them, and peaked at 3.7 GB (docs/model.md, "Training memory"). When the cache is full, the window evicted is the
    one whose next use is farthest (``next_use``, when the caller knows its order of
    reads: the batches of an epoch), else the least recently used. The arrays handed out
    are never changed: what a caller reads does not depend on the bound, only how often a
    window is read again.
    """

    def __init__(self, capacity: int = 64, max_bytes: int = 0) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._items: collections.OrderedDict[tuple[str, str], WindowArrays] = (
            collections.OrderedDict())
        self._reader = ConsecutiveWindowReader()
        self.reads = 0  # windows read from the stores (warm included)

    @property
    def nbytes(self) -> int:
        """Bytes of the arrays held."""
        return sum(array_bytes(a) for a in self._items.values())

    def fits(self, n_windows: int, n_bytes: int) -> bool:
        """Whether ``n_windows`` more windows of ``n_bytes`` in all fit beside those held."""
        return (len(self._items) + n_windows <= self.capacity
                and (self.max_bytes <= 0 or self.nbytes + n_bytes <= self.max_bytes))

    def warm(self, windows: list[tuple[Chromosome, str, WindowLayout]]) -> bool:
        """Read ``windows`` (chromosome, window id, layout) into the cache in chromosome
        order through a :class:`ConsecutiveWindowReader`, so that each variant is
        decompressed once, when they all fit (:meth:`fits`, their bytes from their layouts).
        Returns whether it did; otherwise :meth:`get` reads each window when asked."""
        todo = [w for w in windows if (w[0].contig, w[1]) not in self._items]
        size = sum(window_bytes(chrom.n_haplotypes, layout) for chrom, _, layout in todo)
        if not todo or not self.fits(len(todo), size):
            return False
        for chrom, window_id, layout in sorted(
                todo, key=lambda w: (w[0].reference_h5, w[2].core_start)):
            self._items[(chrom.contig, window_id)] = self._reader.get(chrom, window_id, layout)
            self.reads += 1
        return True

    def get(self, chrom: Chromosome, window_id: str, layout: WindowLayout,
            next_use: collections.abc.Callable[[tuple[str, str]], float] | None = None
            ) -> WindowArrays:
        """The window's arrays, read on a miss. To make room, windows are evicted by the
        largest ``next_use(key)`` (e.g. the next batch that reads it; ``inf``: never again),
        else least recently used first; the window asked for is always kept."""
        key = (chrom.contig, window_id)
        if key in self._items:
            self._items.move_to_end(key)
            return self._items[key]
        size = window_bytes(chrom.n_haplotypes, layout)
        while self._items and not self.fits(1, size):
            victim = (max(self._items, key=next_use) if next_use is not None
                      else next(iter(self._items)))
            del self._items[victim]
        # the slots from the target store's copy of the reference, the core alone from the
        # reference store: a window's flanks are not decompressed (ConsecutiveWindowReader)
        arrays = self._reader.get(chrom, window_id, layout)
        self.reads += 1
        self._items[key] = arrays
        return arrays


def window_bytes(n_haplotypes: int, layout: WindowLayout) -> int:
    """Bytes of a window's :class:`WindowArrays` (its int8 alleles and int32 counts)."""
    columns = layout.n_slots + layout.n_sites
    return n_haplotypes * columns + 4 * columns


def array_bytes(arrays: WindowArrays) -> int:
    """Bytes held by one window's arrays."""
    return (arrays.ref_slots.nbytes + arrays.ref_core.nbytes + arrays.ac_slots.nbytes
            + arrays.ac_core.nbytes)


def own_sample(haps: np.ndarray) -> np.ndarray:
    """int64 [b, 2]: both haplotypes of each haplotype's sample (h = 2*sample + p)."""
    base = (np.asarray(haps, np.int64) // 2) * 2
    return np.stack([base, base + 1], axis=1)


def query_tokens(query_slots: np.ndarray, slot_observed: np.ndarray) -> np.ndarray:
    """int64 [b, m]: 0/1 at observed, called slots; MASK elsewhere."""
    tok = query_slots.astype(np.int64)
    return np.where(slot_observed[None, :] & (tok >= 0), tok, MASK)


def leave_one_out_af(ac: np.ndarray, ref_alleles: np.ndarray, haps: np.ndarray,
                     n_haplotypes: int) -> np.ndarray:
    """float32 [b, x]: panel ALT frequency without the query's own sample.

    Args:
        ac: int [x] ALT counts over the whole panel; ref_alleles: int8 [H, x]; haps: int [b].
    """
    own = own_sample(haps)
    own_ac = ref_alleles[own[:, 0]].astype(np.int32) + ref_alleles[own[:, 1]]
    return ((ac[None, :] - own_ac) / max(1, n_haplotypes - 2)).astype(np.float32)
