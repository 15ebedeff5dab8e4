"""Haploid males (chrX outside the pseudo-autosomal regions), as 1000 Genomes ships them.

A haploid call is read as its allele twice (:func:`vcfbert.io.vcf.iter_variants` with
``haploid="duplicate"``), so every store keeps two haplotypes per sample; which samples and
which variants are haploid is kept beside them, and the imputed VCF writes those cells
haploid again (``GT`` ``0``/``1``, ``DS`` in [0, 1]), as Beagle 5.4 does.

The haploid region is read from the data, whatever the genome build: the reference variants
where some reference sample is haploid (non-PAR chrX when the panel has males). The
pseudo-autosomal regions, where males are diploid, stay diploid. A sample is male when it is
haploid somewhere on the contig, or when the sample table's ``sex`` column says so; a sample
haploid at some variants of the haploid region and diploid at others stops the run.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

MALE = {"1", "m", "male"}
FEMALE = {"2", "f", "female"}


class PloidyTracker:
    """Haploid and diploid calls per sample, checked while a contig is read (streaming: two
    positions per sample are kept, whatever the number of variants).

    Args:
        samples: sample names (in the file's order).
        where: what is read (file and contig), for messages.
    """

    def __init__(self, samples: list[str], where: str) -> None:
        self.samples = samples
        self.where = where
        n = len(samples)
        self.first_haploid = np.full(n, -1, np.int64)  # a haploid call, in the region
        self.first_diploid = np.full(n, -1, np.int64)  # a diploid call, in the region
        self.first_outside = np.full(n, -1, np.int64)  # a haploid call, outside the region

    def add(self, position: int, haploid: np.ndarray | None, called: np.ndarray,
            in_region: bool | None = None) -> bool:
        """One variant: ``haploid`` bool [S] (None: all diploid), ``called`` bool [S];
        ``in_region``: whether the variant lies in the haploid region (None: it does when some
        sample is haploid here, how the reference defines it). Returns that."""
        hap = np.zeros(len(self.samples), bool) if haploid is None else haploid & called
        region = bool(hap.any()) if in_region is None else in_region
        if region:
            _first(self.first_haploid, hap, position)
            _first(self.first_diploid, called & ~hap, position)
        else:
            _first(self.first_outside, hap, position)
        return region

    def add_block(self, positions: np.ndarray, haploid: np.ndarray | None,
                  called: np.ndarray | None = None) -> np.ndarray:
        """:meth:`add` for ``m`` variants at once: ``positions`` int [m] (non-decreasing),
        ``haploid`` bool [m, S] (None: all diploid), ``called`` bool [m, S] (None: all
        called); the region is where some sample is haploid. Returns bool [m], whether each
        variant lies in the region."""
        positions = np.asarray(positions, np.int64)
        if haploid is None or not haploid.any():  # an autosome: nothing to track
            return np.zeros(len(positions), bool)
        hap = haploid if called is None else haploid & called
        dip = ~haploid if called is None else called & ~haploid
        region = hap.any(1)
        _first_of_rows(self.first_haploid, hap[region], positions[region])
        _first_of_rows(self.first_diploid, dip[region], positions[region])
        _first_of_rows(self.first_outside, hap[~region], positions[~region])
        return region

    def males(self, declared: dict[str, bool] | None = None) -> np.ndarray:
        """bool [S]: samples haploid in the region (or declared male in ``declared``).

        Raises:
            InputError: a sample haploid at some variants of the region and diploid at
                others, haploid where the reference is diploid, or haploid though declared
                female.
        """
        declared = declared or {}
        outside = self.first_outside >= 0
        if outside.any():
            i = int(np.flatnonzero(outside)[0])
            raise InputError(
                f"{self.where}: sample {self.samples[i]} is haploid at position "
                f"{self.first_outside[i]}, where the reference panel is diploid (a "
                "pseudo-autosomal region, or an autosome): code it diploid there")
        haploid = self.first_haploid >= 0
        male = haploid | np.array([declared.get(s, False) for s in self.samples], bool)
        mixed = haploid & (self.first_diploid >= 0)
        if mixed.any():
            i = int(np.flatnonzero(mixed)[0])
            raise InputError(
                f"{self.where}: sample {self.samples[i]} is haploid at position "
                f"{self.first_haploid[i]} but diploid at {self.first_diploid[i]}, both outside "
                "the pseudo-autosomal regions (where other samples are haploid): code every "
                "non-PAR call of a male haploid (e.g. bcftools +fixploidy)")
        female = np.array([declared.get(s) is False for s in self.samples], bool)
        if (haploid & female).any():
            i = int(np.flatnonzero(haploid & female)[0])
            raise InputError(f"{self.where}: sample {self.samples[i]} is haploid at position "
                             f"{self.first_haploid[i]} but female in the sample table's sex "
                             "column")
        return male


def _first(first: np.ndarray, mask: np.ndarray, position: int) -> None:
    first[mask & (first < 0)] = position


def _first_of_rows(first: np.ndarray, mask: np.ndarray, positions: np.ndarray) -> None:
    """:func:`_first` for the rows of ``mask`` bool [m, S] at ``positions`` [m] in order:
    each sample's first position where its column is set, where it has none yet."""
    if mask.shape[0] == 0:
        return
    has = mask.any(0)
    first_row = mask.argmax(0)
    new = has & (first < 0)
    first[new] = positions[first_row[new]]


def read_sex(panel: str | None) -> dict[str, bool]:
    """sample -> True for male, from a ``sex`` column of the sample table (``1``/``2``,
    ``M``/``F``, ``male``/``female``; other values: unknown, left out)."""
    if not panel:
        return {}
    import pandas as pd

    df = pd.read_csv(panel, sep=r"\s+", dtype=str)
    cols = {c.lower(): c for c in df.columns}
    if "sex" not in cols or "sample" not in cols:
        return {}
    out = {}
    for sample, sex in zip(df[cols["sample"]], df[cols["sex"]], strict=True):
        value = str(sex).strip().lower()
        if value in MALE or value in FEMALE:
            out[str(sample)] = value in MALE
    return out
