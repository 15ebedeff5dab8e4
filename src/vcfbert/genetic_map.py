"""Genetic maps: base-pair positions to centimorgans, as Beagle 5.4 reads them.

Two formats, told apart by their columns (whitespace-separated, ``#`` comments ignored):

* PLINK ``.map`` — what Beagle's ``map=`` takes: ``chrom  id  cM  bp`` (4 columns, no
  header);
* HapMap — ``chr  position  rate(cM/Mb)  cM`` (4 columns with a header line such as
  ``Chromosome Position(bp) Rate(cM/Mb) Map(cM)``), or the 3-column per-chromosome HapMap
  files ``position  rate  cM`` with a header (the chromosome is then taken from the
  caller).

Positions between map points are interpolated linearly; positions beyond the first or last
map point are extrapolated linearly from the first or last two points, as Beagle does. A map
must be sorted by position with non-decreasing cM.
"""

from __future__ import annotations

import gzip
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io.vcf import normalize_contig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeneticMap:
    """One contig's map: sorted positions (bp) and their genetic positions (cM)."""

    contig: str
    bp: np.ndarray  # float64 [P]
    cm: np.ndarray  # float64 [P]
    source: str

    def centimorgans(self, position: np.ndarray) -> np.ndarray:
        """float64 [V]: the cM of base-pair ``position`` [V] (interpolated, extrapolated)."""
        pos = np.asarray(position, np.float64)
        bp, cm = self.bp, self.cm
        # the interval of each position: [k, k + 1], clipped to the first and last interval
        k = np.clip(np.searchsorted(bp, pos, side="right") - 1, 0, bp.size - 2)
        span = bp[k + 1] - bp[k]
        slope = np.divide(cm[k + 1] - cm[k], span, out=np.zeros_like(span), where=span > 0)
        return cm[k] + slope * (pos - bp[k])


def _open_text(path: Path):
    with open(path, "rb") as fh:
        gz = fh.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rt") if gz else open(path)


def _rows(path: Path) -> tuple[list[list[str]], bool]:
    """Data rows (split on whitespace) and whether the file had a header line."""
    rows, header = [], False
    with _open_text(path) as fh:
        for line in fh:
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            try:
                float(fields[-1])
                float(fields[-2])
            except (ValueError, IndexError):
                if rows:  # a non-numeric line after data
                    raise InputError(f"{path}: line '{line.strip()[:60]}' is not a map line "
                                     "(expected numbers)") from None
                header = True
                continue
            rows.append(fields)
    return rows, header


def read_genetic_map(path: str | os.PathLike[str], contig: str) -> GeneticMap:
    """The map of ``contig`` (any ``chr`` naming) from a PLINK or HapMap map file.

    Raises:
        InputError: an unreadable file, a file of another format, no line for ``contig``
            (naming the contigs the map has), fewer than 2 points, or positions or cM that
            decrease.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: genetic map not found; check `genetic_map` in the config")
    try:
        rows, header = _rows(p)
    except (OSError, UnicodeDecodeError, EOFError) as exc:
        raise InputError(f"{p}: cannot read the genetic map ({exc})") from exc
    if not rows:
        raise InputError(f"{p}: the genetic map has no data lines")
    width = {len(r) for r in rows}
    if len(width) != 1 or width.pop() not in (3, 4):
        raise InputError(f"{p}: expected a PLINK map (chrom id cM bp) or a HapMap map "
                         "(chr position rate cM, with a header); lines have "
                         f"{sorted({len(r) for r in rows})} columns")
    if len(rows[0]) == 3:  # per-chromosome HapMap: position rate cM
        chroms = [contig] * len(rows)
        bp = [r[0] for r in rows]
        cm = [r[2] for r in rows]
        fmt = "HapMap (position rate cM)"
    elif header:  # HapMap: chr position rate cM
        chroms, bp, cm = [r[0] for r in rows], [r[1] for r in rows], [r[3] for r in rows]
        fmt = "HapMap (chr position rate cM)"
    else:  # PLINK: chrom id cM bp
        chroms, bp, cm = [r[0] for r in rows], [r[3] for r in rows], [r[2] for r in rows]
        fmt = "PLINK (chrom id cM bp)"
    want = normalize_contig(contig)
    keep = [i for i, c in enumerate(chroms) if normalize_contig(c) == want]
    if not keep:
        have = sorted(set(chroms))
        raise InputError(f"{p}: no map line for contig {contig} (the map has "
                         f"{', '.join(have[:10])}): a map of another contig?")
    try:
        bp_a = np.array([float(bp[i]) for i in keep])
        cm_a = np.array([float(cm[i]) for i in keep])
    except ValueError as exc:
        raise InputError(f"{p}: non-numeric position or cM ({exc})") from exc
    if bp_a.size < 2:
        raise InputError(f"{p}: contig {contig} has {bp_a.size} map point; at least 2 are needed")
    bad = np.flatnonzero(np.diff(bp_a) <= 0)
    if bad.size:
        raise InputError(f"{p}: positions are not increasing on contig {contig} (at "
                         f"{bp_a[bad[0] + 1]:.0f} after {bp_a[bad[0]]:.0f}); sort the map")
    bad = np.flatnonzero(np.diff(cm_a) < 0)
    if bad.size:
        raise InputError(f"{p}: the map is not monotone on contig {contig}: "
                         f"{cm_a[bad[0] + 1]} cM at {bp_a[bad[0] + 1]:.0f} bp after "
                         f"{cm_a[bad[0]]} cM at {bp_a[bad[0]]:.0f} bp")
    log.info("genetic map %s (%s): %d points on %s, %.2f cM over %.2f Mb", p.name, fmt,
             bp_a.size, contig, cm_a[-1] - cm_a[0], (bp_a[-1] - bp_a[0]) / 1e6)
    return GeneticMap(contig=contig, bp=bp_a, cm=cm_a, source=str(p))


def constant_rate_cm(position: np.ndarray, cm_per_mb: float = 1.0) -> np.ndarray:
    """float64 [V]: cM at a constant rate (the fallback without a map, as Beagle's 1 cM/Mb)."""
    return np.asarray(position, np.float64) * cm_per_mb / 1e6
