"""HDF5 genotype stores (one file per chromosome), with sgkit-style dataset names.

Reference store (``reference.h5``):
    variant_position  int64  [V]
    variant_allele    str    [V, 2]   (REF, ALT)
    variant_id        str    [V]
    variant_af        float32 [V]     ALT frequency in the panel
    sample_id         str    [S]
    sample_population str    [S]      ("" when unknown)
    call_haplotype    int8   [2S, V]  0/1, -1 missing; haplotype h = 2*sample + p;
                                      chunked along variants (a window is one contiguous read)
Attributes: ``contig``, ``format`` ("vcfbert-genotypes"), ``format_version``, ``source``,
``role`` and a JSON ``provenance``.

Target store (``targets.h5``, aligned to the reference):
    variant_ref_index int64 [M]       index of each typed site in the reference store
    call_haplotype    int8  [2T, M]   alleles coded as in the reference (swaps undone)
    sample_id         str   [T]
    sample_phased     bool  [T]       every heterozygous genotype of the sample is phased
    reference_call_haplotype int8 [2S, M]  the reference panel at the typed sites (what the
                                      training's key jobs read; absent in a trained panel's
                                      run and in stores of earlier versions)
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..atomic import CloseOrAbort, atomic_path
from ..errors import InputError, IntegrityError
from .h5chunks import read_columns, read_selected_columns

FORMAT = "vcfbert-genotypes"
FORMAT_VERSION = 1
_STR = h5py.string_dtype("utf-8")
BLOCK = 4096


def _chunk(n_rows: int, n_cols: int) -> tuple[int, int]:
    """Chunk shape for [rows, variants]: all rows, enough variants for ~1 MiB."""
    cols = max(1, min(n_cols if n_cols else 16, (1 << 20) // max(1, n_rows)))
    return (max(1, n_rows), max(1, cols))


@dataclasses.dataclass
class ReferencePanel:
    """A reference store held in memory (small panels, tests) — see :func:`read_reference`."""

    contig: str
    position: np.ndarray  # int64 [V]
    alleles: np.ndarray  # object [V, 2]
    ids: np.ndarray  # object [V]
    af: np.ndarray  # float32 [V]
    sample_id: list[str]
    sample_population: list[str]
    haplotypes: np.ndarray  # int8 [2S, V]

    @property
    def n_variants(self) -> int:
        return int(self.position.shape[0])

    @property
    def n_haplotypes(self) -> int:
        return int(self.haplotypes.shape[0])


class ReferenceWriter(CloseOrAbort):
    """Stream variants into a reference store, written atomically on :meth:`close`.

    Variants are buffered ``BLOCK`` at a time; a full buffer is transposed, compressed and
    written on a thread of its own while the next one fills (one write in flight at most), so
    that parsing the VCF and writing the store overlap.

    Example::

        with ReferenceWriter(path, contig="20", samples=s, populations=p) as w:
            for v in variants:
                w.add(v.position, v.ref, v.alt, v.vid, v.haplotypes)
    """

    def __init__(self, path: str | os.PathLike[str], *, contig: str, samples: list[str],
                 populations: list[str] | None = None, role: str = "reference",
                 provenance: dict[str, Any] | None = None,
                 contig_length: int | None = None) -> None:
        self.path = path
        self._ctx = atomic_path(path)
        tmp = self._ctx.__enter__()
        self._h5 = h5py.File(tmp, "w")
        n_h = 2 * len(samples)
        self.n_haplotypes = n_h
        h5 = self._h5
        h5.attrs.update({"contig": contig, "format": FORMAT, "format_version": FORMAT_VERSION,
                         "source": f"vcfbert {__version__}", "role": role,
                         "provenance": json.dumps(provenance or {}, sort_keys=True)})
        if contig_length:  # from the VCF's ##contig line: copied to the imputed VCF's header
            h5.attrs["contig_length"] = int(contig_length)
        h5.create_dataset("sample_id", data=np.array(samples, dtype=object), dtype=_STR)
        pops = populations if populations is not None else [""] * len(samples)
        h5.create_dataset("sample_population", data=np.array(pops, dtype=object), dtype=_STR)
        h5.create_dataset("variant_position", shape=(0,), maxshape=(None,), dtype=np.int64,
                          chunks=(BLOCK,))
        h5.create_dataset("variant_allele", shape=(0, 2), maxshape=(None, 2), dtype=_STR,
                          chunks=(BLOCK, 2))
        h5.create_dataset("variant_id", shape=(0,), maxshape=(None,), dtype=_STR,
                          chunks=(BLOCK,))
        h5.create_dataset("variant_af", shape=(0,), maxshape=(None,), dtype=np.float32,
                          chunks=(BLOCK,))
        h5.create_dataset("call_haplotype", shape=(n_h, 0), maxshape=(n_h, None),
                          dtype=np.int8, chunks=_chunk(n_h, BLOCK), compression="gzip",
                          compression_opts=1, shuffle=True)
        # two buffers of haplotype rows, filled in turn: one fills while the other's write
        # is in flight (a row copied once into reused memory, where a list of rows was
        # stacked into a fresh array per write: docs/model.md, "Inference speed")
        self._capacity = BLOCK  # rows of a buffer
        self._rows = [np.empty((BLOCK, n_h), np.int8) for _ in range(2)]
        self._transposed = np.empty((n_h, BLOCK), np.int8)  # the writing thread's
        self._which = 0
        self._fill = 0  # rows of the current buffer filled
        self._columns: list[tuple[int, str, str, str]] = []  # their position, REF, ALT, id
        self.n_variants = 0  # variants handed to the writing thread (written or in flight)
        self._closed = False
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="reference_writer")
        self._pending: Future | None = None

    def add(self, position: int, ref: str, alt: str, vid: str, haplotypes: np.ndarray) -> None:
        """Append one variant; ``haplotypes`` is int8 [2S]."""
        if haplotypes.shape != (self.n_haplotypes,):
            raise ValueError(f"expected {self.n_haplotypes} haplotypes, got {haplotypes.shape}")
        self.add_block(np.array([position]), [ref], [alt], [vid], haplotypes[None])

    def add_block(self, positions: np.ndarray, refs: list[str], alts: list[str],
                  vids: list[str], haplotypes: np.ndarray) -> None:
        """Append ``m`` variants at once: positions int [m], their alleles and ids, and
        ``haplotypes`` int8 [m, 2S] (what :meth:`add` takes for one, row by row)."""
        if haplotypes.ndim != 2 or haplotypes.shape[1] != self.n_haplotypes:
            raise ValueError(f"expected [m, {self.n_haplotypes}] haplotypes, got "
                             f"{haplotypes.shape}")
        if not len(positions) == len(refs) == len(alts) == len(vids) == len(haplotypes):
            raise ValueError("add_block: one position, REF, ALT, id and row per variant")
        positions = np.asarray(positions).tolist()
        lo = 0
        while lo < len(positions):
            hi = min(len(positions), lo + self._capacity - self._fill)
            self._rows[self._which][self._fill:self._fill + hi - lo] = haplotypes[lo:hi]
            self._columns.extend(zip(positions[lo:hi], refs[lo:hi], alts[lo:hi], vids[lo:hi],
                                     strict=True))
            self._fill += hi - lo
            lo = hi
            if self._fill == self._capacity:
                self._flush()

    def add_variant_column(self, name: str, values_of_positions) -> None:
        """Add a per-variant float64 dataset ``name`` = ``values_of_positions(positions)`` once
        every variant is added (e.g. ``variant_cm`` from a genetic map)."""
        self._drain()
        values = np.asarray(values_of_positions(self._h5["variant_position"][()]), np.float64)
        if values.shape != (self.n_variants,):
            raise ValueError(f"{name}: expected {self.n_variants} values, got {values.shape}")
        self._h5.create_dataset(name, data=values)

    def set_attr(self, name: str, value: Any) -> None:
        self._h5.attrs[name] = value

    def set_ploidy(self, haploid_variant: np.ndarray, sample_haploid: np.ndarray) -> None:
        """Record the haploid region (bool [V]) and the haploid samples (bool [S], males) once
        every variant is added; the ALT frequency of the region's variants then counts each
        male's allele once (stores keep it twice)."""
        self._drain()
        region = np.asarray(haploid_variant, bool)
        male = np.asarray(sample_haploid, bool)
        if region.shape != (self.n_variants,) or male.shape != (self.n_haplotypes // 2,):
            raise ValueError("set_ploidy: one flag per variant and one per sample")
        h5 = self._h5
        h5.create_dataset("variant_haploid", data=region)
        h5.create_dataset("sample_haploid", data=male)
        if not (region.any() and male.any()):
            return
        keep = np.ones(self.n_haplotypes, bool)
        keep[1::2] = ~male  # a male's second copy is his first one again
        idx = np.flatnonzero(region)
        for lo in range(0, idx.size, BLOCK):
            cols = idx[lo:lo + BLOCK]
            haps = h5["call_haplotype"][:, cols[0]:cols[-1] + 1][keep][:, cols - cols[0]]
            n_called = (haps >= 0).sum(0)
            af = np.where(n_called > 0, (haps == 1).sum(0) / np.maximum(n_called, 1), np.nan)
            h5["variant_af"][cols] = af.astype(np.float32)

    @property
    def count(self) -> int:
        """Variants added so far (written or buffered)."""
        return self.n_variants + self._fill

    def _flush(self) -> None:
        """Hand the current buffer to the writing thread (after the previous write has
        finished, so that at most one buffer waits to be written and the other one is free)."""
        if not self._fill:
            return
        self._wait()
        rows, columns = self._rows[self._which][:self._fill], self._columns
        self._pending = self._pool.submit(self._write, rows, columns, self.n_variants)
        self.n_variants += self._fill
        self._which, self._fill, self._columns = 1 - self._which, 0, []

    def _wait(self) -> None:
        """Wait for the write in flight; what it raised is raised here."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def _drain(self) -> None:
        """Write every buffered variant and wait until the store holds them."""
        self._flush()
        self._wait()

    def _write(self, rows: np.ndarray, columns: list[tuple[int, str, str, str]],
               start: int) -> None:
        """Append the variants of ``rows`` int8 [n, 2S] and ``columns`` (position, REF, ALT,
        id each) at ``start`` (on the writing thread)."""
        n = len(columns)
        h5 = self._h5
        from .transpose import allele_counts, transpose_into  # numba: only writers need it

        haps = self._transposed[:, :n]  # [2S, n]
        transpose_into(rows, haps)
        n_alt, n_called = allele_counts(rows)
        af = np.where(n_called > 0, n_alt / np.maximum(n_called, 1), np.nan)
        for name in ("variant_position", "variant_allele", "variant_id", "variant_af"):
            h5[name].resize(start + n, axis=0)
        h5["call_haplotype"].resize(start + n, axis=1)
        h5["variant_position"][start:] = [c[0] for c in columns]
        h5["variant_allele"][start:] = np.array([[c[1], c[2]] for c in columns], dtype=object)
        h5["variant_id"][start:] = np.array([c[3] for c in columns], dtype=object)
        h5["variant_af"][start:] = af.astype(np.float32)
        h5["call_haplotype"][:, start:] = haps

    def close(self) -> None:
        """Flush, close and move the file to its final name."""
        if self._closed:
            return
        try:
            self._drain()
        except BaseException as exc:
            self.abort(exc)
            raise
        self._pool.shutdown()
        self._h5.attrs["n_variants"] = self.n_variants
        self._h5.close()
        self._closed = True
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException | None = None) -> None:
        """Close and delete the temporary file (used when an error, ``exc``, interrupts
        writing)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._wait()
        except Exception:  # noqa: BLE001 - the store is deleted; ``exc`` is what is reported
            pass
        self._pool.shutdown()
        self._h5.close()
        if exc is None:
            exc = RuntimeError("writing the reference store was aborted")
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)


def _check_format(h5: h5py.File, path: str | os.PathLike[str]) -> None:
    if h5.attrs.get("format") != FORMAT:
        raise InputError(f"{path}: not a vcfbert genotype store")
    if int(h5.attrs.get("format_version", -1)) != FORMAT_VERSION:
        raise InputError(f"{path}: store format version {h5.attrs.get('format_version')} is not "
                         f"{FORMAT_VERSION}; re-run the parse step with this vcfbert")


def _strings(ds: h5py.Dataset) -> np.ndarray:
    return ds.asstr()[()]


def open_store(path: str | os.PathLike[str]) -> h5py.File:
    """Open a store read-only, checking its format."""
    try:
        h5 = h5py.File(path, "r")
    except OSError as exc:
        raise IntegrityError(f"{path}: cannot open HDF5 file ({exc}); delete it and re-run") from exc
    _check_format(h5, path)
    return h5


def read_reference(path: str | os.PathLike[str]) -> ReferencePanel:
    """Read a whole reference store into memory."""
    with open_store(path) as h5:
        return ReferencePanel(
            contig=str(h5.attrs["contig"]),
            position=h5["variant_position"][()],
            alleles=_strings(h5["variant_allele"]),
            ids=_strings(h5["variant_id"]),
            af=h5["variant_af"][()],
            sample_id=list(_strings(h5["sample_id"])),
            sample_population=list(_strings(h5["sample_population"])),
            haplotypes=h5["call_haplotype"][()],
        )


VARIANT_FIELDS = ("position", "alleles", "ids", "af", "haploid")


def read_variant_table(path: str | os.PathLike[str],
                       fields: tuple[str, ...] = VARIANT_FIELDS,
                       rows: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
    """The per-variant arrays of a store (no genotypes): ``fields`` of
    :data:`VARIANT_FIELDS` (the string columns, ``alleles`` and ``ids``, are the slow ones to
    read: a job that needs no strings asks for the others), of the variants ``rows`` =
    ``(start, end)`` only when given (an imputation job's chunk: its strings, not the whole
    chromosome's: ~1.4 s and ~250 MB of Python strings per million variants, scaled from
    0.14 s for ``ooa_speed``'s 99,451)."""
    unknown = set(fields) - set(VARIANT_FIELDS)
    if unknown:
        raise ValueError(f"unknown variant fields {sorted(unknown)}; known: {VARIANT_FIELDS}")
    sel = slice(None) if rows is None else slice(int(rows[0]), int(rows[1]))
    with open_store(path) as h5:
        n = h5["variant_position"].shape[0]
        read = {
            "position": lambda: h5["variant_position"][sel],
            "alleles": lambda: h5["variant_allele"].asstr()[sel],
            "ids": lambda: h5["variant_id"].asstr()[sel],
            "af": lambda: h5["variant_af"][sel],
            "haploid": lambda: (h5["variant_haploid"][sel] if "variant_haploid" in h5
                                else np.zeros(n, bool)[sel]),
        }
        return {name: read[name]() for name in fields}


def read_alleles_at(path: str | os.PathLike[str], rows: np.ndarray) -> list[tuple[str, str]]:
    """(REF, ALT) of the variants ``rows`` (int, sorted, unique) of a store, in that order:
    read point by point where they are sparse (~15 µs a variant), else as one slice over
    their span (~1.5 µs a variant of the span), so that an array's few thousand sites do not
    pay for the strings of a whole chromosome and a dense VCF's do not pay per point."""
    rows = np.asarray(rows, np.int64)
    if rows.size == 0:
        return []
    lo, hi = int(rows[0]), int(rows[-1]) + 1
    if 10 * rows.size >= hi - lo:
        values = read_variant_table(path, ("alleles",), rows=(lo, hi))["alleles"][rows - lo]
    else:
        with open_store(path) as h5:
            values = h5["variant_allele"].asstr()[rows]
    return [(ref, alt) for ref, alt in values.tolist()]


def read_haplotype_slice(path: str | os.PathLike[str], start: int, end: int) -> np.ndarray:
    """int8 [2S, end - start]: all haplotypes over variants ``start:end``."""
    with open_store(path) as h5:
        return read_columns(h5["call_haplotype"], start, end)


@dataclasses.dataclass
class TargetSet:
    """Target genotypes aligned to a reference store."""

    contig: str
    variant_ref_index: np.ndarray  # int64 [M]
    haplotypes: np.ndarray  # int8 [2T, M]
    sample_id: list[str]
    sample_phased: np.ndarray  # bool [T]
    sample_haploid: np.ndarray | None = None  # bool [T]: males (haploid in the haploid region)

    @property
    def site_called(self) -> np.ndarray:
        """bool [M]: sites with at least one called allele. A site no target has (an array
        site a batch lacks, with a trained panel) is imputed like an untyped one."""
        return (self.haplotypes >= 0).any(axis=0)


def reference_at_sites(reference_h5: str | os.PathLike[str], index: np.ndarray
                       ) -> np.ndarray:
    """int8 [2S, M]: the reference store's haplotypes at the sorted variant indices ``index``
    (the targets' typed sites), each chunk that holds some of them inflated once
    (:func:`~vcfbert.io.h5chunks.read_selected_columns`)."""
    with open_store(reference_h5) as h5:
        return read_selected_columns(h5["call_haplotype"], index)


def write_targets(path: str | os.PathLike[str], targets: TargetSet,
                  provenance: dict[str, Any] | None = None,
                  reference_haplotypes: np.ndarray | None = None) -> None:
    """Write an aligned target store atomically; with ``reference_haplotypes`` (int8
    [2S, M], :func:`reference_at_sites`) also the reference panel at the typed sites
    (``reference_call_haplotype``), so that a window's slot alleles are one small read."""
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update({"contig": targets.contig, "format": FORMAT,
                         "format_version": FORMAT_VERSION, "role": "target",
                         "source": f"vcfbert {__version__}",
                         "provenance": json.dumps(provenance or {}, sort_keys=True)})
        h5.create_dataset("variant_ref_index", data=targets.variant_ref_index.astype(np.int64))
        n_h, m = targets.haplotypes.shape
        h5.create_dataset("call_haplotype", data=targets.haplotypes.astype(np.int8),
                          chunks=_chunk(n_h, max(m, 1)) if m else None, compression="gzip",
                          compression_opts=1)
        h5.create_dataset("sample_id", data=np.array(targets.sample_id, dtype=object),
                          dtype=_STR)
        h5.create_dataset("sample_phased", data=targets.sample_phased.astype(bool))
        haploid = targets.sample_haploid
        h5.create_dataset("sample_haploid", data=np.zeros(len(targets.sample_id), bool)
                          if haploid is None else haploid.astype(bool))
        if reference_haplotypes is not None:
            ref = np.asarray(reference_haplotypes, np.int8)
            if ref.shape[1] != m:
                raise ValueError(f"reference_haplotypes: {ref.shape[1]} sites, the targets {m}")
            _write_reference_at_sites(h5, ref)


def _write_reference_at_sites(h5: h5py.File, ref: np.ndarray) -> None:
    """``reference_call_haplotype`` int8 [2S, M], in chunks of 64 sites (a window's slots are
    one small read)."""
    m = ref.shape[1]
    h5.create_dataset("reference_call_haplotype", data=ref,
                      chunks=(ref.shape[0], max(1, min(64, m))) if m else None,
                      compression="gzip", compression_opts=1, shuffle=True)


def write_reference_at_sites(path: str | os.PathLike[str], *, contig: str,
                             variant_ref_index: np.ndarray, haplotypes: np.ndarray) -> None:
    """Write atomically a store of the reference panel at typed sites alone (a trained
    panel's ``<chrom>/reference_at_array.h5``, the copy a training run's target store holds):
    ``variant_ref_index`` int64 [M] and ``reference_call_haplotype`` int8 [2S, M], read by
    :func:`read_reference_at_sites` and :func:`read_target_sites`."""
    ref = np.asarray(haplotypes, np.int8)
    if ref.shape[1] != variant_ref_index.size:
        raise ValueError(f"haplotypes: {ref.shape[1]} sites, variant_ref_index "
                         f"{variant_ref_index.size}")
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs.update({"contig": contig, "format": FORMAT, "format_version": FORMAT_VERSION,
                         "role": "reference_at_sites", "source": f"vcfbert {__version__}"})
        h5.create_dataset("variant_ref_index", data=np.asarray(variant_ref_index, np.int64))
        _write_reference_at_sites(h5, ref)


def read_reference_at_sites(path: str | os.PathLike[str], lo: int, hi: int
                            ) -> np.ndarray | None:
    """int8 [2S, hi - lo]: the reference haplotypes at typed sites ``lo``..``hi`` - 1 of a
    target store (:func:`write_targets`); None for a store written without them."""
    with open_store(path) as h5:
        if "reference_call_haplotype" not in h5:
            return None
        return read_columns(h5["reference_call_haplotype"], lo, hi)


def read_targets(path: str | os.PathLike[str],
                 variants: tuple[int, int] | None = None) -> TargetSet:
    """Read an aligned target store; with ``variants`` = ``(start, end)``, only its typed
    sites at reference variants ``start:end`` (an imputation job's windows: the genotypes of
    its chunk, not of the whole chromosome — ``[2T, M]`` is ~400 MB for 10,000 targets at a
    chromosome's array sites)."""
    with open_store(path) as h5:
        index = h5["variant_ref_index"][()]
        a, b = 0, index.size
        if variants is not None:
            a, b = (int(x) for x in np.searchsorted(index, [variants[0], variants[1]]))
        return TargetSet(
            contig=str(h5.attrs["contig"]),
            variant_ref_index=index[a:b],
            haplotypes=(h5["call_haplotype"][()] if variants is None
                        else read_columns(h5["call_haplotype"], a, b)),
            sample_id=list(_strings(h5["sample_id"])),
            sample_phased=h5["sample_phased"][()],
            sample_haploid=(h5["sample_haploid"][()] if "sample_haploid" in h5
                            else np.zeros(len(h5["sample_id"]), bool)),
        )


def read_target_sites(path: str | os.PathLike[str]) -> np.ndarray:
    """int64 [M]: a target store's typed sites (sorted reference variant indices), without
    its genotypes (``[2T, M]``: ~400 MB for 10,000 targets at a chromosome's array sites)."""
    with open_store(path) as h5:
        return h5["variant_ref_index"][()]


def target_sample_ids(path: str | os.PathLike[str]) -> list[str]:
    """The sample ids of a target store, in order (without reading the genotypes)."""
    with open_store(path) as h5:
        return list(_strings(h5["sample_id"]))


def store_samples(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """(sample ids, populations) of a reference store."""
    with open_store(path) as h5:
        return list(_strings(h5["sample_id"])), list(_strings(h5["sample_population"]))


def as_str_list(values: Iterable[Any]) -> list[str]:
    return [str(v) for v in values]
