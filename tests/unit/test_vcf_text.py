"""The compiled text-VCF parser (vcfbert.io.vcf_text) against cyvcf2 (htslib): every
genotype form, FORMAT/DS, the readers built on it, and its errors."""

from __future__ import annotations

import cyvcf2
import numpy as np
import pytest
from data.vcfs import random_panel, write_vcf

from vcfbert.errors import InputError
from vcfbert.evaluate_stream import _htslib_file_blocks, _site_index, _text_file_blocks
from vcfbert.io.vcf import iter_variants, sample_ids
from vcfbert.io.vcf_text import info_float, is_text_vcf, iter_text_blocks, iter_text_records

HEAD = ["##fileformat=VCFv4.2", "##contig=<ID=20>",
        '##INFO=<ID=DR2,Number=A,Type=Float,Description="d">',
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="g">',
        '##FORMAT=<ID=DS,Number=A,Type=Float,Description="d">',
        '##FORMAT=<ID=GP,Number=G,Type=Float,Description="p">']
SAMPLES = list("abcdefgh")
# every genotype form: phased, unphased, haploid, missing (whole or per allele), absent GT,
# multi-digit alleles, DS before GT, DS absent or '.', exponents, trailing fields dropped
LINES = [
    "20\t10\trs1\tA\tC\t.\tPASS\tDR2=0.5\tGT:DS:GP\t0|1:0.5:0.2,0.5,0.3\t0/1:1:0,1,0\t"
    "1:1e-3:.\t.:.:.\t./.\t.|1:0.25\t1/.\t0",
    "20\t11\t.\tA\tC,G\t.\tPASS\tDR2=0.1,0.2\tGT:DS\t0|2:0.5,1\t1\t2|1\t.\t0|0\t1|1\t0/0\t1|.",
    "20\t12\t.\tA\tC\t.\t.\t.\tGT\t0\t1\t.\t0\t1\t0\t1\t0",
    "20\t13\t.\tA\tC\t.\t.\tR2=0.9;IMP\tDS:GT\t0.1:0|1\t0.2\t.\t0.3:1|1\t0:0|0\t-0:0|0\t"
    "1.25E+0:0|0\t1.5:1/1",
    "20\t14\t.\tG\tT\t.\t.\t.\tGT:DS\t10|2:0.123\t0|0:1.999\t1|1:2\t0|1:0.0004\t1|0:.5\t"
    "0|1:0.33333\t1|1:1.0\t0|0:0",
    # an imputed VCF's records (read at fixed offsets: _gt_ds_samples), GP absent or '.', and
    # one sample without DS (the general loop then reads the whole line)
    "20\t15\t.\tA\tG\t.\tPASS\tAF=0.1;DR2=0.9\tGT:DS:GP\t0|1:0.5:0.25,0.5,0.25\t0/1:.:.\t"
    "1|1:2:0,0,1\t0|0:1e-3:1,0,0\t1|0:-0\t0|0:0.001:0.999,0.001,0\t1/1:1.999:0,0.001,0.999\t"
    "0|0:0:1,0,0",
    "20\t16\t.\tA\tG\t.\tPASS\tDR2=0.9\tGT:DS\t0|1:0.5\t0|1:1\t1|1:2\t0|0:0\t1|0:1\t0|0:0\t"
    "1|1:2\t0|1",
]


def _vcf(tmp_path, lines=LINES, name="t.vcf", samples=SAMPLES):
    p = tmp_path / name
    text = "\n".join([*HEAD, "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER",
                                         "INFO", "FORMAT", *samples]), *lines]) + "\n"
    if name.endswith(".gz"):
        from pysam.libcbgzf import BGZFile

        with BGZFile(str(p), "wb") as fh:
            fh.write(text.encode())
    else:
        p.write_text(text)
    return p


def _cyvcf2_gt(rec) -> np.ndarray:
    """cyvcf2's genotype array, a record of haploid calls only widened to [S, 3] (as
    iter_variants does; its phase column is never read there)."""
    a = rec.genotype.array()
    if a.shape[1] == 2:
        a = np.stack([a[:, 0], np.full(len(a), -2, a.dtype), np.ones(len(a), a.dtype)], 1)
    return a


@pytest.mark.parametrize("name", ["t.vcf", "t.vcf.gz"])
def test_every_genotype_form_as_htslib_reads_it(tmp_path, name):
    path = _vcf(tmp_path, name=name)
    assert is_text_vcf(path)
    fast = list(iter_text_records(path, SAMPLES, want_ds=True))
    slow = list(cyvcf2.VCF(str(path), gts012=False, strict_gt=False, lazy=True))
    assert len(fast) == len(slow) == len(LINES)
    for f, s in zip(fast, slow, strict=True):
        assert (f.CHROM, f.POS, f.ID, f.REF, f.ALT) == (s.CHROM, s.POS, s.ID, s.REF, s.ALT)
        np.testing.assert_array_equal(f.gt, _cyvcf2_gt(s))
        ds = s.format("DS")
        want = ds[:, 0].astype(np.float32) if ds is not None else np.full(8, np.nan, np.float32)
        np.testing.assert_array_equal(f.ds, want)
    assert info_float(fast[0].INFO, "DR2", "R2") == 0.5
    assert info_float(fast[3].INFO, "DR2", "R2") == pytest.approx(0.9)
    assert np.isnan(info_float(fast[2].INFO, "DR2", "R2"))


def test_sample_subset_contig_filter_and_windows_line_ends(tmp_path):
    lines = LINES
    other = "21" + LINES[0][2:]
    path = _vcf(tmp_path, [lines[0], lines[1], other, lines[4]], name="w.vcf")
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    recs = list(iter_text_records(path, SAMPLES, samples=["h", "a"], contig="20",
                                  want_ds=True))
    assert [r.POS for r in recs] == [10, 11, 14]
    assert recs[0].gt.tolist() == [[0, -2, 1], [0, 1, 1]]
    assert recs[2].gt.tolist() == [[0, 0, 1], [10, 2, 1]]
    np.testing.assert_array_equal(recs[2].ds, np.array([0.0, 0.123], np.float32))


def test_bgzip_blocks_split_lines_anywhere(tmp_path):
    """A block boundary inside a record must not change what is read."""
    samples, recs = random_panel(50, 300, seed=3)
    path = write_vcf(tmp_path / "p.vcf.gz", samples, recs)
    whole = [r.gt.copy() for r in iter_text_records(path, samples)]
    small = [r.gt.copy() for r in iter_text_records(path, samples, block_bytes=777)]
    assert len(whole) == len(small) == 300
    for a, b in zip(whole, small, strict=True):
        np.testing.assert_array_equal(a, b)


def test_blocks_parsed_on_threads_are_the_blocks_parsed_in_turn(tmp_path):
    """Reading ahead, blocks are parsed several at a time and come back in file order: the
    same blocks as one at a time on the caller's thread, and an error in a later block names
    the record before it (the previous block's last) either way."""
    from vcfbert.io.vcf_text import iter_text_blocks

    samples, recs = random_panel(30, 400, seed=7)
    path = write_vcf(tmp_path / "p.vcf.gz", samples, recs)

    def read(**kw):
        return [(b.chrom, b.pos.tolist(), b.ref, b.alt, b.gt.copy(), b.ds)
                for b in iter_text_blocks(path, samples, want_ds=True, block_bytes=2000, **kw)]

    serial = read(ahead=False)
    assert len(serial) > 20  # many blocks
    for threads in (1, 2, 3):
        threaded = read(parse_threads=threads)
        assert len(threaded) == len(serial)
        for a, b in zip(serial, threaded, strict=True):
            assert a[:4] == b[:4]
            np.testing.assert_array_equal(a[4], b[4])
            np.testing.assert_array_equal(a[5], b[5])
    lines = [f"20\t{100 + i}\t.\tA\tC\t.\t.\t.\tGT" + "\t0|1" * 8 for i in range(300)]
    lines[250] = "20\t350\t.\tA\tC\t.\t.\t.\tGT" + "\t0|1" * 7  # a column short
    bad = _vcf(tmp_path, lines, "b.vcf")
    for kw in ({"ahead": False}, {"parse_threads": 3}):
        with pytest.raises(InputError, match=r"b.vcf: cannot parse the file after record "
                                             r"20:349: a record with fewer sample columns"):
            list(iter_text_blocks(bad, SAMPLES, block_bytes=500, **kw))


@pytest.mark.parametrize("role", ["reference", "target"])
def test_iter_variants_same_from_both_readers(tmp_path, role):
    samples, recs = random_panel(40, 200, seed=1)
    recs[5] = (recs[5][0], "A", "C,G", ["0|2"] * 39 + ["1|2"])  # split
    recs[7] = (recs[7][0], "A", "<DEL>", ["0|1"] * 40)  # dropped, counted
    if role == "target":
        recs[9] = (recs[9][0], "A", "C", ["./."] * 3 + ["0/1"] * 37)
    path = write_vcf(tmp_path / "r.vcf.gz", samples, recs)
    keep = samples[::3][::-1]
    a = list(iter_variants(path, "20", role=role, reader="text", samples=keep))
    b = list(iter_variants(path, "20", role=role, reader="htslib", samples=keep))
    assert len(a) == len(b) == 200
    for x, y in zip(a, b, strict=True):
        assert (x.position, x.ref, x.alt, x.vid) == (y.position, y.ref, y.alt, y.vid)
        np.testing.assert_array_equal(x.haplotypes, y.haplotypes)
        np.testing.assert_array_equal(x.phased, y.phased)


def test_haploid_males_same_from_both_readers(tmp_path):
    gts = [["0|1", "1", "0"], ["1|1", "0", "."], ["0/1", "1", "1"]]
    path = write_vcf(tmp_path / "x.vcf", ["f", "m1", "m2"],
                     [(100 * (i + 1), "A", "G", g) for i, g in enumerate(gts)], contig="X")
    for haploid in ("duplicate", "error"):
        got = {}
        for reader in ("text", "htslib"):
            try:
                got[reader] = [(v.haplotypes.tolist(), v.phased.tolist(), v.haploid.tolist())
                               for v in iter_variants(path, "X", role="target",
                                                      haploid=haploid, reader=reader)]
            except InputError as exc:
                got[reader] = str(exc)
        assert got["text"] == got["htslib"]
    assert isinstance(got["text"], str) and "not diploid" in got["text"]


def test_errors_name_the_record(tmp_path):
    bad_cols = _vcf(tmp_path, [LINES[4], "20\t15\t.\tA\tC\t.\t.\t.\tGT\t0|1\t0|1"], "c.vcf")
    with pytest.raises(InputError, match=r"c.vcf: cannot parse the file after record 20:14: "
                                         r"a record with fewer sample columns"):
        list(iter_text_records(bad_cols, SAMPLES))
    # a tab ending a line, or a column beyond the header's samples, is ignored, as htslib does
    extra = _vcf(tmp_path, [LINES[4] + "\t", LINES[4].replace("\t14\t", "\t15\t") + "\t0|1"],
                 "x.vcf")
    a = [(r.POS, r.gt.tolist()) for r in iter_text_records(extra, SAMPLES)]
    b = [(r.POS, _cyvcf2_gt(r).tolist()) for r in cyvcf2.VCF(str(extra), gts012=False)]
    assert a == b and len(a) == 2
    extra = _vcf(tmp_path, [LINES[6] + "\t", LINES[6].replace("\t15\t", "\t16\t") + "\t0|1:1"],
                 "y.vcf")  # the same on lines of the GT:DS form
    a = [(r.POS, r.gt.tolist()) for r in iter_text_records(extra, SAMPLES)]
    b = [(r.POS, _cyvcf2_gt(r).tolist()) for r in cyvcf2.VCF(str(extra), gts012=False)]
    assert a == b and len(a) == 2
    short = _vcf(tmp_path, [LINES[6].rsplit("\t", 1)[0]], "s.vcf")
    with pytest.raises(InputError, match=r"a record with fewer sample columns"):
        list(iter_text_records(short, SAMPLES))
    triploid = _vcf(tmp_path, ["20\t15\t.\tA\tC\t.\t.\t.\tGT" + "\t0/1/1" * 8], "p.vcf")
    with pytest.raises(InputError, match=r"record 20:15: a genotype is not diploid"):
        list(iter_text_records(triploid, SAMPLES))
    no_gt = _vcf(tmp_path, ["20\t15\t.\tA\tC\t.\t.\t.\tDS" + "\t0.5" * 8], "d.vcf")
    with pytest.raises(InputError, match=r"record 20:15 has no genotypes \(FORMAT DS; GT is"):
        list(iter_text_records(no_gt, SAMPLES))
    rec = next(iter_text_records(no_gt, SAMPLES, require_gt=False, want_ds=True))
    assert rec.ds.tolist() == [0.5] * 8
    bad_pos = _vcf(tmp_path, ["20\tx15\t.\tA\tC\t.\t.\t.\tGT" + "\t0|1" * 8], "q.vcf")
    with pytest.raises(InputError, match=r"position 'x15', not a number"):
        list(iter_text_records(bad_pos, SAMPLES))


def test_evaluator_blocks_same_from_both_readers(tmp_path):
    """The evaluator's imputed-VCF blocks (dose, best guess, DR2, swapped alleles, skipped
    multi-allelic records) agree between the text parser and cyvcf2."""
    path = _vcf(tmp_path, name="e.vcf.gz")
    sites = {("20", 10, "A", "C"): 0, ("20", 11, "A", "C"): 1, ("20", 12, "A", "C"): 2,
             ("20", 13, "C", "A"): 3, ("20", 14, "G", "T"): 4}
    import pandas as pd

    index = _site_index(pd.DataFrame([(c, p, r, a) for (c, p, r, a) in sites],
                                     columns=["contig", "position", "ref", "alt"]))
    assert sample_ids(path) == SAMPLES

    def collect(blocks):
        out = [np.concatenate(x) for x in zip(*blocks, strict=True)]
        return out

    a = collect(_text_file_blocks(str(path), index, np.zeros(5, bool)))
    b = collect(_htslib_file_blocks(str(path), index, 2, np.zeros(5, bool)))
    assert a[0].tolist() == b[0].tolist() == [0, 2, 3, 4]  # 11 is multi-allelic: skipped
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(x, y)


def test_blocks_hold_what_records_hold(tmp_path):
    path = _vcf(tmp_path, name="b.vcf")
    blocks = list(iter_text_blocks(path, SAMPLES, want_ds=True))
    recs = list(iter_text_records(path, SAMPLES, want_ds=True))
    assert sum(len(b) for b in blocks) == len(recs)
    assert blocks[0].pos.tolist() == [r.POS for r in recs]


def test_truth_doses_same_from_both_readers(tmp_path):
    """The evaluator's truth counts through the text parser equal iter_variants (cyvcf2) +
    true_dose: multi-allelic splits, symbolic and duplicate records, haploid males, missing
    calls, a sample subset in another order."""
    from vcfbert.evaluate import true_dose
    from vcfbert.evaluate_stream import truth_doses

    gts = [(100, "A", "G", ["0|1", "1", "0", "./."]), (100, "A", "G", ["1|1", "0", "1", "0|0"]),
           (200, "C", "T,G", ["0|2", "2", ".", "1/2"]), (300, "G", "<DEL>", ["0|1"] * 4),
           (400, "T", "A", [".|1", "1", "0", "1|."]), (500, "a", "c", ["0/1", "0", "1", "1|1"])]
    path = write_vcf(tmp_path / "t.vcf.gz", ["f1", "m1", "m2", "f2"], gts, contig="X")
    cols = np.array([3, 0, 1])
    fast = list(truth_doses(str(path), "X", cols))
    slow = [(v.position, v.ref, v.alt, true_dose(v)[cols])
            for v in iter_variants(path, "X", role="target", haploid="duplicate",
                                   reader="htslib")]
    assert [f[:3] for f in fast] == [s[:3] for s in slow] == [
        (100, "A", "G"), (200, "C", "T"), (200, "C", "G"), (400, "T", "A"), (500, "A", "C")]
    for f, s in zip(fast, slow, strict=True):
        np.testing.assert_array_equal(f[3], s[3])
    assert fast[2][3].tolist() == [1.0, 1.0, 1.0]  # ALT G: f2 1/2, f1 0|2, m1 haploid 2


def test_prepared_calls_equal_the_per_record_formulas():
    """iter_variants' block of genotypes prepared in one compiled pass (vcf_calls.Calls.of) equals
    the per-record numpy it replaced: haploid calls (duplicated or not), missing alleles,
    phase, the alleles per haplotype and the first ALT's haplotypes; and another ALT's."""
    from vcfbert.io.vcf_calls import Calls

    rng = np.random.default_rng(5)
    gt = rng.integers(-1, 3, (40, 9, 3)).astype(np.int16)
    gt[..., 2] = rng.integers(0, 2, (40, 9))
    gt[rng.random((40, 9)) < 0.2, 1] = -2  # haploid calls
    for mode in ("duplicate", "error"):
        calls = Calls.of(gt, mode)
        for r in range(gt.shape[0]):
            g = gt[r].copy()
            one = g[:, 1] == -2
            if mode == "duplicate":
                g[one, 1] = g[one, 0]
                g[one, 2] = 1
            a = g[:, :2]
            flat = a.reshape(-1)
            np.testing.assert_array_equal(calls.haploid[r], one)
            np.testing.assert_array_equal(calls.missing[r], (a < 0).any(1))
            np.testing.assert_array_equal(calls.phased[r],
                                          g[:, 2].astype(bool) | (a[:, 0] == a[:, 1]))
            assert calls.phased_all[r] == calls.phased[r].all()
            assert calls.missing_any[r] == calls.missing[r].any()
            for allele in (1, 2):
                np.testing.assert_array_equal(
                    calls.haplotypes(r, allele),
                    np.where(flat < 0, -1, flat == allele).astype(np.int8))


def test_variant_blocks_give_the_variants_up_to_a_bad_record_as_cyvcf2(tmp_path):
    """iter_variant_blocks (a parser block of variants at once; the reference parser's
    path) yields, from either reader, the same variants before a missing reference genotype
    in the middle of a block, then the same error naming that record."""
    from vcfbert.io.vcf import ReadStats, iter_variant_blocks

    samples, recs = random_panel(12, 300, seed=4)
    recs[10] = (recs[10][0], "A", "C,G", ["0|2"] * 11 + ["1|2"])  # split: allele 2 in a block
    recs[211] = (recs[211][0], "A", "C", [".|0"] + ["0|1"] * 11)
    path = write_vcf(tmp_path / "m.vcf.gz", samples, recs)
    got = {}
    for reader in ("text", "htslib"):
        stats, rows = ReadStats(), []
        with pytest.raises(InputError) as err:
            for block in iter_variant_blocks(path, "20", role="reference", reader=reader,
                                             stats=stats, haploid="duplicate"):
                assert block.haplotypes.shape == (len(block), 24)
                rows += [(int(p), r, a, i, h.tolist(), f.tolist())
                         for p, r, a, i, h, f in zip(block.position, block.ref, block.alt,
                                                     block.vid, block.haplotypes,
                                                     block.haploid, strict=True)]
        got[reader] = rows, stats.as_dict(), str(err.value)
    assert got["text"] == got["htslib"]
    rows, stats, message = got["text"]
    assert len(rows) == 212 and stats["records"] == 212 and stats["split_multiallelic"] == 1
    assert f"record 20:{recs[211][0]}, sample {samples[0]}: missing genotype" in message
    assert [r[4] for r in rows[10:12]] == [[0, 0] * 11 + [1, 0], [0, 1] * 11 + [0, 1]]


def test_imputed_records_are_read_at_fixed_offsets():
    """_gt_ds_samples takes a line of the GT:DS[:...] form whole, and refuses (so that the
    general loop reads it) a sample without DS, a multi-digit or missing allele, a haploid
    call and a column beyond the samples."""
    from vcfbert.io.vcf_text import _gt_ds_samples

    def take(samples_text: str, n: int = 3):
        buf = np.frombuffer(("\t" + samples_text).encode(), np.uint8)
        gt = np.zeros((n, 3), np.int16)
        ds = np.full(n, np.nan, np.float32)
        ok = _gt_ds_samples(buf, 0, buf.size, np.arange(n), True, gt, ds)
        return ok, gt.tolist(), ds.tolist()

    ok, gt, ds = take("0|1:0.25:0.1,0.8,0.1\t1/1:2\t0|0:.:.")
    assert ok and gt == [[0, 1, 1], [1, 1, 0], [0, 0, 1]]
    assert ds[:2] == [0.25, 2.0] and np.isnan(ds[2])
    for bad in ("0|1:0.25\t1/1:2\t0|0", "0|1:1\t10|1:1\t0|0:0", "0|1:1\t.|1:1\t0|0:0",
                "0|1:1\t1:1\t0|0:0", "0|1:1\t1|1:1\t0|0:0\t0|0:0", "0|1:1\t1|1:1"):
        assert not take(bad)[0], bad
