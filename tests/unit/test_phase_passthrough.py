"""Phased targets passed through by phase_targets: a text VCF of the one contig is copied line
by line (its records as they are), the same calls as the htslib path gives."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
from data.vcfs import random_panel, write_vcf

from vcfbert.io.vcf import iter_variants, list_contigs


def _records(path):
    with gzip.open(path, "rt") as fh:
        return [line.rstrip("\n") for line in fh if not line.startswith("#")]


def _calls(path, contig):
    return [(v.position, v.ref, v.alt, v.haplotypes.tolist())
            for v in iter_variants(path, contig, role="target")]


@pytest.mark.parametrize("name,source", [("gz", "chr20"), ("plain", "20")])
def test_text_targets_are_copied_as_they_are(tmp_path, name, source):
    from vcfbert.phase import phase_targets

    samples, records = random_panel(7, 30, seed=3)
    suffix = ".vcf.gz" if name == "gz" else ".vcf"
    tgt = write_vcf(tmp_path / f"t{suffix}", samples, records, contig=source,
                    extra_header=["##source=sequenced in Tromsø"])  # UTF-8 passes through
    ref = write_vcf(tmp_path / "r.vcf.gz", samples[:2], records, contig="20")
    out = tmp_path / "p.vcf.gz"
    assert not phase_targets(target_vcf=str(tgt), reference_vcf=str(ref), out=str(out),
                             tool="none", contig="20")
    assert list_contigs(out) == ["20"] and (tmp_path / "p.vcf.gz.tbi").exists()
    lines = (gzip.open(tgt, "rt") if name == "gz" else open(tgt)).read().splitlines()
    want = [line.replace(source, "20", 1) if not line.startswith("#") else line
            for line in lines if not line.startswith("#")]
    assert _records(out) == want  # byte for byte, the contig renamed
    with gzip.open(out, "rt") as fh:
        header = [line for line in fh if line.startswith("##contig")]
    assert header == ["##contig=<ID=20>\n"]
    with gzip.open(out, "rt", encoding="utf-8") as fh:
        assert "##source=sequenced in Tromsø\n" in fh.readlines()
    assert _calls(out, "20") == _calls(tgt, source)


def test_other_contigs_and_bcf_go_through_htslib(tmp_path):
    """A file with more contigs keeps only the wanted one's records (htslib's path), with the
    same calls as the text path gives for a file of that contig alone."""
    from vcfbert.phase import write_renamed

    samples, records = random_panel(5, 20, seed=4)
    both = write_vcf(tmp_path / "both.vcf.gz", samples,
                     [("21", *r) for r in records[:10]] + [("22", *r) for r in records[10:]],
                     contigs=["21", "22"])
    alone = write_vcf(tmp_path / "alone.vcf.gz", samples, records[10:], contig="22")
    write_renamed(both, tmp_path / "a.vcf.gz", {"22": "chr22"}, contig="22")
    write_renamed(alone, tmp_path / "b.vcf.gz", {"22": "chr22"}, contig="22")
    assert list_contigs(tmp_path / "a.vcf.gz") == ["chr22"]
    assert _calls(tmp_path / "a.vcf.gz", "chr22") == _calls(tmp_path / "b.vcf.gz", "chr22")
    assert len(_records(tmp_path / "a.vcf.gz")) == 10


_SMALL_JOBS = """
import json, sys
from vcfbert import steps
from vcfbert.phase import phase_targets
a = json.loads(sys.argv[1])
steps.list_chromosomes(reference_vcf=[a["ref"]], target_vcf=[a["tgt"]], out=a["tsv"])
phase_targets(target_vcf=a["tgt"], reference_vcf=a["ref"], out=a["out"], tool="none",
              contig="20")
print(json.dumps(sorted(m for m in ("pandas", "numba", "torch") if m in sys.modules)))
"""


def test_listing_and_phasing_import_neither_pandas_nor_numba(tmp_path):
    """The two small jobs before a batch's parsing start without pandas and numba (~0.4 s of
    imports each; docs/model.md, "Inference speed", the twenty-third session)."""
    samples, records = random_panel(4, 10, seed=5)
    args = {"ref": str(write_vcf(tmp_path / "r.vcf.gz", samples, records)),
            "tgt": str(write_vcf(tmp_path / "t.vcf.gz", samples, records)),
            "tsv": str(tmp_path / "c.tsv"), "out": str(tmp_path / "p.vcf.gz")}
    run = subprocess.run([sys.executable, "-c", _SMALL_JOBS, json.dumps(args)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(run.stdout.splitlines()[-1]) == []
    assert np.array_equal(np.loadtxt(tmp_path / "c.tsv", dtype=str, delimiter="\t")[0],
                          ["contig", "wildcard", "reference_file", "target_file",
                           "genetic_map_file"])


def test_a_header_that_is_not_utf8_passes_through(tmp_path):
    """A Latin-1 byte in a header line (older tools wrote them) is copied as it is, not a
    traceback of the text copy."""
    from vcfbert.phase import write_renamed

    samples, records = random_panel(3, 5, seed=6)
    tgt = write_vcf(tmp_path / "t.vcf", samples, records)
    raw = tgt.read_bytes().replace(b"##contig=", b"##source=Troms\xf8\n##contig=", 1)
    tgt.write_bytes(raw)
    write_renamed(tgt, tmp_path / "p.vcf.gz", {"20": "chr20"}, contig="20")
    with gzip.open(tmp_path / "p.vcf.gz", "rb") as fh:
        out = fh.read()
    assert b"##source=Troms\xf8\n" in out and b"\nchr20\t1000\t" in out
