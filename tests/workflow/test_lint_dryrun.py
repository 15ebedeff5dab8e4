"""The workflow lints clean, dry-runs, and validates its config against the schema."""

from __future__ import annotations

import subprocess
import sys

from conftest import SNAKEFILE, TINY, snakemake, write_config


def test_lint(workdir):
    res = snakemake(workdir, "--lint")
    assert "Congratulations" in res.stdout + res.stderr


def test_dry_run_demo(workdir):
    res = snakemake(workdir, "-n", "--cores", "2", config=TINY)
    out = res.stdout + res.stderr
    for rule in ("simulate", "list_chromosomes", "train_epoch", "imputed_manifest", "evaluate"):
        assert rule in out


def test_config_typo_is_rejected(workdir):
    res = snakemake(workdir, "-n", "--cores", "1", config={"train": {"learning_rate": 1}},
                    check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "learning_rate" in out and "Additional properties" in out


def test_config_wrong_type_is_rejected(workdir):
    res = snakemake(workdir, "-n", "--cores", "1", config={"epochs": "three"}, check=False)
    assert res.returncode != 0
    assert "'three' is not of type 'integer'" in res.stdout + res.stderr


def test_config_value_error_is_one_line(workdir):
    """A refused value is one line naming the key and what it accepts, not the schema's dump."""
    res = snakemake(workdir, "-n", "--cores", "1", config={"model": {"attention_block": 1}},
                    check=False)
    assert res.returncode != 0
    out = res.stdout + res.stderr
    assert "config model.attention_block: 1 should not be valid" in out
    assert "or at least 2" in out and "Failed validating" not in out


def test_the_snakemake_process_imports_no_pandas(workdir):
    """Parsing the workflow and building its DAG import none of pandas, torch or h5py: each
    would add to every `snakemake` start (pandas ~0.3 s; on a cluster, to every job's too)."""
    cfg = write_config(workdir, TINY)
    code = ("import atexit, sys\n"
            "atexit.register(lambda: print('HEAVY', sorted(m for m in ('pandas', 'torch', 'h5py')"
            " if m in sys.modules)))\n"
            "from snakemake.cli import main\n"
            "main()\n")
    res = subprocess.run([sys.executable, "-c", code, "-s", str(SNAKEFILE), "-d", str(workdir),
                          "--configfile", str(cfg), "-n", "--cores", "1"],
                         capture_output=True, text=True, timeout=300, cwd=workdir)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "train_epoch" in res.stdout + res.stderr  # it did build the DAG
    assert "HEAVY []" in res.stdout, res.stdout[-2000:]
