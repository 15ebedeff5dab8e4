"""Genetic maps: PLINK and HapMap formats, interpolation and extrapolation, one-line errors."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from vcfbert.errors import InputError
from vcfbert.genetic_map import read_genetic_map

PLINK = "20 rs1 0.0 1000\n20 rs2 1.0 2000\n20 rs3 1.0 3000\n20 rs4 4.0 4000\n21 rs5 0.5 10\n"
HAPMAP = ("chr position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n"
          "chr20 1000 1000 0.0\nchr20 2000 0 1.0\nchr20 3000 3000 1.0\nchr20 4000 0 4.0\n")


@pytest.mark.parametrize("text,name", [(PLINK, "m.map"), (HAPMAP, "m.txt")])
def test_both_formats_interpolate_and_extrapolate_like_beagle(tmp_path, text, name):
    path = tmp_path / name
    path.write_text(text)
    gmap = read_genetic_map(path, "20")
    cm = gmap.centimorgans(np.array([1000, 1500, 2500, 3500, 4000, 5000, 0]))
    # inside: linear between points; a flat interval stays flat; beyond the ends: the first or
    # last interval's slope (1 cM / 1000 bp before, 3 cM / 1000 bp after)
    np.testing.assert_allclose(cm, [0.0, 0.5, 1.0, 2.5, 4.0, 7.0, -1.0])


def test_gzipped_per_chromosome_hapmap(tmp_path):
    path = tmp_path / "genetic_map_chr20.txt.gz"
    with gzip.open(path, "wt") as fh:
        fh.write("position COMBINED_rate(cM/Mb) Genetic_Map(cM)\n100 1 0\n1100 1 0.001\n")
    assert read_genetic_map(path, "chr20").centimorgans(np.array([600]))[0] == pytest.approx(5e-4)


def test_map_errors_are_one_line(tmp_path):
    plink = tmp_path / "m.map"
    plink.write_text(PLINK)
    with pytest.raises(InputError, match=r"no map line for contig X \(the map has 20, 21\): a "
                                         r"map of another contig"):
        read_genetic_map(plink, "X")
    bad = tmp_path / "b.map"
    bad.write_text("20 a 0.0 1000\n20 b 2.0 2000\n20 c 1.5 3000\n")
    with pytest.raises(InputError, match=r"not monotone on contig 20: 1.5 cM at 3000 bp after "
                                         r"2.0 cM"):
        read_genetic_map(bad, "20")
    unsorted = tmp_path / "u.map"
    unsorted.write_text("20 a 0.0 3000\n20 b 2.0 2000\n")
    with pytest.raises(InputError, match=r"positions are not increasing"):
        read_genetic_map(unsorted, "20")
    with pytest.raises(InputError, match=r"genetic map not found"):
        read_genetic_map(tmp_path / "none.map", "20")
    garbage = tmp_path / "g.map"
    garbage.write_bytes(b"\x1f\x8bnot gzip at all")
    with pytest.raises(InputError, match=r"cannot read the genetic map"):
        read_genetic_map(garbage, "20")
    wide = tmp_path / "w.map"
    wide.write_text("20 a 0.0 1000 9\n20 b 1.0 2000 9\n")
    with pytest.raises(InputError, match=r"expected a PLINK map"):
        read_genetic_map(wide, "20")
    one = tmp_path / "o.map"
    one.write_text("20 a 0.0 1000\n")
    with pytest.raises(InputError, match=r"at least 2 are needed"):
        read_genetic_map(one, "20")


def test_reference_store_and_model_positions_follow_the_map(tiny_sim, tmp_path):
    """parse_reference stores each variant's cM; the model's coordinate becomes cM x 1e6."""
    import h5py

    from vcfbert.ingest import parse_reference, parse_targets
    from vcfbert.io.h5store import read_targets, read_variant_table
    from vcfbert.windowdata import Chromosome
    from vcfbert.windows import define_windows, write_windows

    paths, _, _ = tiny_sim
    gmap = tmp_path / "m.map"
    gmap.write_text("20 a 0.0 1\n20 b 0.1 150000\n20 c 2.1 300001\n")  # a hotspot at the end
    parse_reference(paths.reference_vcf, "20", tmp_path / "r.h5", genetic_map=str(gmap))
    parse_targets(paths.target_vcf, tmp_path / "r.h5", "20", tmp_path / "t.h5",
                  tmp_path / "qs.tsv", tmp_path / "qn.tsv")
    pos = read_variant_table(tmp_path / "r.h5")["position"]
    with h5py.File(tmp_path / "r.h5") as h5:
        cm = h5["variant_cm"][()]
        assert h5.attrs["genetic_map"] == "m.map"
    np.testing.assert_allclose(cm, np.interp(pos, [1, 150000, 300001], [0.0, 0.1, 2.1]))
    windows = define_windows(pos, read_targets(tmp_path / "t.h5").variant_ref_index,
                             core_sites=16, flank_sites=32)
    write_windows(windows, tmp_path / "w.tsv")
    chrom = Chromosome.load("20", str(tmp_path / "r.h5"), str(tmp_path / "t.h5"),
                            str(tmp_path / "w.tsv"))
    np.testing.assert_allclose(chrom.position, cm * 1e6)
    parse_reference(paths.reference_vcf, "20", tmp_path / "plain.h5")
    plain = Chromosome.load("20", str(tmp_path / "plain.h5"), str(tmp_path / "t.h5"),
                            str(tmp_path / "w.tsv"))
    np.testing.assert_array_equal(plain.position, pos)
