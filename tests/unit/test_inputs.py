"""Input files as one file, a {chrom} pattern or a list; the chromosome table built from them."""

from __future__ import annotations

import pandas as pd
import pytest
from data.vcfs import write_vcf

from vcfbert.errors import InputError
from vcfbert.ingest import map_file, write_contig_list
from vcfbert.inputs import expand


def _panel(d, contig, name=None):
    return write_vcf(d / (name or f"ref.{contig}.vcf"), ["a", "b"],
                     [(100, "A", "G", ["0|1", "1|1"]), (200, "C", "T", ["0|0", "0|1"])],
                     contig=contig)


def test_expand_forms(tmp_path):
    for c in ("chr1", "chr2", "chr10"):
        _panel(tmp_path, c)
    pattern = str(tmp_path / "ref.{chrom}.vcf")
    assert [p.rsplit("/", 1)[1] for p in expand(pattern, "reference_vcf")] == [
        "ref.chr1.vcf", "ref.chr2.vcf", "ref.chr10.vcf"]  # natural order
    assert expand(str(tmp_path / "x.vcf"), "k") == [str(tmp_path / "x.vcf")]
    assert expand("", "k") == [] and expand([], "k") == []
    with pytest.raises(InputError, match=r"reference_vcf: no file matches .*nope\.\{chrom\}"):
        expand(str(tmp_path / "nope.{chrom}.vcf"), "reference_vcf")
    with pytest.raises(InputError, match="target_vcf: .*missing.vcf does not exist"):
        expand([str(tmp_path / "ref.chr1.vcf"), str(tmp_path / "missing.vcf")], "target_vcf")
    with pytest.raises(InputError, match="once"):
        expand(str(tmp_path / "{chrom}/ref.{chrom}.vcf"), "reference_vcf")


def test_chromosome_table_from_per_chromosome_files(tmp_path):
    refs = [_panel(tmp_path, c) for c in ("chr1", "chr2", "chr3")]
    targets = [_panel(tmp_path, c, f"t.{c}.vcf") for c in ("2", "1")]  # other naming
    (tmp_path / "map.chr1.map").write_text("1 . 0 1\n")
    (tmp_path / "map.chr2.map").write_text("2 . 0 1\n")
    out = tmp_path / "c.tsv"
    got = write_contig_list([str(r) for r in refs], out, target_vcf=[str(t) for t in targets],
                            genetic_map=str(tmp_path / "map.{chrom}.map"))
    assert got == ["chr1", "chr2"]  # chr3 has no targets
    table = pd.read_csv(out, sep="\t", dtype=str)
    assert table.reference_file.tolist() == [str(refs[0]), str(refs[1])]
    assert table.target_file.tolist() == [str(targets[1]), str(targets[0])]
    assert table.genetic_map_file.str.endswith(("map.chr1.map", "map.chr2.map")).all()
    assert write_contig_list([str(r) for r in refs], out, target_vcf=[str(t) for t in targets],
                             restrict=["2"]) == ["chr2"]
    with pytest.raises(InputError, match="chromosomes: 3 not in both"):
        write_contig_list([str(r) for r in refs], out, target_vcf=[str(t) for t in targets],
                          restrict=["3"])


def test_a_contig_in_two_files_is_refused(tmp_path):
    a = _panel(tmp_path, "chr1")
    b = _panel(tmp_path, "chr1", "again.vcf")
    with pytest.raises(InputError, match="contig chr1 is in both .*give each chromosome in one"):
        write_contig_list([str(a), str(b)], tmp_path / "c.tsv")


def test_map_pattern_is_filled_with_either_naming(tmp_path):
    (tmp_path / "genetic_map_chr20.txt").write_text("")
    assert map_file(str(tmp_path / "genetic_map_chr{chrom}.txt"), "chr20").endswith(
        "genetic_map_chr20.txt")
    assert map_file(str(tmp_path / "genetic_map_{chrom}.txt"), "20").endswith(
        "genetic_map_chr20.txt")
    assert map_file("one.map", "20") == "one.map" and map_file("", "20") == ""
    with pytest.raises(InputError, match="genetic_map: no map for 21"):
        map_file(str(tmp_path / "genetic_map_{chrom}.txt"), "21")
