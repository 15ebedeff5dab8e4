"""The embedded demo end to end, and a run on VCFs that vcfbert did not write (slow)."""

from __future__ import annotations

import gzip
import shutil
import subprocess
import sys

import cyvcf2
import numpy as np
import pandas as pd
import pytest
from conftest import TINY, merge, snakemake, vcf_records

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
    check_imputed_vcf(res / "imputed/20.vcf.gz", n_ref, targets)
    # the reference's contig line, with its length, is copied to the imputed VCF
    assert "##contig=<ID=20,length=1000001>" in cyvcf2.VCF(
        str(res / "imputed/20.vcf.gz")).raw_header
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
        out = subprocess.run(["bcftools", "view", "-H", str(res / "imputed/20.vcf.gz")],
                             capture_output=True, text=True, check=True).stdout
        assert len(out.splitlines()) == n_ref
    # a second invocation has nothing to do
    again = snakemake(workdir, "--cores", "2", "-n")
    assert "Nothing to be done" in again.stdout + again.stderr


def _tskit_vcfs(d, contig="chr7", seed=11, suffix="", males=0):
    """Reference/targets/truth written by tskit's own VCF writer: another seed, contig 'chr7',
    target samples in another order, multi-allelic sites left in. The same samples whatever
    the contig and seed (files ``ref{suffix}.vcf``, ``targets{suffix}.vcf``, ...); with
    ``males``, the last ``males`` individuals are haploid (chrX outside the PARs)."""
    import msprime

    samples = ([msprime.SampleSet(90 - males, ploidy=2), msprime.SampleSet(males, ploidy=1)]
               if males else 90)
    ts = msprime.sim_ancestry(samples=samples, population_size=10_000, sequence_length=250_000,
                              recombination_rate=1.2e-8, random_seed=seed)
    ts = msprime.sim_mutations(ts, rate=2e-8, random_seed=seed + 1)
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
            tree_seq.write_vcf(fh, contig_id=contig, individuals=inds,
                               individual_names=[names[i] for i in inds],
                               position_transform=lambda x: np.maximum(1, np.round(x)))

    write(d / f"ref{suffix}.vcf", ts, ref_ind)
    write(d / f"truth{suffix}.vcf", ts, tgt_ind)
    write(d / f"targets{suffix}.vcf", ts.delete_sites(drop), tgt_ind)
    return names, tgt_ind


def test_own_data_written_by_tskit(workdir):
    names, tgt = _tskit_vcfs(workdir)
    cfg = merge(TINY, {"reference_vcf": str(workdir / "ref.vcf"),
                       "target_vcf": str(workdir / "targets.vcf"),
                       "truth_vcf": str(workdir / "truth.vcf"),
                       "windows": {"core_sites": 16, "flank_sites": 24}})
    snakemake(workdir, "--cores", "2", config=cfg)
    res = workdir / "results"
    vcf = cyvcf2.VCF(str(res / "imputed/chr7.vcf.gz"))
    assert vcf.samples == [names[i] for i in tgt]  # the targets' own order is kept
    assert {r.CHROM for r in vcf} == {"chr7"}
    acc = pd.read_csv(res / "evaluation/accuracy.tsv", sep="\t")
    overall = acc[(acc.group == "all") & (acc.maf_bin == "overall")].iloc[0]
    assert overall.n_variants > 100 and overall.r2 > 0.8
    log = (workdir / "logs/ingest/chr7.parse_reference.log").read_text()
    assert "split_multiallelic" in log


def test_one_reference_file_per_chromosome_and_chrx_males(workdir):
    """Panels ship one VCF per chromosome: the reference as a {chrom} pattern, the targets
    as a list, the truth as a pattern; chrX with haploid males; one imputed VCF per
    chromosome (males haploid on chrX), and a merged one on request; `chromosomes:`
    restricts the run."""
    names, tgt = _tskit_vcfs(workdir, "chr7", 11, ".chr7")
    _tskit_vcfs(workdir, "chrX", 31, ".chrX", males=30)
    cfg = merge(TINY, {"reference_vcf": str(workdir / "ref.{chrom}.vcf"),
                       "target_vcf": [str(workdir / "targets.chrX.vcf"),
                                      str(workdir / "targets.chr7.vcf")],
                       "truth_vcf": str(workdir / "truth.{chrom}.vcf"),
                       "output": {"merged_vcf": True},
                       "windows": {"core_sites": 16, "flank_sites": 24}})
    snakemake(workdir, "--cores", "2", config=cfg)
    res = workdir / "results"
    table = pd.read_csv(res / "ingest/chromosomes.tsv", sep="\t")
    assert table.contig.tolist() == ["chr7", "chrX"]
    assert table.reference_file.str.endswith(("ref.chr7.vcf", "ref.chrX.vcf")).all()
    for contig in ("chr7", "chrX"):
        vcf = cyvcf2.VCF(str(res / f"imputed/{contig}.vcf.gz"))
        assert {r.CHROM for r in vcf} == {contig}
        assert (res / f"imputed/{contig}.vcf.gz.tbi").exists()
        assert (workdir / f"logs/phase/{contig}.phase_targets.log").exists()
    manifest = pd.read_csv(res / "imputed/chromosomes.tsv", sep="\t")
    assert manifest.vcf.tolist() == ["chr7.vcf.gz", "chrX.vcf.gz"]
    assert (manifest.sha256.str.len() == 64).all()
    merged = [r.CHROM for r in cyvcf2.VCF(str(res / "merged/imputed.vcf.gz"))]
    assert merged[0] == "chr7" and merged[-1] == "chrX"
    # chrX: the target males (individuals 60-89) are haploid, GT one allele, DS in [0, 1]
    male = np.array([i >= 60 for i in tgt])
    vcf = cyvcf2.VCF(str(res / "imputed/chrX.vcf.gz"))
    assert vcf.samples == [names[i] for i in tgt]
    for rec in vcf:
        gt = rec.genotype.array()
        assert (gt[male, 1] == -2).all() and (gt[~male, 1] != -2).all()
        assert (rec.format("DS")[male, 0] <= 1).all()
    log = (workdir / "logs/ingest/chrX.parse_reference.log").read_text()
    assert "haploid (male) samples" in log
    acc = pd.read_csv(res / "evaluation/accuracy.tsv", sep="\t")
    per_variant = pd.read_csv(res / "evaluation/per_variant.tsv.gz", sep="\t")
    assert set(per_variant.contig.astype(str)) == {"7", "X"}  # both truths were read
    overall = acc[(acc.group == "all") & (acc.maf_bin == "overall")].iloc[0]
    assert overall.r2 > 0.8
    # the same targets through `vcfbert impute` with this run's trained panel: one VCF of both
    # chromosomes, the merged VCF's records (chrX's males haploid there too)
    snakemake(workdir, "--cores", "2", "trained_panel", config=cfg)
    one_command = workdir / "one_command.vcf.gz"
    cli = subprocess.run([sys.executable, "-m", "vcfbert.cli", "impute", "--panel",
                          str(res / "trained_panel"), "--targets", *cfg["target_vcf"], "-o",
                          str(one_command), "--config", str(workdir / "test-config.yaml"),
                          "--threads", "2"], capture_output=True, text=True, timeout=600)
    assert cli.returncode == 0, cli.stderr[-4000:]
    assert vcf_records(one_command) == vcf_records(res / "merged/imputed.vcf.gz")
    # restricted to one chromosome, in a fresh directory
    one = workdir / "one"
    one.mkdir()
    snakemake(one, "--cores", "1", "results/ingest/chromosomes.tsv",
              config=merge(cfg, {"chromosomes": ["X"]}))
    assert pd.read_csv(one / "results/ingest/chromosomes.tsv", sep="\t").contig.tolist() == \
        ["chrX"]
