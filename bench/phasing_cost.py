"""What phasing unphased targets costs: vcfbert on the same targets, once unphased (phased by the
workflow's ``phase_targets`` step with Beagle 5.4) and once with their true phase.

    python bench/phasing_cost.py ooa_unphased [--overrides '{"epochs": 2}']

Uses ``bench/out/<scenario>/data`` (run ``bench/run.py <scenario>`` first). The true-phase
targets are the truth VCF restricted to the array sites. Writes
``bench/out/<scenario>/phasing_cost.tsv``: r² per MAF bin for both runs and the phasing job's
wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cyvcf2
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
from run import run_vcfbert  # noqa: E402

from vcfbert.io.vcf_writer import BgzipVcfWriter  # noqa: E402


def true_phase_targets(data: Path, out: Path) -> None:
    """The truth VCF at the array sites of ``targets.vcf.gz`` (phased, same samples)."""
    sites = {(r.CHROM, r.POS, r.REF, r.ALT[0]) for r in cyvcf2.VCF(str(data / "targets.vcf.gz"))}
    truth = cyvcf2.VCF(str(data / "truth.vcf.gz"))
    with BgzipVcfWriter(out) as w:
        w.write_lines(truth.raw_header.rstrip("\n").split("\n"))
        w.write_lines([str(r).rstrip("\n") for r in truth
                       if (r.CHROM, r.POS, r.REF, r.ALT[0]) in sites])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("scenario")
    ap.add_argument("--overrides", default='{"epochs": 2, "train": {"max_batches_per_epoch": 120}}')
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()
    out = ROOT / "bench/out" / a.scenario
    data = out / "data"
    overrides = json.loads(a.overrides)
    phased = out / "phasing/true_phase"
    phased.mkdir(parents=True, exist_ok=True)
    for name in ("reference.vcf.gz", "reference.vcf.gz.tbi", "truth.vcf.gz", "truth.vcf.gz.tbi",
                 "panel.tsv"):
        link = phased / name
        if not link.exists():
            link.symlink_to(data / name)
    true_phase_targets(data, phased / "targets.vcf.gz")
    rows = []
    for label, d in (("beagle_phased", data), ("true_phase", phased)):
        run_dir = out / "phasing" / f"run_{label}"
        run_vcfbert(d, run_dir, overrides, a.cores)
        acc = pd.read_csv(run_dir / "results/evaluation/accuracy.tsv", sep="\t")
        r2 = acc[acc.group == "all"].set_index("maf_bin")["r2"].to_dict()
        bench = run_dir / "benchmarks/phase/phase_targets.tsv"
        secs = float(pd.read_csv(bench, sep="\t")["s"].iloc[-1]) if bench.exists() else None
        rows.append({"targets": label, **r2, "phase_targets_s": secs})
        print(rows[-1], flush=True)
    df = pd.DataFrame(rows)
    df.to_csv(out / "phasing_cost.tsv", sep="\t", index=False, float_format="%.4f")
    print(df.to_string(index=False))


if __name__ == "__main__":
    main()
