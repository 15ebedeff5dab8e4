"""VCF parsing: the catalogue of edge cases, each with its exact error or counted repair."""

from __future__ import annotations

import numpy as np
import pytest
from data.vcfs import gzip_text, truncate_gzip, write_vcf

from vcfbert.errors import InputError
from vcfbert.io.vcf import ReadStats, check_readable_vcf, iter_variants, list_contigs


def read_all(path, role="reference", **kw):
    stats = ReadStats()
    return list(iter_variants(path, "20", role=role, stats=stats, **kw)), stats


def test_multiallelic_split_and_drop(tmp_path):
    p = write_vcf(tmp_path / "m.vcf", ["a", "b"], [(10, "A", "C,G", ["0|1", "2|2"]),
                                                   (20, "T", "C", ["1|1", "0|0"])])
    variants, stats = read_all(p)
    assert [(v.position, v.alt) for v in variants] == [(10, "C"), (10, "G"), (20, "C")]
    assert variants[0].haplotypes.tolist() == [0, 1, 0, 0]
    assert variants[1].haplotypes.tolist() == [0, 0, 1, 1]
    assert stats.split_multiallelic == 1
    variants, stats = read_all(p, multiallelic="drop")
    assert [v.position for v in variants] == [20]
    assert stats.dropped["multiallelic"] == 1


def test_unsorted_records_error(tmp_path):
    p = write_vcf(tmp_path / "u.vcf", ["a"], [(20, "A", "C", ["0|1"]), (10, "A", "C", ["0|1"])])
    with pytest.raises(InputError, match=r"record 20:10 comes after position 20.*bcftools sort"):
        read_all(p)


def test_duplicate_records_dropped_and_counted(tmp_path):
    p = write_vcf(tmp_path / "d.vcf", ["a"], [(10, "A", "C", ["0|1"]), (10, "A", "C", ["1|1"]),
                                              (10, "A", "G", ["0|0"])])
    variants, stats = read_all(p)
    assert [(v.position, v.alt) for v in variants] == [(10, "C"), (10, "G")]
    assert stats.dropped["duplicate_record"] == 1


def test_unphased_reference_error(tmp_path):
    p = write_vcf(tmp_path / "p.vcf", ["a", "b"], [(10, "A", "C", ["0|1", "0/1"])])
    with pytest.raises(InputError, match=r"20:10, sample b: unphased heterozygous .* phased"):
        read_all(p)


def test_homozygous_unphased_is_fine_in_reference(tmp_path):
    p = write_vcf(tmp_path / "h.vcf", ["a", "b"], [(10, "A", "C", ["0|1", "1/1"])])
    variants, _ = read_all(p)
    assert variants[0].haplotypes.tolist() == [0, 1, 1, 1]


def test_missing_in_reference_error_but_allowed_in_targets(tmp_path):
    p = write_vcf(tmp_path / "x.vcf", ["a", "b"], [(10, "A", "C", ["0|1", "./."])])
    with pytest.raises(InputError, match=r"sample b: missing genotype in the reference panel"):
        read_all(p)
    variants, _ = read_all(p, role="target")
    assert variants[0].haplotypes.tolist() == [0, 1, -1, -1]


@pytest.mark.parametrize("gt", ["1", "0|1|1"])
def test_non_diploid_error(tmp_path, gt):
    p = write_vcf(tmp_path / "hap.vcf", ["a", "male"], [(10, "A", "C", ["0|1", gt])])
    with pytest.raises(InputError, match=r"not diploid"):
        read_all(p)


def test_symbolic_and_missing_alt_dropped(tmp_path):
    p = write_vcf(tmp_path / "s.vcf", ["a"], [(10, "A", "<DEL>", ["0|1"]), (11, "A", ".", ["0|0"]),
                                              (12, "A", "*", ["0|1"]), (13, "A", "T", ["0|1"])])
    variants, stats = read_all(p)
    assert [v.position for v in variants] == [13]
    assert stats.dropped["symbolic_or_non_acgt_allele"] == 2
    assert stats.dropped["monomorphic_no_alt"] == 1


def test_empty_file_error(tmp_path):
    p = tmp_path / "empty.vcf.gz"
    p.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty.vcf.gz: file is empty"):
        check_readable_vcf(p)


def test_truncated_bgzip_error(tmp_path):
    from data.vcfs import random_panel

    samples, recs = random_panel(30, 400)
    full = write_vcf(tmp_path / "full.vcf.gz", samples, recs)
    cut = truncate_gzip(full, tmp_path / "cut.vcf.gz")
    with pytest.raises(InputError, match=r"cut.vcf.gz: .*(truncated|cannot)"):
        list(iter_variants(cut, "20", role="reference"))


def test_not_a_vcf_error(tmp_path):
    p = tmp_path / "notes.vcf"
    p.write_text("hello world\nthis is not a VCF\n")
    with pytest.raises(InputError, match=r"not a VCF/BCF file"):
        check_readable_vcf(p)
    g = gzip_text(tmp_path / "notes.vcf.gz", "chrom\tpos\n")
    with pytest.raises(InputError, match=r"not a VCF/BCF file"):
        check_readable_vcf(g)


def test_missing_file_error(tmp_path):
    with pytest.raises(InputError, match=r"file not found"):
        check_readable_vcf(tmp_path / "nope.vcf.gz")


def test_list_contigs_streaming_and_indexed(tmp_path):
    recs = [("chr1", 5, "A", "C", ["0|1"]), ("chr2", 7, "A", "C", ["0|0"])]
    p = write_vcf(tmp_path / "c.vcf.gz", ["a"], recs, contigs=["chr1", "chr2", "chr3"])
    assert list_contigs(p) == ["chr1", "chr2"]
    import pysam

    pysam.tabix_index(str(p), preset="vcf", force=True)
    assert list_contigs(p) == ["chr1", "chr2"]


def test_real_world_header_with_many_fields(tmp_path):
    header = [
        '##INFO=<ID=AC,Number=A,Type=Integer,Description="Allele count">',
        '##INFO=<ID=AF,Number=A,Type=Float,Description="Allele frequency">',
        '##INFO=<ID=NS,Number=1,Type=Integer,Description="Samples">',
        '##FORMAT=<ID=DS,Number=A,Type=Float,Description="Dosage">',
        '##FORMAT=<ID=GL,Number=G,Type=Float,Description="Genotype likelihoods">',
        "##reference=GRCh38", "##source=1000GenomesPhase3Pipeline",
    ]
    lines = ["##fileformat=VCFv4.2", '##FORMAT=<ID=GT,Number=1,Type=String,Description="G">',
             "##contig=<ID=20>", *header,
             "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tNA1\tNA2",
             "20\t100\trs1\tA\tG\t100\tPASS\tAC=1;AF=0.25;NS=2\tGT:DS:GL\t0|1:1:-1,0,-2\t"
             "0|0:0:0,-1,-3"]
    p = tmp_path / "kg.vcf"
    p.write_text("\n".join(lines) + "\n")
    variants, _ = read_all(p)
    assert variants[0].vid == "rs1"
    assert variants[0].haplotypes.tolist() == [0, 1, 0, 0]
    assert np.all(variants[0].phased)
