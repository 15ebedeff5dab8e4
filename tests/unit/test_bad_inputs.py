"""More of the bad-input catalogue at the level of whole steps (contigs, overlaps, empty files)."""

from __future__ import annotations

import pytest
from data.vcfs import write_vcf

from vcfbert.errors import InputError
from vcfbert.ingest import write_contig_list
from vcfbert.steps import parse_reference


def test_contig_names_chr_prefix_match(tmp_path):
    ref = write_vcf(tmp_path / "r.vcf", ["a"], [("20", 5, "A", "C", ["0|1"]),
                                                ("21", 9, "A", "C", ["0|1"])],
                    contigs=["20", "21"])
    tgt = write_vcf(tmp_path / "t.vcf", ["b"], [("chr21", 9, "A", "C", ["0|1"])],
                    contigs=["chr21"])
    assert write_contig_list(ref, tmp_path / "c.tsv", target_vcf=tgt) == ["21"]


def test_no_common_contig_error(tmp_path):
    ref = write_vcf(tmp_path / "r.vcf", ["a"], [(5, "A", "C", ["0|1"])], contig="20")
    tgt = write_vcf(tmp_path / "t.vcf", ["b"], [(5, "A", "C", ["0|1"])], contig="X")
    with pytest.raises(InputError, match=r"no contig in common with the reference .* \(targets: X"):
        write_contig_list(ref, tmp_path / "c.tsv", target_vcf=tgt)


def test_vcf_without_records_error(tmp_path):
    ref = write_vcf(tmp_path / "r.vcf", ["a"], [])
    with pytest.raises(InputError, match=r"the reference VCF has no records"):
        write_contig_list(ref, tmp_path / "c.tsv")


def test_samples_in_both_files(tmp_path):
    ref = write_vcf(tmp_path / "r.vcf", ["a", "b", "c"], [(5, "A", "C", ["0|1", "1|1", "0|0"])])
    tgt = write_vcf(tmp_path / "t.vcf", ["b", "z"], [(5, "A", "C", ["0|1", "0|0"])])
    with pytest.raises(InputError, match=r"1 sample\(s\) are both in the reference and in the "
                                         r"targets \(first: b\).*exclude_from_reference"):
        parse_reference(reference_vcf=str(ref), target_vcf=str(tgt), contig="20", panel=None,
                        multiallelic="split", overlap="error", out=str(tmp_path / "r.h5"))
    parse_reference(reference_vcf=str(ref), target_vcf=str(tgt), contig="20", panel=None,
                    multiallelic="split", overlap="exclude_from_reference",
                    out=str(tmp_path / "r.h5"))
    from vcfbert.io.h5store import store_samples

    assert store_samples(tmp_path / "r.h5")[0] == ["a", "c"]
