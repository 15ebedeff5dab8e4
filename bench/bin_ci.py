"""How sure is a difference in aggregate r² between two imputations? A paired bootstrap over
variants, per MAF bin.

    python bench/bin_ci.py --truth data/truth.vcf.gz --per-variant vcfbert.accuracy.pv.tsv.gz \\
        vcfbert=vcfbert.vcf.gz beagle=beagle.vcf.gz [--bootstrap 2000] [--seed 1]

Reads each imputed VCF's DS and the truth's genotypes, and keeps, per untyped variant (the
evaluator's per-variant table gives each variant's reference-MAF bin and whether it is typed),
the sums over target samples that the aggregate r² is pooled from (n, Σd, Σt, Σd², Σt², Σdt;
``vcfbert.evaluate_stream``). The r² of a bin is computed from the pooled sums, so each
method's row reproduces its ``accuracy.tsv`` r² for the bin. The variants of a bin are then
resampled with replacement (the same resample for both methods: a paired bootstrap), and the
table gives the difference first − second with its 95 % percentile interval and the share of
resamples in which the first method is ahead. Variants, not samples, are resampled: a bin's r²
varies from one region to another mostly through which variants it holds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

SUMS = ("n", "sd", "st", "sdd", "stt", "sdt")


def variant_sums(vcf: str, truth: dict[tuple[int, str, str], np.ndarray],
                 truth_samples: list[str]) -> dict[tuple[int, str, str], np.ndarray]:
    """float64 [6] sums per variant of ``vcf`` (its DS against the truth's ALT counts, over the
    samples both files hold, where the truth is called)."""
    import cyvcf2

    reader = cyvcf2.VCF(vcf, lazy=True, threads=2)
    cols = [truth_samples.index(s) for s in reader.samples]
    out = {}
    for rec in reader:
        key = (rec.POS, rec.REF, rec.ALT[0] if rec.ALT else ".")
        t_all = truth.get(key)
        if t_all is None:
            continue
        ds = rec.format("DS")
        if ds is None:
            raise SystemExit(f"{vcf}: no DS at {rec.CHROM}:{rec.POS}")
        d = ds[:, 0].astype(np.float64)
        t = t_all[cols]
        ok = t >= 0
        d, t = d[ok], t[ok].astype(np.float64)
        out[key] = np.array([d.size, d.sum(), t.sum(), (d * d).sum(), (t * t).sum(),
                             (d * t).sum()])
    return out


def read_truth(path: str) -> tuple[dict[tuple[int, str, str], np.ndarray], list[str]]:
    """ALT counts int8 [S] per variant (-1 missing) and the truth's sample names."""
    import cyvcf2

    reader = cyvcf2.VCF(path, gts012=True, threads=2)
    out = {}
    for rec in reader:
        g = rec.gt_types.astype(np.int8)  # 0, 1, 2 ALT alleles; 3 unknown
        g[g == 3] = -1
        if rec.ploidy == 1:  # haploid calls: 0 or 1 ALT allele (gts012 gives 0 / 2)
            g[g == 2] = 1
        out[(rec.POS, rec.REF, rec.ALT[0] if rec.ALT else ".")] = g
    return out, list(reader.samples)


def pooled_r2(s: np.ndarray) -> np.ndarray:
    """r² from pooled sums [..., 6] (nan where undefined)."""
    n, sd, st, sdd, stt, sdt = np.moveaxis(s, -1, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        md, mt = sd / n, st / n
        vd, vt = sdd / n - md * md, stt / n - mt * mt
        r2 = (sdt / n - md * mt) ** 2 / (vd * vt)
    return np.where((vd > 1e-12) & (vt > 1e-12), np.minimum(r2, 1.0), np.nan)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--truth", required=True)
    ap.add_argument("--per-variant", required=True,
                    help="the evaluator's per-variant table (maf_bin, typed) of either method")
    ap.add_argument("--bootstrap", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the table here (tsv)")
    ap.add_argument("methods", nargs=2, metavar="NAME=VCF")
    a = ap.parse_args()
    names = [m.split("=", 1)[0] for m in a.methods]
    truth, samples = read_truth(a.truth)
    sums = [variant_sums(m.split("=", 1)[1], truth, samples) for m in a.methods]
    pv = pd.read_csv(a.per_variant, sep="\t", dtype={"contig": str})
    pv = pv[~pv["typed"].astype(bool)]
    keys = list(zip(pv["position"], pv["ref"], pv["alt"], strict=True))
    rng = np.random.default_rng(a.seed)
    rows = []
    for label, idx in pv.groupby("maf_bin", sort=False).indices.items():
        both = [k for k in (keys[i] for i in idx) if k in sums[0] and k in sums[1]]
        s = np.stack([np.stack([m[k] for k in both]) for m in sums])  # [2, V, 6]
        r2 = pooled_r2(s.sum(1))
        counts = rng.multinomial(len(both), np.full(len(both), 1 / len(both)), a.bootstrap)
        boot = pooled_r2(np.einsum("bv,mvs->mbs", counts.astype(np.float64), s))  # [2, B]
        diff = boot[0] - boot[1]
        lo, hi = np.nanpercentile(diff, [2.5, 97.5])
        rows.append({"maf_bin": label, "variants": len(both), names[0]: round(r2[0], 5),
                     names[1]: round(r2[1], 5), "difference": round(r2[0] - r2[1], 5),
                     "ci95_low": round(lo, 5), "ci95_high": round(hi, 5),
                     f"share_{names[0]}_ahead": round(float(np.mean(diff > 0)), 3)})
    order = ["[0,0.001)", "[0.001,0.005)", "[0.005,0.01)", "[0.01,0.05)", "[0.05,0.5]"]
    table = pd.DataFrame(rows).set_index("maf_bin")
    table = table.loc[[b for b in order if b in table.index]]
    print(f"paired bootstrap over variants ({a.bootstrap} resamples, seed {a.seed}), untyped "
          f"variants, {names[0]} − {names[1]}:\n")
    print(table.to_markdown())
    if a.out:
        Path(a.out).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(a.out, sep="\t")


if __name__ == "__main__":
    main()
