"""Real VCFs from Debian's packages through ingest: 1000 Genomes files with their quirks, and
VariantAnnotation's catalogue of odd files (each parses, or fails in one line).

The files come from ``apt-get download beagle-doc r-bioc-variantannotation`` (unpacked with
``dpkg -x``, nothing installed); the tests skip where Debian's archive cannot be reached.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from vcfbert.errors import InputError
from vcfbert.io.vcf import ReadStats, iter_variants, list_contigs

PACKAGES = ("beagle-doc", "r-bioc-variantannotation")
VA = "usr/lib/R/site-library/VariantAnnotation"


@pytest.fixture(scope="module")
def debian(tmp_path_factory) -> Path:
    if not (shutil.which("apt-get") and shutil.which("dpkg")):
        pytest.skip("apt-get/dpkg not available")
    d = tmp_path_factory.mktemp("debian")
    res = subprocess.run(["apt-get", "download", *PACKAGES], cwd=d, capture_output=True,
                         text=True, timeout=300)
    debs = list(d.glob("*.deb"))
    if res.returncode != 0 or len(debs) != len(PACKAGES):
        pytest.skip(f"cannot download {PACKAGES} from Debian: {res.stderr.strip()[-200:]}")
    for deb in debs:
        subprocess.run(["dpkg", "-x", str(deb), str(d / "x")], check=True)
    return d / "x"


def catalogue(root: Path) -> list[Path]:
    files = sorted((root / VA / "unitTests" / "cases").glob("*.vcf"))
    files += sorted(p for p in (root / VA / "extdata").glob("*.vcf*") if p.suffix != ".tbi")
    return files + [root / "usr/share/doc/beagle/examples/test.vcf"]


def test_every_file_parses_or_fails_in_one_line(debian):
    outcomes = {}
    for path in catalogue(debian):
        try:
            stats = ReadStats()
            for contig in list_contigs(path):
                for _ in iter_variants(path, contig, role="target", stats=stats):
                    pass
            outcomes[path.name] = ("ok", stats.kept)
        except InputError as exc:  # anything else (a cyvcf2 exception, a traceback) fails
            message = str(exc)
            assert "\n" not in message and message.startswith(str(path))
            outcomes[path.name] = ("error", message)
    assert len(outcomes) >= 20
    # the quirks, each handled or named: records with more/fewer sample columns than the
    # header, FORMAT without GT, no sample columns, haploid calls, symbolic and multi-allelic
    for name in ("no_GENO_row.vcf", "fewer-FORMAT-than-GENO.vcf", "VarScan_header.vcf"):
        assert outcomes[name][0] == "error" and "htslib cannot parse" in outcomes[name][1]
    assert "has no genotypes" in outcomes["ex1-seq1-90.vcf"][1]
    assert "has no samples" in outcomes["no_FORMAT_column.vcf"][1]
    assert "not diploid" in outcomes["chr7-sub.vcf.gz"][1]
    assert outcomes["ex2.vcf"] == ("ok", 6)  # the VCF specification's example, split
    assert outcomes["chr22.vcf.gz"] == ("ok", 10376)


def test_1000_genomes_region_through_ingest(debian, tmp_path):
    """beagle-doc's test.vcf (1000 Genomes chr22, 191 samples, unphased GT:DS:GL, many INFO
    fields): phased with Beagle into a reference store, then aligned as targets."""
    from vcfbert.ingest import align_targets, parse_reference

    vcf = debian / "usr/share/doc/beagle/examples/test.vcf"
    if not shutil.which("beagle"):
        pytest.skip("Beagle 5.4 is not installed (apt-get install beagle)")
    subprocess.run(["beagle", f"gt={vcf}", f"out={tmp_path / 'phased'}", "impute=false",
                    "nthreads=2", "seed=1"], check=True, capture_output=True, timeout=600)
    stats = parse_reference(tmp_path / "phased.vcf.gz", "22", tmp_path / "ref.h5")
    assert stats.kept == 1355 and stats.dropped["symbolic_or_non_acgt_allele"] == 1
    from vcfbert.io.h5store import read_variant_table, store_samples

    table = read_variant_table(tmp_path / "ref.h5")
    assert len(store_samples(tmp_path / "ref.h5")[0]) == 191
    assert table["ids"][0] == "rs138720731"  # IDs are kept
    targets, counts, rates = align_targets(vcf, tmp_path / "ref.h5", "22")
    assert counts["matched"] == 1355 and counts["sites_used"] == 1355
    assert not targets.sample_phased.all()  # the input's heterozygous calls are unphased
    assert (rates["call_rate"] == 1.0).all()


def test_variantannotation_files_as_reference_and_targets(debian, tmp_path):
    """A phased 1000 Genomes chr22 extract (5 samples, indels, 10,376 records) as the
    reference; an unphased exome call set (22 samples, multi-allelic records) as targets."""
    from vcfbert.ingest import align_targets, parse_reference

    extdata = debian / VA / "extdata"
    stats = parse_reference(extdata / "chr22.vcf.gz", "22", tmp_path / "ref.h5")
    assert stats.kept == 10376
    targets, counts, _ = align_targets(extdata / "hapmap_exome_chr22.vcf.gz",
                                       tmp_path / "ref.h5", "22")
    assert counts["target_records"] == 1011 and counts["vcf_split_multiallelic"] == 40
    assert counts["sites_used"] == targets.variant_ref_index.size > 0
    assert counts["dropped_not_in_reference"] > 0  # the exome reaches beyond the extract
