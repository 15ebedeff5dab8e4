"""The embedded demo end to end, and a run on VCFs that vcfbert did not write (slow)."""

from __future__ import annotations

import gzip
import shutil
import subprocess

import cyvcf2
import numpy as np
import pandas as pd
import pytest
from conftest import TINY, merge, snakemake

pytestmark = pytest.mark.slow


def check_imputed_vcf(path, n_variants: int, samples: set[str]) -> None:
    vcf = cyvcf2.VCF(str(path))
    assert set(vcf.samples) == samples
    header = vcf.raw_header
    assert "##source=vcfbert " in header and "##vcfbert_command=snakemake" in header
    for field in ("ID=AF,", "ID=DR2,Number=A", "ID=IMP,Number=0", "ID=TYPED,Number=0", "ID=DS,",
                  "ID=GP,"):
        assert field in header
    n = n_imp = 0
    for rec in vcf:
        n += 1
        ds = rec.format("DS")[:, 0]
        gp = rec.format("GP")
        assert ((ds >= 0) & (ds <= 2)).all()
        assert np.allclose(gp.sum(1), 1, atol=3e-3)
        assert rec.genotype.array()[:, 2].all()  # phased
        assert 0 <= rec.INFO["DR2"] <= 1
        n_imp += bool(rec.INFO.get("IMP"))
    assert n == n_variants and 0 < n_imp < n
    assert path.with_name(path.name + ".tbi").exists()


def test_demo_end_to_end(workdir):
    """The README's first command, on the embedded demo (default config)."""
    snakemake(workdir, "--cores", "2", timeout=1500)
    res = workdir / "results"
    n_ref = sum(1 for line in gzip.open(res / "simulate/reference.vcf.gz", "rt")
                if not line.startswith("#"))
    targets = set(cyvcf2.VCF(str(res / "simulate/targets.vcf.gz")).samples)
    check_imputed_vcf(res / "imputed/imputed.vcf.gz", n_ref, targets)
    # the reference's contig line, with its length, is copied to the imputed VCF
    assert "##contig=<ID=20,length=1000001>" in cyvcf2.VCF(
        str(res / "imputed/imputed.vcf.gz")).raw_header
    acc = pd.read_csv(res / "evaluation/accuracy.tsv", sep="\t")
    assert set(acc.group) == {"all", "YRI", "CEU", "CHB"}
    assert list(acc[acc.group == "all"].maf_bin) == [
        "[0,0.001)", "[0.001,0.005)", "[0.005,0.01)", "[0.01,0.05)", "[0.05,0.5]", "overall"]
    overall = acc[(acc.group == "all") & (acc.maf_bin == "overall")].iloc[0]
    assert overall.r2 > 0.95 and overall.concordance > 0.99
    metrics = pd.read_csv(res / "train/metrics.csv")
    assert list(metrics.epoch) == [0, 1] and metrics.selected.sum() == 1
    for col in ("train_loss", "train_f1", "val_f1", "val_rare_f1", "lr",
                "haplotype_windows_per_s", "wall_seconds", "val_r2_[0.05,0.5]"):
        assert col in metrics
    for png in ("r2_by_maf", "dr2_calibration", "training_curves", "qc_sites"):
        assert (res / "report" / f"{png}.png").stat().st_size > 1000
    snakemake(workdir, "--report", str(res / "report.html"))
    html = (res / "report.html").read_text(errors="replace")
    assert "accuracy.tsv" in html and "training_curves.png" in html
    if shutil.which("bcftools"):
        out = subprocess.run(["bcftools", "view", "-H", str(res / "imputed/imputed.vcf.gz")],
                             capture_output=True, text=True, check=True).stdout
        assert len(out.splitlines()) == n_ref
    # a second invocation has nothing to do
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def _tskit_vcfs(d):
    """Reference/targets/truth written by tskit's own VCF writer: another seed, contig 'chr7',
    target samples in another order, multi-allelic sites left in."""
    import msprime

    ts = msprime.sim_ancestry(samples=90, population_size=10_000, sequence_length=250_000,
                              recombination_rate=1.2e-8, random_seed=11)
    ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=12)
    rng = np.random.default_rng(13)
    n_ind = ts.num_individuals
    order = rng.permutation(n_ind)
    ref_ind, tgt_ind = np.sort(order[:75]), order[75:]
    names = [f"tsk_{i}" for i in range(n_ind)]
    G = ts.genotype_matrix()
    af = (G > 0).mean(1)
    pos = ts.tables.sites.position.astype(int)
    common = np.flatnonzero((af > 0.1) & (af < 0.9) & (pos > 0))
    array = np.sort(rng.choice(common, size=min(60, common.size), replace=False))
    drop = np.setdiff1d(np.arange(ts.num_sites), array)

    def write(path, tree_seq, inds):
        with open(path, "w") as fh:
            tree_seq.write_vcf(fh, contig_id="chr7", individuals=inds,
                               individual_names=[names[i] for i in inds],
                               position_transform=lambda x: np.maximum(1, np.round(x)))

    write(d / "ref.vcf", ts, ref_ind)
    write(d / "truth.vcf", ts, tgt_ind)
    write(d / "targets.vcf", ts.delete_sites(drop), tgt_ind)
    return names, tgt_ind


def test_own_data_written_by_tskit(workdir):
    names, tgt = _tskit_vcfs(workdir)
    cfg = merge(TINY, {"reference_vcf": str(workdir / "ref.vcf"),
                       "target_vcf": str(workdir / "targets.vcf"),
                       "truth_vcf": str(workdir / "truth.vcf"),
                       "windows": {"core_sites": 16, "flank_sites": 24}})
    snakemake(workdir, "--cores", "2", config=cfg)
    res = workdir / "results"
    vcf = cyvcf2.VCF(str(res / "imputed/imputed.vcf.gz"))
    assert vcf.samples == [names[i] for i in tgt]  # the targets' own order is kept
    assert {r.CHROM for r in vcf} == {"chr7"}
    acc = pd.read_csv(res / "evaluation/accuracy.tsv", sep="\t")
    overall = acc[(acc.group == "all") & (acc.maf_bin == "overall")].iloc[0]
    assert overall.n_variants > 100 and overall.r2 > 0.8
    log = (workdir / "logs/ingest/chr7.parse_reference.log").read_text()
    assert "split_multiallelic" in log
