"""How sure is a difference in aggregate r² between two imputations? A paired bootstrap over
variants, per MAF bin.

    python bench/bin_ci.py --truth data/truth.vcf.gz --per-variant vcfbert.accuracy.pv.tsv.gz \\
        vcfbert=vcfbert.vcf.gz beagle=beagle.vcf.gz [--bootstrap 2000] [--seed 1]

Reads the truth and each imputed VCF as the evaluator's dense reference does
(``vcfbert.evaluate.read_truth``, ``read_imputed``, aligned to the evaluator's per-variant table
with swapped alleles flipped and samples matched by name), and keeps, per untyped variant (the
table gives each variant's reference-MAF bin and whether it is typed), the sums over target
samples that the aggregate r² is pooled from (n, Σd, Σt, Σd², Σt², Σdt). The r² of a bin comes
from the pooled sums (``vcfbert.evaluate_stream.pooled_r2``), so each method's row reproduces
its ``accuracy.tsv`` r² for the bin. The variants of a bin are then
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


def variant_sums(dose: np.ndarray, truth: np.ndarray, block: int = 4096) -> np.ndarray:
    """float64 [V, 6] (n, Σd, Σt, Σd², Σt², Σdt) per variant over the samples where both the
    dose and the truth (float [V, S], NaN missing) are known, ``block`` variants at a time."""
    out = np.zeros((dose.shape[0], 6))
    for lo in range(0, dose.shape[0], block):
        d = dose[lo:lo + block].astype(np.float64)
        t = truth[lo:lo + block].astype(np.float64)
        ok = ~(np.isnan(d) | np.isnan(t))
        d, t = np.where(ok, d, 0.0), np.where(ok, t, 0.0)
        out[lo:lo + block] = np.stack([ok.sum(1), d.sum(1), t.sum(1), (d * d).sum(1),
                                       (t * t).sum(1), (d * t).sum(1)], 1)
    return out


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
    from vcfbert.evaluate import _align, read_imputed, read_truth
    from vcfbert.evaluate_stream import pooled_r2

    names = [m.split("=", 1)[0] for m in a.methods]
    pv = pd.read_csv(a.per_variant, sep="\t", dtype={"contig": str})
    pv = pv[~pv["typed"].astype(bool)].reset_index(drop=True)
    truth_gm = read_truth(a.truth)
    samples = truth_gm.samples
    truth, _, in_truth, _ = _align(pv, truth_gm, samples)
    del truth_gm
    sums, found = [], in_truth
    for m in a.methods:
        dose, _, in_vcf, _ = _align(pv, read_imputed(m.split("=", 1)[1]), samples)
        sums.append(variant_sums(dose, truth))
        found = found & in_vcf
    rng = np.random.default_rng(a.seed)
    rows = []
    for label, idx in pv.groupby("maf_bin", sort=False).indices.items():
        idx = idx[found[idx]]
        s = np.stack([m[idx] for m in sums])  # [2, V, 6]
        r2 = pooled_r2(s.sum(1))
        counts = rng.multinomial(idx.size, np.full(idx.size, 1 / idx.size), a.bootstrap)
        boot = pooled_r2(np.einsum("bv,mvs->mbs", counts.astype(np.float64), s))  # [2, B]
        diff = boot[0] - boot[1]
        lo, hi = np.nanpercentile(diff, [2.5, 97.5])
        rows.append({"maf_bin": label, "variants": int(idx.size), names[0]: round(r2[0], 5),
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
    from vcfbert.errors import InputError

    try:
        main()
    except InputError as e:  # unreadable or mismatched inputs: one line, no traceback
        raise SystemExit(f"bin_ci.py: {e}") from None
