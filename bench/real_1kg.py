"""Real data: a 1000 Genomes chr22 region split into a reference panel and held-out targets.

Debian's ``beagle-doc`` ships Beagle's example VCF: 191 samples of the 1000 Genomes Project
(phase 1) over 100 kb of chr22 (22:20,000,086-20,099,941, 1,356 variants), genotypes written
unphased. This script turns it into a benchmark data folder like the simulated scenarios':

1. ``apt-get download beagle-doc`` and ``dpkg -x`` (nothing installed; skipped when
   ``--vcf`` names the file);
2. the bi-allelic variants phased by Beagle 5.4 (``gt=``, ``seed=1``, one thread, so that
   the phase does not depend on the machine's cores): the reference panel must be phased, and
   the file's order of alleles in ``0/1`` is not a phase;
3. every ``--every``-th sample held out as a target (38 of 191 by default), the rest the
   reference panel (153 samples, 306 haplotypes);
4. the targets' "array": the variants with reference-panel MAF >= ``--array-min-maf`` thinned
   to one per ``--array-spacing`` bp (as the simulated scenarios pick theirs), their genotypes
   unphased (``0/1``, as array calls come; vcfbert's workflow and Beagle phase them, Minimac4
   gets vcfbert's phasing, as in ``ooa_unphased``); ``truth.vcf.gz`` the targets' phased
   genotypes at every variant.

Then ``python bench/run.py real_1kg`` runs vcfbert, Beagle 5.4 and Minimac4 on the folder and
scores them at the untyped variants (r² by reference-panel MAF), as for every scenario:

    python bench/real_1kg.py                      # -> bench/out/real_1kg/data
    python bench/run.py real_1kg --methods vcfbert,beagle,minimac4

The truth is Beagle's phasing of the real genotypes; r² compares dosages with genotypes (the
sum of the two haplotypes), so the phase does not enter the score. A 100-kb region with 306
reference haplotypes is demo-sized: this is a check on real data's quirks and LD, not evidence
at a realistic size (``ooa_speed``, ``ooa_map``).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = "usr/share/doc/beagle/examples/test.vcf"


def fetch_example(folder: Path) -> Path:
    """Beagle's example VCF from Debian's ``beagle-doc`` package, unpacked under ``folder``."""
    target = folder / "x" / EXAMPLE
    if target.exists():
        return target
    folder.mkdir(parents=True, exist_ok=True)
    res = subprocess.run(["apt-get", "download", "beagle-doc"], cwd=folder, capture_output=True,
                         text=True)
    debs = sorted(folder.glob("beagle-doc_*.deb"))
    if res.returncode != 0 or not debs:
        raise SystemExit(f"apt-get download beagle-doc failed ({res.stderr.strip()[-300:]}); "
                         "run `apt-get update` first, or pass --vcf")
    subprocess.run(["dpkg", "-x", str(debs[-1]), str(folder / "x")], check=True)
    return target


def run(cmd: list[str], log: Path) -> None:
    """Run ``cmd`` with its output in ``log``; exit with the log's tail when it fails."""
    with open(log, "w") as fh:
        res = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{log.read_text()[-2000:]}")


def read_phased(path: Path) -> tuple[list[str], list[list[str]], np.ndarray]:
    """(samples, each record's first 9 columns, alleles int8 [records, 2 * samples]) of a
    phased, bi-allelic VCF (Beagle's output). Its own reader, not vcfbert's: the records go to
    every method as they are, symbolic ones included (the example's ``<DEL>`` at 20,031,110,
    which vcfbert's reader leaves out as its ingest does)."""
    samples: list[str] = []
    fixed: list[list[str]] = []
    rows: list[np.ndarray] = []
    with gzip.open(path, "rt") as fh:
        for line in fh:
            if line.startswith("##"):
                continue
            cols = line.rstrip("\n").split("\t")
            if line.startswith("#"):
                samples = cols[9:]
                continue
            gts = [c.split(":", 1)[0] for c in cols[9:]]
            if any(len(g) != 3 or g[1] != "|" for g in gts):
                raise SystemExit(f"{path}: {cols[0]}:{cols[1]} is not phased and diploid")
            rows.append(np.array([(int(g[0]), int(g[2])) for g in gts], np.int8).reshape(-1))
            fixed.append(cols[:9])
    return samples, fixed, np.array(rows, np.int8)


def write_vcf(path: Path, contig: str, samples: list[str], fixed: list[list[str]],
              alleles: np.ndarray, source: str, phased: bool = True) -> None:
    """A bgzipped, tabix-indexed VCF of ``GT`` (alleles int8 [records, 2 * samples]), written
    by vcfbert's writer (atomically, index beside it): phased (``0|1``), or unphased with the
    alleles in order (``0/1``)."""
    from vcfbert.io.vcf_writer import BgzipVcfWriter, base_header, column_header

    def records():
        for cols, row in zip(fixed, alleles, strict=True):
            gts = "\t".join(f"{a}|{b}" if phased else f"{min(a, b)}/{max(a, b)}"
                            for a, b in zip(row[0::2], row[1::2], strict=True))
            yield "\t".join([*cols[:5], ".", "PASS", ".", "GT"]) + "\t" + gts

    with BgzipVcfWriter(path) as w:
        w.write_lines([*base_header([(contig, None)], source=source),
                       '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
                       column_header(samples)])
        w.write_lines(records())


def array_sites(position: np.ndarray, maf: np.ndarray, spacing: int, min_maf: float
                ) -> np.ndarray:
    """Indices of the "array" variants: MAF >= ``min_maf``, then the first of them in each
    ``spacing``-bp bin of position (bins from the region's first variant)."""
    common = np.flatnonzero(maf >= min_maf)
    bins = (position[common] - position[0]) // spacing
    _, first = np.unique(bins, return_index=True)
    return common[first]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vcf", default=None, help="Beagle's example VCF (default: downloaded)")
    ap.add_argument("--out", default=str(ROOT / "bench/out/real_1kg/data"))
    ap.add_argument("--every", type=int, default=5, help="every N-th sample is a target")
    ap.add_argument("--array-spacing", type=int, default=3000)
    ap.add_argument("--array-min-maf", type=float, default=0.05)
    a = ap.parse_args()
    from vcfbert.io.tsv import write_table

    out = Path(a.out).resolve()
    work = out.parent / "prepare"
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    for tool in ("beagle", "bcftools"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install beagle bcftools")
    if a.vcf and not Path(a.vcf).is_file():
        raise SystemExit(f"--vcf {a.vcf}: no such file (Beagle's example is "
                         f"{EXAMPLE} in Debian's beagle-doc; leave --vcf out to download it)")
    source = Path(a.vcf) if a.vcf else fetch_example(work / "debian")
    # bi-allelic variants only (the example has none other; a guard for --vcf), then phased
    biallelic = work / "biallelic.vcf.gz"
    run(["bcftools", "view", "-m2", "-M2", "-Oz", "-o", str(biallelic), str(source)],
        work / "bcftools.log")
    run(["beagle", f"gt={biallelic}", f"out={work / 'phased'}", "nthreads=1", "seed=1"],
        work / "beagle.log")
    samples, fixed, alleles = read_phased(work / "phased.vcf.gz")
    contig = fixed[0][0]
    is_target = np.arange(len(samples)) % a.every == a.every - 1
    hap_target = np.repeat(is_target, 2)
    ref_samples = [s for s, t in zip(samples, is_target, strict=True) if not t]
    tgt_samples = [s for s, t in zip(samples, is_target, strict=True) if t]
    ref = alleles[:, ~hap_target]
    tgt = alleles[:, hap_target]
    af = ref.mean(axis=1)
    maf = np.minimum(af, 1 - af)
    position = np.array([int(c[1]) for c in fixed])
    array = array_sites(position, maf, a.array_spacing, a.array_min_maf)
    if array.size < 2:
        raise SystemExit(f"only {array.size} array sites: lower --array-spacing")
    write_vcf(out / "reference.vcf.gz", contig, ref_samples, fixed, ref,
              "beagle-doc example, phased by Beagle 5.4")
    write_vcf(out / "truth.vcf.gz", contig, tgt_samples, fixed, tgt,
              "beagle-doc example, phased by Beagle 5.4")
    write_vcf(out / "targets.vcf.gz", contig, tgt_samples, [fixed[i] for i in array],
              tgt[array], "beagle-doc example at array sites, unphased", phased=False)
    write_table(out / "panel.tsv", ["sample", "population", "role", "batch"],
                [{"sample": s, "population": "1KG", "role": "target" if t else "reference",
                  "batch": 0} for s, t in zip(samples, is_target, strict=True)])
    print(f"{out}: {len(ref_samples)} reference samples ({ref.shape[1]} haplotypes), "
          f"{len(tgt_samples)} targets, {len(fixed)} variants, {array.size} array sites "
          f"(MAF >= {a.array_min_maf}, one per {a.array_spacing} bp)", file=sys.stderr)


if __name__ == "__main__":
    main()
