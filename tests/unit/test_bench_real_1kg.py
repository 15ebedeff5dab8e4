"""bench/real_1kg.py: the real-data benchmark's array sites and its phased VCFs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("real_1kg", ROOT / "bench/real_1kg.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_array_sites_take_the_first_common_variant_of_each_bin():
    real = _module()
    position = np.array([100, 900, 1500, 2100, 2500, 3200, 7000, 7050])
    maf = np.array([0.01, 0.2, 0.3, 0.5, 0.1, 0.04, 0.06, 0.4])
    # bins of 1,000 bp from position 100: [100, 1100) [1100, 2100) [2100, 3100) ... (7000
    # and 7050 share [6100, 7100): the first is taken)
    assert real.array_sites(position, maf, 1000, 0.05).tolist() == [1, 2, 3, 6]
    assert real.array_sites(position, maf, 1000, 0.6).tolist() == []


def test_a_written_vcf_reads_back_as_the_same_haplotypes(tmp_path):
    real = _module()
    fixed = [["22", str(p), f"rs{p}", "A", "G", ".", "PASS", ".", "GT"] for p in (10, 20, 30)]
    alleles = np.array([[0, 1, 1, 1], [0, 0, 1, 0], [1, 0, 0, 0]], np.int8)
    path = tmp_path / "x.vcf.gz"
    real.write_vcf(path, "22", ["s1", "s2"], fixed, alleles, "test")
    samples, fixed_back, alleles_back = real.read_phased(path)
    assert samples == ["s1", "s2"]
    assert [c[:5] for c in fixed_back] == [c[:5] for c in fixed]
    assert np.array_equal(alleles_back, alleles)
    assert (tmp_path / "x.vcf.gz.tbi").exists()
