"""Parsing into stores and aligning targets: round trip, swaps, flips, contig names, QC."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from data.vcfs import random_panel, write_vcf

from vcfbert.errors import InputError
from vcfbert.ingest import align_targets, parse_reference, parse_targets, read_panel
from vcfbert.io.h5store import read_reference, read_targets
from vcfbert.io.vcf import iter_variants
from vcfbert.io.vcf_writer import BgzipVcfWriter, base_header, column_header, genotype_strings


def test_vcf_h5_vcf_round_trip(tmp_path):
    samples, recs = random_panel(7, 50, seed=3)
    src = write_vcf(tmp_path / "ref.vcf.gz", samples, recs)
    parse_reference(src, "20", tmp_path / "ref.h5")
    panel = read_reference(tmp_path / "ref.h5")
    assert panel.haplotypes.shape == (14, 50)
    assert panel.sample_id == samples
    # write back to VCF from the store and compare record by record
    out = tmp_path / "back.vcf.gz"
    gts = genotype_strings(panel.haplotypes, phased=True)
    with BgzipVcfWriter(out) as w:
        w.write_lines(base_header([("20", None)]))
        w.write_lines(['##FORMAT=<ID=GT,Number=1,Type=String,Description="GT">'])
        w.write_lines([column_header(panel.sample_id)])
        w.write_lines([f"20\t{p}\t.\t{a[0]}\t{a[1]}\t.\tPASS\t.\tGT\t" + "\t".join(g)
                       for p, a, g in zip(panel.position, panel.alleles, gts, strict=True)])
    a = list(iter_variants(src, "20", role="reference"))
    b = list(iter_variants(out, "20", role="reference"))
    assert [(v.position, v.ref, v.alt) for v in a] == [(v.position, v.ref, v.alt) for v in b]
    assert all(np.array_equal(x.haplotypes, y.haplotypes) for x, y in zip(a, b, strict=True))
    expected_af = np.array([[int(c) for g in r[3] for c in g.split("|")] for r in recs]).mean(1)
    np.testing.assert_allclose(panel.af, expected_af, rtol=1e-6)


def _ref_and_targets(tmp_path, target_records, target_contig="20"):
    ref = write_vcf(tmp_path / "ref.vcf", ["r1", "r2"], [
        (100, "A", "G", ["0|1", "1|1"]),   # target matches
        (200, "C", "T", ["0|0", "0|1"]),   # target swapped
        (300, "A", "C", ["1|0", "0|0"]),   # target strand-flipped (T/G)
        (400, "A", "T", ["0|1", "0|0"]),   # ambiguous, target reversed -> dropped
        (500, "G", "C", ["0|1", "1|0"]),   # ambiguous, target exact -> kept
        (600, "A", "G", ["0|1", "0|0"]),   # target alleles unrelated -> dropped
    ])
    parse_reference(ref, "20", tmp_path / "ref.h5")
    tgt = write_vcf(tmp_path / "tgt.vcf", ["t1"], target_records, contig=target_contig)
    return tgt


def test_alignment_outcomes(tmp_path):
    tgt = _ref_and_targets(tmp_path, [
        (100, "A", "G", ["0|1"]), (200, "T", "C", ["0|1"]), (300, "T", "G", ["1|1"]),
        (400, "T", "A", ["0|1"]), (500, "G", "C", ["1|0"]), (600, "A", "C", ["0|1"]),
        (700, "A", "C", ["0|1"])], target_contig="chr20")
    targets, counts, rates = align_targets(tgt, tmp_path / "ref.h5", "20")
    assert targets.variant_ref_index.tolist() == [0, 1, 2, 4]
    # swapped site 200: target 0|1 in T/C coding is 1|0 in C/T coding
    assert targets.haplotypes[:, 1].tolist() == [1, 0]
    assert targets.haplotypes[:, 2].tolist() == [1, 1]
    gaps = {k: counts.pop(k) for k in ("max_gap_between_typed_sites_bp",
                                       "reference_variants_in_gaps_over_1Mb")}
    assert counts == {"matched": 2, "allele_swapped": 1, "strand_flipped": 1,
                      "dropped_strand_ambiguous": 1, "dropped_allele_mismatch": 1,
                      "dropped_not_in_reference": 1, "target_records": 7, "sites_used": 4}
    assert gaps == {"max_gap_between_typed_sites_bp": 200,
                    "reference_variants_in_gaps_over_1Mb": 0}
    assert rates["call_rate"].tolist() == [1.0]


@pytest.mark.parametrize("block", [1, 2, 3])
def test_alignment_reads_the_reference_alleles_a_block_of_targets_at_a_time(tmp_path,
                                                                            monkeypatch, block):
    """The reference's alleles are read per block of target records, at the blocks'
    positions only: any block size gives the alignment of one block, two reference variants
    at one position (a split multi-allelic record) included."""
    import functools

    from vcfbert import ingest

    ref = write_vcf(tmp_path / "ref.vcf", ["r1", "r2"], [
        (100, "A", "G", ["0|1", "1|1"]), (200, "C", "T", ["0|0", "0|1"]),
        (200, "C", "A", ["1|0", "0|0"]), (300, "G", "T", ["0|1", "0|0"]),
        (500, "T", "C", ["1|1", "0|1"])])
    parse_reference(ref, "20", tmp_path / "ref.h5")
    tgt = write_vcf(tmp_path / "tgt.vcf", ["t1", "t2"], [
        (50, "A", "C", ["0|1", "0|0"]), (100, "G", "A", ["0|1", "1|1"]),
        (200, "C", "A", ["1|1", "0|1"]), (200, "T", "C", ["0|0", "1|0"]),
        (400, "A", "G", ["0|1", "0|0"]), (500, "T", "C", ["0|1", "1|0"])])
    whole, whole_counts, _ = align_targets(tgt, tmp_path / "ref.h5", "20")
    assert whole.variant_ref_index.tolist() == [0, 1, 2, 4]
    assert whole_counts["allele_swapped"] == 2 and whole_counts["dropped_not_in_reference"] == 2
    monkeypatch.setattr(ingest, "_with_reference_alleles",
                        functools.partial(ingest._with_reference_alleles, block=block))
    blocks, counts, _ = align_targets(tgt, tmp_path / "ref.h5", "20")
    assert counts == whole_counts
    assert blocks.variant_ref_index.tolist() == whole.variant_ref_index.tolist()
    assert np.array_equal(blocks.haplotypes, whole.haplotypes)


def test_reference_alleles_at_sparse_and_dense_rows(tmp_path):
    samples, recs = random_panel(3, 60, seed=5)
    parse_reference(write_vcf(tmp_path / "ref.vcf.gz", samples, recs), "20", tmp_path / "r.h5")
    from vcfbert.io.h5store import read_alleles_at, read_variant_table

    every = [tuple(a) for a in read_variant_table(tmp_path / "r.h5", ("alleles",))["alleles"]]
    for rows in ([3, 40], [5, 6, 7, 8, 9, 11], list(range(60)), []):  # points, then slices
        assert read_alleles_at(tmp_path / "r.h5", np.array(rows, np.int64)) == [
            every[i] for i in rows]


def test_no_overlap_error(tmp_path):
    tgt = _ref_and_targets(tmp_path, [(50, "A", "G", ["0|1"])])
    with pytest.raises(InputError, match=r"none of the 1 target records .* genome build"):
        align_targets(tgt, tmp_path / "ref.h5", "20")


def test_missing_contig_error(tmp_path):
    tgt = _ref_and_targets(tmp_path, [(100, "A", "G", ["0|1"])], target_contig="7")
    with pytest.raises(InputError, match=r"no records on contig 20"):
        align_targets(tgt, tmp_path / "ref.h5", "20")


def test_unphased_and_missing_targets_are_recorded(tmp_path):
    tgt = _ref_and_targets(tmp_path, [(100, "A", "G", ["0/1"]), (200, "C", "T", ["./."])])
    targets, _, rates = align_targets(tgt, tmp_path / "ref.h5", "20")
    assert not targets.sample_phased[0]
    assert rates["call_rate"].tolist() == [0.5]
    assert targets.haplotypes[:, 1].tolist() == [-1, -1]


def test_min_call_rate_refuses_bad_samples(tmp_path):
    tgt = _ref_and_targets(tmp_path, [(100, "A", "G", ["0|1"]), (200, "C", "T", ["./."])])
    with pytest.raises(InputError, match=r"call rate below 0.9 .* t1"):
        parse_targets(tgt, tmp_path / "ref.h5", "20", tmp_path / "t.h5", tmp_path / "a.tsv",
                      tmp_path / "b.tsv", min_call_rate=0.9)
    assert not (tmp_path / "t.h5").exists()


def test_parse_targets_writes_store_and_qc(tmp_path):
    tgt = _ref_and_targets(tmp_path, [(100, "A", "G", ["0|1"]), (200, "T", "C", ["1|1"])])
    parse_targets(tgt, tmp_path / "ref.h5", "20", tmp_path / "t.h5", tmp_path / "sites.tsv",
                  tmp_path / "samples.tsv")
    t = read_targets(tmp_path / "t.h5")
    assert t.variant_ref_index.tolist() == [0, 1]
    qc = pd.read_csv(tmp_path / "sites.tsv", sep="\t")
    assert dict(zip(qc.outcome, qc["count"], strict=True))["allele_swapped"] == 1


def test_panel_file(tmp_path):
    p = tmp_path / "panel.tsv"
    p.write_text("sample\tpop\tsuper_pop\nA\tGBR\tEUR\nB\tYRI\tAFR\n")
    assert read_panel(p) == {"A": "GBR", "B": "YRI"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tgroup\nA\tX\n")
    with pytest.raises(InputError, match=r"needs a header with columns 'sample' and 'population'"):
        read_panel(bad)


def test_reference_parse_failure_leaves_no_output(tmp_path):
    ref = write_vcf(tmp_path / "r.vcf", ["a"], [(10, "A", "C", ["0|1"]), (20, "A", "C", ["0/1"])])
    with pytest.raises(InputError):
        parse_reference(ref, "20", tmp_path / "r.h5")
    assert list(tmp_path.glob("*.h5*")) == [] and list(tmp_path.glob(".r.h5*")) == []


def test_qc_reports_regions_without_typed_sites(tmp_path):
    """A region without typed sites is imputed (windows still tile it) and reported in QC."""
    from vcfbert.windows import define_windows

    recs = [(p, "A", "G", ["0|1", "1|0"]) for p in
            [1_000, 2_000, 3_000, 1_500_000, 1_600_000, 2_800_000, 2_900_000, 3_000_000]]
    ref = write_vcf(tmp_path / "ref.vcf", ["r1", "r2"], recs)
    parse_reference(ref, "20", tmp_path / "ref.h5")
    tgt = write_vcf(tmp_path / "tgt.vcf", ["t1"], [(1_000, "A", "G", ["0|1"]),
                                                   (3_000_000, "A", "G", ["1|1"])])
    targets, counts, _ = align_targets(tgt, tmp_path / "ref.h5", "20")
    assert counts["max_gap_between_typed_sites_bp"] == 2_999_000
    assert counts["reference_variants_in_gaps_over_1Mb"] == 6
    w = define_windows(np.array([r[0] for r in recs]), targets.variant_ref_index,
                       core_sites=1, flank_sites=1)
    assert w["n_core"].sum() == len(recs) and (w["n_typed"] > 0).all()


def test_tiled_int8_transpose():
    """The reference writer's transpose of a block of variants into haplotype rows."""
    from vcfbert.io.transpose import transpose_int8

    rng = np.random.default_rng(5)
    for shape in [(0, 4), (1, 1), (3, 70), (130, 129), (257, 65)]:
        a = rng.integers(-1, 2, shape).astype(np.int8)
        b = transpose_int8(a[:, ::-1])  # a non-contiguous input too
        assert b.flags.c_contiguous and b.dtype == np.int8
        np.testing.assert_array_equal(b, a[:, ::-1].T)


def _every_third_site_typed(tmp_path):
    """A 40-variant reference store and a target store typed at every third variant
    (``ref.h5``, ``t.h5`` in ``tmp_path``)."""
    samples, records = random_panel(6, 40, seed=2)
    ref = write_vcf(tmp_path / "r.vcf", samples, records)
    tgt = write_vcf(tmp_path / "t.vcf", samples[:3], [(p, r, a, g[:3]) for p, r, a, g
                                                      in records[::3]])
    parse_reference(ref, "20", tmp_path / "ref.h5")
    parse_targets(tgt, tmp_path / "ref.h5", "20", tmp_path / "t.h5", tmp_path / "qs.tsv",
                  tmp_path / "qn.tsv")


def test_target_sites_are_read_without_the_genotypes(tmp_path):
    """read_target_sites gives read_targets' typed sites without reading the [2T, M]
    genotypes (the window and imputation jobs need only the sites from it)."""
    from vcfbert.io.h5store import read_target_sites

    _every_third_site_typed(tmp_path)
    sites = read_target_sites(tmp_path / "t.h5")
    assert sites.dtype == np.int64 and sites.tolist() == list(range(0, 40, 3))
    np.testing.assert_array_equal(sites, read_targets(tmp_path / "t.h5").variant_ref_index)


def test_targets_of_a_variant_range(tmp_path):
    """read_targets(variants=(start, end)) gives the typed sites at reference variants
    start:end and their genotypes, as slicing the whole store does (an imputation job reads
    its windows' columns only)."""
    from vcfbert.io.h5store import read_targets

    _every_third_site_typed(tmp_path)
    whole = read_targets(tmp_path / "t.h5")
    for start, end in [(0, 40), (4, 19), (5, 6), (7, 7), (30, 99)]:
        part = read_targets(tmp_path / "t.h5", variants=(start, end))
        keep = (whole.variant_ref_index >= start) & (whole.variant_ref_index < end)
        np.testing.assert_array_equal(part.variant_ref_index, whole.variant_ref_index[keep])
        np.testing.assert_array_equal(part.haplotypes, whole.haplotypes[:, keep])
        assert part.sample_id == whole.sample_id
