"""Shared fixtures: a tiny simulated data set (seconds) reused across tests."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def have(tool: str) -> bool:
    return shutil.which(tool) is not None


@pytest.fixture(scope="session")
def tiny_sim(tmp_path_factory):
    """A small OutOfAfrica simulation (300 kb, 60 reference + 12 target diploids)."""
    from vcfbert.simulate import SimulatedPaths, SimulationConfig, simulate

    d = tmp_path_factory.mktemp("sim")
    cfg = SimulationConfig(reference_samples={"YRI": 20, "CEU": 20, "CHB": 20},
                           target_samples={"YRI": 4, "CEU": 4, "CHB": 4}, length=300_000,
                           contig="20", seed=7)
    paths = SimulatedPaths(str(d / "ref.vcf.gz"), str(d / "tgt.vcf.gz"), str(d / "truth.vcf.gz"),
                           str(d / "panel.tsv"))
    summary = simulate(cfg, paths)
    return paths, summary, d


@pytest.fixture(scope="session")
def tiny_stores(tiny_sim):
    """Reference and target stores and windows of the tiny simulation."""
    from vcfbert.ingest import parse_reference, parse_targets
    from vcfbert.io.h5store import read_targets, read_variant_table
    from vcfbert.windows import define_windows, write_windows

    paths, _, d = tiny_sim
    parse_reference(paths.reference_vcf, "20", d / "ref.h5", panel=paths.panel)
    parse_targets(paths.target_vcf, d / "ref.h5", "20", d / "tgt.h5", d / "qc_sites.tsv",
                  d / "qc_samples.tsv")
    table = read_variant_table(d / "ref.h5")
    targets = read_targets(d / "tgt.h5")
    windows = define_windows(table["position"], targets.variant_ref_index, core_sites=16,
                             flank_sites=32)
    write_windows(windows, d / "windows.tsv")
    return {"ref": str(d / "ref.h5"), "tgt": str(d / "tgt.h5"), "windows": str(d / "windows.tsv"),
            "dir": d, "paths": paths}


# Longest files first, so that with pytest-xdist (`-n 2 --dist loadfile`, see pyproject.toml)
# the SLURM test, which mostly waits on the scheduler, overlaps the CPU-bound workflow runs
# instead of running alone at the end.
FIRST = ("tests/workflow/test_slurm.py", "tests/workflow/test_end_to_end.py",
         "tests/workflow/test_resume.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::", 1)[0]
        return FIRST.index(path) if path in FIRST else len(FIRST)

    items.sort(key=rank)  # stable: the order inside each file is kept
