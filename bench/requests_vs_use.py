"""Cluster requests against use: per rule, the memory the rules would request for a finished
run's data (the formulas of ``vcfbert.cluster``, first attempt) next to the peak RSS Snakemake
measured for its jobs (``benchmarks/``).

    python bench/requests_vs_use.py RUN_DIR [--reference-vcf PATH]

RUN_DIR is the folder a workflow ran in (with ``results/``, ``benchmarks/``; its
``config.yaml``, when there, gives the reference VCF and the windows' core and flank sizes).
Prints a
markdown table: rule, jobs, request (MB, smallest–largest), peak RSS (MB, largest), and the
request / use ratio of the job closest to its request (jobs too short for Snakemake to sample
their memory report 0).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vcfbert import cluster  # noqa: E402


def request_for(rule: str, run: Path, match: re.Match, args: argparse.Namespace) -> int | None:
    res = run / "results"
    chrom = match.groupdict().get("chrom", "")
    ref = str(res / f"ingest/{chrom}/reference.h5")
    windows = str(res / f"windows/{chrom}.tsv")
    if rule == "parse_reference":
        return cluster.request_mb(rule, cluster.reference_block_mb(args.reference_vcf))
    if rule == "phase_targets":
        return cluster.request_mb(rule, 0)
    if rule == "encode":
        return cluster.request_mb(rule, cluster.genotype_mb([ref]) / cluster.windows_count(windows))
    if rule == "build_index":  # the key files are temporary: n_haplotypes x d_key float32
        import h5py

        with h5py.File(ref) as h5:
            n_h = h5["call_haplotype"].shape[0]
        return cluster.request_mb(rule, n_h * args.d_key * 4 / 1e6)
    if rule == "train_epoch":
        refs = [str(p) for p in sorted((res / "ingest").glob("*/reference.h5"))]
        return cluster.request_mb(rule, cluster.genotype_mb(refs))
    if rule == "impute_chunk":
        return cluster.request_mb(rule, cluster.chunk_data_mb(
            ref, str(res / f"ingest/{chrom}/targets.h5"), windows, args.span_cores))
    return None


PATTERNS = {  # benchmark file (relative to benchmarks/) -> rule
    r"ingest/(?P<chrom>[^/]+)\.parse_reference\.tsv": "parse_reference",
    r"phase/phase_targets\.tsv": "phase_targets",
    r"epochs/\d+/encode/(?P<chrom>[^/]+)\.w\d+\.tsv": "encode",
    r"epochs/\d+/index/(?P<chrom>[^/]+)\.w\d+\.tsv": "build_index",
    r"train/epoch_\d+\.tsv": "train_epoch",
    r"impute/(?P<chrom>[^/]+)\.c\d+\.tsv": "impute_chunk",
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--d-key", type=int, default=128)
    ap.add_argument("--reference-vcf", default="",
                    help="default: the run's config.yaml reference_vcf, else the demo's")
    a = ap.parse_args()
    cfg = {}
    if (a.run / "config.yaml").exists():
        import yaml

        cfg = yaml.safe_load((a.run / "config.yaml").read_text()) or {}
    win = cfg.get("windows", {})
    a.span_cores = 1 + 2 * int(win.get("flank_sites", 256)) / int(win.get("core_sites", 128))
    if not a.reference_vcf:
        demo = a.run / "results/simulate/reference.vcf.gz"
        a.reference_vcf = cfg.get("reference_vcf") or (str(demo) if demo.exists() else "")
    rows = []
    for tsv in sorted((a.run / "benchmarks").rglob("*.tsv")):
        rel = str(tsv.relative_to(a.run / "benchmarks"))
        for pattern, rule in PATTERNS.items():
            m = re.fullmatch(pattern, rel)
            if m:
                used = float(pd.read_csv(tsv, sep="\t")["max_rss"].iloc[-1])
                rows.append({"rule": rule, "request_mb": request_for(rule, a.run, m, a),
                             "peak_rss_mb": used})
    df = pd.DataFrame(rows)
    out = df.groupby("rule", sort=False).agg(
        jobs=("rule", "size"), request_min=("request_mb", "min"),
        request_max=("request_mb", "max"), peak_rss_max=("peak_rss_mb", "max"),
        tightest=("request_mb", lambda r: float(
            (r / df.loc[r.index, "peak_rss_mb"].clip(lower=1)).min())))
    print("| rule | jobs | request MB | peak RSS MB (largest) | request / use (tightest job) |")
    print("|---|---|---|---|---|")
    for rule, r in out.iterrows():
        req = (f"{r.request_min:.0f}" if r.request_min == r.request_max
               else f"{r.request_min:.0f}–{r.request_max:.0f}")
        used = f"{r.peak_rss_max:.0f}" if r.peak_rss_max >= 1 else "< 1 (too short to sample)"
        ratio = f"{r.tightest:.1f}" if r.peak_rss_max >= 1 else ""
        print(f"| {rule} | {int(r.jobs)} | {req} | {used} | {ratio} |")


if __name__ == "__main__":
    main()
