"""How each method's dosages at the rarest variants split between carriers and non-carriers.

For the untyped variants of the rarest MAF bin ([0, 0.001) of the reference panel), every
method's minor-allele dosage is compared with the truth: the dosage per true minor allele on
carriers (how much of a carrier's allele the method finds), the dosage summed over
non-carriers (what it spreads where there is nothing), their squared errors, the same by the
panel's allele count, and a reliability table (mean dosage against mean true count, by dosage
bin: a calibrated method has the two equal).

    python bench/rare_dosages.py --truth DATA/truth.vcf.gz --panel-size 6000 \\
        beagle=speed.beagle.vcf.gz vcfbert=speed.vcfbert/results/imputed/20.vcf.gz \\
        --per-variant speed.beagle.accuracy.pv.tsv.gz

``--per-variant`` is any method's per-variant table from ``bench/run.py`` or
``bench/speed.py`` (it names the untyped variants and their panel frequencies). The VCFs are
read with ``bcftools query`` (DS of the imputed files, GT of the truth). Prints the tables.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import tempfile

import numpy as np
import pandas as pd

DOSE_BINS = [0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.1, 2.01]
COUNT_BINS = [(1, 1), (2, 2), (3, 3), (4, 6)]


def query(vcf: str, regions: str, fmt: str) -> pd.DataFrame:
    """``bcftools query -T regions -f fmt vcf`` as a table (one row per record)."""
    out = subprocess.run(["bcftools", "query", "-T", regions, "-f", fmt, vcf], check=True,
                         capture_output=True, text=True).stdout
    return pd.read_csv(io.StringIO(out), sep="\t", header=None)


def true_counts(gt: np.ndarray) -> np.ndarray:
    """int8 [V, S] ALT counts of phased or unphased GT strings (``0|1``, ``1/1``; haploid
    ``1``)."""
    g = gt.astype(str)
    first = np.char.startswith(g, "1").astype(np.int8)
    second = (np.char.endswith(g, "1") & (np.char.str_len(g) > 1)).astype(np.int8)
    return first + second


def summary(dose: np.ndarray, truth: np.ndarray, count: np.ndarray) -> list[dict]:
    """Carrier / non-carrier sums of minor-allele dosages ``dose`` and counts ``truth``
    float [V, S], overall and by the panel's minor-allele count ``count`` int [V]."""
    rows = []
    for lo, hi in [(0, 10 ** 9), *COUNT_BINS]:
        sel = (count >= lo) & (count <= hi)
        d, t = dose[sel], truth[sel]
        car = t > 0
        rows.append({
            "panel_count": "all" if hi == 10 ** 9 else (f"{lo}" if lo == hi else f"{lo}-{hi}"),
            "variants": int(sel.sum()), "carrier_alleles": int(t[car].sum()),
            "dose_per_carrier_allele": round(float(d[car].sum() / max(t[car].sum(), 1)), 3),
            "dose_on_noncarriers": round(float(d[~car].sum()), 1),
            "sq_err_carriers": round(float(((d - t) ** 2)[car].sum()), 1),
            "sq_err_noncarriers": round(float(((d - t) ** 2)[~car].sum()), 1)})
    return rows


def reliability(dose: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Mean dosage and mean true count per dosage bin (entries above 0.02 only: below it
    are nearly all the genotypes)."""
    d, t = dose.ravel(), truth.ravel()
    idx = np.digitize(d, DOSE_BINS) - 1
    return [{"dose_bin": f"[{DOSE_BINS[i]:g},{DOSE_BINS[i + 1]:g})", "n": int((idx == i).sum()),
             "mean_dose": round(float(d[idx == i].mean()), 3),
             "mean_true": round(float(t[idx == i].mean()), 3)}
            for i in range(1, len(DOSE_BINS) - 1) if (idx == i).any()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("methods", nargs="+", help="name=imputed.vcf.gz (FORMAT/DS)")
    ap.add_argument("--truth", required=True)
    ap.add_argument("--per-variant", required=True, help="a per-variant accuracy table")
    ap.add_argument("--panel-size", type=int, required=True, help="reference haplotypes")
    a = ap.parse_args()
    if shutil.which("bcftools") is None:
        raise SystemExit("bcftools not found: apt-get install bcftools (it reads the VCFs)")
    pv = pd.read_csv(a.per_variant, sep="\t")
    pv = pv[(~pv["typed"]) & (pv["maf_bin"] == "[0,0.001)")].reset_index(drop=True)
    flip = (pv["ref_af"] > 0.5).to_numpy()  # the minor allele is REF: count REF instead
    count = np.rint(np.minimum(pv["ref_af"], 1 - pv["ref_af"]) * a.panel_size).astype(int)
    with tempfile.NamedTemporaryFile("w", suffix=".tsv") as regions:
        pv[["contig", "position"]].to_csv(regions.name, sep="\t", header=False, index=False)
        t = query(a.truth, regions.name, "%POS\t%REF\t%ALT[\t%GT]\n")
        key = t[[0, 1, 2]].astype(str).agg(":".join, axis=1)
        want = pv["position"].astype(str) + ":" + pv["ref"] + ":" + pv["alt"]
        truth = true_counts(t.iloc[:, 3:].to_numpy()).astype(float)
        truth = pd.DataFrame(truth, index=key).loc[want].to_numpy()
        truth = np.where(flip[:, None], 2 - truth, truth)
        for spec in a.methods:
            name, vcf = spec.split("=", 1)
            q = query(vcf, regions.name, "%POS\t%REF\t%ALT[\t%DS]\n")
            qkey = q[[0, 1, 2]].astype(str).agg(":".join, axis=1)
            dose = pd.DataFrame(q.iloc[:, 3:].to_numpy(float), index=qkey).loc[want].to_numpy()
            dose = np.where(flip[:, None], 2 - dose, dose)
            print(f"\n## {name}: {len(want)} untyped variants below MAF 0.001\n")
            print(pd.DataFrame(summary(dose, truth, count)).to_markdown(index=False))
            print()
            print(pd.DataFrame(reliability(dose, truth)).to_markdown(index=False))


if __name__ == "__main__":
    main()
