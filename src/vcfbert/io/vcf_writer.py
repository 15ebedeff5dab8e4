"""Writing bgzipped, tabix-indexed VCF files atomically.

Records are formatted by the caller as text lines; this module owns compression (BGZF, so
bcftools, tabix and plink2 read it), the index beside the file, and atomicity (the file and its
index appear under their final names only when complete).
"""

from __future__ import annotations

import contextlib
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .. import __version__
from ..atomic import CloseOrAbort

if TYPE_CHECKING:
    from .tabix import ContigRecords

VCF_VERSION = "VCFv4.2"


def command_line() -> str:
    """The current command line, shell-quoted, for provenance headers."""
    return " ".join(shlex.quote(a) for a in [os.path.basename(sys.argv[0]), *sys.argv[1:]])


def base_header(contigs: list[tuple[str, int | None]], *, source: str | None = None,
                command: str | None = None) -> list[str]:
    """Header lines common to every VCF vcfbert writes (without the #CHROM line)."""
    lines = [f"##fileformat={VCF_VERSION}", f"##source={source or f'vcfbert {__version__}'}"]
    if command:
        lines.append(f"##vcfbert_command={command}")
    for name, length in contigs:
        lines.append(f"##contig=<ID={name}{f',length={length}' if length else ''}>")
    return lines


def column_header(samples: list[str]) -> str:
    return "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                      *samples])


class BgzipVcfWriter(CloseOrAbort):
    """Write text lines into ``path`` (BGZF) and index it with tabix on close (htslib reads
    the file back, unless :meth:`set_index` gave the records' places).

    Usage::

        with BgzipVcfWriter("out.vcf.gz") as w:
            w.write_lines(header)
            w.write_lines(records)
    """

    def __init__(self, path: str | os.PathLike[str], *, index: bool = True,
                 compress: bool = True, threads: int = 1, level: int = 6) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.index = index and compress
        self.compress = compress
        self._tabix: list[ContigRecords] | None = None
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}.gz"
                                       if compress else f".{self.path.name}.tmp-{os.getpid()}")
        if compress:
            from .bgzf import BgzfWriter

            self._fh = BgzfWriter(self.tmp, threads=threads, level=level)
        else:
            self._fh = open(self.tmp, "wb")  # noqa: SIM115

    def write_lines(self, lines: list[str] | Iterator[str]) -> None:
        buf = "".join(line + "\n" for line in lines)
        if buf:
            self._fh.write(buf.encode("ascii"))

    def write_bytes(self, data: bytes) -> None:
        """Append already formatted records (ASCII, each ending in a newline)."""
        if data:
            self._fh.write(data)

    def write_members(self, data: bytes | memoryview) -> int:
        """Append complete BGZF members (records another job compressed; see
        :meth:`vcfbert.io.bgzf.BgzfWriter.write_members`); returns the file offset they start
        at."""
        if not self.compress:
            raise ValueError("BGZF members can only go into a compressed file")
        return self._fh.write_members(data)

    def set_index(self, contigs: list[ContigRecords]) -> None:
        """Index the file with these records' places (:mod:`vcfbert.io.tabix`) on close,
        instead of having htslib read the whole file back to find them."""
        self._tabix = contigs

    def close(self) -> None:
        self._fh.close()
        if self.index:
            if self._tabix is not None:
                from .tabix import write_tabix

                write_tabix(f"{self.tmp}.tbi", self._tabix)
            else:
                import pysam

                pysam.tabix_index(str(self.tmp), preset="vcf", force=True, keep_original=True)
            os.replace(f"{self.tmp}.tbi", f"{self.path}.tbi")
        os.replace(self.tmp, self.path)

    def abort(self, exc: BaseException | None = None) -> None:
        with contextlib.suppress(Exception):
            (self._fh.abort if hasattr(self._fh, "abort") else self._fh.close)()
        for p in (self.tmp, Path(f"{self.tmp}.tbi")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def format_float(values: np.ndarray, digits: int) -> np.ndarray:
    """Fixed-point strings of ``values`` (object array of str), ``-0`` written as ``0``."""
    out = np.char.mod(f"%.{digits}f", np.round(values.astype(np.float64), digits) + 0.0)
    return out


def genotype_strings(haps: np.ndarray, phased: bool) -> np.ndarray:
    """GT strings for int8 haplotypes [2S, V] -> str [V, S] (``0|1``, ``./.``)."""
    sep = "|" if phased else "/"
    a = haps[0::2].T
    b = haps[1::2].T
    sa = np.where(a < 0, ".", a.astype(str))
    sb = np.where(b < 0, ".", b.astype(str))
    return np.char.add(np.char.add(sa, sep), sb)


def genotype_cells(haps: np.ndarray, phased: bool,
                   haploid: np.ndarray | None = None) -> list[bytes]:
    """GT text of int8 haplotypes [2S, V], one bytes per record: ``a|b`` (``.`` missing) and
    a tab after each cell, a newline after the last one — the byte twin of
    :func:`genotype_strings`, for files of thousands of samples. Samples flagged in
    ``haploid`` (bool [S]: males on chrX) are written with their first allele only."""
    a, b = haps[0::2].T, haps[1::2].T  # [V, S]
    cells = np.empty(a.shape + (4,), np.uint8)
    cells[..., 0] = np.where(a < 0, ord("."), ord("0") + a)
    cells[..., 1] = ord("|" if phased else "/")
    cells[..., 2] = np.where(b < 0, ord("."), ord("0") + b)
    cells[..., 3] = ord("\t")
    cells[:, -1, 3] = ord("\n")
    if haploid is None or not np.any(haploid):
        return [row.tobytes() for row in cells.reshape(a.shape[0], -1)]
    keep = np.ones(a.shape[1:] + (4,), bool)
    keep[np.asarray(haploid, bool), 1:3] = False
    return [row[keep].tobytes() for row in cells]
