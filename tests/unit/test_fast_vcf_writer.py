"""The vectorised imputed-VCF formatter against the per-string reference, and the threaded
BGZF writer against gzip and htslib."""

from __future__ import annotations

import gzip

import numpy as np
import pysam
import pytest

from vcfbert.imputed_vcf import (
    ChromosomeDosages,
    format_records,
    records_reference,
    write_imputed_vcf,
)
from vcfbert.io.bgzf import BLOCK_INPUT, BgzfWriter


def random_chrom(rng: np.random.Generator, n_var: int, n_samples: int) -> ChromosomeDosages:
    hp = rng.random((2 * n_samples, n_var)).astype(np.float32)
    # values on and next to the rounding and calling edges
    edges = np.array([0.0, 1.0, 0.5, 0.0005, 0.0015, 0.9995, 0.4999, 0.5001, 1e-7, 1 - 1e-7],
                     np.float32)
    hp.flat[: edges.size] = edges  # along the first haplotype's variants
    hp[rng.random(hp.shape) < 0.2] = 0.0
    return ChromosomeDosages(
        contig="20", position=np.arange(1, n_var + 1) * 100,
        alleles=np.array([["A", "G"]] * n_var, dtype=object),
        ids=np.array([f"rs{i}" if i % 2 else "." for i in range(n_var)], dtype=object),
        hap_prob=hp, typed=rng.random(n_var) < 0.3)


@pytest.mark.parametrize("n_samples", [1, 7])
def test_format_records_matches_reference(n_samples):
    chrom = random_chrom(np.random.default_rng(n_samples), n_var=40, n_samples=n_samples)
    fast = bytes(format_records(chrom, 3, 37)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 3, 37))
    assert fast == slow


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_records_written_in_order_with_their_lengths(threads):
    """write_records hands the blocks over in order whatever the number of blocks formatted
    at once, and each record's length is where the next one starts."""
    from vcfbert.imputed_vcf import write_records

    chrom = random_chrom(np.random.default_rng(5), n_var=53, n_samples=4)
    parts, blocks = [], []
    lengths = np.zeros(53, np.int64)
    n = write_records(parts.append, chrom, cells_per_block=4 * 5, lengths=lengths,
                      on_block=blocks.append, threads=threads)
    text = b"".join(bytes(p) for p in parts).decode("ascii")
    assert n == 53 and blocks == [5] * 10 + [3]
    assert text == "".join(line + "\n" for line in records_reference(chrom, 0, 53))
    lines = text.splitlines(keepends=True)
    np.testing.assert_array_equal(lengths, [len(line) for line in lines])


def test_near_certain_hom_ref_cells_match_reference():
    """The formatter's shortcut for cells that print as ``0|0:0:1,0,0`` agrees with the
    per-string formatter for every pair of small probabilities around its bound and the
    rounding edge (DS and GP rounding to 0 and 1 at 0.0005)."""
    import dataclasses

    small = np.array([0.0, 1e-7, 1e-4, 2.4e-4, 2.45e-4, 2.449e-4, 2.5e-4, 2.51e-4, 3e-4,
                      4.8e-4, 4.899e-4, 4.9e-4, 4.901e-4, 4.999e-4, 5e-4, 5.001e-4, 6e-4,
                      1e-3], np.float32)
    pairs = np.array([(a, b) for a in small for b in small], np.float32)  # [n * n, 2]
    chrom = random_chrom(np.random.default_rng(5), n_var=3, n_samples=len(pairs))
    hp = np.repeat(pairs.reshape(-1)[:, None], 3, axis=1)  # [2T, 3]: the pairs at every site
    chrom = dataclasses.replace(chrom, hap_prob=hp)
    fast = bytes(format_records(chrom, 0, 3)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, 3))
    assert fast == slow
    assert "0|0:0:1,0,0" in fast and "0|0:0.001:0.999,0.001,0" in fast


@pytest.mark.parametrize("extra", [(), ("HDS", "AP1", "AP2")])
def test_without_gp_matches_reference_and_read_back(tmp_path, extra):
    """output.gp: false writes GT:DS (and the extra fields): the fast formatter agrees with the
    per-string one, also for haploid males and the near-certain 0|0 shortcut, and htslib
    reads the file with no GP in its header or its cells."""
    import dataclasses

    import cyvcf2

    chrom = random_chrom(np.random.default_rng(9), n_var=30, n_samples=4)
    male = np.array([False, True, False, False])
    chrom = dataclasses.replace(chrom, contig="X", haploid_samples=male,
                                haploid_variants=np.arange(30) >= 5)
    chrom.hap_prob[3] = chrom.hap_prob[2]
    chrom.hap_prob[:, 20] = 1e-5  # every cell of a rare variant near-certain 0|0
    fast = bytes(format_records(chrom, 0, 30, extra, gp=False)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, 30, extra, gp=False))
    assert fast == slow
    lines = fast.splitlines()
    assert lines[20].split("\t")[8] == ":".join(["GT", "DS", *extra])
    if not extra:
        assert lines[20].split("\t")[9:] == ["0|0:0", "0:0", "0|0:0", "0|0:0"]
    assert ",".join(fast.split("\t")).count(":1,0,0") == 0  # no GP anywhere
    out = tmp_path / "x.vcf.gz"
    write_imputed_vcf(out, [chrom], ["f1", "m1", "f2", "f3"], format_fields=list(extra),
                      gp=False)
    vcf = cyvcf2.VCF(str(out))
    assert "ID=GP," not in vcf.raw_header and "ID=DS," in vcf.raw_header
    rec = list(vcf)[10]
    assert rec.FORMAT == ["GT", "DS", *extra]
    p = np.clip(chrom.hap_prob[:, 10].astype(np.float64), 0, 1)
    np.testing.assert_allclose(rec.format("DS")[:, 0], [p[0] + p[1], p[2], p[4] + p[5],
                                                        p[6] + p[7]], atol=6e-4)


def test_er2_on_typed_records_matches_reference_and_read_back(tmp_path):
    """INFO/ER2 (3 decimals) on TYPED records where it is defined; omitted where it is NaN
    and on every IMP record, whatever the array holds there."""
    import dataclasses

    import cyvcf2

    rng = np.random.default_rng(11)
    chrom = random_chrom(rng, n_var=40, n_samples=4)
    er2 = rng.random(40).astype(np.float32)
    er2[[0, 1]] = [0.0005, 0.9995]  # rounding edges
    typed = chrom.typed.copy()
    typed[[0, 1, 2, 3]] = True
    er2[3] = np.nan  # typed, undefined
    chrom = dataclasses.replace(chrom, typed=typed, er2=er2)
    fast = bytes(format_records(chrom, 0, 40)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, 40))
    assert fast == slow
    lines = slow.splitlines()
    assert ";ER2=0.000;TYPED" in lines[0] or ";ER2=0.001;TYPED" in lines[0]
    assert "ER2" not in lines[3] and lines[3].split("\t")[7].endswith(";TYPED")
    out = tmp_path / "x.vcf.gz"
    write_imputed_vcf(out, [chrom], ["a", "b", "c", "d"])
    got = [rec.INFO.get("ER2") for rec in cyvcf2.VCF(str(out))]
    for v in range(40):
        if typed[v] and np.isfinite(er2[v]):
            assert got[v] == pytest.approx(float(f"{er2[v]:.3f}"), abs=1e-6)
        else:
            assert got[v] is None


def test_dr2_override_matches_reference_and_read_back(tmp_path):
    """A DR2 given per variant (the recalibrated DR2) is written where it is finite,
    the DR2 computed from the probabilities elsewhere; fast and reference writers agree byte
    for byte, with haploid males too; the header says DR2 is recalibrated only then."""
    import dataclasses

    import cyvcf2

    from vcfbert.imputed_vcf import DR2_HEADER, DR2_RECALIBRATED_HEADER
    from vcfbert.vcf_cells import by_variant, site_stats

    rng = np.random.default_rng(12)
    chrom = random_chrom(rng, n_var=40, n_samples=5)
    given = rng.random(40)
    given[[0, 1, 2]] = [0.0005, 0.9995, 1.2]  # rounding edges; out of range: clipped
    given[chrom.typed] = np.nan  # typed: computed by the writer
    given[[5, 6]] = np.nan
    male = np.array([False, True, False, False, True])
    region = np.arange(40) >= 10
    for t in np.flatnonzero(male):
        chrom.hap_prob[2 * t + 1, region] = chrom.hap_prob[2 * t, region]
    for c in (dataclasses.replace(chrom, dr2=given),
              dataclasses.replace(chrom, dr2=given, haploid_samples=male,
                                  haploid_variants=region)):
        fast = bytes(format_records(c, 0, 40)).decode("ascii")
        slow = "".join(line + "\n" for line in records_reference(c, 0, 40))
        assert fast == slow
    c = dataclasses.replace(chrom, dr2=given, haploid_samples=male, haploid_variants=region)
    out = tmp_path / "x.vcf.gz"
    write_imputed_vcf(out, [c], [f"s{i}" for i in range(5)])
    vcf = cyvcf2.VCF(str(out))
    assert DR2_RECALIBRATED_HEADER.split("Description=")[1][:-1] in vcf.raw_header
    own = site_stats(by_variant(c.hap_prob), male, region)[1]
    for v, rec in enumerate(vcf):
        want = min(given[v], 1.0) if np.isfinite(given[v]) else own[v]
        assert rec.INFO["DR2"] == pytest.approx(float(f"{want:.3f}"), abs=1e-6), v
    write_imputed_vcf(tmp_path / "y.vcf.gz", [chrom], [f"s{i}" for i in range(5)])
    header = cyvcf2.VCF(str(tmp_path / "y.vcf.gz")).raw_header
    assert DR2_HEADER in header and "recalibrated" not in header


@pytest.mark.parametrize("threads", [1, 3])
def test_bgzf_writer_round_trip(tmp_path, threads):
    rng = np.random.default_rng(0)
    text = b"".join(b"20\t%d\t.\tA\tG\n" % i for i in range(60_000))
    noise = rng.integers(0, 256, 3 * BLOCK_INPUT, dtype=np.uint8).tobytes()  # incompressible
    path = tmp_path / "x.gz"
    w = BgzfWriter(path, threads=threads, level=1)
    for lo in range(0, len(text), 100_003):
        w.write(text[lo:lo + 100_003])
    w.write(noise)
    w.close()
    assert gzip.decompress(path.read_bytes()) == text + noise
    with pysam.BGZFile(str(path), "rb") as fh:  # htslib reads it as BGZF
        assert fh.read() == text + noise


def test_written_vcf_is_read_by_htslib_with_index(tmp_path):
    chrom = random_chrom(np.random.default_rng(3), n_var=500, n_samples=5)
    out = tmp_path / "imputed.vcf.gz"
    write_imputed_vcf(out, [chrom], [f"s{i}" for i in range(5)], threads=2,
                      cells_per_block=333)
    assert (tmp_path / "imputed.vcf.gz.tbi").exists()
    with pysam.VariantFile(str(out)) as vf:
        records = list(vf.fetch("20", 20_000, 30_000))
        assert [r.pos for r in records] == list(range(20_100, 30_001, 100))
        ds = records[0].samples["s0"]["DS"]
        x = 199  # position 20,000 is variant index 199; fetch is 0-based half-open
        p = np.clip(chrom.hap_prob[0:2, x + 1].astype(np.float64), 0, 1)
        assert ds[0] == pytest.approx(p.sum(), abs=6e-4)


@pytest.mark.parametrize("extra", [("HDS",), ("AP1", "AP2"), ("HDS", "AP1", "AP2")])
def test_optional_format_fields_match_reference_and_read_back(tmp_path, extra):
    import cyvcf2

    chrom = random_chrom(np.random.default_rng(5), n_var=30, n_samples=3)
    fast = bytes(format_records(chrom, 0, 30, extra)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, 30, extra))
    assert fast == slow
    out = tmp_path / "x.vcf.gz"
    write_imputed_vcf(out, [chrom], ["a", "b", "c"], format_fields=list(extra))
    rec = next(iter(cyvcf2.VCF(str(out))))
    p = np.round(chrom.hap_prob[:, 0].astype(np.float64), 3)
    if "HDS" in extra:
        np.testing.assert_allclose(rec.format("HDS").reshape(-1), p, atol=1e-6)
    if "AP1" in extra:
        np.testing.assert_allclose(rec.format("AP1")[:, 0], p[0::2], atol=1e-6)
        np.testing.assert_allclose(rec.format("AP2")[:, 0], p[1::2], atol=1e-6)
    with pytest.raises(ValueError, match="unknown"):
        write_imputed_vcf(tmp_path / "y.vcf.gz", [chrom], ["a", "b", "c"], format_fields=["XX"])


@pytest.mark.parametrize("extra", [(), ("HDS", "AP1", "AP2")])
def test_haploid_males_match_reference_and_read_back(tmp_path, extra):
    """chrX: males are written haploid outside the pseudo-autosomal regions (GT one allele,
    DS in [0, 1], GP two values), diploid inside; AF counts a male's allele once."""
    import dataclasses
    import shutil
    import subprocess

    import cyvcf2

    chrom = random_chrom(np.random.default_rng(8), n_var=30, n_samples=4)
    male = np.array([False, True, False, True])
    region = np.arange(30) >= 5  # variants 0-4: a pseudo-autosomal region
    chrom = dataclasses.replace(chrom, contig="X", haploid_samples=male,
                                haploid_variants=region)
    hp = chrom.hap_prob
    hp[3] = hp[2]  # a male's second copy is his first (what the stores hold)
    hp[7] = hp[6]
    fast = bytes(format_records(chrom, 0, 30, extra)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, 30, extra))
    assert fast == slow
    out = tmp_path / "x.vcf.gz"
    write_imputed_vcf(out, [chrom], ["f1", "m1", "f2", "m2"], format_fields=list(extra))
    recs = list(cyvcf2.VCF(str(out)))
    assert recs[0].genotype.array().shape[1] == 3  # PAR: diploid
    gt = recs[10].genotype.array()
    assert gt[1, 1] == -2 and gt[3, 1] == -2 and gt[0, 1] != -2  # males haploid
    ds = recs[10].format("DS")[:, 0]
    p = np.clip(hp[:, 10].astype(np.float64), 0, 1)
    assert ds[1] == pytest.approx(p[2], abs=6e-4) and ds[0] == pytest.approx(p[0] + p[1],
                                                                               abs=6e-4)
    expect_af = (p[0] + p[1] + p[2] + p[4] + p[5] + p[6]) / 6
    assert recs[10].INFO["AF"] == pytest.approx(expect_af, abs=1e-4)
    if shutil.which("bcftools"):
        res = subprocess.run(["bcftools", "query", "-r", "X:1100", "-f", "[%GT ]\n", str(out)],
                             capture_output=True, text=True, check=True)
        calls = res.stdout.split()
        assert "|" not in calls[1] and "|" in calls[0]


def _dead(ref, seconds: float = 5.0) -> bool:
    """Whether the object behind weak reference ``ref`` is freed within ``seconds``."""
    import gc
    import time

    end = time.time() + seconds
    while time.time() < end:
        gc.collect()
        if ref() is None:
            return True
        time.sleep(0.01)
    return False


@pytest.mark.parametrize("threads", [1, 2])
def test_write_piece_frees_each_core_once_its_records_are_written(tmp_path, threads):
    """A core's probabilities are freed once its records are written, while the next core is
    still being computed (the imputation jobs' peak memory: two windows' outputs at most,
    and the older one only while it is formatted); the piece holds every core's records."""
    import weakref

    from vcfbert.imputed_vcf import records_reference
    from vcfbert.vcf_pieces import write_piece

    rng = np.random.default_rng(3)
    chroms = [random_chrom(rng, n_var=12, n_samples=3) for _ in range(3)]
    for k, chrom in enumerate(chroms):
        chrom.position = chrom.position + 10_000 * k
    freed = []

    def cores():
        refs = []
        for chrom in chroms:
            if refs:  # computing the next core: the previous one is written and freed
                freed.append(_dead(refs[-1]))
            item = ChromosomeDosages(**{**chrom.__dict__, "hap_prob": chrom.hap_prob.copy()})
            refs.append(weakref.ref(item.hap_prob))
            yield item
            del item

    out = tmp_path / "p.vcf.gz"
    write_piece(out, cores(), lambda c: c, contig="20", core_start=0, core_end=36,
                samples=["a", "b", "c"], window_ids=["w0", "w1", "w2"], threads=threads)
    assert freed == [True, True]
    lines = gzip.open(out, "rt").read().splitlines()
    assert lines == [line for c in chroms for line in records_reference(c, 0, 12)]


def test_by_variant_transposes_any_block():
    """The tiled transpose equals numpy's, for shapes around its 16 x 16 tiles, a strided
    block of columns (as the writer slices a core) and float64 input (made float32)."""
    from vcfbert.vcf_cells import by_variant

    rng = np.random.default_rng(9)
    for rows, cols in ((1, 1), (2, 17), (16, 16), (33, 5), (40, 70)):
        hap = rng.random((rows, cols + 9)).astype(np.float32)
        for block in (hap, hap[:, 3:3 + cols], hap[::2, 1:], hap.astype(np.float64)):
            got = by_variant(block)
            assert got.dtype == np.float32 and got.flags.c_contiguous
            np.testing.assert_array_equal(got, np.asarray(block, np.float32).T)


def test_every_decimal_is_written_as_decimal_text_writes_it():
    """The looked-up text of every value the records can hold (0, 0.001, ..., 2), and what
    follows it is written over: the cell's next byte goes right after the text."""
    from vcfbert.imputed_vcf import decimal_text
    from vcfbert.vcf_cells import PAD_BYTES, _put_decimal

    buf = np.zeros(1 + 5 + PAD_BYTES, np.uint8)
    for q in range(2001):
        buf[:] = 0
        end = _put_decimal(buf, 1, q / 1000)
        assert bytes(buf[1:end]).decode("ascii") == decimal_text(q / 1000), q
        assert buf[0] == 0 and end <= 1 + 5


@pytest.mark.parametrize("gp", [True, False])
def test_runs_of_certain_hom_ref_cells_match_reference(gp):
    """Records of mostly near-certain 0|0 cells, their runs copied at once: runs at a record's
    start and end, broken by one other cell, by a haploid male at a haploid variant (whose
    cell is written haploid) and by values just past the shortcut's bound; every record as the
    per-string formatter writes it."""
    import dataclasses

    rng = np.random.default_rng(11)
    n_samples, n_var = 23, 12
    hp = np.full((2 * n_samples, n_var), 1e-6, np.float32)
    hp[:, 1] = 0.0
    hp[0, 2] = 0.6  # the first cell breaks the run at the record's start
    hp[-1, 3] = 0.3  # ... the last at its end
    hp[20, 4] = 2.5e-4
    hp[21, 4] = 2.4e-4  # 4.9e-4 together: past the bound, written in full
    hp[10:14, 5] = rng.random(4).astype(np.float32)
    hp[::7, 6] = 0.9
    male = np.zeros(n_samples, bool)
    male[[3, 4, 17]] = True
    for t in np.flatnonzero(male):
        hp[2 * t + 1] = hp[2 * t]
    chrom = dataclasses.replace(random_chrom(rng, n_var, n_samples), contig="X",
                                hap_prob=hp, haploid_samples=male,
                                haploid_variants=np.arange(n_var) >= 6)
    fast = bytes(format_records(chrom, 0, n_var, gp=gp)).decode("ascii")
    slow = "".join(line + "\n" for line in records_reference(chrom, 0, n_var, gp=gp))
    assert fast == slow
    cells = fast.splitlines()[0].split("\t")[9:]
    assert cells == ["0|0:0:1,0,0" if gp else "0|0:0"] * n_samples
