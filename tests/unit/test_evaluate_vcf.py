"""The imputed VCF contract and the evaluator's metrics."""

from __future__ import annotations

import shutil
import subprocess

import cyvcf2
import numpy as np
import pandas as pd
import pytest
from data.vcfs import write_vcf

from vcfbert.evaluate import evaluate_dense, maf_bin, per_variant_r2, score
from vcfbert.evaluate_stream import evaluate
from vcfbert.imputed_vcf import ChromosomeDosages, dosage_r2, write_imputed_vcf


def _chrom(n_var=6, n_samples=4, seed=0):
    rng = np.random.default_rng(seed)
    pos = np.arange(1, n_var + 1) * 100
    alleles = np.array([["A", "G"]] * n_var, dtype=object)
    ids = np.array(["."] * n_var, dtype=object)
    hp = rng.random((2 * n_samples, n_var)).astype(np.float32)
    typed = np.zeros(n_var, bool)
    typed[0] = True
    return ChromosomeDosages("chr7", pos, alleles, ids, hp, typed)


def test_imputed_vcf_contract(tmp_path):
    chrom = _chrom()
    out = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(out, [chrom], ["s1", "s2", "s3", "s4"], command="snakemake --cores 2",
                      contig_lengths={"chr7": 159345973})
    assert (tmp_path / "imputed.vcf.gz.tbi").exists()
    vcf = cyvcf2.VCF(str(out))
    header = vcf.raw_header
    assert "##source=vcfbert" in header and "##vcfbert_command=snakemake --cores 2" in header
    recs = list(vcf)
    assert len(recs) == 6
    ds = np.stack([r.format("DS")[:, 0] for r in recs])
    expect = chrom.hap_prob[0::2] + chrom.hap_prob[1::2]
    np.testing.assert_allclose(ds, expect.T, atol=6e-4)
    gp = recs[1].format("GP")
    np.testing.assert_allclose(gp.sum(1), 1.0, atol=2e-3)
    assert recs[0].INFO.get("IMP") is None and recs[1].INFO.get("IMP") is True
    assert recs[0].INFO.get("TYPED") is True and recs[1].INFO.get("TYPED") is None
    assert "##contig=<ID=chr7,length=159345973>" in header
    assert 0 <= recs[1].INFO["DR2"] <= 1
    assert all(r.genotype.array()[:, 2].all() for r in recs)  # phased GT


@pytest.mark.skipif(shutil.which("bcftools") is None, reason="bcftools not installed")
def test_bcftools_reads_imputed_vcf(tmp_path):
    out = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(out, [_chrom()], ["s1", "s2", "s3", "s4"])
    res = subprocess.run(["bcftools", "query", "-f", "%POS\t%INFO/DR2[\t%DS]\n", str(out)],
                         capture_output=True, text=True, check=True)
    assert len(res.stdout.strip().splitlines()) == 6
    res = subprocess.run(["bcftools", "view", "-H", "-r", "chr7:200-300", str(out)],
                         capture_output=True, text=True, check=True)
    assert len(res.stdout.strip().splitlines()) == 2


@pytest.mark.skipif(shutil.which("plink2") is None, reason="plink2 not installed")
def test_plink2_reads_dosages(tmp_path):
    out = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(out, [_chrom()], ["s1", "s2", "s3", "s4"])
    res = subprocess.run(["plink2", "--vcf", str(out), "dosage=DS", "--make-pgen",
                          "--out", str(tmp_path / "p")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    assert (tmp_path / "p.pgen").exists()


def test_dr2_definition():
    hp = np.array([[1, 0, 0.5], [1, 0, 0.5], [0, 1, 0.5], [0, 1, 0.5]], dtype=np.float32)
    r2 = dosage_r2(hp)
    assert np.isclose(r2[0], 1.0) and np.isclose(r2[1], 1.0)
    assert np.isclose(r2[2], 0.0)  # all dosages equal: nothing is known


def test_score_metrics():
    truth = np.array([[0, 1, 2, 0], [0, 0, 1, 1]], dtype=np.float32)
    res = score(truth.copy(), truth.copy(), truth)
    assert res["r2"] == pytest.approx(1.0) and res["concordance"] == 1.0
    assert res["nrd"] == 0.0 and res["f1"] == 1.0
    wrong = np.zeros_like(truth)
    res = score(wrong, wrong, truth)
    assert res["f1"] == 0.0 and res["nrd"] == 1.0
    assert np.isnan(per_variant_r2(wrong, truth)).all()


def test_maf_bins():
    assert list(maf_bin(np.array([0.0005, 0.003, 0.9995, 0.03, 0.4]))) == [
        "[0,0.001)", "[0.001,0.005)", "[0,0.001)", "[0.01,0.05)", "[0.05,0.5]"]


def test_evaluate_against_truth_with_swapped_alleles_and_populations(tmp_path):
    truth = write_vcf(tmp_path / "truth.vcf", ["a", "b", "c"], [
        (100, "A", "G", ["0|1", "1|1", "0|0"]), (200, "C", "T", ["0|0", "0|1", "0|0"]),
        (300, "G", "T", ["1|1", "0|1", "0|0"])], contig="chr20")
    # imputed file (other naming: "20"), site 300 written with swapped alleles
    imputed = write_vcf(tmp_path / "imp.vcf", ["c", "a", "b"], [
        (100, "A", "G", ["0|0", "0|1", "1|1"]), (200, "C", "T", ["0|0", "0|0", "1|0"]),
        (300, "T", "G", ["1|1", "0|0", "1|0"])], contig="20")
    sites = pd.DataFrame({"contig": "20", "position": [100, 200, 300], "ref": ["A", "C", "G"],
                          "alt": ["G", "T", "T"], "ref_af": [0.3, 0.01, 0.2],
                          "typed": [True, False, False]})
    acc, pv = evaluate(imputed, truth, sites, populations={"a": "X", "b": "X", "c": "Y"})
    overall = acc[(acc.group == "all") & (acc.maf_bin == "overall")].iloc[0]
    assert overall.n_variants == 2  # the typed site is excluded
    assert overall.concordance == 1.0 and overall.f1 == 1.0
    assert set(acc.group) == {"all", "X", "Y"}
    assert pv.set_index("position").loc[300, "true_r2"] == pytest.approx(1.0)


def test_streamed_evaluation_equals_the_dense_one(tmp_path, capsys):
    """Blocks of 7 records over two contigs, the truth in another sample and contig order with
    missing calls, swapped alleles, absent sites, a typed site and an off-panel record."""
    rng = np.random.default_rng(3)
    samples = [f"s{i}" for i in range(12)]
    chroms, truth_recs, rows = [], [], []
    for contig in ("chr2", "chr1"):  # the imputed file: chr2 first
        n = 40
        pos = np.arange(1, n + 1) * 100
        haps = (rng.random((24, n)) < rng.uniform(0.01, 0.5, n)).astype(np.int64)
        prob = np.clip(haps + rng.normal(0, 0.3, haps.shape), 0, 1).astype(np.float32)
        keep = np.ones(n, bool)
        keep[[5, 17]] = False  # absent from the imputed VCF
        alleles = np.array([["A", "G"]] * n, dtype=object)
        chroms.append(ChromosomeDosages(contig, pos[keep], alleles[keep],
                                        np.array(["."] * keep.sum(), dtype=object),
                                        prob[:, keep], np.arange(keep.sum()) == 0))
        for v in range(n):
            gts = [f"{haps[2 * i, v]}|{haps[2 * i + 1, v]}" for i in range(12)]
            if v % 9 == 0:
                gts[v % 12] = ".|."
            truth_recs.append((contig, int(pos[v]), "A", "G", gts))
            swapped = v % 11 == 3  # the panel lists these sites with REF and ALT swapped
            rows.append((contig.removeprefix("chr"), int(pos[v]), "G" if swapped else "A",
                         "A" if swapped else "G", float(haps[:, v].mean()), v == 0))
    imputed = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(imputed, chroms, samples)
    order = list(rng.permutation(12))
    truth_recs.append(("chr1", 99999, "C", "T", ["0|1"] * 12))  # not a panel site
    truth_recs.sort(key=lambda r: (r[0], r[1]))  # chr1 first in the truth
    truth = write_vcf(tmp_path / "truth.vcf.gz", [samples[i] for i in order],
                      [(c, p, r, a, [g[i] for i in order]) for c, p, r, a, g in truth_recs],
                      contigs=["chr1", "chr2"])
    sites = pd.DataFrame(rows, columns=["contig", "position", "ref", "alt", "ref_af", "typed"])
    pops = {s: "X" if i % 3 else "Y" for i, s in enumerate(samples)}
    dense_acc, dense_pv = evaluate_dense(imputed, truth, sites, populations=pops)
    acc, pv = evaluate(imputed, truth, sites, populations=pops, block_variants=7,
                       tmp_dir=tmp_path)
    assert len(acc) == len(dense_acc) == 3 * 6
    pd.testing.assert_frame_equal(acc, dense_acc, check_exact=False, rtol=1e-6, atol=1e-9)
    pd.testing.assert_frame_equal(pv.reset_index(drop=True), dense_pv.reset_index(drop=True),
                                  check_exact=False, check_dtype=False, rtol=1e-6, atol=1e-9)
    assert not list(tmp_path.glob("vcfbert-eval-*"))  # the truth store is removed
    # its progress, for the rule's log: the truth's 81 records read, then the panel's sites
    # found in the imputed VCF (76 of 80: four are absent from it)
    err = capsys.readouterr().err
    assert "evaluate: truth read: 81.0 variant" in err
    assert "evaluate: imputed variants scored:  95%" in err and "76.0/80.0" in err


@pytest.mark.skipif(shutil.which("bcftools") is None or shutil.which("plink2") is None,
                    reason="bcftools or plink2 not installed")
def test_fill_tags_and_plink2_read_it_without_a_warning(tmp_path):
    out = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(out, [_chrom()], ["s1", "s2", "s3", "s4"],
                      contig_lengths={"chr7": 159345973})
    res = subprocess.run(["bcftools", "+fill-tags", str(out), "-Ov", "--", "-t", "AF,MAF"],
                         capture_output=True, text=True, check=True)
    assert "[W::" not in res.stderr and res.stdout.count("MAF=") == 6
    res = subprocess.run(["plink2", "--vcf", str(out), "dosage=DS", "--make-pgen", "--out",
                          str(tmp_path / "pg")], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    log = (tmp_path / "pg.log").read_text()
    assert "Warning" not in log and "6 variants" in log


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_block_work_equals_numpy(seed):
    """The evaluation's compiled passes against the numpy code they replaced: an imputed
    block's doses and best guesses (missing and haploid calls, records without DS, swapped
    alleles, with and without GT) and a truth block's ALT counts (a second ALT counted)."""
    from vcfbert.evaluate import best_guess_block
    from vcfbert.evaluate_stream import _alt_counts, _doses_of_rows
    from vcfbert.io.transpose import allele_counts

    rng = np.random.default_rng(seed)
    b, s = 40, 23
    gt = rng.integers(-1, 3, (b, s, 3)).astype(np.int16)
    gt[..., 1][rng.random((b, s)) < 0.1] = -2  # haploid calls
    ds = rng.uniform(0, 2, (b, s)).astype(np.float32)
    ds[rng.random((b, s)) < 0.05] = np.nan
    rows = np.sort(rng.choice(b, 25, replace=False)).astype(np.int64)
    from_gt = rng.random(25) < 0.3
    flip = rng.random(25) < 0.4
    for has_gt in (True, False):
        use_gt = from_gt if has_gt else np.zeros(25, bool)
        hard = best_guess_block(gt[rows]) if has_gt else None
        dose = ds[rows].copy()
        if has_gt:
            dose[use_gt] = hard[use_gt]
        else:
            hard = np.round(dose).astype(np.float32)
        dose[flip], hard[flip] = 2 - dose[flip], 2 - hard[flip]
        got_dose, got_hard = np.empty((25, s), np.float32), np.empty((25, s), np.float32)
        _doses_of_rows(gt, ds, rows, use_gt, flip, has_gt, got_dose, got_hard)
        np.testing.assert_array_equal(got_dose, dose)
        np.testing.assert_array_equal(got_hard, hard)

    allele_of = rng.integers(1, 3, 25).astype(np.int16)
    a0, a1 = gt[rows, :, 0], gt[rows, :, 1]
    want = ((a0 == allele_of[:, None]).astype(np.int8)
            + (a1 == allele_of[:, None]).astype(np.int8))
    want[(a0 < 0) | ((a1 != -2) & (a1 < 0))] = -1
    counts = np.empty((25, s), np.int8)
    _alt_counts(gt, rows, allele_of, counts)
    np.testing.assert_array_equal(counts, want)
    alt, called = allele_counts(counts)
    np.testing.assert_array_equal(alt, np.where(want >= 0, want, 0).sum(1))
    np.testing.assert_array_equal(called, (want >= 0).sum(1))
