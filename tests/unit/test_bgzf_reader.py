"""The BGZF reader (libdeflate) against gzip and htslib, and the text pieces the VCF parser gets."""

import gzip

import numpy as np
import pysam
import pytest

from vcfbert.errors import InputError
from vcfbert.io.bgzf import BLOCK_INPUT, BgzfWriter, inflated_blocks, is_bgzf_header
from vcfbert.io.vcf_text import _htslib_text, _text_blocks, _whole_lines


def _text(n_lines: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return b"".join(b"20\t%d\t.\tA\tG\t.\t.\t.\tGT\t%s\n" % (
        i, b"\t".join(b"%d|%d" % tuple(x) for x in rng.integers(0, 2, (rng.integers(1, 40), 2))))
        for i in range(n_lines))


def _bgzip(path, data: bytes, writer: str) -> None:
    if writer == "htslib":
        with pysam.BGZFile(str(path), "wb") as fh:
            fh.write(data)
    else:
        with BgzfWriter(path, threads=2, level=6) as w:
            w.write(data)


@pytest.mark.parametrize("writer", ["htslib", "ours"])
def test_members_inflated_are_the_file_text(tmp_path, writer):
    """Text and incompressible bytes, members written by htslib or by our writer: the members'
    text joined is what gzip reads, the EOF member gives nothing."""
    noise = np.random.default_rng(1).integers(0, 256, 2 * BLOCK_INPUT, np.uint8).tobytes()
    data = _text(5000) + noise + b"tail without a newline"
    path = tmp_path / "x.vcf.gz"
    _bgzip(path, data, writer)
    assert is_bgzf_header(path.read_bytes()[:18])
    members = list(inflated_blocks(path))
    assert len(members) > 3 and all(members)
    assert b"".join(members) == gzip.decompress(path.read_bytes()) == data


@pytest.mark.parametrize("block_bytes", [500, 70_000, 1 << 24])
@pytest.mark.parametrize("ending", [b"", b"20\t1\tlast line without newline", b"  \t "])
def test_pieces_end_at_line_ends_and_match_htslib(tmp_path, block_bytes, ending):
    """Pieces of a BGZF file (libdeflate) and of the same text through htslib: the same text,
    each piece ending at a line's end, of about ``block_bytes``; a last line
    without its newline gets one, trailing blanks are dropped, as htslib's reader did."""
    data = _text(3000, seed=2) + ending
    path = tmp_path / "x.vcf.gz"
    _bgzip(path, data, "htslib")
    ours = list(_text_blocks(str(path), block_bytes))
    theirs = list(_whole_lines(_htslib_text(str(path), block_bytes), block_bytes))
    assert b"".join(ours) == b"".join(theirs)
    want = data if not ending.strip() else data + b"\n"
    assert b"".join(ours) == (want[:want.rfind(b"\n") + 1] if not ending.strip() else want)
    assert all(p.endswith(b"\n") for p in ours)
    longest = max(len(line) for line in data.split(b"\n")) + 1
    assert all(len(p) <= 2 * block_bytes + longest for p in ours)  # about block_bytes
    assert len(ours) >= len(data) // (2 * block_bytes + longest)


def test_plain_gzip_and_plain_text_go_through_htslib(tmp_path):
    data = _text(200, seed=3)
    gz = tmp_path / "x.vcf.gz"
    gz.write_bytes(gzip.compress(data))  # one gzip member, not BGZF
    plain = tmp_path / "x.vcf"
    plain.write_bytes(data)
    for path in (gz, plain):
        assert not is_bgzf_header(path.read_bytes()[:18])
        assert b"".join(_text_blocks(str(path), 1000)) == data


def test_damaged_files_are_one_clear_error(tmp_path):
    data = _text(4000, seed=4)
    path = tmp_path / "x.vcf.gz"
    _bgzip(path, data, "htslib")
    raw = path.read_bytes()
    first_size = int.from_bytes(raw[16:18], "little") + 1

    cut = tmp_path / "cut.vcf.gz"  # truncated inside the second member
    cut.write_bytes(raw[:first_size + 100])
    with pytest.raises(InputError, match=r"cut.vcf.gz: cannot decompress \(a truncated member "
                                         r"at byte \d+\).*re-create it with bgzip"):
        list(inflated_blocks(cut))

    flipped = bytearray(raw)  # a byte of the first member's compressed data changed
    flipped[first_size // 2] ^= 0xFF
    bad = tmp_path / "bad.vcf.gz"
    bad.write_bytes(bytes(flipped))
    with pytest.raises(InputError, match=r"bad.vcf.gz: cannot decompress \((corrupt data|a "
                                         r"CRC32 mismatch).* at byte 0\)"):
        list(_text_blocks(str(bad), 1 << 20))

    mixed = tmp_path / "mixed.vcf.gz"  # BGZF, then a plain gzip member
    mixed.write_bytes(raw + gzip.compress(b"20\t9\n"))
    with pytest.raises(InputError, match=rf"a member that is not BGZF at byte {len(raw)}"):
        list(inflated_blocks(mixed))
