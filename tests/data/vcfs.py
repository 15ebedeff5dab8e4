"""Tiny VCFs for the tests, written from Python (the catalogue of edge cases lives here)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

HEADER = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">']


def write_vcf(path: Path, samples: list[str], records: list[tuple], *, contig: str = "20",
              contigs: list[str] | None = None, extra_header: list[str] | None = None,
              compress: bool | None = None) -> Path:
    """Write records ``(pos, ref, alt, [gt strings])`` (or ``(contig, pos, ...)``)."""
    lines = list(HEADER) + [f"##contig=<ID={c}>" for c in (contigs or [contig])]
    lines += extra_header or []
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                            "FORMAT", *samples]))
    for rec in records:
        if len(rec) == 5:
            chrom, pos, ref, alt, gts = rec
        else:
            chrom, (pos, ref, alt, gts) = contig, rec
        lines.append("\t".join([chrom, str(pos), ".", ref, alt, ".", "PASS", ".", "GT", *gts]))
    text = "\n".join(lines) + "\n"
    path = Path(path)
    if compress is None:
        compress = path.suffix == ".gz"
    if compress:
        from pysam.libcbgzf import BGZFile

        with BGZFile(str(path), "wb") as fh:
            fh.write(text.encode())
    else:
        path.write_text(text)
    return path


def random_panel(n_samples: int, n_variants: int, seed: int = 0, *, start: int = 1000,
                 step: int = 100) -> tuple[list[str], list[tuple]]:
    """A random phased panel: (sample names, records)."""
    rng = np.random.default_rng(seed)
    samples = [f"S{i:03d}" for i in range(n_samples)]
    bases = "ACGT"
    records = []
    for v in range(n_variants):
        ref = bases[v % 4]
        alt = bases[(v + 1) % 4]
        af = rng.uniform(0.05, 0.5)
        haps = (rng.random((n_samples, 2)) < af).astype(int)
        records.append((start + v * step, ref, alt, [f"{a}|{b}" for a, b in haps]))
    return samples, records


def truncate_gzip(src: Path, dst: Path) -> Path:
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: len(data) // 2])
    return Path(dst)


def gzip_text(path: Path, text: str) -> Path:
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    return Path(path)
