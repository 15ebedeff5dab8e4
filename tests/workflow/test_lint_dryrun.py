"""The workflow lints clean, dry-runs, and validates its config against the schema."""

from __future__ import annotations

from conftest import TINY, snakemake


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
