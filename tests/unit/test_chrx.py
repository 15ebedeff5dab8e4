"""chrX with haploid males: read, stored with their allele twice, flagged, checked."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from data.vcfs import write_vcf

from vcfbert.errors import InputError
from vcfbert.evaluate import true_dose
from vcfbert.ingest import parse_reference, parse_targets
from vcfbert.io.h5store import open_store, read_targets, read_variant_table
from vcfbert.io.vcf import iter_variants

# 3 reference samples: f (female), m1, m2 (males); variants at 100 and 200 are in PAR1
# (males diploid), 300-600 outside it (males haploid)
REF = [(100, "A", "G", ["0|1", "1|0", "0|0"]), (200, "C", "T", ["1|1", "0|1", "1|0"]),
       (300, "G", "A", ["0|1", "1", "0"]), (400, "T", "C", ["1|0", "0", "1"]),
       (500, "A", "C", ["1|1", "1", "1"]), (600, "C", "G", ["0|0", "0", "1"])]


def _reference(tmp_path, records=REF):
    return write_vcf(tmp_path / "ref.vcf", ["f", "m1", "m2"], records, contig="X")


def test_haploid_calls_are_read_twice_and_flagged(tmp_path):
    vs = list(iter_variants(_reference(tmp_path), "X", role="reference", haploid="duplicate"))
    assert vs[2].haplotypes.tolist() == [0, 1, 1, 1, 0, 0]
    assert vs[2].haploid.tolist() == [False, True, True]
    assert not vs[0].haploid.any()
    assert true_dose(vs[2]).tolist() == [1, 1, 0]  # a male's call counts once
    with pytest.raises(InputError, match="not diploid"):  # the default still refuses them
        list(iter_variants(_reference(tmp_path), "X", role="reference"))


def test_reference_store_keeps_the_region_and_the_males(tmp_path):
    parse_reference(_reference(tmp_path), "X", tmp_path / "r.h5")
    table = read_variant_table(tmp_path / "r.h5")
    assert table["haploid"].tolist() == [False, False, True, True, True, True]
    with open_store(tmp_path / "r.h5") as h5:
        assert h5["sample_haploid"][()].tolist() == [False, True, True]
    # AF outside PAR counts each male once: (1 + 1 + 0) / 4 at 300, (2 + 1 + 1) / 4 at 500
    assert table["af"][2] == pytest.approx(0.5) and table["af"][4] == pytest.approx(1.0)
    assert table["af"][0] == pytest.approx(2 / 6)  # PAR: diploid


def test_a_reference_read_in_several_parser_blocks_gives_the_same_store(tmp_path, monkeypatch,
                                                                         caplog):
    """The text parser hands the variants over a block at a time; the log's count of haploid
    variants once added the blocks' region flags elementwise, which crashed on any chrX panel
    read in blocks of unequal length (a simulated chrX of 44,000 variants)."""
    ref = _reference(tmp_path)
    parse_reference(ref, "X", tmp_path / "one.h5")
    import vcfbert.io.vcf_text as vcf_text

    real, sizes = vcf_text.iter_text_blocks, []

    def small_blocks(*args, **kwargs):
        for block in real(*args, **{**kwargs, "block_bytes": 40}):
            sizes.append(len(block.pos))
            yield block

    monkeypatch.setattr(vcf_text, "iter_text_blocks", small_blocks)
    with caplog.at_level(logging.INFO, logger="vcfbert"):
        parse_reference(ref, "X", tmp_path / "many.h5")
    assert len(sizes) > 2 and len(set(sizes)) > 1  # blocks of unequal length
    assert "2 haploid (male) samples over 4 variants outside" in caplog.text
    with open_store(tmp_path / "one.h5") as one, open_store(tmp_path / "many.h5") as many:
        names: list[str] = []
        one.visititems(lambda name, obj: names.append(name) if hasattr(obj, "shape") else None)
        assert names
        for name in names:
            assert np.array_equal(one[name][()], many[name][()]), name


def test_a_sample_haploid_and_diploid_outside_par_is_refused(tmp_path):
    bad = [*REF[:3], (400, "T", "C", ["1|0", "0|1", "1"]), *REF[4:]]
    with pytest.raises(InputError, match=r"sample m1 is haploid at position 300 but diploid at "
                                         r"400.*\+fixploidy"):
        parse_reference(_reference(tmp_path, bad), "X", tmp_path / "r.h5")


def test_target_males_from_calls_or_the_sex_column(tmp_path):
    parse_reference(_reference(tmp_path), "X", tmp_path / "r.h5")
    tgt = write_vcf(tmp_path / "t.vcf", ["a", "b", "c"],
                    [(200, "C", "T", ["0|1", "0|0", "1|1"]), (400, "T", "C", ["0", "0|1", "1|1"]),
                     (600, "C", "G", ["1", "1|0", "0|0"])], contig="chrX")
    panel = tmp_path / "panel.tsv"
    panel.write_text("sample population sex\na P 1\nb P 2\nc P male\n")
    parse_targets(tgt, tmp_path / "r.h5", "X", tmp_path / "t.h5", tmp_path / "qs.tsv",
                  tmp_path / "qn.tsv", panel=str(panel))
    targets = read_targets(tmp_path / "t.h5")
    # a: haploid calls; c: declared male (homozygous diploid calls, as +fixploidy codes them)
    assert targets.sample_haploid.tolist() == [True, False, True]
    assert np.array_equal(targets.haplotypes[0:2, 1], [0, 0])  # a's call at 400, twice
    panel.write_text("sample population sex\na P female\n")
    with pytest.raises(InputError, match="sample a is haploid at position 400 but female"):
        parse_targets(tgt, tmp_path / "r.h5", "X", tmp_path / "t2.h5", tmp_path / "qs.tsv",
                      tmp_path / "qn.tsv", panel=str(panel))


def test_target_haploid_where_the_reference_is_diploid_is_refused(tmp_path):
    parse_reference(_reference(tmp_path), "X", tmp_path / "r.h5")
    tgt = write_vcf(tmp_path / "t.vcf", ["a"], [(100, "A", "G", ["1"]), (400, "T", "C", ["0"])],
                    contig="X")
    with pytest.raises(InputError, match="sample a is haploid at position 100, where the "
                                         "reference panel is diploid"):
        parse_targets(tgt, tmp_path / "r.h5", "X", tmp_path / "t.h5", tmp_path / "qs.tsv",
                      tmp_path / "qn.tsv")


def test_second_copies_of_males_are_not_candidates_in_haploid_windows(tmp_path):
    from types import SimpleNamespace

    from vcfbert.windowdata import Chromosome

    parse_reference(_reference(tmp_path), "X", tmp_path / "r.h5")
    table = read_variant_table(tmp_path / "r.h5")
    with open_store(tmp_path / "r.h5") as h5:
        male = h5["sample_haploid"][()]
    chrom = Chromosome("X", "", "", None, table["position"], table["af"], np.arange(6), 6,
                       ["f", "m1", "m2"], male=male, haploid_variant=table["haploid"])
    assert chrom.second_copies(SimpleNamespace(core_start=2, core_end=6)).tolist() == [3, 5]
    assert chrom.second_copies(SimpleNamespace(core_start=0, core_end=3)).size == 0  # PAR


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ploidy_of_a_block_is_that_of_its_variants_one_by_one(seed):
    """PloidyTracker.add_block (the reference parser's path) against add per variant, on
    random haploid calls and missing calls over blocks of several sizes: the same region
    and the same first positions, hence the same males and the same errors."""
    from vcfbert.ploidy import PloidyTracker

    rng = np.random.default_rng(seed)
    n_samples, n_variants = 6, 40
    positions = np.sort(rng.integers(1, 500, n_variants))
    haploid = rng.random((n_variants, n_samples)) < 0.15
    haploid[rng.random(n_variants) < 0.5] = False  # diploid stretches
    called = rng.random((n_variants, n_samples)) < 0.9
    samples = [f"s{i}" for i in range(n_samples)]
    for with_called in (False, True):
        one, blocks = PloidyTracker(samples, "x"), PloidyTracker(samples, "x")
        region_one = [one.add(int(p), h, c if with_called else np.ones(n_samples, bool))
                      for p, h, c in zip(positions, haploid, called, strict=True)]
        region_blocks = []
        for lo, hi in ((0, 1), (1, 9), (9, 9), (9, 40)):
            region_blocks.append(blocks.add_block(positions[lo:hi], haploid[lo:hi],
                                                  called[lo:hi] if with_called else None))
        assert np.concatenate(region_blocks).tolist() == region_one
        for name in ("first_haploid", "first_diploid", "first_outside"):
            np.testing.assert_array_equal(getattr(blocks, name), getattr(one, name))
    diploid = PloidyTracker(samples, "x")
    assert not diploid.add_block(positions, None).any()
    assert (diploid.first_haploid < 0).all() and (diploid.first_outside < 0).all()
