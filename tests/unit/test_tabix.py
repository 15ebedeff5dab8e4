"""The tabix index built from the records' places (vcfbert.io.tabix) against htslib's own."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pysam
import pytest

from vcfbert.io.bgzf import BgzfWriter
from vcfbert.io.tabix import (
    ContigRecords,
    pack_uint32,
    reg2bin,
    unpack_uint32,
    virtual_offsets,
    write_tabix,
)
from vcfbert.io.vcf_writer import BgzipVcfWriter


def reg2bin_spec(beg: int, end: int) -> int:
    """The SAM/BAM specification's reg2bin, one interval at a time."""
    end -= 1
    for shift, levels_above in ((14, 15), (17, 12), (20, 9), (23, 6), (26, 3)):
        if beg >> shift == end >> shift:
            return ((1 << levels_above) - 1) // 7 + (beg >> shift)
    return 0


def test_reg2bin_is_the_specifications():
    rng = np.random.default_rng(0)
    beg = rng.integers(0, 2**29, 5000)
    end = beg + 1 + (rng.random(5000) * 2.0 ** rng.integers(0, 28, 5000)).astype(np.int64)
    expect = [reg2bin_spec(int(b), int(e)) for b, e in zip(beg, end, strict=True)]
    np.testing.assert_array_equal(reg2bin(beg, end), expect)


def test_virtual_offsets_of_places_in_members():
    blocks = np.array([[100, 65280], [90, 65280], [10, 5]])
    got = virtual_offsets(np.array([0, 7, 65280, 65281, 130560, 130565]), blocks, 1000)
    expect = [1000 << 16, (1000 << 16) | 7, 1100 << 16, (1100 << 16) | 1, 1190 << 16,
              1200 << 16]
    np.testing.assert_array_equal(got, np.array(expect, np.uint64))
    with pytest.raises(ValueError, match="outside"):
        virtual_offsets(np.array([130566]), blocks, 0)


def test_packed_sizes_round_trip():
    values = np.array([0, 1, 65280, 2**32 - 1])
    np.testing.assert_array_equal(unpack_uint32(pack_uint32(values)), values)
    with pytest.raises(ValueError):
        pack_uint32(np.array([2**32]))


def synthetic_records(rng: np.random.Generator, contig: str, n: int) -> list[tuple[int, int,
                                                                                   str]]:
    """(POS, REF length, line) of ``n`` sorted records with long REF alleles among them (up
    to 200 kb: across bins and the linear index's 16 kb windows) and lines of varied length
    (many BGZF members)."""
    pos = np.sort(rng.integers(1, 3_000_000, n))
    pos[5:9] = pos[5]  # several records at one position
    span = np.where(rng.random(n) < 0.05, rng.integers(2, 200_000, n), 1)
    out = []
    for p, s in zip(pos, span, strict=True):
        ref = "A" * int(s)
        cells = "\t".join(["0|0"] * int(rng.integers(10, 200)))
        out.append((int(p), int(s), f"{contig}\t{p}\t.\t{ref}\t<DEL>\t.\tPASS\t.\tGT\t{cells}"))
    return out


def fetched(path: str, contig: str, lo: int, hi: int) -> list[str]:
    with pysam.TabixFile(path) as tbx:
        return list(tbx.fetch(contig, lo, hi))


@pytest.mark.parametrize("threads", [1, 2])
def test_index_from_places_finds_what_htslib_finds(tmp_path, threads):
    """A VCF written as a header plus pieces copied member by member (as write_vcf does),
    indexed from the places its writer knew: every region queried returns the records that
    overlap it, the same as with htslib's index of the file; bcftools counts its records."""
    rng = np.random.default_rng(threads)
    contigs = {"chrA": synthetic_records(rng, "chrA", 1500),
               "chrB": synthetic_records(rng, "chrB", 700)}
    header = ["##fileformat=VCFv4.2", '##ALT=<ID=DEL,Description="Deletion">',
              *(f"##contig=<ID={c}>" for c in contigs),
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                         *(f"s{i}" for i in range(200))])]
    ours = tmp_path / "ours.vcf.gz"
    places = []
    with BgzipVcfWriter(ours) as w:
        w.write_lines(header)
        for contig, records in contigs.items():
            parts = []
            for piece, lo in enumerate(range(0, len(records), 400)):  # pieces of 400 records
                chunk = records[lo:lo + 400]
                text = [(line + "\n").encode() for _, _, line in chunk]
                path = tmp_path / f"{contig}.{piece}.gz"
                with BgzfWriter(path, threads=threads) as pw:
                    for t in text:
                        pw.write(t)
                members = np.array(pw.members)
                assert members[:, 1].sum() == pw.text_bytes == sum(map(len, text))
                start = w.write_members(path.read_bytes()[:-28])  # without the EOF member
                ends = np.cumsum([len(t) for t in text])
                beg = np.array([p - 1 for p, _, _ in chunk])
                parts.append((beg, beg + np.array([s for _, s, _ in chunk]),
                              virtual_offsets(ends - [len(t) for t in text], members, start),
                              virtual_offsets(ends, members, start)))
            places.append(ContigRecords(contig, *(np.concatenate(x) for x in zip(*parts, strict=True))))
        w.set_index(places)
    theirs = tmp_path / "theirs.vcf.gz"
    shutil.copy(ours, theirs)
    pysam.tabix_index(str(theirs), preset="vcf", force=True, keep_original=True)
    queries = [(c, int(lo), int(lo) + int(size)) for c in contigs
               for lo, size in zip(rng.integers(0, 3_200_000, 150),
                                   rng.integers(1, 300_000, 150), strict=True)]
    queries += [(c, p - 1, p) for c, records in contigs.items() for p, _, _ in records[::50]]
    for contig, lo, hi in queries:
        expect = [line for p, s, line in contigs[contig] if p - 1 < hi and p - 1 + s > lo]
        assert fetched(str(ours), contig, lo, hi) == expect, (contig, lo, hi)
        assert fetched(str(theirs), contig, lo, hi) == expect
    if shutil.which("bcftools"):
        counts = subprocess.run(["bcftools", "index", "--nrecords", str(ours)],
                                capture_output=True, text=True, check=True).stdout.split()
        assert counts == ["2200"]


def test_index_refuses_records_out_of_order(tmp_path):
    beg = np.array([10, 5])
    with pytest.raises(ValueError, match="out of order"):
        write_tabix(tmp_path / "x.tbi", [ContigRecords("c", beg, beg + 1,
                                                       np.array([1, 2], np.uint64),
                                                       np.array([2, 3], np.uint64))])
