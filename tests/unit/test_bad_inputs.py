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


def _dosage_only(path, *, declare_gt: bool = False):
    """Targets carrying dosages only (FORMAT DS), as another imputation writes them."""
    header = ["##fileformat=VCFv4.2", "##contig=<ID=20>",
              '##FORMAT=<ID=DS,Number=1,Type=Float,Description="Dosage">']
    if declare_gt:
        header.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    header.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                             "FORMAT", "s1", "s2"]))
    path.write_text("\n".join(header + ["20\t5\t.\tA\tC\t.\tPASS\t.\tDS\t0.9\t1.1"]) + "\n")
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_dosage_only_targets_are_one_line(tmp_path, gz):
    from vcfbert.phase import phase_targets

    ref = write_vcf(tmp_path / "r.vcf", ["a"], [(5, "A", "C", ["0|1"])])
    tgt = _dosage_only(tmp_path / "t.vcf")
    if gz:
        from pysam.libcbgzf import BGZFile

        with BGZFile(str(tmp_path / "t.vcf.gz"), "wb") as fh:
            fh.write(tgt.read_bytes())
        tgt = tmp_path / "t.vcf.gz"
    with pytest.raises(InputError, match=r"the target VCF has no genotypes \(FORMAT GT; it has: "
                                         r"DS\); targets need GT calls - a dosage-only file"):
        phase_targets(target_vcf=str(tgt), reference_vcf=str(ref), out=str(tmp_path / "p.vcf.gz"),
                      tool="beagle")


def test_records_without_gt_are_one_line(tmp_path):
    """GT declared in the header but absent from the records."""
    from vcfbert.io.vcf import iter_variants

    tgt = _dosage_only(tmp_path / "t.vcf", declare_gt=True)
    with pytest.raises(InputError, match=r"record 20:5 has no genotypes \(FORMAT DS; GT is "
                                         r"needed\)"):
        list(iter_variants(tgt, "20", role="target"))


def test_duplicated_sample_names_are_named(tmp_path):
    tgt = write_vcf(tmp_path / "t.vcf", ["s1", "s2", "s1"], [(5, "A", "C", ["0|1"] * 3)])
    with pytest.raises(InputError, match=r"sample name s1 appears 2 times in the header .*unique"):
        write_contig_list(tgt, tmp_path / "c.tsv")


def test_header_without_chrom_line(tmp_path):
    bad = tmp_path / "t.vcf"
    bad.write_text("##fileformat=VCFv4.2\n##contig=<ID=20>\n20\t5\t.\tA\tC\t.\tPASS\t.\tGT\t0|1\n")
    with pytest.raises(InputError, match=r"no '#CHROM POS ID REF ALT ...' line"):
        write_contig_list(bad, tmp_path / "c.tsv")
