"""A tabix index (``.tbi``) built from the records' known places, without reading the file.

``pysam.tabix_index`` (htslib's ``tabix``) decompresses and parses the whole VCF to find where
each record starts: on ``ooa_speed`` (1,000 samples, 99,451 records, 1.2 GB of text) 1.38 s
of ``write_vcf``'s 1.68 s. The imputed VCF's writer already knows each record's place, so the
index is built from it instead (:func:`vcfbert.impute.write_vcf`): the imputation jobs keep
each record's length in bytes and the size of each BGZF member of their piece, and the
chromosome's VCF is the header followed by the pieces' members, so every record's *virtual
offset* (the member's offset in the file << 16 | the record's offset inside the member) follows
from those sizes (:func:`virtual_offsets`).

The format is htslib's (the SAM/BAM specification's binning and linear index, in the tabix
layout; VCF preset: sequence in column 1, start in column 2, the end from the REF allele's
length): per contig, the records of each bin as chunks of consecutive records, the
pseudo-bin 37450 with the contig's first and last offsets and its number of records (what
``bcftools index --nrecords`` reads), and a linear index of 16 kb windows holding the offset of
the first record overlapping each window. Tested against htslib's own index: the same records
for every region queried.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from typing import NamedTuple

import numpy as np

MIN_SHIFT = 14  # the smallest bins and the linear index's windows span 2^14 bp
META_BIN = 37450  # htslib's pseudo-bin: offsets and record counts of a contig
TBX_VCF = 2  # tabix's format code for VCF (columns 1, 2, end from REF, meta '#')
# (shift, first bin) of each level, the smallest bins first (SAM/BAM specification, 5.3)
_LEVELS = ((14, 4681), (17, 585), (20, 73), (23, 9), (26, 1))


class ContigRecords(NamedTuple):
    """The records of one contig, in file order (sorted by start)."""

    name: str
    beg: np.ndarray  # int64 [n] 0-based start (POS - 1)
    end: np.ndarray  # int64 [n] 0-based end, exclusive (start + the REF allele's length)
    start: np.ndarray  # uint64 [n] virtual offset of each record
    stop: np.ndarray  # uint64 [n] virtual offset just after it (the next record's start)


def reg2bin(beg: np.ndarray, end: np.ndarray) -> np.ndarray:
    """int64 [n]: the smallest bin holding each 0-based half-open interval ``[beg, end)``
    (the specification's ``reg2bin``, vectorised)."""
    beg = np.asarray(beg, np.int64)
    last = np.maximum(np.asarray(end, np.int64), beg + 1) - 1
    out = np.zeros(beg.shape, np.int64)
    todo = np.ones(beg.shape, bool)
    for shift, first in _LEVELS:
        here = todo & ((beg >> shift) == (last >> shift))
        out[here] = first + (beg[here] >> shift)
        todo &= ~here
    return out


def virtual_offsets(offsets: np.ndarray, blocks: np.ndarray, start: int) -> np.ndarray:
    """uint64 virtual offsets of places in a run of BGZF members.

    Args:
        offsets: int [n] places in the members' uncompressed text (0 .. its whole length;
            the whole length is the place just after the last member).
        blocks: int [b, 2] each member's compressed and uncompressed size, in order.
        start: the file offset of the first member.
    """
    blocks = np.asarray(blocks, np.int64).reshape(-1, 2)
    text_start = np.concatenate([[0], np.cumsum(blocks[:, 1])])
    file_start = start + np.concatenate([[0], np.cumsum(blocks[:, 0])])
    offsets = np.asarray(offsets, np.int64)
    if offsets.size and (offsets.min() < 0 or offsets.max() > text_start[-1]):
        raise ValueError(f"virtual_offsets: places outside the members' {text_start[-1]} "
                         "bytes of text")
    member = np.searchsorted(text_start, offsets, side="right") - 1
    return ((file_start[member].astype(np.uint64) << np.uint64(16))
            | (offsets - text_start[member]).astype(np.uint64))


def _contig_index(rec: ContigRecords) -> bytes:
    """One contig's bins, chunks and linear index, as the ``.tbi`` stores them."""
    beg = np.asarray(rec.beg, np.int64)
    end = np.maximum(np.asarray(rec.end, np.int64), beg + 1)
    start = np.asarray(rec.start, np.uint64)
    stop = np.asarray(rec.stop, np.uint64)
    n = beg.size
    if np.any(np.diff(beg) < 0) or np.any(np.diff(start.astype(np.int64)) <= 0):
        raise ValueError(f"tabix index of {rec.name}: records out of order")
    bins = reg2bin(beg, end)
    # chunks: runs of consecutive records in the same bin
    first = np.flatnonzero(np.concatenate([[True], bins[1:] != bins[:-1]]))
    last = np.concatenate([first[1:], [n]]) - 1
    chunk_bin = bins[first]
    order = np.argsort(chunk_bin, kind="stable")  # bins in increasing order, chunks in file order
    parts = []
    distinct, at = np.unique(chunk_bin[order], return_index=True)
    bounds = np.concatenate([at, [order.size]])
    for i, b in enumerate(distinct):
        rows = order[bounds[i]:bounds[i + 1]]
        pairs = np.stack([start[first[rows]], stop[last[rows]]], 1).astype("<u8")
        parts.append(struct.pack("<Ii", int(b), rows.size) + pairs.tobytes())
    parts.append(struct.pack("<Ii", META_BIN, 2)
                 + np.array([start[0], stop[-1], n, 0], "<u8").tobytes())
    # linear index: each 16 kb window's first overlapping record; windows without one take the
    # previous window's value (the first ones, the contig's first record)
    lo, hi = beg >> MIN_SHIFT, (end - 1) >> MIN_SHIFT
    span = hi - lo + 1
    windows = np.repeat(lo, span) + (np.arange(span.sum()) - np.repeat(np.cumsum(span) - span,
                                                                          span))
    unset = np.iinfo(np.uint64).max
    linear = np.full(int(hi.max()) + 1, unset, np.uint64)
    np.minimum.at(linear, windows, np.repeat(start, span))
    previous = start[0]
    for w in range(linear.size):
        if linear[w] == unset:
            linear[w] = previous
        else:
            previous = linear[w]
    return (struct.pack("<i", len(parts)) + b"".join(parts)
            + struct.pack("<i", linear.size) + linear.astype("<u8").tobytes())


def tabix_bytes(contigs: list[ContigRecords]) -> bytes:
    """The uncompressed ``.tbi`` of a VCF holding ``contigs`` (each with at least one record),
    in file order."""
    contigs = [c for c in contigs if np.asarray(c.beg).size]
    names = b"".join(c.name.encode("ascii") + b"\0" for c in contigs)
    header = b"TBI\1" + struct.pack("<8i", len(contigs), TBX_VCF, 1, 2, 0, ord("#"), 0,
                                     len(names)) + names
    return header + b"".join(_contig_index(c) for c in contigs) + struct.pack("<Q", 0)


def write_tabix(path: str | os.PathLike[str], contigs: list[ContigRecords]) -> None:
    """Write the ``.tbi`` of :func:`tabix_bytes` at ``path`` (BGZF-compressed, as htslib
    writes it)."""
    from .bgzf import BgzfWriter

    with BgzfWriter(path) as w:
        w.write(tabix_bytes(contigs))


def pack_uint32(values: np.ndarray) -> str:
    """Non-negative integers below 2^32 as text for a JSON sidecar (little-endian uint32,
    zlib, base64); :func:`unpack_uint32` reads them back."""
    a = np.asarray(values)
    if a.size and (a.min() < 0 or a.max() >= 2**32):
        raise ValueError("pack_uint32: values outside 0 .. 2^32 - 1")
    return base64.b64encode(zlib.compress(a.astype("<u4").tobytes(), 6)).decode("ascii")


def unpack_uint32(text: str) -> np.ndarray:
    """int64 [n] from :func:`pack_uint32`'s text."""
    return np.frombuffer(zlib.decompress(base64.b64decode(text)), "<u4").astype(np.int64)
