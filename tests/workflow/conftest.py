"""Helpers to run the workflow in a temporary working directory."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SNAKEFILE = ROOT / "Snakefile"

# a configuration that trains and imputes in about a minute on 2 cores
TINY = {
    "epochs": 2,
    "simulation": {"reference_samples": {"YRI": 30, "CEU": 30, "CHB": 30},
                   "target_samples": {"YRI": 5, "CEU": 5, "CHB": 5}, "length": 300_000},
    "windows": {"core_sites": 24, "flank_sites": 48},
    "impute": {"windows_per_job": 2},
    "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "d_ff": 32, "d_key": 32,
              "k_retrieve": 48, "k_keep": 32},
    "train": {"batch_size": 8, "max_batches_per_epoch": 10, "val_max_haplotypes": 24,
              "checkpoint_every": 4},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for k, v in extra.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_config(workdir: Path, config: dict | None) -> Path:
    """``workdir/test-config.yaml``: ``config`` merged over config/config.yaml."""
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    cfg_path = workdir / "test-config.yaml"
    cfg_path.write_text(yaml.safe_dump(merge(base, config or {})))
    return cfg_path


def snakemake(workdir: Path, *args: str, config: dict | None = None, check: bool = True,
              timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the workflow from ``workdir`` with ``config`` merged over config/config.yaml."""
    cfg_path = write_config(workdir, config)
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "-d", str(workdir),
           "--configfile", str(cfg_path), *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=workdir)
    if check and res.returncode != 0:
        raise AssertionError(f"snakemake failed ({res.returncode}):\n{res.stdout[-4000:]}\n"
                             f"{res.stderr[-6000:]}")
    return res


@pytest.fixture
def workdir(tmp_path):
    return tmp_path


def vcf_records(path) -> list[str]:
    """A bgzipped VCF's lines without its ``##`` header (which carries the command line)."""
    with gzip.open(path, "rt") as fh:
        return [line for line in fh if not line.startswith("##")]
