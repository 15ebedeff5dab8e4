"""The imputed VCF: FORMAT GT:DS:GP, INFO AF/DR2/IMP (DESIGN §1 contract).

Input per chromosome: ALT probabilities per target haplotype for every reference variant
(float [2T, V]) and which variants are typed. Genotype probabilities assume the two haplotypes
are independent: P(0) = (1-p1)(1-p2), P(1) = p1(1-p2) + (1-p1)p2, P(2) = p1 p2.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from .io.vcf_writer import BgzipVcfWriter, base_header, column_header, command_line

INFO_HEADER = [
    '##INFO=<ID=AF,Number=A,Type=Float,Description="Estimated ALT allele frequency">',
    '##INFO=<ID=DR2,Number=A,Type=Float,Description="Dosage R-squared: estimated squared '
    'correlation between estimated ALT dose and true ALT dose">',
    '##INFO=<ID=IMP,Number=0,Type=Flag,Description="Imputed marker (untyped in the targets)">',
]
FORMAT_HEADER = [
    '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
    '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Estimated ALT dose [P(RA) + 2*P(AA)]">',
    '##FORMAT=<ID=GP,Number=G,Type=Float,Description="Estimated genotype probabilities">',
]


@dataclasses.dataclass
class ChromosomeDosages:
    """What the writer needs for one chromosome."""

    contig: str
    position: np.ndarray  # int64 [V]
    alleles: np.ndarray  # str [V, 2]
    ids: np.ndarray  # str [V]
    hap_prob: np.ndarray  # float32 [2T, V] ALT probability per haplotype
    typed: np.ndarray  # bool [V] site typed in the targets


def genotype_probabilities(hap_prob: np.ndarray) -> np.ndarray:
    """float [2T, V] -> float [3, T, V] (P(0), P(1), P(2))."""
    p1, p2 = hap_prob[0::2].astype(np.float64), hap_prob[1::2].astype(np.float64)
    return np.stack([(1 - p1) * (1 - p2), p1 * (1 - p2) + (1 - p1) * p2, p1 * p2])


def dosage_r2(hap_prob: np.ndarray) -> np.ndarray:
    """Estimated dosage r² (DR2) per variant from haplotype probabilities [2T, V] -> [V].

    DR2 = var(DS) / (mean E[g²] - mean(DS)²), with E[g²] = p1 + p2 + 2 p1 p2; 0 where the
    estimated genotype variance is 0.
    """
    p1, p2 = hap_prob[0::2].astype(np.float64), hap_prob[1::2].astype(np.float64)
    ds = p1 + p2
    eg2 = p1 + p2 + 2 * p1 * p2
    mean = ds.mean(0)
    num = (ds**2).mean(0) - mean**2
    den = eg2.mean(0) - mean**2
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = np.where(den > 1e-12, num / den, 0.0)
    return np.clip(r2, 0.0, 1.0)


def _records(chrom: ChromosomeDosages, lo: int, hi: int) -> list[str]:
    hp = np.clip(chrom.hap_prob[:, lo:hi].astype(np.float64), 0.0, 1.0)
    gp = genotype_probabilities(hp)  # [3, T, v]
    ds = hp[0::2] + hp[1::2]  # [T, v]
    gt = np.char.add(np.char.add((hp[0::2] > 0.5).astype(np.int8).astype(str), "|"),
                     (hp[1::2] > 0.5).astype(np.int8).astype(str))
    fmt = lambda a: np.char.mod("%.3f", np.round(a, 3) + 0.0)  # noqa: E731
    ds_s = fmt(ds)
    gp_s = np.char.add(np.char.add(np.char.add(np.char.add(fmt(gp[0]), ","), fmt(gp[1])), ","),
                       fmt(gp[2]))
    cells = np.char.add(np.char.add(np.char.add(np.char.add(gt, ":"), ds_s), ":"), gp_s)  # [T, v]
    af = hp.mean(0)
    dr2 = dosage_r2(hp)
    lines = []
    for j in range(hi - lo):
        v = lo + j
        info = f"AF={af[j]:.4f};DR2={dr2[j]:.3f}" + ("" if chrom.typed[v] else ";IMP")
        lines.append(f"{chrom.contig}\t{chrom.position[v]}\t{chrom.ids[v]}\t"
                     f"{chrom.alleles[v, 0]}\t{chrom.alleles[v, 1]}\t.\tPASS\t{info}\tGT:DS:GP\t"
                     + "\t".join(cells[:, j]))
    return lines


def write_imputed_vcf(path: str | os.PathLike[str], chromosomes: list[ChromosomeDosages],
                      samples: list[str], *, contig_lengths: dict[str, int] | None = None,
                      command: str | None = None, block: int = 2000) -> None:
    """Write the bgzipped, tabix-indexed imputed VCF (atomically)."""
    lengths = contig_lengths or {}
    header = base_header([(c.contig, lengths.get(c.contig)) for c in chromosomes],
                         command=command or command_line())
    header += INFO_HEADER + FORMAT_HEADER + [column_header(samples)]
    with BgzipVcfWriter(path) as w:
        w.write_lines(header)
        for chrom in chromosomes:
            n = chrom.position.shape[0]
            for lo in range(0, n, block):
                w.write_lines(_records(chrom, lo, min(n, lo + block)))
