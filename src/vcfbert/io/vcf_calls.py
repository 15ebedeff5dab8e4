"""The genotypes of a block of VCF records prepared in one compiled pass (numba), for
:func:`vcfbert.io.vcf.iter_variants`. A module of its own: the jobs that only list a VCF's
contigs or scan its phasing (``list_chromosomes``, ``phase_targets``) start without numba."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np


@numba.njit(cache=True, nogil=True)
def _prepare_calls(gt: np.ndarray, duplicate: bool, one: np.ndarray, missing: np.ndarray,
                   phased: np.ndarray, alleles: np.ndarray, first_alt: np.ndarray) -> None:
    """Fill :class:`Calls`' arrays from int16 [b, S, 3] genotypes in one pass."""
    b, n, _ = gt.shape
    for r in range(b):
        for i in range(n):
            x0 = gt[r, i, 0]
            x1 = gt[r, i, 1]
            ph = gt[r, i, 2] != 0
            hap = x1 == -2
            one[r, i] = hap
            if hap and duplicate:
                x1 = x0
                ph = True  # a haploid call has no phase to lose
            missing[r, i] = x0 < 0 or x1 < 0
            phased[r, i] = ph or x0 == x1
            alleles[r, 2 * i] = x0
            alleles[r, 2 * i + 1] = x1
            first_alt[r, 2 * i] = -1 if x0 < 0 else (1 if x0 == 1 else 0)
            first_alt[r, 2 * i + 1] = -1 if x1 < 0 else (1 if x1 == 1 else 0)


@dataclasses.dataclass
class Calls:
    """The genotypes of a block of ``b`` records (``S`` samples), prepared once for the block
    (:func:`iter_variants` reads a text VCF a parser block at a time, a BCF a record at a
    time as a block of one)."""

    haploid: np.ndarray  # bool [b, S]: a haploid call (its allele twice with "duplicate")
    haploid_any: np.ndarray  # bool [b]
    missing: np.ndarray  # bool [b, S]: a missing allele
    missing_any: np.ndarray  # bool [b]
    phased: np.ndarray  # bool [b, S]: phased or homozygous
    phased_all: np.ndarray  # bool [b]
    alleles: np.ndarray  # int16 [b, 2S]: the alleles, haplotype h = 2 * sample + p
    first_alt: np.ndarray  # int8 [b, 2S]: haplotypes of ALT 1 (0/1, -1 missing)

    @classmethod
    def of(cls, gt: np.ndarray, haploid: str) -> Calls:
        """From int16 [b, S, 3] genotypes (cyvcf2's layout: -2 second allele of a haploid
        call; last column phased); with ``haploid == "duplicate"`` a haploid call becomes its
        allele twice and counts as phased. One compiled pass over the block."""
        b, n, _ = gt.shape
        one = np.empty((b, n), bool)
        missing = np.empty((b, n), bool)
        phased = np.empty((b, n), bool)
        alleles = np.empty((b, 2 * n), np.int16)
        first_alt = np.empty((b, 2 * n), np.int8)
        _prepare_calls(np.ascontiguousarray(gt, np.int16), haploid == "duplicate", one,
                       missing, phased, alleles, first_alt)
        return cls(one, one.any(1), missing, missing.any(1), phased, phased.all(1), alleles,
                   first_alt)

    def haplotypes(self, r: int, allele: int) -> np.ndarray:
        """int8 [2S] haplotypes of ALT ``allele`` (1-based) of record ``r``."""
        if allele == 1:
            return self.first_alt[r].copy()
        flat = self.alleles[r]
        return np.where(flat < 0, -1, flat == allele).astype(np.int8)
