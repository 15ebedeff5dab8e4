"""The genotypes of a block of VCF records prepared in one compiled pass (numba), for
:func:`vcfbert.io.vcf.iter_variants`. A module of its own: the jobs that only list a VCF's
contigs or scan its phasing (``list_chromosomes``, ``phase_targets``) start without numba."""

from __future__ import annotations

import dataclasses

import numba
import numpy as np

from ..kernels import ready


@numba.njit(cache=True, nogil=True)
def _prepare_calls(gt: np.ndarray, duplicate: bool, one: np.ndarray, missing: np.ndarray,
                   phased: np.ndarray, first_alt: np.ndarray) -> None:
    """Fill :class:`Calls`' arrays from int16 [b, S, 3] genotypes in one pass (without
    branches on the calls, which made it ~25 % slower: docs/model.md, "Inference speed")."""
    b, n, _ = gt.shape
    for r in range(b):
        g = gt[r]
        one_r = one[r]
        missing_r = missing[r]
        phased_r = phased[r]
        alt_r = first_alt[r]
        for i in range(n):
            x0 = g[i, 0]
            hap = g[i, 1] == -2
            dup = hap & duplicate
            x1 = x0 if dup else g[i, 1]
            one_r[i] = hap
            missing_r[i] = (x0 < 0) | (x1 < 0)
            phased_r[i] = (g[i, 2] != 0) | dup | (x0 == x1)
            alt_r[2 * i] = np.int8(-1) if x0 < 0 else np.int8(x0 == 1)
            alt_r[2 * i + 1] = np.int8(-1) if x1 < 0 else np.int8(x1 == 1)


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
    first_alt: np.ndarray  # int8 [b, 2S]: haplotypes of ALT 1 (0/1, -1 missing)
    gt: np.ndarray  # int16 [b, S, 3]: the genotypes they were prepared from
    duplicate: bool  # haploid calls read as their allele twice

    @classmethod
    def of(cls, gt: np.ndarray, haploid: str) -> Calls:
        """From int16 [b, S, 3] genotypes (cyvcf2's layout: -2 second allele of a haploid
        call; last column phased); with ``haploid == "duplicate"`` a haploid call becomes its
        allele twice and counts as phased. One compiled pass over the block."""
        b, n, _ = gt.shape
        gt = np.ascontiguousarray(gt, np.int16)
        one = np.empty((b, n), bool)
        missing = np.empty((b, n), bool)
        phased = np.empty((b, n), bool)
        first_alt = np.empty((b, 2 * n), np.int8)
        duplicate = haploid == "duplicate"
        ready(_prepare_calls)
        _prepare_calls(gt, duplicate, one, missing, phased, first_alt)
        return cls(one, one.any(1), missing, missing.any(1), phased, phased.all(1), first_alt,
                   gt, duplicate)

    def alleles(self, rows: np.ndarray | int) -> np.ndarray:
        """int16 [len(rows), 2S] (or [2S] for one row): the alleles of records ``rows``,
        haplotype h = 2 * sample + p, -1 missing (a haploid call's allele twice with
        ``duplicate``); what another ALT's haplotypes are taken from, made only for the
        records that need them (a multi-allelic record's second ALT)."""
        g = self.gt[rows]
        a = g[..., :2].copy()
        if self.duplicate:
            hap = a[..., 1] == -2
            a[..., 1][hap] = a[..., 0][hap]
        return a.reshape(*a.shape[:-2], -1)

    def haplotypes(self, r: int, allele: int) -> np.ndarray:
        """int8 [2S] haplotypes of ALT ``allele`` (1-based) of record ``r``."""
        if allele == 1:
            return self.first_alt[r].copy()
        flat = self.alleles(r)
        return np.where(flat < 0, -1, flat == allele).astype(np.int8)
